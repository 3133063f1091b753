"""`edgedenoise build --kernels auto`: build the native and the triton engine, keep one.

Each engine built is first run on the same real frame as ONNX Runtime runs the float graph (the
bundled picture, resized to the frame the engines are timed on, camera noise at sigma 25) and
refused if its output differs from ONNX Runtime's beyond `TOLERANCE`; the engines that pass are
timed with the runner on that frame size and the faster is kept, saying which and why. The
comparison (`compare_outputs`), the verdict (`accuracy_problem`) and the choice (`choose`) are
pure functions of the outputs and timings, tested on the CPU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import EdgeDenoiseError
from ..frames import psnr_u8
from . import EngineError
from .build import DEFAULT_PROFILE, build_engine
from .sidecar import sidecar_path, write_sidecar

AUTO_FRAME = (720, 1280)  # (H, W) the frame `--kernels auto` checks and times both engines on
KINDS = ("native", "triton")
CHECK_SIGMA = 25.0


@dataclass(frozen=True)
class Tolerance:
    """How far an engine's uint8 output may be from ONNX Runtime's on the same frame."""

    max_abs: int  # uint8 levels, any value
    min_psnr: float  # dB, the engine's output against ONNX Runtime's


# fp16 (features and weights in fp16, fp32 accumulation) moves an output value by at most one
# uint8 level, on about 5 % of the values: measured on this check's frame (check_frame, 1280x720)
# with the whole network in fp16 (PyTorch on the CPU): max 1 level on 4.3 % (tiny) and 5.2 %
# (default) of the values, PSNR against ONNX Runtime 61.8 and 61.0 dB; tests/test_triton_backend.py
# measures the fused kernels the same (one level on 4-5 %). fp32 engines compute convolutions in
# TF32 by default (TensorRT's TF32 flag is on), whose 10-bit mantissa is fp16's, so they get the
# same tolerance. Allowed: 4 levels and 54 dB (an RMS difference of half a level): room for
# TensorRT's tactics (other summation orders, fp16 accumulation in some kernels), while the faults
# this check is for -- a wrong layout, weight packing, noise-map scale or rounding -- move values
# by tens of levels (a doubled noise level: 73 levels, 28 dB; swapped channels: 18 dB) or shift
# many (truncating instead of rounding, half the values one level low: 51 dB), measured on a
# Kodak24 crop with tiny (tests/test_engine.py), and are refused.
TOLERANCE = {"fp16": Tolerance(max_abs=4, min_psnr=54.0), "fp32": Tolerance(max_abs=4, min_psnr=54.0)}


def compare_outputs(engine_out: np.ndarray, reference: np.ndarray) -> dict:
    """How an engine's uint8 frame differs from the reference's: max abs difference (levels),
    share of values that differ, mean signed difference, PSNR of one against the other (dB)."""
    if engine_out.shape != reference.shape:
        return {"shape": list(engine_out.shape), "reference_shape": list(reference.shape)}
    d = engine_out.astype(np.int16) - reference.astype(np.int16)
    return {"max_abs": int(np.abs(d).max()), "share_differing": round(float((d != 0).mean()), 5),
            "mean": round(float(d.mean()), 4), "psnr": round(min(psnr_u8(engine_out, reference), 99.0), 2)}


def accuracy_problem(diff: dict, precision: str) -> str | None:
    """Why an engine with this `compare_outputs` result must not be kept, or None if it may."""
    if "shape" in diff:
        return f"its output has shape {tuple(diff['shape'])}, ONNX Runtime's {tuple(diff['reference_shape'])}"
    tol = TOLERANCE[precision]
    if diff["max_abs"] > tol.max_abs or diff["psnr"] < tol.min_psnr:
        return (f"its output differs from ONNX Runtime's by up to {diff['max_abs']} levels, PSNR {diff['psnr']:.1f} dB "
                f"(allowed for {precision}: {tol.max_abs} levels, {tol.min_psnr:g} dB)")
    return None


def choose(ms: dict, refused: dict, failed: dict, frame: str) -> tuple[str, str]:
    """(kind kept, why) from the timings of the engines that passed (`ms`: kind -> ms per frame)
    and why the others were refused or failed to build (kind -> reason). EngineError if none passed."""
    if not ms:
        why = "; ".join(f"{k}: {refused.get(k) or failed[k]}" for k in KINDS if k in refused or k in failed)
        raise EngineError(f"build auto: no engine to keep, none was written ({why})")
    keep = min(ms, key=ms.get)
    others = [k for k in KINDS if k != keep]
    reasons = []
    for k in others:
        if k in ms:
            reasons.append(f"{ms[keep]:.2f} ms against {ms[k]:.2f} ms for {k} per {frame} frame")
        elif k in refused:
            reasons.append(f"the {k} engine was refused: {refused[k]}")
        elif k in failed:
            reasons.append(f"the {k} build failed ({failed[k]})")
    return keep, "; ".join(reasons)


def check_frame(hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """The noisy frame both engines and ONNX Runtime denoise: the bundled picture (uint8 BGR)
    resized to `hw`, camera noise at CHECK_SIGMA, seeded."""
    import cv2

    from ..data import SAMPLE_IMAGE
    from ..noise import protocol_noisy

    img = cv2.imread(str(SAMPLE_IMAGE))
    if img is None:
        raise EngineError(f"cannot read the bundled picture {SAMPLE_IMAGE} the engines are checked on: reinstall")
    return protocol_noisy(cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_AREA), CHECK_SIGMA, seed, "camera")


def reference_output(onnx_path: Path, noisy: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """ONNX Runtime's output for `noisy` on the float graph (fp32); `previous`: a recurrent
    model's last output."""
    from ..denoiser import Denoiser

    den = Denoiser.load(onnx_path, backend="onnxruntime")
    try:
        return den.denoise(noisy, CHECK_SIGMA, previous)
    finally:
        den.close()


def engine_output(engine: Path, noisy: np.ndarray, files, previous: np.ndarray | None = None) -> np.ndarray:
    """The engine's output for `noisy` (and a recurrent model's `previous`), through the runner (as
    `run --model X.engine` runs it); `files`: the model's (its config: size multiple, channels)."""
    from ..denoiser import Denoiser

    den = Denoiser(files, "tensorrt", engine_path=Path(engine))
    try:
        return den.denoise(noisy, CHECK_SIGMA, previous)
    finally:
        den.close()


def time_engine(engine: str | Path, hw: tuple[int, int] = AUTO_FRAME, warmup: int = 3, iters: int = 10) -> float:
    """Median milliseconds of one frame through the runner, host copies included: a uint8 frame
    for frame-native engines, the float NCHW input (already converted) for the others."""
    from ..backends.tensorrt import TensorRTBackend
    from ..runtime.stats import time_calls

    backend = TensorRTBackend(engine)
    try:
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        x = rng.random((1, backend.meta["channels"], *hw), dtype=np.float32)
        s = np.array([25 / 255], np.float32)
        # a recurrent engine: a last output unlike the frame, so that the fusion runs everywhere
        prev = (frame[::-1].copy() if backend.frame_native else x[:, :, ::-1].copy()) if backend.recurrent else None

        def run(_):
            return backend.infer_frames(frame, 25.0, prev) if backend.frame_native else backend.infer(x, s, prev)

        times, _ = time_calls(run, [None], iters, warmup)
        return float(np.median(times)) * 1e3
    finally:
        backend.close()


def build_auto(onnx_path: Path, out: Path, precision: str, calib, profile, timing_cache, workspace_gb: float,
               kernels_dir, plugins: str, log=print) -> dict:
    """Build the native and the triton engine, check each against ONNX Runtime on a 1280x720 frame
    (or the profile's opt size if 1280x720 is outside the profile), time those that match, keep
    the faster at `out`."""
    from ..modelfile import resolve
    from .graph import onnx_variant

    profile = profile or DEFAULT_PROFILE
    if precision == "int8":
        raise EngineError("--kernels auto compares fp16 or fp32 builds (the triton engine has no int8): "
                          "use --kernels native for int8")
    if precision not in TOLERANCE:
        raise EngineError(f"--kernels auto builds fp16 or fp32, not {precision}")
    if onnx_variant(onnx_path) == "frame-native":
        raise EngineError(f"--kernels auto builds both graphs: give it the float ONNX, not the frame-native one "
                          f"{onnx_path}")
    hw = AUTO_FRAME
    if not all(lo <= v <= hi for lo, v, hi in zip(profile["min"], hw, profile["max"])):
        hw = tuple(profile["opt"])
    frame = f"{hw[1]}x{hw[0]}"
    paths = {k: out.with_name(out.name + f".{k}") for k in KINDS}
    files = resolve(onnx_path)
    noisy, previous = check_frame(hw), None
    if files.recurrent:  # a second frame (new noise), its previous the reference's first output: the fusion runs
        previous, noisy = reference_output(onnx_path, noisy), check_frame(hw, seed=1)
    reference = reference_output(onnx_path, noisy, previous)
    metas, ms, diffs, refused, failed = {}, {}, {}, {}, {}
    try:
        for kind in KINDS:
            log(f"build auto: building {kind}")
            try:
                metas[kind] = build_engine(onnx_path, paths[kind], precision, calib, profile, timing_cache,
                                           workspace_gb, kind, kernels_dir, plugins, log)
                diffs[kind] = compare_outputs(engine_output(paths[kind], noisy, files, previous), reference)
            except EdgeDenoiseError as e:
                if kind == "native":
                    raise
                failed[kind] = str(e)
                log(f"build auto: the {kind} build failed: {e}")
                continue
            problem = accuracy_problem(diffs[kind], precision)
            if problem:
                refused[kind] = problem
                log(f"build auto: refused {kind}: {problem}")
                continue
            log(f"build auto: {kind} matches ONNX Runtime (max {diffs[kind]['max_abs']} levels, "
                f"{diffs[kind]['psnr']:.1f} dB)")
            ms[kind] = time_engine(paths[kind], hw)
            log(f"build auto: {kind} {ms[kind]:.2f} ms per {frame} frame")
        keep, why = choose(ms, refused, failed, frame)
        meta = {**metas[keep], "auto": {"kept": keep, "why": why, "frame": frame,
                                        "ms": {k: round(v, 3) for k, v in ms.items()},
                                        "vs_onnxruntime": diffs, "refused": refused,
                                        "tolerance": asdict(TOLERANCE[precision])}}
        paths[keep].replace(out)
        meta = write_sidecar(out, meta)
        log(f"build auto: kept {keep}: {why}")
        return meta
    finally:
        for path in paths.values():
            for f in (path, sidecar_path(path)):
                if f.exists():
                    f.unlink()
