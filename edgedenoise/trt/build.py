"""Building an engine: `edgedenoise build model.onnx --out model.engine`.

TensorRT 10 API only: ONNX parser, builder config, one optimization profile over frame sizes,
a timing cache reused across builds, FP16 / FP32, and INT8 from the explicit symmetric Q/DQ
graph (int8.py). Every engine is written with its JSON sidecar (sidecar.py).

`--kernels`: `native` builds the plain float ONNX graph with TensorRT's own kernels; `triton`
builds the frame-native graph (uint8 BGR frame in and out) whose boundary layers are the fused
Triton kernels, compiled ahead of time (`edgedenoise kernels build`) and reaching TensorRT as
plugins (plugins.py); `auto` builds both and keeps one (auto.py). The sidecar records `kernels`
and the plugin flavour.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import ModelError
from ..modelfile import file_sha256
from . import EngineError, load_tensorrt
from .graph import plain_weights
from .sidecar import this_machine, write_sidecar

DEFAULT_PROFILE = {"min": (256, 256), "opt": (720, 1280), "max": (1088, 1920)}  # (H, W)


def ready(onnx_path: str | Path):
    """TensorRT and the ONNX file a build starts from: (tensorrt module, Path), or the one-line error
    that stops a build before any work (no TensorRT, no such file)."""
    trt = load_tensorrt()
    onnx_path = Path(onnx_path)
    if not onnx_path.exists():
        raise ModelError(f"ONNX model not found: {onnx_path}")
    return trt, onnx_path


def build_engine(onnx_path: str | Path, out: str | Path, precision: str = "fp16", calib: str | None = None,
                 profile: dict | None = None, timing_cache: str | Path | None = None, workspace_gb: float = 2.0,
                 kernels: str = "native", kernels_dir: str | Path | None = None, plugins: str = "auto",
                 log=print) -> dict:
    """Build and serialize an engine plus its sidecar. Returns the sidecar dict.

    kernels: `native` (the float graph, TensorRT's own kernels), `triton` (the frame-native graph,
    boundary layers as the AOT Triton kernels in `kernels_dir`, as plugins of flavour `plugins`:
    auto, qdp or ipluginv3); `auto` (both, keeping one) is edgedenoise.engine.build_engine's, which
    calls auto.build_auto, which builds each with this function. `triton` takes the frame-native
    ONNX, or the float one: then it exports the frame-native graph beside the engine (torch needed)
    or uses `<stem>.frame.onnx` beside it. precision int8 (native only) builds from the symmetric
    Q/DQ graph: the ONNX given if it is one, else made from `calib` (a folder of clean images), else
    `<stem>.trt.int8.onnx`."""
    trt, onnx_path = ready(onnx_path)
    out = Path(out)
    if kernels not in ("native", "triton"):  # `auto` is engine.build_engine's (auto.py builds with this)
        raise EngineError(f"unknown --kernels {kernels!r}: native or triton (auto: edgedenoise.engine.build_engine)")
    profile = profile or DEFAULT_PROFILE
    t0 = time.time()
    extra, flow = {}, "weakly-typed"  # fp16/fp32: precision from the builder flags
    if kernels == "native":
        data = onnx_path.read_bytes()
        if b"frame-native" in data:  # edgedenoise export's metadata "variant"; the float graph says "float"
            raise EngineError(f"{onnx_path} is the frame-native graph: --kernels native builds from the float ONNX "
                              "(edgedenoise export without --frame-native), --kernels triton from this one")
        if precision == "int8":
            from . import int8

            qdq = int8.qdq_graph(onnx_path, out, calib, log)
            flow = int8.int8_flow(trt.__version__, qdq is not None)
            if flow == "strongly-typed":
                data = qdq.read_bytes()
                extra = {"int8": {"flow": "explicit Q/DQ, strongly typed", "qdq_onnx": str(qdq.resolve()),
                                  "qdq_onnx_sha256": file_sha256(qdq, n=64)}}
            else:
                log("build int8: the implicit calibrator (deprecated since TensorRT 10.1, gone in 11), as no "
                    "Q/DQ graph can be made here: the engine's PSNR is not checked; make the Q/DQ graph where "
                    "onnxruntime and onnx are installed (edgedenoise quantize --for tensorrt) to build the checked way")
                extra = {"int8": {"flow": "implicit calibrator (TensorRT 10.x legacy)"}}
            if calib and qdq != onnx_path:  # the images the graph (or the calibrator) was calibrated on
                extra["calib"] = str(calib)
            if qdq == onnx_path:  # given the Q/DQ graph: the sidecar names its float model where there is one
                onnx_path = int8.float_model(onnx_path)
        data = plain_weights(data, log)
    else:
        if precision not in ("fp16", "fp32"):
            raise EngineError(f"--kernels triton builds fp16 or fp32 (int8 quantizes the float graph), not "
                              f"{precision}: use --kernels native for int8")
        from ..cuda import device_name_cc
        from .aot_kernels import DEFAULT_KERNELS_DIR
        from .graph import prepare_onnx
        from .plugins import register_plugins

        kdir = Path(kernels_dir or DEFAULT_KERNELS_DIR).resolve()
        given, onnx_path = onnx_path, frame_native_onnx(onnx_path, out.parent, log)
        flavour = register_plugins(trt, kdir, prefer=plugins, cc=device_name_cc()[1])
        # QDP nodes carry aot=1: the parser then asks for the AOT implementation (strict)
        data, widths = prepare_onnx(onnx_path.read_bytes(), precision, flavour)
        extra = {"plugins": flavour, "kernels_dir": str(kdir), "kernel_dtype": precision,
                 "kernels_manifest_sha256": file_sha256(kdir / "manifest.json", n=64), "widths": widths}
        # the float model the graph was made from (given, or X.onnx beside X.frame.onnx): the runtime finds
        # the engine by that file's hash (backends/choice.find_engines), as it finds a native engine
        model = given if given != onnx_path else onnx_path.with_name(onnx_path.name.removesuffix(".frame.onnx")
                                                                     + ".onnx")
        if model != onnx_path and model.exists():
            extra.update(model_onnx=str(model.resolve()), model_onnx_sha256=file_sha256(model, n=64))
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10: explicit batch is the only mode; a strongly typed network takes its precisions
    # from the graph (the Q/DQ nodes) and refuses the precision flags
    strong = flow == "strongly-typed"
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strong else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errs[:300]} (corrupt or truncated? re-export it)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    p = builder.create_optimization_profile()
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    recurrent = "previous" in inputs  # a recurrent model: its last output, laid out as the frame
    if kernels == "native":
        channels = network.get_input(0).shape[1]
        image = tuple((1, channels, *profile[k]) for k in ("min", "opt", "max"))
        p.set_shape("noisy", *image)
    else:
        channels = 3
        image = tuple((1, *profile[k], 3) for k in ("min", "opt", "max"))
        p.set_shape("frame", *image)
    if recurrent:
        p.set_shape("previous", *image)
    p.set_shape("sigma", (1,), (1,), (1,))
    config.add_optimization_profile(p)
    if precision in ("fp16", "int8") and not strong:
        config.set_flag(trt.BuilderFlag.FP16)
    if flow == "calibrator":
        from .int8 import calibrator

        if recurrent:
            raise EngineError(f"{onnx_path} is a recurrent model: its INT8 engine is built from the symmetric Q/DQ "
                              "graph, whose calibration runs the model on its own outputs (edgedenoise quantize "
                              "--for tensorrt, where onnxruntime is installed), not by the legacy calibrator")

        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator(trt, calib, channels, profile["opt"], out.with_suffix(".calib"))
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
            "kernels": kernels, "recurrent": recurrent, **extra, "seconds": round(time.time() - t0, 1)}
    return write_sidecar(out, meta)


def frame_native_onnx(onnx_path: Path, out_dir: Path, log=print) -> Path:
    """The frame-native graph for `onnx_path`: itself if it is one; else exported from the same
    model (its weights beside it, torch needed) into `out_dir`; else `<stem>.frame.onnx` beside it."""
    from ..modelfile import resolve
    from .graph import onnx_variant

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
    from ..export import export_onnx

    target = Path(out_dir) / (onnx_path.stem + ".frame.onnx")
    log(f"exporting the frame-native graph of {onnx_path} to {target}")
    export_onnx(onnx_path, target, frame_native=True)
    return target
