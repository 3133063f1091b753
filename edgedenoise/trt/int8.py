"""INT8 engines: the explicit, symmetric Q/DQ graph TensorRT builds from, and the legacy calibrator.

TensorRT quantizes symmetrically (int8, zero point 0). `edgedenoise build --precision int8`
builds from a Q/DQ graph made for it on the CPU (quantize.py, `--for tensorrt`: ONNX Runtime's
static quantization with int8 symmetric activations and weights, calibrated like `edgedenoise
quantize` on noisy crops of clean images, and checked with ONNX Runtime, whose PSNR on it
matches the CPU INT8's: tests/test_quantize.py). Which graph (`qdq_graph`):

- the ONNX given, if it already holds Q/DQ nodes (checked: every zero point int8 0; the CPU
  graph `<model>.int8.onnx`, uint8 activations, is refused with what to run instead);
- else, with `--calib DIR`, one made now from the float ONNX, beside the engine
  (`<engine>.qdq.onnx`);
- else `<model>.trt.int8.onnx` beside the float ONNX (`edgedenoise quantize --for tensorrt`; every
  shipped model carries one, from a quantization-aware fine-tune for `tiny` and `default`:
  `train --qat --qat-for tensorrt`, benchmarks/results/ship_trt_int8_qat.md).

The graph is parsed into a strongly typed network (no precision flags, no calibrator): the
Q/DQ nodes say which tensors are int8, the rest keeps the graph's float32, as ONNX Runtime ran
it when its PSNR was checked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import cuda
from . import EngineError, version_tuple

# Which TensorRT needs the implicit calibrator: none of the versions this code builds for, given
# the Q/DQ graph. TensorRT's documentation: explicit quantization (Q/DQ layers, from the ONNX
# parser) exists since TensorRT 8.0, strongly typed networks since 10.0 ("Use explicit
# quantization with Strong Typing. Precision-control build flags are not required and should not
# be specified"), and the calibrators (IInt8EntropyCalibrator2 and the others) are "Deprecated in
# TensorRT 10.1. Superseded by explicit quantization"; TensorRT 11 removes them (and weak typing:
# deprecated since 10.12). So the calibrator path is kept only for TensorRT 10.x, where it still
# exists, and only on a machine that can neither make the Q/DQ graph (no onnxruntime quantization
# tools, as on a Jetson set up with the runtime only) nor was given one. From 11 on it is refused.
CALIBRATOR_LAST_MAJOR = 10
QDQ_SUFFIX = ".qdq.onnx"  # <engine>.qdq.onnx: the graph made for this engine


def int8_flow(trt_version: str, have_qdq: bool) -> str:
    """'strongly-typed' (the explicit Q/DQ graph) or 'calibrator' (implicit quantization, the
    legacy path, see above) for this TensorRT; EngineError when neither is possible."""
    if have_qdq:
        return "strongly-typed"
    if version_tuple(trt_version)[0] <= CALIBRATOR_LAST_MAJOR:
        return "calibrator"
    raise EngineError(f"TensorRT {trt_version} has no INT8 calibrator (removed in TensorRT 11): it builds INT8 from "
                      "the symmetric Q/DQ graph; make it where onnxruntime is installed (edgedenoise quantize --model "
                      "MODEL --calib DIR --for tensorrt) and build from that file")


def can_quantize() -> bool:
    """Whether this machine can make the Q/DQ graph (onnxruntime's quantization tools and onnx)."""
    try:
        import onnx  # noqa: F401
        from onnxruntime.quantization import quantize_static  # noqa: F401
    except ImportError:
        return False
    return True


def check_qdq(path: Path, log=print) -> None:
    """Refuse a Q/DQ graph TensorRT does not take (zero points other than int8 0), saying what to do."""
    from ..quantize import qdq_problems

    try:
        import onnx
    except ImportError:
        log(f"onnx is not installed: {path}'s zero points are left for TensorRT's parser to check")
        return
    problems = qdq_problems(onnx.load(str(path)))
    if problems:
        raise EngineError(f"{path} is not a Q/DQ graph TensorRT takes (symmetric int8, zero point 0): "
                          f"{'; '.join(problems[:2])}. The CPU INT8 graph (<model>.int8.onnx, uint8 activations) is "
                          "for ONNX Runtime; build from the float ONNX with --calib DIR, or from the graph of "
                          "edgedenoise quantize --model MODEL --calib DIR --for tensorrt")


def is_qdq(data: bytes) -> bool:
    """Whether a serialized ONNX graph holds Q/DQ nodes (op names are plain strings in the file)."""
    return b"QuantizeLinear" in data


def refuse_float_build_of_qdq(onnx_path: Path, precision: str) -> None:
    """A Q/DQ graph (`<model>.trt.int8.onnx`, or the CPU's `<model>.int8.onnx`) builds an INT8 engine
    only: TensorRT would quantize where its Q/DQ nodes say whatever the precision flags, and the
    sidecar would call an INT8 engine fp16. EngineError (one line, naming the float model) for
    another precision; nothing for a float graph or a file that is not there (the build says so)."""
    if precision == "int8" or not onnx_path.is_file() or not is_qdq(onnx_path.read_bytes()):
        return
    beside = float_model(onnx_path)
    use = f"build {precision} from the float model {beside}" if beside != onnx_path else \
        f"build {precision} from the model's float ONNX (edgedenoise export)"
    raise EngineError(f"{onnx_path} is an INT8 (Q/DQ) graph: it builds with --precision int8; {use}")


def float_model(qdq: Path) -> Path:
    """`<model>.onnx` for `<model>.trt.int8.onnx` (or the CPU's `<model>.int8.onnx`) where it is beside
    it, else the Q/DQ graph itself:
    what the sidecar names as the engine's model (the runner reads its config, a rebuild starts
    from it and finds the Q/DQ graph beside it)."""
    for ending in (".trt.int8.onnx", ".int8.onnx"):  # TensorRT's graph, or the CPU's (refused, naming it)
        if qdq.name.endswith(ending):
            beside = qdq.with_name(qdq.name.removesuffix(ending) + ".onnx")
            return beside if beside.exists() else qdq
    return qdq


def qdq_graph(onnx_path: Path, engine: Path, calib, log=print) -> Path | None:
    """The symmetric Q/DQ graph to build `engine` from (see the module docstring), or None when
    none can be had here (then only the legacy calibrator is left: int8_flow)."""
    from ..quantize import quantize_model, trt_int8_path

    if is_qdq(onnx_path.read_bytes()):
        check_qdq(onnx_path, log)
        if calib:
            log(f"build int8: {onnx_path} is already a Q/DQ graph: --calib {calib} is not used")
        return onnx_path
    if calib:
        if not can_quantize():
            log("onnxruntime's quantization tools or onnx are not installed here: the symmetric Q/DQ graph cannot "
                "be made")
            return None
        target = Path(str(engine) + QDQ_SUFFIX)
        log(f"build int8: calibrating the symmetric Q/DQ graph on {calib} -> {target}")
        quantize_model(onnx_path, calib, target, progress=False, target="tensorrt")
        return target
    beside = trt_int8_path(onnx_path)
    if beside.exists():
        log(f"build int8: using the Q/DQ graph {beside}")
        check_qdq(beside, log)
        return beside
    raise EngineError("--precision int8 builds from a symmetric Q/DQ graph: give --calib DIR (a folder of clean "
                      "training images; the graph is calibrated now, on the CPU), or make it first with edgedenoise "
                      f"quantize --model {onnx_path} --calib DIR --for tensorrt (it writes {beside.name})")


def calibrator(trt, folder: str, channels: int, hw: tuple[int, int], cache: Path, count: int = 32):
    """The legacy implicit-quantization calibrator (TensorRT 10.x only, see CALIBRATOR_LAST_MAJOR):
    entropy calibration over noisy crops of images in `folder` (sigma 0-50, camera protocol)."""
    from ..data import list_images, read_image
    from ..noise import protocol_noisy

    rt = cuda.runtime()
    files = list_images(folder)[:count]

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.i = 0
            self.buf = {n: cuda.check(rt.cudaMalloc(s), "cudaMalloc") for n, s in
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
                cuda.check(rt.cudaMemcpy(self.buf[n], a.ctypes.data, a.nbytes,
                                         rt.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
            self.i += 1
            return [int(self.buf[n]) for n in names]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data):
            cache.write_bytes(bytes(data))

    return Calibrator()
