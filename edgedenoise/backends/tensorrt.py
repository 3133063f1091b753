"""The `tensorrt` backend: runs an engine built by `edgedenoise build` (edgedenoise/trt/ builds them).

TensorRT 10 API; device memory, copies and the stream come from cuda-python (edgedenoise/cuda.py,
the one home of CUDA calls and their errors). Written against the documentation: TensorRT cannot
be installed on the development machines (see engine.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import cuda
from ..trt import EngineError, load_tensorrt
from ..trt.sidecar import DEFAULT_PRECISION, check_sidecar, read_sidecar, this_machine
from .base import Backend


class TensorRTBackend(Backend):
    """Runs a built engine: name-based tensors, set_input_shape, set_tensor_address,
    execute_async_v3 on its own stream. Float NCHW in and out (`infer`) for engines built with
    --kernels native; uint8 BGR frames in and out (`infer_frames`, `frame_native`) for engines
    built with --kernels triton. An engine of a recurrent model has the input `previous` too (the
    stream's last output, laid out as the frame; the frame itself on a scene's first frame)."""

    name = "tensorrt"
    on_gpu = True

    def __init__(self, engine_path: str | Path):
        trt = load_tensorrt()
        self.cudart = cuda.runtime()
        engine_path = Path(engine_path)
        meta = read_sidecar(engine_path)
        machine = this_machine()
        check_sidecar(meta, machine, engine_path)
        self.meta = meta
        self.precision = meta.get("precision", DEFAULT_PRECISION)
        self.frame_native = meta.get("kernels") == "triton"
        if self.frame_native and meta.get("plugins") == "ipluginv3":
            # Python plugins: TensorRT needs their creators before it deserializes the engine.
            # (AOT Quickly Deployable Plugins carry their kernels inside the engine.)
            from ..trt.aot_kernels import KernelsError
            from ..trt.plugins import register_plugins

            try:
                register_plugins(trt, meta["kernels_dir"], prefer="ipluginv3", cc=machine["compute_capability"])
            except KernelsError as e:
                raise EngineError(f"{engine_path} runs the Triton kernels of {meta['kernels_dir']}: {e}") from None
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise EngineError(f"TensorRT could not load {engine_path} (corrupt or truncated?): rebuild it")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.recurrent = "previous" in names and \
            self.engine.get_tensor_mode("previous") == trt.TensorIOMode.INPUT
        self.context = self.engine.create_execution_context()
        self.stream = cuda.check(self.cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(name, (None, 0))
        if size < nbytes:
            if ptr is not None:
                self.cudart.cudaFree(ptr)
            ptr = cuda.check(self.cudart.cudaMalloc(nbytes), "cudaMalloc")
            self.buffers[name] = (ptr, nbytes)
        return int(ptr)

    def _check_size(self, h: int, w: int) -> None:
        (nh, nw), (mh, mw) = self.meta["profile"]["min"], self.meta["profile"]["max"]
        if h > mh or w > mw:
            raise EngineError(f"frame {w}x{h} exceeds the engine's profile (max {mw}x{mh}): rebuild with a larger "
                              "profile, or let the runtime tile it")
        if h < nh or w < nw:
            raise EngineError(f"frame {w}x{h} is below the engine's profile (min {nw}x{nh}): rebuild with --min "
                              f"{w}x{h} or smaller")

    def _run(self, inputs: dict, output: str, out: np.ndarray) -> np.ndarray:
        """Copy `inputs` in, execute, copy `output` out into `out`; one host sync at the end."""
        cu, kind = self.cudart, self.cudart.cudaMemcpyKind
        for name, arr in inputs.items():
            if not self.context.set_input_shape(name, arr.shape):
                raise EngineError(f"input {name} of shape {arr.shape} does not fit the engine's profile")
        for name, arr in (*inputs.items(), (output, out)):
            ptr = self._buffer(name, arr.nbytes)
            self.context.set_tensor_address(name, ptr)
            if name != output:
                cuda.check(cu.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, kind.cudaMemcpyHostToDevice,
                                              self.stream), "cudaMemcpyAsync (to the device)")
        if not self.context.execute_async_v3(int(self.stream)):
            raise EngineError("TensorRT execution failed (see the messages above)")
        ptr = self.buffers[output][0]
        cuda.check(cu.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, kind.cudaMemcpyDeviceToHost, self.stream),
                   "cudaMemcpyAsync (to the host)")
        # a host sync point: the frame is needed now
        cuda.check(cu.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return out

    def _state(self, feeds: dict, name: str, previous: np.ndarray | None, dtype) -> dict:
        """`feeds` with a recurrent engine's `previous` (the frame `name` itself when None: a scene's
        first frame); a framewise engine refuses one."""
        if not self.recurrent:
            if previous is not None:
                raise EngineError("this engine runs a framewise model: it takes no previous frame")
            return feeds
        if previous is None:
            return {**feeds, "previous": feeds[name]}
        prev = np.ascontiguousarray(previous, dtype)
        if prev.shape != feeds[name].shape:
            raise EngineError(f"the previous frames {prev.shape} do not match the frames {feeds[name].shape}")
        return {**feeds, "previous": prev}

    def infer(self, x: np.ndarray, sigma: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        if self.frame_native:
            raise EngineError("this engine takes uint8 BGR frames (built with --kernels triton): use infer_frames")
        self._check_size(*x.shape[-2:])
        x, sigma = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(sigma, np.float32)
        feeds = self._state({"noisy": x, "sigma": sigma}, "noisy", previous, np.float32)
        return self._run(feeds, "denoised", np.empty_like(x))

    def infer_frames(self, frames: np.ndarray, sigma: float, previous: np.ndarray | None = None) -> np.ndarray:
        """(N,H,W,3) or (H,W,3) uint8 BGR -> the same, denoised; sigma on the 0-255 scale; `previous`
        (a recurrent engine): the stream's last outputs, laid out as `frames`."""
        if not self.frame_native:
            raise EngineError("this engine takes float NCHW input (built with --kernels native): "
                              "call it with (x, sigma)")
        single = frames.ndim == 3
        fr = np.ascontiguousarray(frames[None] if single else frames, dtype=np.uint8)
        self._check_size(*fr.shape[1:3])
        s = np.full((fr.shape[0],), sigma / 255.0, np.float32)
        if previous is not None and single:
            previous = previous[None]
        feeds = self._state({"frame": fr, "sigma": s}, "frame", previous, np.uint8)
        out = self._run(feeds, "denoised", np.empty_like(fr))
        return out[0] if single else out

    def close(self) -> None:
        for ptr, _ in self.buffers.values():
            self.cudart.cudaFree(ptr)
        self.buffers.clear()
        if self.stream is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
