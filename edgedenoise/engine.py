"""TensorRT engines: `edgedenoise build model.onnx --out model.engine`, and a runner.

TensorRT 10 API only: ONNX parser, builder config, one optimization profile over frame sizes,
a timing cache reused across builds, FP16 / INT8 (calibrated from images, with a cache).
Every engine is written with a JSON sidecar (`model.engine.json`) naming the TensorRT version,
GPU and compute capability, precision, profile and the ONNX file's sha256; loading refuses an
engine whose sidecar does not match this machine, with the command that rebuilds it.

Device memory and streams come from cuda-python (`cuda.bindings.runtime`, or `cuda.cudart` in
older releases), which JetPack and the TensorRT wheels pair with; no torch here.

Status: written against the TensorRT 10 documentation; TensorRT cannot be installed on the
development and CI machines, so build and run are tested only where `tensorrt` imports. The
sidecar checks are pure Python and tested everywhere. The fused Triton boundary kernels as
TensorRT plugins (frame-native graph) are not here yet.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import EdgeDenoiseError, ModelError
from .modelfile import file_sha256

DEFAULT_PROFILE = {"min": (256, 256), "opt": (720, 1280), "max": (1088, 1920)}  # (H, W)


class EngineError(EdgeDenoiseError):
    """An engine that cannot be built or used here; the message says what to do."""


def _trt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineError("TensorRT is not installed here (JetPack ships it; on x86 `pip install tensorrt`); "
                          "use --backend onnxruntime, torch or triton meanwhile") from None
    return trt


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise EngineError("the TensorRT runner needs cuda-python: pip install cuda-python") from None
    return cudart


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EngineError(f"CUDA call failed: {err}")
    return rest[0] if len(rest) == 1 else rest


def this_machine() -> dict:
    """TensorRT version, GPU name and compute capability of this machine."""
    trt = _trt()
    cudart = _cudart()
    props = _check(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"tensorrt": trt.__version__, "gpu": name.strip("\x00 "), "compute_capability": f"{props.major}.{props.minor}"}


def sidecar_path(engine: Path) -> Path:
    return Path(str(engine) + ".json")


def check_sidecar(meta: dict, machine: dict, engine: Path) -> None:
    """Refuse an engine built elsewhere, saying how to rebuild it."""
    rebuild = f"rebuild it here: edgedenoise build {meta.get('onnx', 'MODEL.onnx')} --out {engine} " \
              f"--precision {meta.get('precision', 'fp16')}"
    if meta.get("tensorrt") != machine["tensorrt"]:
        raise EngineError(f"{engine} was built with TensorRT {meta.get('tensorrt')}, this machine has "
                          f"{machine['tensorrt']}: {rebuild}")
    if meta.get("compute_capability") != machine["compute_capability"]:
        raise EngineError(f"{engine} was built for {meta.get('gpu')} (sm {meta.get('compute_capability')}), this is "
                          f"{machine['gpu']} (sm {machine['compute_capability']}): {rebuild}")


def read_sidecar(engine: Path) -> dict:
    sc = sidecar_path(engine)
    if not engine.exists():
        raise EngineError(f"engine not found: {engine}")
    if not sc.exists():
        raise EngineError(f"{engine} has no sidecar {sc.name} (TensorRT version, GPU, profile): rebuild it with "
                          "edgedenoise build")
    try:
        return json.loads(sc.read_text())
    except ValueError:
        raise EngineError(f"sidecar {sc} is not valid JSON: rebuild the engine with edgedenoise build") from None


def build_engine(onnx_path: str | Path, out: str | Path, precision: str = "fp16", calib: str | None = None,
                 profile: dict | None = None, timing_cache: str | Path | None = None, workspace_gb: float = 2.0) -> dict:
    """Build and serialize an engine plus its sidecar. Returns the sidecar dict."""
    trt = _trt()
    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.exists():
        raise ModelError(f"ONNX model not found: {onnx_path}")
    profile = profile or DEFAULT_PROFILE
    t0 = time.time()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errs[:300]} (corrupt or truncated? re-export it)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    channels = network.get_input(0).shape[1]
    p = builder.create_optimization_profile()
    p.set_shape("noisy", (1, channels, *profile["min"]), (1, channels, *profile["opt"]), (1, channels, *profile["max"]))
    p.set_shape("sigma", (1,), (1,), (1,))
    config.add_optimization_profile(p)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if not calib:
            raise EngineError("--precision int8 needs --calib DIR (a folder of clean images to calibrate on)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(trt, calib, channels, profile["opt"], out.with_suffix(".calib"))
    cache_path = Path(timing_cache) if timing_cache else out.parent / "timing.cache"
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"TensorRT could not build an engine from {onnx_path} (see the messages above)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(plan))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    meta = {**this_machine(), "precision": precision, "profile": {k: list(v) for k, v in profile.items()},
            "onnx": str(onnx_path), "onnx_sha256": file_sha256(onnx_path, n=64), "channels": int(channels),
            "built": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": round(time.time() - t0, 1)}
    sidecar_path(out).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _calibrator(trt, folder: str, channels: int, hw: tuple[int, int], cache: Path, count: int = 32):
    """Entropy calibrator over noisy crops of images in `folder` (sigma 0-50, camera protocol)."""
    from .data import list_images, read_image
    from .noise import protocol_noisy

    cudart = _cudart()
    files = list_images(folder)[:count]

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.i = 0
            self.buf = {n: _check(cudart.cudaMalloc(s)) for n, s in
                        (("noisy", channels * hw[0] * hw[1] * 4), ("sigma", 4))}

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            if self.i >= len(files):
                return None
            img = read_image(files[self.i], channels)
            img = np.pad(img, ((0, max(0, hw[0] - img.shape[0])), (0, max(0, hw[1] - img.shape[1])), (0, 0)),
                         mode="reflect")[: hw[0], : hw[1]]
            sigma = float(np.random.default_rng(self.i).uniform(0, 50))
            x = np.ascontiguousarray(protocol_noisy(img, sigma, self.i, "camera").transpose(2, 0, 1)[None], np.float32)
            x /= 255.0
            s = np.array([sigma / 255.0], np.float32)
            for n, a in (("noisy", x), ("sigma", s)):
                _check(cudart.cudaMemcpy(self.buf[n], a.ctypes.data, a.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            self.i += 1
            return [int(self.buf[n]) for n in names]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data):
            cache.write_bytes(bytes(data))

    return Calibrator()


class TensorRTBackend:
    """Runs a built engine: name-based tensors, set_input_shape, set_tensor_address,
    execute_async_v3 on its own stream. Same call as the other backends (float NCHW)."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path):
        trt = _trt()
        self.cudart = _cudart()
        engine_path = Path(engine_path)
        meta = read_sidecar(engine_path)
        check_sidecar(meta, this_machine(), engine_path)
        self.meta = meta
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise EngineError(f"TensorRT could not load {engine_path} (corrupt or truncated?): rebuild it")
        self.context = self.engine.create_execution_context()
        self.stream = _check(self.cudart.cudaStreamCreate())
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(name, (None, 0))
        if size < nbytes:
            if ptr is not None:
                self.cudart.cudaFree(ptr)
            ptr = _check(self.cudart.cudaMalloc(nbytes))
            self.buffers[name] = (ptr, nbytes)
        return int(ptr)

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        h, w = x.shape[-2:]
        mh, mw = self.meta["profile"]["max"]
        if h > mh or w > mw:
            raise EngineError(f"frame {w}x{h} exceeds the engine's profile (max {mw}x{mh}): rebuild with a larger "
                              "profile, or let the runtime tile it")
        cu, kind = self.cudart, self.cudart.cudaMemcpyKind
        out = np.empty_like(x)
        self.context.set_input_shape("noisy", x.shape)
        self.context.set_input_shape("sigma", sigma.shape)
        for name, arr in (("noisy", np.ascontiguousarray(x)), ("sigma", np.ascontiguousarray(sigma)),
                          ("denoised", out)):
            ptr = self._buffer(name, arr.nbytes)
            self.context.set_tensor_address(name, ptr)
            if name != "denoised":
                _check(cu.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, kind.cudaMemcpyHostToDevice, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise EngineError("TensorRT execution failed (see the messages above)")
        ptr = self.buffers["denoised"][0]
        _check(cu.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, kind.cudaMemcpyDeviceToHost, self.stream))
        _check(cu.cudaStreamSynchronize(self.stream))  # a host sync point: the frame is needed now
        return out
