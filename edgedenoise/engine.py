"""TensorRT engines, as the rest of the package uses them: build one, read and check its sidecar.

    edgedenoise build model.onnx --out model.engine [--precision fp16|fp32|int8] [--kernels native|triton|auto]

The work is done in `edgedenoise/trt/` (its __init__ lists one module per concern: build, int8,
auto, sidecar, graph, and the plugins of the fused Triton kernels); the runner is
`edgedenoise/backends/tensorrt.py`. This module names what callers outside them need, so that
they do not depend on how trt/ is split.

Status: written against the TensorRT 10 documentation; TensorRT cannot be installed on the
development and CI machines, so build and run (native and triton) are tested only where
`tensorrt` imports, and skipped elsewhere with the reason. The sidecar checks, the INT8 graph
checks, the `--kernels auto` comparison and choice, the plugins' kernel selection, launch
planning and graph preparation are pure Python and tested everywhere.
"""
from __future__ import annotations

from pathlib import Path

from .trt import EngineError
from .trt import build as _build
from .trt.auto import AUTO_FRAME, TOLERANCE, build_auto, time_engine
from .trt.build import DEFAULT_PROFILE, frame_native_onnx
from .trt.graph import plain_weights
from .trt.sidecar import check_sidecar, read_sidecar, sidecar_path, this_machine

__all__ = ["AUTO_FRAME", "DEFAULT_PROFILE", "TOLERANCE", "EngineError", "build_auto", "build_engine",
           "check_sidecar", "frame_native_onnx", "plain_weights", "read_sidecar", "sidecar_path", "this_machine",
           "time_engine"]


def build_engine(onnx_path: str | Path, out: str | Path, precision: str = "fp16", calib: str | None = None,
                 profile: dict | None = None, timing_cache: str | Path | None = None, workspace_gb: float = 2.0,
                 kernels: str = "native", kernels_dir: str | Path | None = None, plugins: str = "auto",
                 log=print) -> dict:
    """Build and serialize an engine plus its sidecar (`edgedenoise build`); returns the sidecar dict.
    kernels `native` or `triton`: trt.build.build_engine (its docstring says what each builds);
    `auto`: both, checked against ONNX Runtime, the faster kept (trt.auto.build_auto). The choice is
    made here, not in trt/build.py, which auto.py builds with: no import circle between the two."""
    if kernels not in ("native", "triton", "auto"):
        raise EngineError(f"unknown --kernels {kernels!r}: native, triton or auto")
    from .trt.int8 import refuse_float_build_of_qdq

    refuse_float_build_of_qdq(Path(onnx_path), precision)  # before TensorRT is asked for: a fault of the input
    if kernels == "auto":
        _, onnx_path = _build.ready(onnx_path)  # as a single build: no TensorRT or no file, one line first
        return build_auto(onnx_path, Path(out), precision, calib, profile, timing_cache, workspace_gb,
                          kernels_dir, plugins, log)
    return _build.build_engine(onnx_path, out, precision, calib, profile, timing_cache, workspace_gb, kernels,
                               kernels_dir, plugins, log)
