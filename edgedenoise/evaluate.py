"""Evaluation exactly as BENCHMARK_PROTOCOL.md says: `edgedenoise eval`.

For image i of a test folder (sorted order) and each sigma: noise from
`default_rng(i)`, the `paper` (float, unclipped) or `camera` (clipped, rounded uint8)
protocol, output clipped and rounded to uint8, PSNR over all channels and SSIM
(scikit-image, data_range=255), averaged over images.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .data import list_images, read_image
from .denoiser import Denoiser
from .errors import DataError
from .frames import psnr_u8, to_uint8, write_image  # noqa: F401 - psnr_u8 is part of this module's scoring API
from .modelfile import file_sha256
from .noise import protocol_noisy
from .runtime.stats import stamp

SSIM_WINDOW = 7  # scikit-image's default window (BENCHMARK_PROTOCOL.md)


def tpsnr(out: list[np.ndarray], clean: list[np.ndarray]) -> float:
    """Temporal PSNR (dB) of a clip: the PSNR of its frame-to-frame changes against the clean clip's
    (higher: less flicker), over all consecutive pairs."""
    mse = np.mean([np.mean(((o1.astype(np.float32) - o0) - (c1.astype(np.float32) - c0)) ** 2)
                   for o0, o1, c0, c1 in zip(out, out[1:], clean, clean[1:])])
    return float(10 * np.log10(255.0 ** 2 / mse))


def psnr_luma_chroma(out: np.ndarray, ref: np.ndarray, rgb: bool = False) -> tuple[float, float]:
    """(luma, chroma) PSNR dB of two 8-bit colour images (BGR, or RGB with `rgb`): OpenCV's YCrCb
    (BT.601, full range), the MSE over Y alone and over Cr and Cb together. The camera simulation's
    RGB figure is mostly chroma (docs/blind-notes.md), so blind mode's calibration reads both."""
    import cv2

    code = cv2.COLOR_RGB2YCrCb if rgb else cv2.COLOR_BGR2YCrCb
    e = cv2.cvtColor(out, code).astype(np.float32) - cv2.cvtColor(ref, code).astype(np.float32)

    def db(mse: float) -> float:
        return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))

    return db(float(np.mean(e[..., 0] ** 2))), db(float(np.mean(e[..., 1:] ** 2)))


def ssim_u8(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    if a.ndim == 3 and a.shape[2] == 1:
        a, b = a[:, :, 0], b[:, :, 0]
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise DataError(f"a {a.shape[1]}x{a.shape[0]} image is smaller than SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} "
                        f"window: scoring needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}")
    return float(structural_similarity(a, b, data_range=255, channel_axis=2 if a.ndim == 3 else None))


def comparison(panels: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Side-by-side uint8 BGR picture of labelled RGB/gray panels."""
    from .frames import draw_label

    out = []
    for label, img in panels:
        img = to_uint8(img)
        img = np.repeat(img, 3, axis=2) if img.ndim == 3 and img.shape[2] == 1 else img
        img = np.stack([img] * 3, axis=2) if img.ndim == 2 else img
        bgr = img[:, :, ::-1].copy()  # a copy: the labels must not draw into the caller's frame
        draw_label(bgr, label, (8, 22), 0.6)
        out.append(bgr)
        out.append(np.full((bgr.shape[0], 4, 3), 255, np.uint8))
    return np.concatenate(out[:-1], axis=1)


CAMERA_SIM = "camera-sim:"  # protocol prefix: the camera simulation's named setting (edgedenoise/camera.py)


def check_protocol(protocol: str, channels: int = 3) -> None:
    """DataError unless `protocol` is camera, paper, or camera-sim:SETTING (colour models only)."""
    if protocol in ("camera", "paper"):
        return
    if protocol.startswith(CAMERA_SIM):
        from .camera import SETTINGS

        name = protocol[len(CAMERA_SIM):]
        if name not in SETTINGS:
            raise DataError(f"unknown camera-sim setting {name!r}: choose {', '.join(SETTINGS)}")
        if channels != 3:
            raise DataError("the camera simulation makes colour images: it needs a colour model")
        return
    raise DataError(f"unknown noise {protocol!r}: use camera, paper or camera-sim:SETTING")


def _score(den, files, sigmas, protocol, blind, save_dir, gray, bar) -> list[dict]:
    """Per sigma: every image denoised and scored (PSNR, SSIM), with comparison pictures if asked."""

    from .camera import simulate

    results = []
    simulated = {}  # camera-sim: image i's noise depends on i only, not on the sigma told: made once
    for sigma in sigmas:
        rows = []
        for i, f in enumerate(files):
            if protocol.startswith(CAMERA_SIM):  # the camera pipeline, seeded by the image's index
                if i not in simulated:
                    simulated[i] = simulate(read_image(f, 3), np.random.default_rng(i),
                                            setting=protocol[len(CAMERA_SIM):])[:2]
                noisy, clean = simulated[i]
            else:
                clean = read_image(f, 1 if gray else 3)  # RGB (or 1 channel)
                noisy = protocol_noisy(clean, sigma, i, protocol)
            bgr = noisy[:, :, ::-1] if noisy.shape[2] == 3 else noisy
            out = den.denoise(np.ascontiguousarray(bgr), sigma=None if blind else sigma)
            out = to_uint8(out)
            out = out[:, :, ::-1] if out.shape[2] == 3 else out
            try:
                ssim = ssim_u8(out, clean)
            except DataError as e:
                raise DataError(f"{f}: {e}") from None
            rows.append({
                "image": f.name,
                "psnr": psnr_u8(out, clean),
                "ssim": ssim,
                "psnr_noisy": psnr_u8(to_uint8(noisy), clean),
            })
            if save_dir is not None:
                # camera-sim:low-light -> camera-sim_low-light (no colon: a folder name every system takes)
                d = save_dir / (f"{protocol.replace(':', '_')}" + ("_blind" if blind and protocol.startswith(CAMERA_SIM)
                                                                   else f"_sigma{sigma:g}"))
                d.mkdir(parents=True, exist_ok=True)
                pic = comparison([(f"noisy s={sigma:g} {rows[-1]['psnr_noisy']:.2f} dB", noisy),
                                  (f"{den.name} {rows[-1]['psnr']:.2f} dB", out), ("clean", clean)])
                write_image(d / f"{f.stem}.png", pic)
            if bar is not None:
                bar.update(1)
        results.append({
            "sigma": sigma,
            "psnr": float(np.mean([r["psnr"] for r in rows])),
            "ssim": float(np.mean([r["ssim"] for r in rows])),
            "psnr_noisy": float(np.mean([r["psnr_noisy"] for r in rows])),
            "images": rows,
        })
    return results


def evaluate(model: str | Path, data: str | Path, sigmas=(15, 25, 50), protocol: str = "camera",
             backend: str = "auto", blind: bool = False, save: str | Path | None = None,
             progress: bool = True, limit: int | None = None, precision: str = "fp32") -> dict:
    """Score a model on a folder. Returns the JSON-ready result (per image and means).

    protocol: camera or paper (Gaussian noise of each sigma, BENCHMARK_PROTOCOL.md), or
    camera-sim:SETTING (the camera simulation's named setting; image i seeded by i, scored against
    the same pipeline without noise). With camera-sim each sigma is the level told to the model,
    and `blind` scores once with the level estimated from each image (sigma 0 in the results)."""
    import skimage.metrics  # noqa: F401 - first: a missing extra fails before anything is scored

    den = Denoiser.load(model, backend=backend, precision=precision)
    check_protocol(protocol, den.channels)
    if blind and protocol.startswith(CAMERA_SIM):
        sigmas = [0.0]  # the noise is the pipeline's, not a sigma: one blind pass
    files = list_images(data)[:limit]
    gray = den.channels == 1
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files) * len(sigmas), unit="img", desc=f"eval {Path(data).name} {protocol}")
    save_dir = Path(save) if save else None
    try:
        results = _score(den, files, sigmas, protocol, blind, save_dir, gray, bar)
    finally:
        if bar is not None:  # closed before an error is printed, so the error stays the last line
            bar.close()
    mf = den.files
    return {
        "set": Path(data).name,
        "protocol": protocol,
        "blind": blind,
        "n_images": len(files),
        "model": mf.name,
        # what ran, not what was asked: a named INT8 file runs INT8 (Denoiser.load)
        "model_hash": file_sha256((mf.onnx_int8 if den.precision == "int8" else mf.onnx)
                                  if den.backend_name == "onnxruntime" else mf.weights),
        "backend": den.backend_name,
        "precision": den.precision,
        "results": results,
        **stamp(),  # date, command, machine, versions: as every results file
    }


def markdown_table(reports: list[dict]) -> str:
    lines = ["| set | protocol | sigma | PSNR (dB) | SSIM | noisy PSNR | images | model |",
             "|---|---|---|---|---|---|---|---|"]
    for rep in reports:
        for r in rep["results"]:
            # a blind pass on camera-sim noise has no sigma (the noise is the pipeline's): a dash, not 0
            sig = "–" if rep["blind"] and rep["protocol"].startswith(CAMERA_SIM) else f"{r['sigma']:g}"
            lines.append(f"| {rep['set']} | {rep['protocol']}{' blind' if rep['blind'] else ''} | {sig} | "
                         f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['psnr_noisy']:.2f} | {rep['n_images']} | "
                         f"{rep['model']}{' int8' if rep.get('precision') == 'int8' else ''} ({rep['model_hash']}) |")
    return "\n".join(lines)


def write_reports(reports: list[dict], json_path: str | Path | None) -> str:
    table = markdown_table(reports)
    if json_path:
        p = Path(json_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(p, (json.dumps(reports, indent=1) + "\n").encode(), what="--json output")
        write_atomic(p.with_suffix(".md"), (table + "\n").encode(), what="--json output's table")
    return table
