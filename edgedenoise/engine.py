"""TensorRT engines: `edgedenoise build model.onnx --out model.engine`, and a runner.

TensorRT 10 API only: ONNX parser, builder config, one optimization profile over frame sizes,
a timing cache reused across builds, FP16 / INT8 (calibrated from images, with a cache).
Every engine is written with a JSON sidecar (`model.engine.json`) naming the TensorRT version,
GPU and compute capability, precision, profile and the ONNX file's sha256; loading refuses an
engine whose sidecar does not match this machine, with the command that rebuilds it.

Device memory and streams come from cuda-python (`cuda.bindings.runtime`, or `cuda.cudart` in
older releases), which JetPack and the TensorRT wheels pair with; no torch here.

`--kernels`: `native` builds the plain float ONNX graph with TensorRT's own kernels; `triton`
builds the frame-native graph (uint8 BGR frame in and out) whose boundary layers are the fused
Triton kernels, compiled ahead of time (`edgedenoise kernels build`) and reaching TensorRT as
plugins (trt_plugins.py: AOT Quickly Deployable Plugins on TensorRT >= 10.9, a Python IPluginV3
launching the cubin on 10.3); `auto` builds both, times both with the runner on a 1280x720 frame
and keeps the faster, saying which. The sidecar records `kernels` and the plugin flavour.

Status: written against the TensorRT 10 documentation; TensorRT cannot be installed on the
development and CI machines, so build and run (native and triton) are tested only where
`tensorrt` imports, and skipped elsewhere with the reason. The sidecar checks, the plugins' kernel
selection, launch planning and graph preparation are pure Python and tested everywhere.
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
AUTO_FRAME = (720, 1280)  # (H, W) the frame `--kernels auto` times both engines on


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
    if meta.get("kernels", "native") != "native":
        rebuild += f" --kernels {meta['kernels']}"
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
                 profile: dict | None = None, timing_cache: str | Path | None = None, workspace_gb: float = 2.0,
                 kernels: str = "native", kernels_dir: str | Path | None = None, plugins: str = "auto",
                 log=print) -> dict:
    """Build and serialize an engine plus its sidecar. Returns the sidecar dict.

    kernels: `native` (the float graph, TensorRT's own kernels), `triton` (the frame-native graph,
    boundary layers as the AOT Triton kernels in `kernels_dir`, as plugins of flavour `plugins`:
    auto, qdp or ipluginv3) or `auto` (both; keeps the faster on a 1280x720 frame, see
    build_auto). `triton` takes the frame-native ONNX, or the float one: then it exports the
    frame-native graph beside the engine (torch needed) or uses `<stem>.frame.onnx` beside it."""
    trt = _trt()
    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.exists():
        raise ModelError(f"ONNX model not found: {onnx_path}")
    if kernels == "auto":
        return build_auto(onnx_path, out, precision, calib, profile, timing_cache, workspace_gb, kernels_dir,
                          plugins, log)
    if kernels not in ("native", "triton"):
        raise EngineError(f"unknown --kernels {kernels!r}: native, triton or auto")
    profile = profile or DEFAULT_PROFILE
    t0 = time.time()
    if kernels == "native":
        data = onnx_path.read_bytes()
        if b"frame-native" in data:  # edgedenoise export's metadata "variant"; the float graph says "float"
            raise EngineError(f"{onnx_path} is the frame-native graph: --kernels native builds from the float ONNX "
                              "(edgedenoise export without --frame-native), --kernels triton from this one")
        data = plain_weights(data, log)
        extra = {}
    else:
        if precision not in ("fp16", "fp32"):
            raise EngineError(f"--kernels triton builds fp16 or fp32 (int8 calibrates the float graph), not "
                              f"{precision}: use --kernels native for int8")
        from .trt_plugins import DEFAULT_KERNELS_DIR, prepare_onnx, register_plugins

        kdir = Path(kernels_dir or DEFAULT_KERNELS_DIR).resolve()
        onnx_path = frame_native_onnx(onnx_path, out.parent, log)
        cc = this_machine()["compute_capability"]
        flavour = register_plugins(trt, kdir, prefer=plugins, cc=cc)
        # QDP nodes carry aot=1: the parser then asks for the AOT implementation (strict)
        data, widths = prepare_onnx(onnx_path.read_bytes(), precision, flavour)
        extra = {"plugins": flavour, "kernels_dir": str(kdir), "kernel_dtype": precision,
                 "kernels_manifest_sha256": file_sha256(kdir / "manifest.json", n=64), "widths": widths}
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errs[:300]} (corrupt or truncated? re-export it)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    p = builder.create_optimization_profile()
    if kernels == "native":
        channels = network.get_input(0).shape[1]
        p.set_shape("noisy", *((1, channels, *profile[k]) for k in ("min", "opt", "max")))
    else:
        channels = 3
        p.set_shape("frame", (1, *profile["min"], 3), (1, *profile["opt"], 3), (1, *profile["max"], 3))
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
            "onnx": str(onnx_path.resolve()), "onnx_sha256": file_sha256(onnx_path, n=64), "channels": int(channels),
            "kernels": kernels, **extra,
            "built": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": round(time.time() - t0, 1)}
    sidecar_path(out).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def plain_weights(data: bytes, log=print) -> bytes:
    """The graph with float16-stored weights (the shipped models: onnxweights.py) folded back to
    float32 initializers, so TensorRT's parser sees constant weights; unchanged without the onnx
    package (the parser then reads each Cast as a layer, which the builder folds)."""
    if b"weights_storage" not in data or b"float16" not in data:
        return data
    try:
        import onnx
    except ImportError:
        log("onnx is not installed: TensorRT parses the float16 weights through their Cast layers")
        return data
    from .onnxweights import fold_weight_casts

    m = onnx.load_from_string(data)
    return m.SerializeToString() if fold_weight_casts(m) else data


def frame_native_onnx(onnx_path: Path, out_dir: Path, log=print) -> Path:
    """The frame-native graph for `onnx_path`: itself if it is one; else exported from the same
    model (its weights beside it, torch needed) into `out_dir`; else `<stem>.frame.onnx` beside it."""
    from .modelfile import resolve
    from .trt_plugins import onnx_variant

    if onnx_variant(onnx_path) == "frame-native":
        return onnx_path
    beside = onnx_path.with_name(onnx_path.stem + ".frame.onnx")
    exportable = resolve(onnx_path).weights is not None
    try:
        import torch  # noqa: F401
    except ImportError:
        exportable = False
    if not exportable:
        if beside.exists() and onnx_variant(beside) == "frame-native":
            log(f"using the frame-native graph {beside}")
            return beside
        raise EngineError(f"--kernels triton needs the frame-native graph of {onnx_path}: export it where torch and "
                          f"the model's weights are (edgedenoise export --model MODEL --frame-native --out {beside}) "
                          "and pass that file")
    from .export import export_onnx

    target = Path(out_dir) / (onnx_path.stem + ".frame.onnx")
    log(f"exporting the frame-native graph of {onnx_path} to {target}")
    export_onnx(onnx_path, target, frame_native=True)
    return target


def build_auto(onnx_path: Path, out: Path, precision: str, calib, profile, timing_cache, workspace_gb: float,
               kernels_dir, plugins: str, log=print) -> dict:
    """Build the native and the triton engine, time both with the runner on a 1280x720 frame (or
    the profile's opt size if 1280x720 is outside the profile), keep the faster at `out`."""
    profile = profile or DEFAULT_PROFILE
    if precision == "int8":
        raise EngineError("--kernels auto compares fp16 or fp32 builds (the triton engine has no int8): "
                          "use --kernels native for int8")
    from .trt_plugins import onnx_variant

    if onnx_variant(onnx_path) == "frame-native":
        raise EngineError(f"--kernels auto builds both graphs: give it the float ONNX, not the frame-native one "
                          f"{onnx_path}")
    hw = AUTO_FRAME
    if not all(lo <= v <= hi for lo, v, hi in zip(profile["min"], hw, profile["max"])):
        hw = tuple(profile["opt"])
    paths = {k: out.with_name(out.name + f".{k}") for k in ("native", "triton")}
    metas, ms, failed = {}, {}, None
    try:
        for kind in ("native", "triton"):
            log(f"build auto: building {kind}")
            try:
                metas[kind] = build_engine(onnx_path, paths[kind], precision, calib, profile, timing_cache,
                                           workspace_gb, kind, kernels_dir, plugins, log)
            except EdgeDenoiseError as e:
                if kind == "native":
                    raise
                failed = str(e)
                log(f"build auto: the triton build failed: {e}")
                continue
            ms[kind] = time_engine(paths[kind], hw)
            log(f"build auto: {kind} {ms[kind]:.2f} ms per {hw[1]}x{hw[0]} frame")
        keep = min(ms, key=ms.get)
        if failed:
            why = f"the triton build failed ({failed})"
        else:
            other = "triton" if keep == "native" else "native"
            why = f"{ms[keep]:.2f} ms against {ms[other]:.2f} ms for {other} per {hw[1]}x{hw[0]} frame"
        meta = {**metas[keep], "auto": {"kept": keep, "why": why, "frame": f"{hw[1]}x{hw[0]}",
                                        "ms": {k: round(v, 3) for k, v in ms.items()}}}
        paths[keep].replace(out)
        sidecar_path(out).write_text(json.dumps(meta, indent=2) + "\n")
        log(f"build auto: kept {keep}: {why}")
        return meta
    finally:
        for path in paths.values():
            for f in (path, sidecar_path(path)):
                if f.exists():
                    f.unlink()


def time_engine(engine: str | Path, hw: tuple[int, int] = AUTO_FRAME, warmup: int = 3, iters: int = 10) -> float:
    """Median milliseconds of one frame through the runner, host copies included: a uint8 frame
    for frame-native engines, the float NCHW input (already converted) for the others."""
    from .backends.tensorrt import TensorRTBackend
    from .runtime.stats import time_calls

    backend = TensorRTBackend(engine)
    try:
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        x = rng.random((1, backend.meta["channels"], *hw), dtype=np.float32)
        s = np.array([25 / 255], np.float32)

        def run(_):
            return backend.infer_frames(frame, 25.0) if backend.frame_native else backend.infer(x, s)

        times, _ = time_calls(run, [None], iters, warmup)
        return float(np.median(times)) * 1e3
    finally:
        backend.close()


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
