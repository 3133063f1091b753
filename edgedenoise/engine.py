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

from .trt import EngineError
from .trt.auto import AUTO_FRAME, TOLERANCE, build_auto, time_engine
from .trt.build import DEFAULT_PROFILE, build_engine, frame_native_onnx
from .trt.graph import plain_weights
from .trt.sidecar import check_sidecar, read_sidecar, sidecar_path, this_machine

__all__ = ["AUTO_FRAME", "DEFAULT_PROFILE", "TOLERANCE", "EngineError", "build_auto", "build_engine",
           "check_sidecar", "frame_native_onnx", "plain_weights", "read_sidecar", "sidecar_path", "this_machine",
           "time_engine"]
