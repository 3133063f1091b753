#!/usr/bin/env python3
"""Would a per-pixel noise-level map help the shipped models on camera noise? An oracle test.

    python benchmarks/noise_map_oracle.py [--models default,tiny]

Camera noise is signal dependent: after the tone curve, dark and bright areas of one frame carry
different noise. The models take a per-pixel map as well as one level, so before building a
blind per-pixel estimate (issue 24), this measures the most any map could give: each model told
the TRUE local noise level (the RMS of noisy - reference over a Gaussian window of std 6 pixels,
channels pooled), against told one level for the whole frame (the true RMS). Both are scaled by
the same grid of factors (the best told level for correlated noise is not its RMS), and the
best factor is taken per setting (over all images) and per image (an oracle within an oracle).

Images: the 8 CBSD432 images `edgedenoise train` holds out for validation (no test set), through
the camera simulation: noise.camera_sim_validation's random camera (as training validates) and
camera.simulate's three named settings, image i seeded by i. Models in PyTorch, fp32, whole
images padded by reflection to their size multiple.

Writes benchmarks/results/noise_map_oracle.{json,md}.
"""
from __future__ import annotations

import argparse

import numpy as np
from common import publish, stamp  # noqa: E402

FACTORS = (0.6, 0.8, 1.0, 1.2, 1.4, 1.7, 2.0)
WINDOW = 6.0  # std of the Gaussian window of the local level, pixels


def local_level(noisy: np.ndarray, ref: np.ndarray) -> np.ndarray:
    import cv2

    d = noisy.astype(np.float32) - ref.astype(np.float32)
    return np.sqrt(cv2.GaussianBlur((d ** 2).mean(axis=2), (0, 0), WINDOW))


def run_model(net, noisy: np.ndarray, level) -> np.ndarray:
    """RGB uint8 -> RGB uint8; `level` a number or an HxW map, 0-255 scale (a map padded as the frame is)."""
    import torch

    from edgedenoise.model import pad_to_multiple
    from edgedenoise.train import denoise_tensor

    x = torch.from_numpy(noisy.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    if np.ndim(level) == 0:
        s = torch.tensor([float(level) / 255.0])
    else:
        s = pad_to_multiple(torch.from_numpy(level[None, None].astype(np.float32) / 255), net.config.size_multiple)[0]
    y = denoise_tensor(net, x, s)[0].numpy().transpose(1, 2, 0)
    return np.round(y * 255).astype(np.uint8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,tiny")
    a = ap.parse_args()

    from tqdm import tqdm

    from edgedenoise.camera import SETTINGS, simulate
    from edgedenoise.data import default_data_root, read_image, validation_images
    from edgedenoise.frames import psnr_u8
    from edgedenoise.modelfile import load_model
    from edgedenoise.noise import camera_sim_validation

    val = validation_images(default_data_root() / "train" / "CBSD432")
    cases = []
    for i, info in enumerate(val):
        clean = read_image(info.path, 3)
        cases.append(("camera random", *camera_sim_validation(clean, i)[:2]))
        for st in SETTINGS:
            noisy, ref, _ = simulate(clean, np.random.default_rng(i), setting=st)
            cases.append((st, noisy, ref))
    settings = list(dict.fromkeys(c for c, *_ in cases))
    results = {}
    for model in a.models.split(","):
        net = load_model(model).eval()
        rows: dict = {s: {"scalar": [], "map": [], "noisy": [], "spread": []} for s in settings}
        for name, noisy, ref in tqdm(cases, desc=model, unit="img"):
            loc = local_level(noisy, ref)
            rms = float(np.sqrt(((noisy.astype(np.float32) - ref) ** 2).mean()))
            r = rows[name]
            r["noisy"].append(psnr_u8(noisy, ref))
            r["scalar"].append([psnr_u8(run_model(net, noisy, k * rms), ref) for k in FACTORS])
            r["map"].append([psnr_u8(run_model(net, noisy, k * loc), ref) for k in FACTORS])
            r["spread"].append(float(np.percentile(loc, 90) / max(np.percentile(loc, 10), 1e-3)))
        out = {}
        for s, r in rows.items():
            sc, mp = np.array(r["scalar"]), np.array(r["map"])
            out[s] = {"noisy": float(np.mean(r["noisy"])),
                      "scalar_best_factor": FACTORS[int(sc.mean(0).argmax())], "scalar": float(sc.mean(0).max()),
                      "scalar_per_image": float(sc.max(1).mean()),
                      "map_best_factor": FACTORS[int(mp.mean(0).argmax())], "map": float(mp.mean(0).max()),
                      "map_per_image": float(mp.max(1).mean()),
                      "level_spread_p90_p10": float(np.mean(r["spread"]))}
        results[model] = out

    lines = ["Each model told the true local noise level (a per-pixel map) against told one level per frame (the "
             "true RMS), both scaled by the best factor of a grid (per setting; and per image). PSNR dB, the 8 "
             "validation images of CBSD432 through the camera simulation.", "",
             "| model | camera setting | noisy | one level, best factor | map, best factor | one level, per image | "
             "map, per image | map - one level | local level p90 / p10 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, out in results.items():
        for s, r in out.items():
            lines.append(f"| {model} | {s} | {r['noisy']:.2f} | {r['scalar']:.2f} (x{r['scalar_best_factor']}) | "
                         f"{r['map']:.2f} (x{r['map_best_factor']}) | {r['scalar_per_image']:.2f} | "
                         f"{r['map_per_image']:.2f} | {r['map_per_image'] - r['scalar_per_image']:+.2f} | "
                         f"{r['level_spread_p90_p10']:.2f} |")
    lines += ["", f"Factors {list(FACTORS)}; local level: RMS of noisy - reference over a Gaussian window of std "
              f"{WINDOW:g} px, channels pooled. The oracle knows each pixel's true level; a blind estimate knows "
              "less. The models were trained with one level per patch, never with a map."]
    md = "\n".join(lines)
    doc = {"stamp": stamp({"factors": list(FACTORS), "window_std_px": WINDOW}), "results": results}
    return publish("noise_map_oracle", doc, md)


if __name__ == "__main__":
    raise SystemExit(main())
