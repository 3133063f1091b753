"""Backends: the inference engines behind `Denoiser`, one module each, one small contract.

| module        | runs                                            | frame-native | precisions   | needs            |
|---------------|-------------------------------------------------|--------------|--------------|------------------|
| `onnxruntime` | the ONNX export (the runtime default, any CPU)  | no           | fp32, int8   | onnxruntime      |
| `torch`       | the safetensors weights in PyTorch (CPU, CUDA)  | no           | fp32, fp16*  | torch            |
| `triton`      | the whole network in the fused Triton kernels   | yes          | fp32, fp16   | torch, triton    |
| `tensorrt`    | a built TensorRT engine (`edgedenoise build`)   | if built so  | its own      | tensorrt, cuda   |

(* fp16 on CUDA only.) `--backend auto` is decided in `choice.py`: a TensorRT engine built for the
model here, else triton on a GPU, else torch on a GPU, else ONNX Runtime on the CPU.

The contract (`Backend`, in base.py: the submodules import it from there, not from this package,
which imports them) is what `Denoiser` relies on, and all a new backend implements:

- **What it takes and returns.** A float backend (`frame_native = False`) implements
  `infer(x, sigma)`: x is float32 NCHW RGB in [0, 1], H and W multiples of `size_multiple`
  (the `Denoiser` pads by reflection and crops back), sigma float32 of shape (N,) in [0, 1]
  units; it returns the denoised float32 NCHW. A frame-native backend (`frame_native = True`)
  implements `infer_frames(frames, sigma, previous=None)`: uint8 BGR NHWC frames of any H and W the model's
  padding can reach, sigma on the 0-255 scale; it returns uint8 BGR NHWC frames. The frame then
  stays uint8 all the way to the device and back; a recurrent model's `previous` (its last outputs)
  is uint8 BGR NHWC like the frames.
- **`size_multiple`**: what H and W of `infer` must be multiples of; it is the model's (one
  formula, `ModelFiles.size_multiple`).
- **Timings.** Every call is synchronous: it returns host arrays, with any device work finished
  and copied back. So the time around the call is its inference time, transfers included;
  `Denoiser.denoise_timed` measures it there, per call, and returns it. Backends keep no
  timing state (a side channel would not be thread-safe).
- **State.** A backend holds nothing between calls but caches (sessions, packed weights,
  device buffers, CUDA graphs). The state of a recurrent (video) model is an explicit input
  and output of the call, held by its caller, so every backend runs it the same way.
- **Errors.** Anything it cannot run (a missing library, a GPU it needs, a model it cannot
  take) is a `ModelError` (or `EngineError`) with a one-line message saying what to do.
- `close()` frees what the backend holds on a device; it may be called more than once.

Modules import their libraries when a backend is built, never at import time: the runtime
imports this package on a Jetson that has neither torch nor triton.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from ..modelfile import ModelFiles
from .base import Backend, fused_gate, unfused_gate

NAMES = ["onnxruntime", "torch", "triton", "tensorrt"]
CHOICES = ["auto", *NAMES]  # what the CLI's --backend takes
# what each backend computes in (torch fp16 on CUDA only; a TensorRT engine's is the one it was built with)
PRECISIONS = {"onnxruntime": ("fp32", "int8"), "torch": ("fp32", "fp16"), "triton": ("fp32", "fp16")}


def pick(backend: str, files: ModelFiles, precision: str = "fp32"):
    """The backend (and precision) that runs `files` here: `auto` decided by `choice.choose` (a TensorRT
    engine built for the model, else triton on a GPU, else torch on a GPU, else ONNX Runtime on the
    CPU), a named backend as named. Returns a `choice.Choice` (backend, precision, engine, why)."""
    from .choice import choose

    return choose(backend, files, precision)


def create(name: str, files: ModelFiles, threads: int | None = None, device: str | None = None,
           precision: str = "fp32", engine_path: Path | None = None) -> Backend:
    """The backend `name` (not `auto`: see `pick`) for a model's files, its `size_multiple` the model's."""
    # every backend carries a recurrent model's `previous`; the triton kernels fuse one kind of gate
    if files.recurrent and name == "triton" and not fused_gate(files.config):
        raise ModelError(unfused_gate(files.name))
    backend = _create(name, files, threads, device, precision, engine_path)
    backend.size_multiple = files.size_multiple
    return backend


def _create(name, files, threads, device, precision, engine_path) -> Backend:
    if name in PRECISIONS and precision not in PRECISIONS[name]:  # an engine computes in what it was built for
        on = [f"{b} ({', '.join(p)})" for b, p in PRECISIONS.items() if precision in p]
        raise ModelError(f"the {name} backend runs {' or '.join(PRECISIONS[name])}, not {precision}: {precision} "
                         f"runs on {' or '.join(on) or 'no backend'}, or in a TensorRT engine "
                         f"(edgedenoise build --precision)")
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(files, threads, precision=precision)
    if name == "torch":
        from .torch import TorchBackend

        return TorchBackend(files, device, threads, dtype=precision)
    if name == "triton":
        from .triton import TritonBackend

        return TritonBackend(files, device, dtype=precision)
    if name == "tensorrt":
        if engine_path is None:
            raise ModelError("the tensorrt backend needs an engine: --model MODEL.engine (edgedenoise build makes one)")
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(engine_path)
    raise ModelError(f"unknown backend {name!r}: choose {', '.join(CHOICES)}")
