"""TensorRT engines (`edgedenoise build`) and the fused Triton kernels as TensorRT plugins.

One concern per module:

| module          | what it owns                                                                        |
|-----------------|-------------------------------------------------------------------------------------|
| `build`         | `build_engine`: parse, optimization profile, precision, timing cache, plan + sidecar |
| `int8`          | INT8: the symmetric Q/DQ graph TensorRT builds from, and the legacy calibrator      |
| `auto`          | `--kernels auto`: both engines checked against ONNX Runtime, timed, one kept        |
| `sidecar`       | the engine's JSON sidecar: written, read, checked against this machine              |
| `graph`         | ONNX graphs as TensorRT's parser takes them (plain weights, the plugin nodes)       |
| `aot_kernels`   | the ahead-of-time compiled boundary kernels: manifest, choice per GPU, PTX entries  |
| `launch`        | launch planning (grid, block, argument buffers) and launching the cubins            |
| `plugins`       | plugin registration: which flavour for this TensorRT, the kernels they run          |
| `ipluginv3`     | the Python IPluginV3 plugins (TensorRT 10.3: JetPack 6)                             |
| `qdp`           | the ahead-of-time Quickly Deployable Plugins (TensorRT >= 10.9)                     |

CUDA calls (runtime and driver API) and their one error type live in `edgedenoise/cuda.py`;
the runner is `edgedenoise/backends/tensorrt.py`; `edgedenoise/engine.py` is the public face
the rest of the package imports (build, sidecar).

TensorRT 10 API only, written against its documentation: TensorRT cannot be installed on the
development and CI machines, so what needs it is tested only where `tensorrt` imports. Every
module imports without tensorrt, cuda-python, onnx, torch or triton: they are imported by the
functions that need them.
"""
from __future__ import annotations

import re

from ..errors import EdgeDenoiseError


class EngineError(EdgeDenoiseError):
    """An engine that cannot be built or used here; the message says what to do."""


def load_tensorrt():
    """The tensorrt module, or EngineError saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineError("TensorRT is not installed here (JetPack ships it; on x86 `pip install tensorrt`); "
                          "use --backend onnxruntime, torch or triton meanwhile") from None
    return trt


def version_tuple(version: str) -> tuple[int, int]:
    """'10.3.0.30' -> (10, 3)."""
    major, minor = (re.findall(r"\d+", str(version)) + ["0", "0"])[:2]
    return int(major), int(minor)
