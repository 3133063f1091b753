#!/usr/bin/env python3
"""Compare models on the training data's validation split, the way a ship decision needs:
Gaussian noise (camera protocol) and the camera simulation, each told the true level and blind
(the level from `Denoiser.estimate`, with each model's blind gain, as `run`, `denoise` and
`Denoiser.denoise(frame)` use; a run folder not calibrated yet takes the gain of the model it was
fine-tuned from, its `--init`: blind_gain_of).

    python tools/compare_val.py tiny ~/runs/tiny_cam            # shipped tiny against a run folder
    python tools/compare_val.py tiny ~/runs/tiny_cam --json out.json

The split is the one `edgedenoise train` holds out (data.split, --val-count images evenly spaced
through CBSD432), so no test image is used. Cases, image i of the split:
- gaussian S: the benchmark protocol's camera noise at sigma S, seeded by i; told S;
- camera random: noise.camera_sim_validation, the random camera training validates on,
  scored against the pipeline without noise; told the true RMS;
- camera SETTING: camera.simulate's named setting seeded by i; told the true RMS;
- with --optics P, the same two again with a lens: "camera random, lens" (the same random camera,
  its scene blurred by a sigma drawn from P/2..P px before the mosaic, as `train --camera-optics P`
  draws it) and "camera SETTING, lens" (the named setting with a blur of P px); the reference then
  has the false colour of demosaicing a sharp scene no more (docs/blind-notes.md).
Models run on the torch backend (any run folder, no export needed), fp32, whole images. Every case
is scored in RGB (the table's first part) and in luma (Y of YCrCb, its second part): the camera
simulation's RGB figure is mostly chroma, so a model that smooths less colour and keeps more luma
detail can read lower in RGB and higher in Y.

    python tools/compare_val.py --clips tiny ~/runs/tiny_video   # video models on validation clips

--clips scores on the validation clips training uses (train.ClipValSet: the same images; still, pan,
moving objects, cut; 8 frames of 224x224, sigma 25): a recurrent model given its last output, a
framewise one frame by frame and with the temporal blend.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgedenoise.atomic import write_atomic  # noqa: E402  (after the path: a checkout without installing)

GAUSS = (15.0, 25.0, 50.0)


def cases(images: list, channels: int = 3, optics: float = 0.0) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(case, noisy RGB uint8, reference RGB uint8, true level) for every image of the split; with
    `optics` > 0 also the camera cases through a lens (the module docstring)."""
    from edgedenoise.camera import SETTINGS, setting_params, simulate
    from edgedenoise.data import read_image
    from edgedenoise.noise import camera_sim_validation, protocol_noisy

    out = []
    for i, info in enumerate(images):
        clean = read_image(info.path, channels)
        for s in GAUSS:
            out.append((f"gaussian {s:g}", protocol_noisy(clean, s, i, "camera"), clean, s))
        out.append(("camera random", *camera_sim_validation(clean, i)))
        if optics > 0:
            out.append(("camera random, lens", *camera_sim_validation(clean, i, optics)))
        for st in SETTINGS:
            for lens in ((0.0, optics) if optics > 0 else (0.0,)):
                noisy, ref, meta = simulate(clean, np.random.default_rng(i), params=setting_params(st, lens))
                out.append((f"camera {st}" + (", lens" if lens else ""), noisy, ref, float(meta["noise_std"])))
    return out


def blind_gain_of(spec: str) -> tuple[float, str]:
    """The blind gain a model is scored at, and whence: its own JSON's (tools/calibrate_blind.py writes it
    when a model is shipped); else, for a run folder (or a file in one) not calibrated yet, that of the model
    it was fine-tuned from (its config.json's `init`, followed back through run folders), as shipping it
    starts from; else estimate.CORRELATED_GAIN, as `Denoiser` gives an uncalibrated model. Without the
    second, a fine-tune of `default` (gain 2.6) was scored blind at 2.0 beside it: not like for like."""
    from edgedenoise.estimate import CORRELATED_GAIN
    from edgedenoise.modelfile import ModelError, resolve

    at = str(spec)
    for hop in range(16):  # back through run folders; a run whose init names itself ends here too
        try:
            files = resolve(at)
        except ModelError:  # an --init that is gone: no gain to take from it
            break
        if (files.config.get("blind") or {}).get("correlated_gain") is not None:
            return files.blind_gain, ("its own" if hop == 0 else f"its --init's, {at}")
        p = Path(at).expanduser()
        cfg = (p if p.is_dir() else p.parent) / "config.json"
        try:
            at = str(json.loads(cfg.read_text()).get("init") or "") if p.exists() else ""
        except (OSError, ValueError):
            break
        if not at:
            break
    return CORRELATED_GAIN, "the default, not calibrated"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="shipped names, run folders or .safetensors files")
    ap.add_argument("--data", help="training images (default: CBSD432 of the shared data)")
    ap.add_argument("--val-count", type=int, default=8, help="as `edgedenoise train --val-count` (default 8)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--md", help="also write the table here (markdown)")
    ap.add_argument("--clips", action="store_true", help="score on the validation clips instead (video models)")
    ap.add_argument("--optics", type=float, default=0.0, metavar="P",
                    help="also the camera cases through a lens of P px (as train --camera-optics P; default 0: none)")
    a = ap.parse_args()
    if a.clips:
        return clips(a)

    from tqdm import tqdm

    from edgedenoise import Denoiser
    from edgedenoise.data import default_data_root, validation_images
    from edgedenoise.estimate import combine, estimate_parts
    from edgedenoise.evaluate import psnr_luma_chroma
    from edgedenoise.frames import psnr_u8
    from edgedenoise.runtime.stats import stamp

    data = Path(a.data) if a.data else default_data_root() / "train" / "CBSD432"
    val = validation_images(data, a.val_count)
    if not 0.0 <= a.optics <= 4.0:
        print(f"compare_val.py: --optics {a.optics}: a lens blur of 0-4 px", file=sys.stderr)
        return 2
    items = cases(val, optics=a.optics)
    parts = [estimate_parts(np.ascontiguousarray(n[:, :, ::-1])) for _, n, _, _ in items]
    names = list(dict.fromkeys(c for c, *_ in items))
    res: dict = {}
    gains = {str(m): blind_gain_of(m) for m in a.models}
    for m in a.models:
        den = Denoiser.load(m, backend="torch")
        gain = gains[str(m)][0]
        rows: dict = {}
        for (case, noisy, ref, true), pt in tqdm(list(zip(items, parts)), desc=str(m), unit="img"):
            est = combine(pt, gain)  # den.estimate(noisy) at that gain, the estimate's work done once
            bgr, rb = np.ascontiguousarray(noisy[:, :, ::-1]), np.ascontiguousarray(ref[:, :, ::-1])
            r = rows.setdefault(case, {k: [] for k in ("noisy", "told", "blind", "noisy_y", "told_y", "blind_y",
                                                       "level", "estimate")})
            for k, img in (("noisy", bgr), ("told", den.denoise(bgr, true)), ("blind", den.denoise(bgr, est))):
                r[k].append(psnr_u8(img, rb))
                r[f"{k}_y"].append(psnr_luma_chroma(img, rb)[0])
            r["level"].append(true)
            r["estimate"].append(est)
        res[str(m)] = {c: {k: float(np.mean(v)) for k, v in rows[c].items()} for c in names}
        den.close()

    lines = ["blind gains: " + "; ".join(f"{m} {g:g} ({how})" for m, (g, how) in gains.items()), ""]
    for y, what in (("", "RGB"), ("_y", "luma (Y)")):
        lines += [f"validation split of {data} ({len(val)} images), {what} PSNR dB: told the true level / blind",
                  "| case | noisy | level (true / estimated) | " + " | ".join(res) + " |",
                  "|---|---|---|" + "---|" * len(res)]
        for c in names:
            first = next(iter(res.values()))[c]
            lines.append(f"| {c} | {first['noisy' + y]:.2f} | {first['level']:.1f} / {first['estimate']:.1f} | "
                         + " | ".join(f"{r[c]['told' + y]:.2f} / {r[c]['blind' + y]:.2f}" for r in res.values())
                         + " |")
        (na, ra), *later = res.items()
        for nb, rb in later:  # a ship decision: each later model (a run, its average, ...) against the first
            lines += ["", f"{nb} minus {na}, {what} dB:", "| case | told | blind |", "|---|---|---|"]
            lines += [f"| {c} | {rb[c]['told' + y] - ra[c]['told' + y]:+.2f} | "
                      f"{rb[c]['blind' + y] - ra[c]['blind' + y]:+.2f} |" for c in names]
        lines.append("")
    lines.pop()
    print("\n".join(lines))
    if a.md:
        write_atomic(a.md, ("\n".join(lines) + "\n").encode(), what="report")
    if a.json:
        doc = {**stamp("python " + " ".join(sys.argv)), "data": str(data),
               "images": [str(v.path.name) for v in val],
               "blind_gains": {m: {"gain": g, "from": how} for m, (g, how) in gains.items()}, "results": res}
        write_atomic(a.json, json.dumps(doc, indent=1).encode(), what="report")
    return 0


def clips(a) -> int:
    import torch

    from edgedenoise.data import default_data_root, validation_images
    from edgedenoise.modelfile import load_model
    from edgedenoise.train import ClipValSet

    data = Path(a.data) if a.data else default_data_root() / "train" / "CBSD432"
    cs = ClipValSet(validation_images(data, a.val_count), 3, 25.0)
    lines = [f"validation clips of {data} (sigma 25), PSNR dB", "| model | " + " | ".join(cs.KINDS) + " | all |",
             "|---|" + "---|" * (len(cs.KINDS) + 1)]
    res: dict = {}
    for m in a.models:
        net = load_model(m)
        for how in (("model",) if net.config.recurrent else ("off", "blend")):
            r = cs.evaluate(net, torch.device("cpu"), how)
            res.setdefault(str(m), {})[how] = {k: float(r[k]) for k in (*cs.KINDS, "all")}
            label = {"model": "given its last output", "off": "frame by frame", "blend": "+ blend"}[how]
            lines.append(f"| {m} {label} | " + " | ".join(f"{r[k]:.2f}" for k in (*cs.KINDS, "all")) + " |")
    print("\n".join(lines))
    if a.md:
        write_atomic(a.md, ("\n".join(lines) + "\n").encode(), what="report")
    if a.json:
        from edgedenoise.runtime.stats import stamp

        doc = {**stamp("python " + " ".join(sys.argv)), "data": str(data), "clips": True, "results": res}
        write_atomic(a.json, json.dumps(doc, indent=1).encode(), what="report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
