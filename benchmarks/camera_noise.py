#!/usr/bin/env python3
"""Camera noise, as BENCHMARK_PROTOCOL.md's camera-sim rows say: every method on CBSD68 and Kodak24
put through the camera simulation (edgedenoise/camera.py) at each named setting, and the blind
noise-level estimate checked on Gaussian noise as well.

    python benchmarks/camera_noise.py                  # everything (~25 min on 2 cores, CBM3D included)
    python benchmarks/camera_noise.py --cbm3d-images 0 # skip CBM3D

Writes benchmarks/results/camera_noise.{json,md} and camera_noise.png. Per-image results are
cached in benchmarks/.cache/ (keyed by model file hash, estimate.py's hash, setting, image, parameter).

- Noisy images: image i of a set (sorted order) through `camera.simulate(..., setting=S)` with
  `default_rng(i)`, scored against the same pipeline without noise; exactly `edgedenoise eval
  --noise camera-sim:S`.
- Models (fp32 ONNX Runtime): **blind** (the level from `Denoiser.estimate`, with the model's
  blind gain, as `run` and `Denoiser.denoise(frame)` do), blind with the estimate shipped before
  (`estimate_white_sigma(weak_texture=False)`: fine scale, every patch), and told each of
  SIGMA_GRID: **best fixed** is the one sigma of the grid best on the set's mean, **oracle** the
  best sigma per image. INT8: blind only.
- OpenCV NLM (`fastNlMeansDenoisingColored`, template 7, search 21): every h of H_GRID, the best
  on the set's mean reported (an oracle choice NLM could not make blind).
- CBM3D (`bm3d.bm3d_rgb`): told the true RMS of the noise times each of CBM3D_FACTORS, best on
  the subset's mean; the first N CBSD68 and N/2 Kodak24 images only (a minute per megapixel).
- Gaussian check of the estimator: CBSD68, camera protocol, sigma GAUSS_SIGMAS, each model blind
  with either estimate and told the true sigma.
"""
from __future__ import annotations

import argparse
import hashlib

import numpy as np
from common import ROOT, cached, publish, stamp  # noqa: E402  (common puts the checkout on sys.path)

SETS = ("CBSD68", "Kodak24")
# cached estimates and blind results are keyed by the estimator's source too: a changed
# estimate.py must not reuse the rows of the old one
ESTIMATOR = hashlib.sha256((ROOT / "edgedenoise" / "estimate.py").read_bytes()).hexdigest()[:12]
SIGMA_GRID = (0, 5, 10, 15, 20, 25, 30, 40, 50, 60)
H_GRID = (4, 6, 9, 13, 18, 25)
CBM3D_FACTORS = (1.0, 1.5, 2.0)
GAUSS_SIGMAS = (5, 15, 25, 50)


def rgb_nlm(noisy_rgb: np.ndarray, h: float) -> np.ndarray:
    from edgedenoise.nlm import nlm_denoise

    return nlm_denoise(np.ascontiguousarray(noisy_rgb[:, :, ::-1]), h)[:, :, ::-1]


def rgb_cbm3d(noisy_rgb: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    from edgedenoise.frames import to_uint8

    return to_uint8(bm3d.bm3d_rgb(noisy_rgb.astype(np.float32) / 255.0, sigma / 255.0))


def rgb_model(den, noisy_rgb: np.ndarray, sigma: float) -> np.ndarray:
    from edgedenoise.frames import to_uint8

    return to_uint8(den.denoise(np.ascontiguousarray(noisy_rgb[:, :, ::-1]), sigma=sigma))[:, :, ::-1]


class Cases:
    """The noisy/reference pairs of one (set, noise) and the blind estimates of each, made once."""

    def __init__(self, data, set_name: str, noise: str, limit: int | None):
        from edgedenoise.camera import simulate
        from edgedenoise.data import list_images, read_image
        from edgedenoise.estimate import estimate_parts, estimate_white_sigma
        from edgedenoise.noise import protocol_noisy

        self.key = f"{set_name}_{noise}"
        self.items = []
        for i, f in enumerate(list_images(data / "test" / set_name)[:limit]):
            clean = read_image(f, 3)
            if noise.startswith("gauss"):
                noisy, ref = protocol_noisy(clean, float(noise[5:]), i, "camera"), clean
            else:
                noisy, ref = simulate(clean, np.random.default_rng(i), setting=noise)[:2]

            def est(noisy=noisy):
                bgr = np.ascontiguousarray(noisy[:, :, ::-1])
                return {"parts": estimate_parts(bgr), "white": estimate_white_sigma(bgr, weak_texture=False),
                        "rms": float(np.sqrt(np.mean((noisy.astype(np.float64) - ref) ** 2)))}

            e = cached(f"estimate_parts_{ESTIMATOR}_{self.key}_{f.name}", est)
            self.items.append((f.name, noisy, ref, e))


def score(out: np.ndarray, ref: np.ndarray) -> float:
    from edgedenoise.frames import psnr_u8

    return psnr_u8(out, ref)


def model_rows(den, digest: str, cases: Cases, grid: bool, bar) -> list[dict]:
    from edgedenoise.estimate import combine

    rows = []
    for name, noisy, ref, e in cases.items:
        def one():
            level = combine(e["parts"], den.blind_gain)  # what den.estimate gives: the model's own gain
            r = {"image": name, "noisy": score(noisy, ref), "rms": e["rms"], "estimate": level,
                 "blind": score(rgb_model(den, noisy, level), ref),
                 "blind_white": score(rgb_model(den, noisy, e["white"]), ref)}
            if grid:
                r["fixed"] = {str(s): score(rgb_model(den, noisy, s), ref) for s in SIGMA_GRID}
            if cases.key.split("_")[1].startswith("gauss"):
                r["told"] = score(rgb_model(den, noisy, float(cases.key.split("gauss")[1])), ref)
            return r

        rows.append(cached(f"cammodel_{digest}_{ESTIMATOR}_g{den.blind_gain:g}_{cases.key}_{grid}_{name}", one))
        bar.update(1)
    return rows


def anchor_rows(method: str, cases: Cases, params, bar) -> list[dict]:
    rows = []
    for name, noisy, ref, e in cases.items:
        def one():
            if method == "nlm":
                return {str(h): score(rgb_nlm(noisy, h), ref) for h in params}
            return {str(k): score(rgb_cbm3d(noisy, k * e["rms"]), ref) for k in params}

        rows.append({"image": name, **cached(f"cam{method}_{cases.key}_{name}_{list(params)}", one)})
        bar.update(1)
    return rows


def best_of(rows: list[dict], params) -> tuple[str, float]:
    """The parameter best on the mean over images, and that mean."""
    means = {str(p): float(np.mean([r[str(p)] for r in rows])) for p in params}
    k = max(means, key=means.get)
    return k, means[k]


def summarize_model(rows: list[dict]) -> dict:
    s = {"noisy": float(np.mean([r["noisy"] for r in rows])), "rms": float(np.mean([r["rms"] for r in rows])),
         "estimate_over_rms": float(np.mean([r["estimate"] / r["rms"] for r in rows])),
         "blind": float(np.mean([r["blind"] for r in rows])),
         "blind_white": float(np.mean([r["blind_white"] for r in rows])), "n": len(rows)}
    if "fixed" in rows[0]:
        k, v = best_of([r["fixed"] for r in rows], SIGMA_GRID)
        s["best_fixed_sigma"], s["best_fixed"] = float(k), v
        s["oracle"] = float(np.mean([max(r["fixed"].values()) for r in rows]))
    if "told" in rows[0]:
        s["told"] = float(np.mean([r["told"] for r in rows]))
    return s


def main() -> int:
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,default", help="models (names or files; default tiny,default)")
    ap.add_argument("--cbm3d-images", type=int, default=4, help="CBSD68 images for CBM3D (Kodak24: half); 0 = none")
    ap.add_argument("--limit", type=int, help="first N images of each set only (a quick check, not a result)")
    ap.add_argument("--out", default="camera_noise", help="results name under benchmarks/results/")
    a = ap.parse_args()

    from edgedenoise.camera import SETTINGS
    from edgedenoise.data import default_data_root
    from edgedenoise.denoiser import Denoiser
    from edgedenoise.modelfile import file_sha256

    data = default_data_root()
    settings = list(SETTINGS)
    cases = {(st, n): Cases(data, st, n, a.limit) for st in SETS for n in settings}
    gauss = {s: Cases(data, "CBSD68", f"gauss{s}", a.limit) for s in GAUSS_SIGMAS}
    doc = {"stamp": stamp(), "settings": settings, "sets": list(SETS), "sigma_grid": list(SIGMA_GRID),
           "h_grid": list(H_GRID), "cbm3d_factors": list(CBM3D_FACTORS), "models": {}, "anchors": {},
           "gaussian": {}}
    n_cam = sum(len(c.items) for c in cases.values())
    raw = {}  # (model label, set, setting) -> per-image rows
    for model in a.models.split(","):
        for prec in ("fp32", "int8"):
            den = Denoiser.load(model, precision=prec)
            digest = file_sha256(den.files.onnx_int8 if prec == "int8" else den.files.onnx)
            label = f"{model} {prec}"
            bar = tqdm(total=n_cam + sum(len(c.items) for c in gauss.values()), unit="img", desc=label)
            res = {"hash": digest, "camera": {}, "gaussian": {}}
            for (st, n), c in cases.items():
                raw[(label, st, n)] = rows = model_rows(den, digest, c, prec == "fp32", bar)
                res["camera"].setdefault(st, {})[n] = summarize_model(rows)
            for s, c in gauss.items():
                res["gaussian"][str(s)] = summarize_model(model_rows(den, digest, c, False, bar))
            bar.close()
            doc["models"][label] = res

    bar = tqdm(total=n_cam, unit="img", desc="nlm")
    nlm_best = {key: dict(zip(("h", "psnr"), best_of(anchor_rows("nlm", c, H_GRID, bar), H_GRID)))
                for key, c in cases.items()}
    doc["anchors"]["OpenCV NLM"] = {st: {n: v for (s2, n), v in nlm_best.items() if s2 == st} for st in SETS}
    bar.close()
    if a.cbm3d_images:
        sub_n = {"CBSD68": a.cbm3d_images, "Kodak24": max(1, a.cbm3d_images // 2)}
        bar = tqdm(total=sum(sub_n[st] for st, _ in cases), unit="img", desc="cbm3d")
        doc["anchors"]["CBM3D (subset)"] = {}
        doc["cbm3d_subset"] = sub_n
        for (st, n), c in cases.items():
            sub = Cases.__new__(Cases)
            sub.key, sub.items = c.key, c.items[:sub_n[st]]
            rows = anchor_rows("cbm3d", sub, CBM3D_FACTORS, bar)
            k, v = best_of(rows, CBM3D_FACTORS)
            # every model's blind result on the same subset, for a like-for-like comparison
            same = {label: float(np.mean([r["blind"] for r in raw[(label, st, n)][:sub_n[st]]]))
                    for label in doc["models"]}
            doc["anchors"]["CBM3D (subset)"].setdefault(st, {})[n] = {"factor": float(k), "psnr": v,
                                                                      "models_blind_same_images": same}
        bar.close()

    md = markdown(doc)
    return publish(a.out, doc, md, also=lambda _: [plot(doc, a.out)])


def markdown(doc: dict) -> str:
    out = []
    sets, settings = doc["sets"], doc["settings"]
    cols = [(st, n) for st in sets for n in settings]
    out.append("### Camera simulation, whole sets (PSNR dB against the pipeline without noise)\n")
    out.append("| method | " + " | ".join(f"{st} {n}" for st, n in cols) + " |")
    out.append("|---|" + "---|" * len(cols))
    first = next(iter(doc["models"].values()))["camera"]
    out.append("| noisy | " + " | ".join(f"{first[st][n]['noisy']:.2f}" for st, n in cols) + " |")
    for label, res in doc["models"].items():
        c = res["camera"]
        out.append(f"| {label}, blind | " + " | ".join(f"{c[st][n]['blind']:.2f}" for st, n in cols) + " |")
        if "best_fixed" not in c[sets[0]][settings[0]]:
            continue
        out.append(f"| {label}, blind, the estimate of before | "
                   + " | ".join(f"{c[st][n]['blind_white']:.2f}" for st, n in cols) + " |")
        out.append(f"| {label}, best fixed sigma of the grid | "
                   + " | ".join(f"{c[st][n]['best_fixed']:.2f} (σ{c[st][n]['best_fixed_sigma']:g})" for st, n in cols)
                   + " |")
        out.append(f"| {label}, best sigma per image (oracle) | "
                   + " | ".join(f"{c[st][n]['oracle']:.2f}" for st, n in cols) + " |")
    nl = doc["anchors"]["OpenCV NLM"]
    out.append("| OpenCV NLM, best h of the grid | "
               + " | ".join(f"{nl[st][n]['psnr']:.2f} (h {nl[st][n]['h']})" for st, n in cols) + " |")
    out.append("")
    out.append("Noise RMS (0-255) and the blind estimate's ratio to it (mean over images): "
               + "; ".join(f"{st} {n}: {first[st][n]['rms']:.1f}, x{first[st][n]['estimate_over_rms']:.2f}"
                           for st, n in cols) + ".\n")
    if "CBM3D (subset)" in doc["anchors"]:
        cb = doc["anchors"]["CBM3D (subset)"]
        sub = doc["cbm3d_subset"]
        out.append(f"### CBM3D on the first {sub['CBSD68']} CBSD68 and {sub['Kodak24']} Kodak24 images, "
                   "beside the models blind on the same images (PSNR dB)\n")
        out.append("| method | " + " | ".join(f"{st} {n}" for st, n in cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        out.append("| CBM3D, told the true RMS x best factor | "
                   + " | ".join(f"{cb[st][n]['psnr']:.2f} (x{cb[st][n]['factor']:g})" for st, n in cols) + " |")
        for label in cb[sets[0]][settings[0]]["models_blind_same_images"]:
            out.append(f"| {label}, blind | "
                       + " | ".join(f"{cb[st][n]['models_blind_same_images'][label]:.2f}" for st, n in cols) + " |")
        out.append("")
    out.append("### The blind estimate on Gaussian noise (CBSD68, camera protocol, PSNR dB)\n")
    gs = [str(s) for s in GAUSS_SIGMAS]
    out.append("| model | " + " | ".join(f"σ{s} {k}" for s in gs for k in ("told", "blind", "blind (before)")) + " |")
    out.append("|---|" + "---|" * (3 * len(gs)))
    for label, res in doc["models"].items():
        g = res["gaussian"]
        out.append(f"| {label} | " + " | ".join(f"{g[s]['told']:.2f} | {g[s]['blind']:.2f} | {g[s]['blind_white']:.2f}"
                                                 for s in gs) + " |")
    out.append("")
    out.append(f"Grids: model sigma {doc['sigma_grid']}, NLM h {doc['h_grid']} (template 7, search 21), CBM3D sigma = "
               f"true RMS x {doc['cbm3d_factors']}; 'best' picks the one value best on the set's mean (an oracle "
               "choice, which a blind method cannot make). Images: image i seeded by i, as `edgedenoise eval "
               "--noise camera-sim:SETTING` makes them.")
    return "\n".join(out)


def plot(doc: dict, name: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png = ROOT / "benchmarks" / "results" / f"{name}.png"
    settings = doc["settings"]
    fig, axes = plt.subplots(1, len(doc["sets"]), figsize=(6.5 * len(doc["sets"]), 4.6), sharey=True)
    for ax, st in zip(np.atleast_1d(axes), doc["sets"]):
        bars = [("noisy", [next(iter(doc["models"].values()))["camera"][st][n]["noisy"] for n in settings])]
        bars.append(("OpenCV NLM, best h", [doc["anchors"]["OpenCV NLM"][st][n]["psnr"] for n in settings]))
        for label, res in doc["models"].items():
            if not label.endswith("fp32"):
                continue
            c = res["camera"][st]
            bars.append((f"{label[:-5]} blind", [c[n]["blind"] for n in settings]))
            bars.append((f"{label[:-5]} best fixed σ", [c[n]["best_fixed"] for n in settings]))
        w = 0.8 / len(bars)
        x = np.arange(len(settings))
        for k, (lab, v) in enumerate(bars):
            b = ax.bar(x + (k - (len(bars) - 1) / 2) * w, v, w, label=lab)
            ax.bar_label(b, fmt="%.1f", fontsize=7, padding=2, rotation=90)  # upright, neighbours overlapped
        ax.set_xticks(x, settings)
        ax.set_title(f"{st} through the camera simulation")
        ax.grid(axis="y", alpha=0.3)
        lo, hi = min(min(v) for _, v in bars), max(max(v) for _, v in bars)
        ax.set_ylim(lo - 2, hi + 1.2)  # room for the upright labels
    np.atleast_1d(axes)[0].set_ylabel("PSNR (dB) against the noise-free pipeline")
    # below the panels: inside one it covered the labels of the tallest bars
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(f"camera noise: blind denoising vs NLM ({doc['stamp']['date'][:10]}, "
                 f"{doc['stamp']['machine']['cpu']})", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(png, dpi=110)
    return png


if __name__ == "__main__":
    raise SystemExit(main())
