#!/usr/bin/env python3
"""Real camera noise without a clean reference: RNI15 (15 real noisy photographs) denoised blind,
with a no-reference measure of the noise each method leaves and before/after pictures.

    python benchmarks/real_noise.py                       # the shipped tiny and default, and NLM
    python benchmarks/real_noise.py --before "default before=old/small.onnx"  # a model of before beside them

Writes benchmarks/results/real_noise.{json,md} and real_noise_<image>.png (crops: noisy | each
method). Takes about a minute on 2 cores.

No-reference measure (`flat_noise`): the same flat areas for every method, chosen on the noisy
input: of its 16x16 blocks, the quarter whose Gaussian-blurred (sigma 4) input has the least
gradient energy, leaving out blocks with clipped pixels. In each such block and channel of an
image (converted to YCrCb), the std of the pixels around their least-squares plane; reported as
the RMS over blocks, for luma (Y) and chroma (Cr, Cb together), on the 0-255 scale. On the noisy
input it reads the noise; on an output, the noise left (and any shading the plane does not fit,
which is the same for all methods). Lower is cleaner; a method that also wipes out texture would
read low here too, which the pictures show.
"""
from __future__ import annotations

import argparse

import numpy as np
from common import RESULTS, publish, stamp  # noqa: E402  (common puts the checkout on sys.path)

BLOCK = 16
FLAT_SHARE = 0.25
# the crops of the pictures: (image, x, y) top-left of a CROP x CROP square, chosen to hold both
# flat areas and texture; the pictures are scaled 2x so the noise is visible
CROPS = (("Boy.png", 420, 40), ("Singer.png", 70, 120), ("Window.png", 120, 200), ("Dog.png", 60, 40),
         ("Glass.png", 20, 420))
CROP = 160
# what the pictures show, in a 2 x 3 grid (those present): what users had (the models trained on
# Gaussian noise alone, `--before "default before=..."`, told the estimate of before), the same
# model with today's estimate, and today's models (trained on camera noise too) blind
PANELS = ("noisy", "OpenCV NLM", "default before, estimate of before", "default before, blind", "tiny, blind",
          "default, blind")


def flat_blocks(noisy_bgr: np.ndarray) -> list[tuple[int, int]]:
    import cv2

    g = cv2.GaussianBlur(cv2.cvtColor(noisy_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 4)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    energy = gx * gx + gy * gy
    h, w = g.shape
    cands = []
    for y in range(0, h - BLOCK + 1, BLOCK):
        for x in range(0, w - BLOCK + 1, BLOCK):
            b = noisy_bgr[y:y + BLOCK, x:x + BLOCK]
            if b.min() == 0 or b.max() == 255:
                continue
            cands.append((float(energy[y:y + BLOCK, x:x + BLOCK].mean()), y, x))
    cands.sort()
    return [(y, x) for _, y, x in cands[:max(1, int(len(cands) * FLAT_SHARE))]]


def flat_noise(img_bgr: np.ndarray, blocks: list[tuple[int, int]]) -> dict:
    """RMS over the flat blocks of each channel's std around its plane fit (YCrCb, 0-255); NaN
    without blocks."""
    import cv2

    if not blocks:
        return {"luma": float("nan"), "chroma": float("nan")}

    ycc = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2YCrCb).astype(np.float64)
    yy, xx = np.mgrid[0:BLOCK, 0:BLOCK]
    a = np.stack([np.ones(BLOCK * BLOCK), yy.ravel(), xx.ravel()], axis=1)
    pinv = np.linalg.pinv(a)
    var = np.zeros(3)
    for y, x in blocks:
        v = ycc[y:y + BLOCK, x:x + BLOCK].reshape(-1, 3)
        resid = v - a @ (pinv @ v)
        var += (resid ** 2).mean(axis=0)
    var /= len(blocks)
    return {"luma": float(np.sqrt(var[0])), "chroma": float(np.sqrt((var[1] + var[2]) / 2))}


def grid(panels: list[tuple[str, str, np.ndarray]], cols: int = 3) -> np.ndarray:
    """BGR panels with two label lines each, in rows of `cols`, white gaps between."""
    from edgedenoise.frames import draw_label

    tiles = []
    for title, sub, img in panels:
        t = img.copy()
        draw_label(t, title, (8, 22), 0.6)
        draw_label(t, sub, (8, 46), 0.55)
        tiles.append(t)
    h, w = tiles[0].shape[:2]
    gap = 4
    while len(tiles) % cols:
        tiles.append(np.full((h, w, 3), 255, np.uint8))
    rows = [np.concatenate(sum(([t, np.full((h, gap, 3), 255, np.uint8)] for t in tiles[i:i + cols]), [])[:-1], axis=1)
            for i in range(0, len(tiles), cols)]
    sep = np.full((gap, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate(sum(([r, sep] for r in rows), [])[:-1], axis=0)


def main() -> int:
    import cv2
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,default", help="models denoising blind (default tiny,default)")
    ap.add_argument("--before", action="append", default=[], metavar="LABEL=MODEL",
                    help="a model of before to set beside them, e.g. 'default before=old/small.onnx' (repeatable)")
    a = ap.parse_args()

    from edgedenoise.data import default_data_root, list_images
    from edgedenoise.denoiser import Denoiser
    from edgedenoise.estimate import combine, estimate_parts, estimate_white_sigma
    from edgedenoise.modelfile import file_sha256
    from edgedenoise.nlm import nlm_denoise, nlm_h

    methods = {}
    for spec in a.before:
        label, _, path = spec.partition("=")
        methods[label] = Denoiser.load(path)
    for m in a.models.split(","):
        methods[m] = Denoiser.load(m)
    files = list_images(default_data_root() / "test" / "RNI15")
    rows = []
    crops = {name: [] for name, *_ in CROPS}
    for f in tqdm(files, unit="img", desc="RNI15"):
        noisy = cv2.imread(str(f), cv2.IMREAD_COLOR)
        blocks = flat_blocks(noisy)
        parts = estimate_parts(noisy)  # once per image: each model's level is combine(parts, its gain)
        est = combine(parts)  # the default gain's level (NLM's h and the table; models use their own)
        before = estimate_white_sigma(noisy, weak_texture=False)
        outs = {"noisy": noisy}
        outs["OpenCV NLM"] = nlm_denoise(noisy, nlm_h(est))
        told = {"noisy": None, "OpenCV NLM": f"h {nlm_h(est):.1f}"}  # what each panel's label says it was given
        for label, den in methods.items():
            outs[f"{label}, estimate of before"] = den.denoise(noisy, before)
            level = combine(parts, den.blind_gain)  # as den.estimate(noisy), the parts measured once
            outs[f"{label}, blind"] = den.denoise(noisy, level)
            told[f"{label}, estimate of before"], told[f"{label}, blind"] = f"sigma {before:.1f}", f"sigma {level:.1f}"
        rows.append({"image": f.name, "size": f"{noisy.shape[1]}x{noisy.shape[0]}", "estimate": est,
                     "estimate_before": before, "nlm_h": nlm_h(est), "flat_blocks": len(blocks),
                     "flat_noise": {k: flat_noise(v, blocks) for k, v in outs.items()}})
        for name, x, y in CROPS:
            if f.name == name:
                for k in (k for k in PANELS if k in outs):
                    c = cv2.resize(outs[k][y:y + CROP, x:x + CROP], None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
                    fn = rows[-1]["flat_noise"][k]
                    level = told[k] or name
                    crops[name].append((k, f"{level}, flat Y {fn['luma']:.1f} C {fn['chroma']:.1f}", c))
    pictures = []
    for name, panels in crops.items():
        if panels:
            p = RESULTS / f"real_noise_{name.rsplit('.', 1)[0]}.png"
            cv2.imwrite(str(p), grid(panels))
            pictures.append(p.name)
    labels = list(rows[0]["flat_noise"])
    # an image without usable flat blocks (Flowers: clipped almost everywhere) is left out of the means
    scored = [r for r in rows if r["flat_blocks"]]
    mean = {k: {c: float(np.mean([r["flat_noise"][k][c] for r in scored])) for c in ("luma", "chroma")}
            for k in labels}
    doc = {"stamp": stamp(), "set": "RNI15", "block": BLOCK, "flat_share": FLAT_SHARE, "pictures": pictures,
           "models": {k: {"name": d.name, "hash": file_sha256(d.files.onnx) if d.files.onnx else None}
                      for k, d in methods.items()},
           "mean_flat_noise": mean, "images": rows}
    md = markdown(doc, labels)
    return publish("real_noise", doc, md, also=pictures)


def markdown(doc: dict, labels: list[str]) -> str:
    out = ["### RNI15, blind: noise left in flat areas (std around a plane per 16x16 block, 0-255; "
           "luma Y / chroma CrCb; lower is cleaner)\n"]
    out.append("| image | size | estimate: before / now | " + " | ".join(labels) + " |")
    out.append("|---|---|---|" + "---|" * len(labels))
    for r in doc["images"]:
        out.append(f"| {r['image']} | {r['size']} | {r['estimate_before']:.1f} / {r['estimate']:.1f} | "
                   + " | ".join(f"{r['flat_noise'][k]['luma']:.2f} / {r['flat_noise'][k]['chroma']:.2f}"
                                if r["flat_blocks"] else "no flat block" for k in labels) + " |")
    m = doc["mean_flat_noise"]
    out.append("| **mean** | | | " + " | ".join(f"**{m[k]['luma']:.2f} / {m[k]['chroma']:.2f}**" for k in labels)
               + " |")
    out.append("")
    out.append(f"Flat areas: the {doc['flat_share']:.0%} of {doc['block']}x{doc['block']} blocks with the least "
               "gradient energy in the Gaussian-blurred (sigma 4) noisy input, blocks with clipped pixels left out; "
               "the same blocks for every method. Estimate: `estimate.estimate_sigma`, the level the models are "
               "told in blind mode (NLM gets `nlm.nlm_h` of it); before: the estimate shipped until December 2026 "
               "(`estimate_white_sigma(weak_texture=False)`). Pictures: " + ", ".join(doc["pictures"]) + ".")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
