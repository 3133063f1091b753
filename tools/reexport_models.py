#!/usr/bin/env python3
"""Re-export the shipped models' ONNX files (float and INT8) from their shipped weights, after a
change to the export: the weights, the JSON and the blind gain stay as they are.

    python tools/reexport_models.py                 # every shipped model
    python tools/reexport_models.py tiny default

Each new graph is run beside the file it replaces by ONNX Runtime on Kodak24 crops (sigma 25,
Gaussian; a recurrent model also given a previous output) and replaces it only if it computes
the same: float within 1e-5, INT8 within one uint8 level, so that every quality figure measured
on the old files holds for the new ones. Files are made in a folder of their own beside the
models and moved into place together; a failed check leaves the shipped files as they were.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOL = {"onnx": 1e-5, "int8.onnx": 1.0 / 255}


def crops(n: int = 3, size: int = 256) -> list[np.ndarray]:
    """(1,3,size,size) float RGB Kodak24 crops with Gaussian noise sigma 25, seeded."""
    import cv2

    from edgedenoise.data import default_data_root

    files = sorted((default_data_root() / "test" / "Kodak24").glob("*.png"))[:n]
    rng = np.random.default_rng(0)
    out = []
    for f in files:
        img = cv2.imread(str(f))[:size, :size, ::-1].astype(np.float32) / 255
        noisy = np.clip(img + rng.normal(0, 25 / 255, img.shape), 0, 1).astype(np.float32)
        out.append((noisy.transpose(2, 0, 1)[None], img.transpose(2, 0, 1)[None]))
    return out


def max_difference(old: Path, new: Path) -> float:
    """Largest absolute difference between the two graphs' outputs on the crops."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    a, b = (ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for p in (old, new))
    worst = 0.0
    for noisy, clean in crops():
        feed = {"noisy": noisy, "sigma": np.full((1,), 25 / 255, np.float32)}
        if any(i.name == "previous" for i in a.get_inputs()):
            feed["previous"] = clean  # a still scene: the recurrent part has something to fuse
        worst = max(worst, float(np.abs(a.run(None, feed)[0] - b.run(None, feed)[0]).max()))
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="shipped models (default: every one with an ONNX export)")
    a = ap.parse_args()

    from staging import export_and_quantize, move_into, staging

    from edgedenoise.modelfile import ALIASES

    models = ROOT / "edgedenoise" / "models"
    stems = [ALIASES.get(n, n) for n in a.names] or sorted(p.name[:-len(".onnx")] for p in models.glob("*.onnx")
                                                          if not p.name.endswith(".int8.onnx"))
    for stem in stems:
        if not (models / f"{stem}.safetensors").exists():
            print(f"reexport: no shipped model {stem!r} in {models}", file=sys.stderr)
            return 2
    failed = 0
    for stem in stems:
        with staging(models, f"reexport-{stem}") as work:
            for ext in ("json", "safetensors"):
                shutil.copy2(models / f"{stem}.{ext}", work / f"{stem}.{ext}")
            # the ONNX Runtime INT8 alone: a quantization-aware file fails the check below and stays, and
            # <stem>.trt.int8.onnx (TensorRT's, run nowhere here) is left as shipped
            export_and_quantize(work / stem, progress=False, quiet=True, targets=("onnxruntime",))
            diffs = {ext: max_difference(models / f"{stem}.{ext}", work / f"{stem}.{ext}") for ext in TOL}
            line = ", ".join(f"{ext} max difference {d:.1e} (allowed {TOL[ext]:.1e})" for ext, d in diffs.items())
            if any(d > TOL[ext] for ext, d in diffs.items()):
                print(f"{stem}: NOT replaced: {line}")
                failed += 1
                continue
            move_into(work, models, [f"{stem}.{ext}" for ext in TOL], verb=None)
            print(f"{stem}: replaced {stem}.onnx and {stem}.int8.onnx: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
