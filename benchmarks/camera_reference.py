#!/usr/bin/env python3
"""What the camera simulation's PSNR measures: the noisy image's error split into its parts, and blind
mode against the best fixed sigma in luma and chroma, against two references.

    python benchmarks/camera_reference.py            # CBSD68 and Kodak24, tiny and default (~6 min on 2 cores)
    python benchmarks/camera_reference.py --limit 4  # a quick look, not a result

Writes benchmarks/results/camera_reference.{json,md} and camera_reference.png (picture()).

The camera rows of camera_noise.md score each output against `camera.simulate`'s reference: the same
pipeline (unprocess, mosaic, demosaic, white balance, colour matrix, tone curve) without noise and
without compression. Per (set, setting), image i seeded by i as there:

- The noisy image's error, RGB PSNR and its luma (Y) and chroma (Cr, Cb) parts (OpenCV's YCrCb, BT.601
  full range): the sensor's noise alone (the pipeline without compression), the compression alone (no
  noise: shot and read set to 1e-12), and both (what the models are given).
- Each model (fp32, ONNX Runtime) blind (its own blind gain, as `run` tells it) and told each sigma of
  SIGMA_GRID: blind and the best fixed sigma (best on the set's mean RGB PSNR, as camera_noise.md picks
  it) in RGB, Y and chroma; and the best fixed sigma by Y.
- The same outputs against a reference without the mosaic: the unprocessed camera RGB processed with the
  same white balance, colour matrix and tone curve, no demosaicing (`camera.process` of an HxWx3 raw).
  The simulator's reference carries the demosaicing's false colour along every sharp edge of the
  source image (a real camera's lens and low-pass filter would have blurred those edges first); this
  one is the scene as the camera's colour processing renders it.
"""
from __future__ import annotations

import argparse

import numpy as np
from common import publish, stamp  # noqa: E402  (common puts the checkout on sys.path)

SETS = ("CBSD68", "Kodak24")
SIGMA_GRID = (0, 5, 10, 15, 20, 25, 30, 40)
PARTS = ("rgb", "y", "c")


def psnr_parts(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """RGB PSNR and its luma / chroma parts (evaluate.psnr_luma_chroma) of two RGB images, dB."""
    from edgedenoise.evaluate import psnr_luma_chroma
    from edgedenoise.frames import psnr_u8

    y, c = psnr_luma_chroma(out, ref, rgb=True)
    return {"rgb": psnr_u8(out, ref), "y": y, "c": c}


def mean_parts(rows: list[dict]) -> dict[str, float]:
    return {p: float(np.mean([r[p] for r in rows])) for p in PARTS}


def cases(data, set_name: str, setting: str, limit: int | None):
    """(noisy, reference, reference without the mosaic, the error's parts) for each image of a set."""
    import dataclasses

    from edgedenoise import camera
    from edgedenoise.data import list_images, read_image

    params = camera.setting_params(setting)
    quiet = dataclasses.replace(params, shot=1e-12, read=1e-12)
    raw_only = dataclasses.replace(params, compression="none")
    for i, f in enumerate(list_images(data / "test" / set_name)[:limit]):
        clean = read_image(f, 3)
        noisy, ref, _ = camera.simulate(clean, np.random.default_rng(i), setting=setting)
        h, w = clean.shape[:2]
        scene = camera.process(camera.unprocess(clean, params, mosaic_out=False), params, out_shape=(h, w))
        parts = {"noise": psnr_parts(camera.simulate(clean, np.random.default_rng(i), params=raw_only)[0], ref),
                 "compression": psnr_parts(camera.simulate(clean, np.random.default_rng(i), params=quiet)[0], ref),
                 "both": psnr_parts(noisy, ref), "both_vs_scene": psnr_parts(noisy, scene)}
        yield f.name, noisy, ref, scene, parts


def main() -> int:
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,default", help="models (names or files; default tiny,default)")
    ap.add_argument("--limit", type=int, help="first N images of each set only (a quick look, not a result)")
    ap.add_argument("--out", default="camera_reference", help="results name under benchmarks/results/")
    a = ap.parse_args()

    from edgedenoise.camera import SETTINGS
    from edgedenoise.data import default_data_root, list_images
    from edgedenoise.denoiser import Denoiser

    data = default_data_root()
    models = {m: Denoiser.load(m, backend="onnxruntime", precision="fp32") for m in a.models.split(",")}
    n_img = sum(len(list_images(data / "test" / s)[:a.limit]) for s in SETS) * len(SETTINGS)
    bar = tqdm(total=n_img, unit="img", desc="images x settings")
    doc = {"stamp": stamp(), "sets": list(SETS), "settings": list(SETTINGS), "sigma_grid": list(SIGMA_GRID),
           "models": list(models), "results": {}}
    for set_name in SETS:
        for setting in SETTINGS:
            per = {"images": [], "error": {}, "models": {}}
            rows = {m: [] for m in models}
            for name, noisy, ref, scene, parts in cases(data, set_name, setting, a.limit):
                per["images"].append({"image": name, **parts})
                bgr = np.ascontiguousarray(noisy[:, :, ::-1])
                for m, den in models.items():
                    level = den.estimate(bgr)
                    outs = {"blind": den.denoise(bgr, sigma=level)}
                    outs.update({str(s): den.denoise(bgr, sigma=float(s)) for s in SIGMA_GRID})
                    rows[m].append({"level": level, **{k: {"ref": psnr_parts(o[:, :, ::-1], ref),
                                                           "scene": psnr_parts(o[:, :, ::-1], scene)}
                                                       for k, o in outs.items()}})
                bar.update(1)
            for k in ("noise", "compression", "both", "both_vs_scene"):
                per["error"][k] = mean_parts([im[k] for im in per["images"]])
            for m, rs in rows.items():
                summary = {"level": float(np.mean([r["level"] for r in rs]))}
                for k in ("blind", *map(str, SIGMA_GRID)):
                    summary[k] = {ref: mean_parts([r[k][ref] for r in rs]) for ref in ("ref", "scene")}
                grid = [str(s) for s in SIGMA_GRID]
                summary["best_rgb"] = max(grid, key=lambda s: summary[s]["ref"]["rgb"])
                summary["best_y"] = max(grid, key=lambda s: summary[s]["ref"]["y"])
                summary["best_scene_rgb"] = max(grid, key=lambda s: summary[s]["scene"]["rgb"])
                per["models"][m] = summary
            doc["results"].setdefault(set_name, {})[setting] = per
    bar.close()
    return publish(a.out, doc, markdown(doc), also=lambda j: [picture(data, models, j.with_suffix(".png"))])


def picture(data, models: dict, path):
    """One daylight CBSD68 crop (the 48x48 window where the simulator's reference differs most in colour
    from the scene without the mosaic), 5x: the scene, the reference, the noisy image, and the first
    model blind and told sigma 20 (the level RGB PSNR prefers in daylight)."""
    import cv2

    from edgedenoise.evaluate import comparison

    best = None
    for name, noisy, ref, scene, _ in cases(data, "CBSD68", "daylight", None):
        e = cv2.cvtColor(ref, cv2.COLOR_RGB2YCrCb).astype(np.float32) - cv2.cvtColor(scene, cv2.COLOR_RGB2YCrCb)
        c = cv2.boxFilter((e[..., 1:] ** 2).sum(axis=2), -1, (48, 48), anchor=(0, 0), normalize=True)
        c = c[:c.shape[0] - 47, :c.shape[1] - 47]
        y, x = np.unravel_index(int(np.argmax(c)), c.shape)
        if best is None or c[y, x] > best[0]:
            best = (float(c[y, x]), name, noisy, ref, scene, y, x)
    _, name, noisy, ref, scene, y, x = best
    label, den = next(iter(models.items()))
    bgr = np.ascontiguousarray(noisy[:, :, ::-1])
    outs = [den.denoise(bgr, sigma=den.estimate(bgr))[:, :, ::-1], den.denoise(bgr, sigma=20.0)[:, :, ::-1]]

    def crop(img):
        return cv2.resize(img[y:y + 48, x:x + 48], None, fx=5, fy=5, interpolation=cv2.INTER_NEAREST)

    panels = [("scene", scene), ("reference", ref), ("noisy, JPEG", noisy), (f"{label} blind", outs[0]),
              (f"{label} sigma 20", outs[1])]
    cv2.imwrite(str(path), comparison([(t, crop(img)) for t, img in panels]))
    print(f"picture: {name} at ({x}, {y}), {path}")
    return path


def markdown(doc: dict) -> str:
    out = ["### The noisy image's error against the simulator's reference (PSNR dB: RGB, luma Y, chroma CrCb)", "",
           "| set, setting | sensor noise alone | compression alone | both (the models' input) "
           "| both, against the reference without the mosaic |",
           "|---|---|---|---|---|"]

    def trio(p: dict) -> str:
        return f"{p['rgb']:.2f} / {p['y']:.2f} / {p['c']:.2f}"

    for set_name, by in doc["results"].items():
        for setting, per in by.items():
            e = per["error"]
            out.append(f"| {set_name} {setting} | {trio(e['noise'])} | {trio(e['compression'])} | {trio(e['both'])} "
                       f"| {trio(e['both_vs_scene'])} |")
    out += ["", "### Blind against the best fixed sigma (PSNR dB: RGB / Y / CrCb)", "",
            "| set, setting | model | blind (mean level) | best fixed sigma by RGB | best fixed sigma by Y "
            "| against the reference without the mosaic: blind | the same: best fixed sigma by RGB |",
            "|---|---|---|---|---|---|---|"]
    for set_name, by in doc["results"].items():
        for setting, per in by.items():
            for m, s in per["models"].items():
                b, r, y, sc = s["best_rgb"], s["best_rgb"], s["best_y"], s["best_scene_rgb"]
                out.append(f"| {set_name} {setting} | {m} | {trio(s['blind']['ref'])} ({s['level']:.1f}) "
                           f"| {trio(s[r]['ref'])} (σ{b}) | {trio(s[y]['ref'])} (σ{y}) "
                           f"| {trio(s['blind']['scene'])} | {trio(s[sc]['scene'])} (σ{sc}) |")
    out += ["", f"Sigma grid {doc['sigma_grid']}; 'best' is the one sigma best on the set's mean (an oracle choice). "
            "Compression alone: the pipeline with shot and read noise set to 1e-12; sensor noise alone: without "
            "compression. The reference without the mosaic: the camera RGB before mosaicing, processed with the same "
            "white balance, colour matrix and tone curve."]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
