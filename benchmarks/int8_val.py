#!/usr/bin/env python3
"""What INT8 costs against fp32 on the training data's validation split (no test image), on the
noise the shipped models are now trained for: ONNX Runtime, each model's INT8 file against its
float graph.

    python benchmarks/int8_val.py                          # ~6 minutes on 2 cores
    python benchmarks/int8_val.py --int8-from OLD --label L   # also INT8 files of before, OLD/<stem>.int8.onnx
                                                              # (and OLD/<stem>.trt.int8.onnx)

(`OLD` e.g. from git: `git show REV:edgedenoise/models/tiny.int8.onnx > OLD/tiny.int8.onnx`, the same
for small, tiny-video, small-video; REV a commit with the same float weights, as ae55002 for the
INT8 calibrated on Gaussian noise alone: an INT8 file carries its own weights.)
Writes benchmarks/results/int8_val.{json,md}.

Framewise models (`nano`, `tiny`, `default`): the 8 images `edgedenoise train` holds out of CBSD432 (data.split),
whole; Gaussian noise sigma 2, 5, 25 and 50 (camera protocol, seeded by image) told its level, and the camera
simulation's low-light and very-low-light settings (seeded by image) blind. Recurrent models
(`tiny-video`, `default-video`): a still clip of 8 frames of each image's top-left 320x480, new
noise each frame (Gaussian 25 told, low light blind), scored on frames 4-8 (the state has built up).
PSNR against the clean image (Gaussian) or the camera pipeline without noise (camera).

Where a model has its TensorRT Q/DQ graph (`<stem>.trt.int8.onnx`, what `edgedenoise build --precision
int8` builds from), ONNX Runtime runs that graph too (row "tensorrt Q/DQ"): its convolutions in float
after the rounding, which is the graph's arithmetic; a TensorRT engine's own kernels add their
rounding of sums, not measured here (TensorRT cannot be installed on these machines).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from common import publish, stamp  # noqa: E402  (common puts the checkout on sys.path)

FRAMEWISE = ("nano", "tiny", "default")
RECURRENT = ("tiny-video", "default-video")
CLIP_FRAMES, CLIP_FROM, CLIP_CROP = 8, 3, (320, 480)
# Gaussian levels told from bright (2) to dark (50): INT8's activation ranges are calibrated for 5-60
# (quantize.CALIB_SIGMA) and `default` answers low levels with larger activations; then the camera.
FRAMEWISE_KINDS = ("gaussian 2", "gaussian 5", "gaussian 25", "gaussian 50", "low-light", "very-low-light")


def validation_images(data: Path) -> list[np.ndarray]:
    from edgedenoise.data import read_image
    from edgedenoise.data import validation_images as held_out

    return [read_image(i.path, 3) for i in held_out(data)]


def noisy(kind: str, img: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(noisy RGB, reference RGB, level told or None for blind)."""
    from edgedenoise import camera
    from edgedenoise.noise import protocol_noisy

    if kind.startswith("gaussian "):
        sigma = float(kind.split()[1])
        return protocol_noisy(img, sigma, seed, "camera"), img, sigma
    n, ref, _ = camera.simulate(np.ascontiguousarray(img), np.random.default_rng(seed), setting=kind)
    return n, ref, None


def score_framewise(spec, precision: str, images: list) -> dict:
    from edgedenoise import Denoiser
    from edgedenoise.frames import psnr_u8

    den = Denoiser.load(spec, backend="onnxruntime", precision=precision)
    out = {}
    for kind in FRAMEWISE_KINDS:
        ps = []
        for i, img in enumerate(images):
            n, ref, told = noisy(kind, img, (500 if kind.startswith("gaussian") else 900) + i)
            ps.append(psnr_u8(den.denoise(np.ascontiguousarray(n[:, :, ::-1]), told)[:, :, ::-1], ref))
        out[kind] = float(np.mean(ps))
    return out


def score_recurrent(spec, precision: str, images: list) -> dict:
    from edgedenoise import VideoDenoiser
    from edgedenoise.frames import psnr_u8

    out = {}
    for kind in ("gaussian 25", "low-light"):
        ps = []
        for i, img in enumerate(images):
            crop = np.ascontiguousarray(img[:CLIP_CROP[0], :CLIP_CROP[1]])
            vd = VideoDenoiser.load(spec, backend="onnxruntime", precision=precision, temporal="model")
            for t in range(CLIP_FRAMES):
                n, ref, told = noisy(kind, crop, 1000 * i + t)
                o = vd.denoise(np.ascontiguousarray(n[:, :, ::-1]), told)[:, :, ::-1]
                if t >= CLIP_FROM:
                    ps.append(psnr_u8(o, ref))
        out[kind] = float(np.mean(ps))
    return out


def staged(model: str, int8_file: Path, tmp: Path) -> Path:
    """A folder holding the model's float files and `int8_file` as its INT8 variant; its .onnx path."""
    from edgedenoise.modelfile import resolve

    f = resolve(model)
    d = tmp / model
    d.mkdir()
    for p in (f.onnx, f.onnx.with_suffix(".json"), f.weights):
        if p is not None and p.exists():
            shutil.copy(p, d / p.name)
    shutil.copy(int8_file, d / f"{f.onnx.stem}.int8.onnx")
    return d / f.onnx.name


def as_model(graph: Path, tmp: Path, label: str) -> Path:
    """A Q/DQ graph copied under a plain name (the Denoiser refers `.trt.int8.onnx` to build); it carries
    its model's config, so it loads alone."""
    d = tmp / label
    d.mkdir(parents=True, exist_ok=True)
    out = d / graph.name.replace(".trt.int8.onnx", "-trt.onnx")
    shutil.copy(graph, out)
    return out


def main() -> int:
    from edgedenoise.data import default_data_root
    from edgedenoise.modelfile import resolve

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="training images (default: ../shared/data/train/CBSD432)")
    ap.add_argument("--int8-from", default=None, help="also score the INT8 files <stem>.int8.onnx in this folder")
    ap.add_argument("--label", default=None, help="what the table calls those files (default: the folder)")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    a = ap.parse_args()
    data = Path(a.data) if a.data else default_data_root() / "train" / "CBSD432"
    images = validation_images(data)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in (*FRAMEWISE, *RECURRENT):
            score = score_recurrent if model in RECURRENT else score_framewise
            rows = {"fp32": score(model, "fp32", images), "int8": score(model, "int8", images)}
            files = resolve(model)
            if files.onnx_trt_int8 is not None:
                rows["tensorrt Q/DQ"] = score(str(as_model(files.onnx_trt_int8, Path(tmp), "new")), "fp32", images)
            if a.int8_from:
                label, stem = a.label or a.int8_from, files.onnx.stem
                old = Path(a.int8_from) / f"{stem}.int8.onnx"
                if old.exists():
                    rows["int8, " + label] = score(staged(model, old, Path(tmp)), "int8", images)
                old_trt = Path(a.int8_from) / f"{stem}.trt.int8.onnx"
                if old_trt.exists():
                    rows["tensorrt Q/DQ, " + label] = score(str(as_model(old_trt, Path(tmp), "old")), "fp32", images)
            results[model] = rows
            print(model, {k: {c: round(v, 2) for c, v in r.items()} for k, r in rows.items()}, flush=True)
    heads = [f"{k}, told" if k.startswith("gaussian") else f"{k.replace('-', ' ')}, blind" for k in FRAMEWISE_KINDS]
    lines = ["### INT8 minus fp32, dB (validation split of CBSD432; PSNR of fp32 in brackets)", "",
             "| model | INT8 | " + " | ".join(heads) + " |",
             "|---|---|" + "---|" * len(FRAMEWISE_KINDS)]
    for model, rows in results.items():
        fp = rows["fp32"]
        for label, r in rows.items():
            if label == "fp32":
                continue
            cells = [f"{r[c] - fp[c]:+.2f} ({fp[c]:.2f})" if c in r else "–"
                     for c in FRAMEWISE_KINDS]
            lines.append(f"| {model} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "Framewise models on whole images; recurrent models on still clips, frames "
              f"{CLIP_FROM + 1}-{CLIP_FRAMES} of {CLIP_FRAMES}, {CLIP_CROP[1]}x{CLIP_CROP[0]} (no very-low-light run). "
              "\"int8\": the ONNX Runtime INT8 file (`--precision int8` on a CPU); \"tensorrt Q/DQ\": the graph "
              "`edgedenoise build --precision int8` makes a TensorRT engine from, run by ONNX Runtime."]
    doc = {"stamp": stamp({"data": str(data), "int8_from": a.int8_from, "label": a.label}), "results": results}
    return publish("int8_val", doc, "\n".join(lines), a.out)


if __name__ == "__main__":
    raise SystemExit(main())
