#!/usr/bin/env python3
"""The temporal blend's gains on tuning clips, the figures its constants and the camera motion's
changes were chosen on (edgedenoise/temporal.py): never on a test set.

    python tools/blend_tuning.py            # ~40 s on 2 cores

Clips: 12 CBSD432 training images (every 35th of those `edgedenoise train` trains on, so none of
its validation images), each made into 12-frame clips of six motions (edgedenoise.clips: still,
pan, zoom, shake, moving objects, drift) with camera-protocol noise at sigma 15, 25 and 50 (216
clips), denoised frame by frame by the shipped `tiny` (ONNX Runtime), then blended. Printed: the
blend's mean gain over the framewise output per motion (frames 2.., PSNR dB), the least gain of any
clip, and the camera motion's time per frame (CameraMotion.motion, these 385x225 frames).

    python tools/blend_tuning.py --hard     # motions the blocks cannot follow (~30 s)
    python tools/blend_tuning.py --camera   # the same images through the camera simulation (~2 min)
    python tools/blend_tuning.py --blend t_high=0.5 --blend t_high_moved=0.5   # other settings

Besides the PSNR gains each run prints the tPSNR gain (flicker, edgedenoise.evaluate.tpsnr) and,
on cut clips between two of the images (the same size), how many cuts dropped the state and the
gain of the three frames after each cut. `--blend KEY=VALUE` (repeatable) passes settings to
RecursiveBlend; `--model` denoises with another shipped model (default `tiny`).

--camera: the 12 images as still, pan, shake and moving-object clips through the camera simulation
(edgedenoise.camera, the named settings in turn), the level told as `run` finds it (the model's
blind estimate, here the median over the clip), against the simulation's clean reference.

--hard: 8-frame clips of the same 12 images under motions beyond the camera-motion blocks' reach
(HARD: a camera turning 4-8 degrees a frame, zooming out 6 % a frame, jolting up to 12 px and
2 degrees about a still mean), sigma 25. Printed per motion: how far the motion measured on the
noisy frames (as RecurrentState measures it) lands from the true one at the frame's corners
(median, and the share over 1 px), and the gain over `tiny` frame by frame (frames 2..) of the
blend and of `tiny-video`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = ("still", "pan", "zoom", "shake", "objects", "drift")
SIGMAS = (15, 25, 50)


def tuning_images(data: Path) -> list[np.ndarray]:
    """The 12 tuning images (BGR, as frames come): every 35th of the part of CBSD432 that `train`
    trains on (train's own split), so none of its validation images."""
    from edgedenoise.data import read_image, scan_images, split

    train = split(scan_images(data, channels=3), 8)[0]
    return [read_image(info.path, 3)[:, :, ::-1].copy() for info in train[5::35][:12]]


def tuning_clips(data: Path, model: str = "tiny") -> list[dict]:
    """The Gaussian clips (every motion, every sigma) and the cut clips, denoised frame by frame."""
    from edgedenoise.clips import make_clip, noisy_clip
    from edgedenoise.denoiser import Denoiser

    den = Denoiser.load(model, backend="onnxruntime")
    imgs = tuning_images(data)
    clips = []
    for n, img in enumerate(imgs):
        for kind in KINDS:
            clean = make_clip(img, kind, 12, seed=n)
            for s in SIGMAS:
                noisy = noisy_clip(clean, s, seed=100 * n + s)
                clips.append({"kind": kind, "sigma": s, "clean": clean, "outs": [den.denoise(f, s) for f in noisy]})
        others = [o for o in imgs if o.shape == img.shape and o is not img]
        if others:  # a cut at frame 6 to another image of the same size
            clean = make_clip(img, "cut", 12, seed=n, second=others[n % len(others)])
            for s in SIGMAS:
                noisy = noisy_clip(clean, s, seed=7 * n + s)
                clips.append({"kind": "cut", "sigma": s, "clean": clean, "outs": [den.denoise(f, s) for f in noisy]})
    return clips


CAMERA_KINDS = ("still", "pan", "shake", "objects")


def camera_clips(data: Path, model: str = "tiny") -> list[dict]:
    """The tuning images through the camera simulation (--camera), the level estimated as `run` does."""
    from edgedenoise.camera import SETTINGS, simulate
    from edgedenoise.clips import make_clip
    from edgedenoise.denoiser import Denoiser

    den = Denoiser.load(model, backend="onnxruntime")
    clips = []
    for n, img in enumerate(tuning_images(data)):
        rgb = img[:, :, ::-1]
        for kind in CAMERA_KINDS:
            setting = sorted(SETTINGS)[n % len(SETTINGS)]
            rng = np.random.default_rng(n)
            noisy, clean = [], []
            for f in make_clip(rgb, kind, 12, seed=n):
                a, ref, _ = simulate(f, rng, setting)
                noisy.append(a[:, :, ::-1].copy())
                clean.append(ref[:, :, ::-1].copy())
            level = float(np.median([den.estimate(f) for f in noisy]))  # one level a clip, as run's smoothing settles
            clips.append({"kind": kind, "sigma": level, "setting": setting, "clean": clean,
                          "outs": [den.denoise(f, level) for f in noisy]})
    return clips


HARD = ("turn", "zoom-out", "jolt")


def hard_clip(img: np.ndarray, kind: str, frames: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(clean frames, each frame's 3x3 frame -> image transform) of `kind` (HARD) from `img`, margin 48."""
    from edgedenoise.clips import _affine, _warp

    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    m = 48
    size = (w - 2 * m, h - 2 * m)
    angle, scale, tx, ty = 0.0, 1.0, 0.0, 0.0
    out, mats = [], []
    turn = 1.0 if seed % 2 else -1.0
    for _ in range(frames):
        a = _affine(scale, angle, size[0] / 2, size[1] / 2, m + tx, m + ty)
        out.append(_warp(img, a, size))
        mats.append(np.vstack([a, [0.0, 0.0, 1.0]]))
        if kind == "turn":
            angle += turn * np.deg2rad(rng.uniform(4.0, 8.0))
        elif kind == "zoom-out":
            scale /= 0.94
        else:
            tx, ty, angle = rng.uniform(-12, 12), rng.uniform(-12, 12), np.deg2rad(rng.uniform(-2, 2))
    return out, mats


def hard_motions(data: Path) -> None:
    from edgedenoise import Denoiser, VideoDenoiser
    from edgedenoise.clips import noisy_clip
    from edgedenoise.evaluate import psnr_u8
    from edgedenoise.temporal import IDENTITY, CameraMotion, _calm_gray, full_resolution

    tiny = Denoiser.load("tiny", backend="onnxruntime")
    video = Denoiser.load("tiny-video", backend="onnxruntime")
    imgs = tuning_images(data)  # read once for the three motions
    print("motions beyond the blocks, 12 clips each (8 frames, sigma 25): motion error at the corners "
          "(median px, share over 1 px); gain over tiny frame by frame, frames 2.., dB")
    for kind in HARD:
        errors, blend_gain, model_gain = [], [], []
        for n, img in enumerate(imgs):
            clean, mats = hard_clip(img, kind, 8, seed=n)
            noisy = noisy_clip(clean, 25, seed=n)
            h, w = clean[0].shape[:2]
            corners = np.array([[0, w - 1, 0, w - 1], [0, 0, h - 1, h - 1], [1, 1, 1, 1]], float)
            cam, grays = CameraMotion(), [_calm_gray(f) for f in noisy]
            for i in range(1, len(noisy)):
                m = cam.motion(grays[i - 1], grays[i])
                m = IDENTITY if m is None else full_resolution(m)
                truth = (np.linalg.inv(mats[i]) @ mats[i - 1])[:2]  # frame i-1's pixel -> frame i's
                errors.append(float(np.abs(m @ corners - truth @ corners).max()))
            blend, rec = VideoDenoiser(tiny, "blend"), VideoDenoiser(video, "model")
            for i, (f, c) in enumerate(zip(noisy, clean)):
                own, b, r = tiny.denoise(f, 25), blend.denoise(f, 25), rec.denoise(f, 25)
                if i:
                    blend_gain.append(psnr_u8(b, c) - psnr_u8(own, c))
                    model_gain.append(psnr_u8(r, c) - psnr_u8(own, c))
        e = np.array(errors)
        print(f"  {kind}: error {np.median(e):.2f} px, {np.mean(e > 1) * 100:.0f} % over 1 px; blend "
              f"{np.mean(blend_gain):+.2f}, tiny-video {np.mean(model_gain):+.2f}")


def blend_gains(clips: list[dict], settings: dict | None = None) -> tuple[dict, float, dict, dict]:
    """(mean gain per motion over the clips' frames 2.., dB; the camera motion's seconds a frame;
    the tPSNR gain per motion; for the cut clips: cuts found, clips, the gains of the three frames
    after each cut). `settings`: RecursiveBlend's keyword arguments."""
    from edgedenoise import temporal
    from edgedenoise.evaluate import psnr_u8, tpsnr

    spent, frames = 0.0, 0
    measure = temporal.CameraMotion.motion

    def timed(self, *args):
        nonlocal spent
        t = time.perf_counter()
        try:
            return measure(self, *args)
        finally:
            spent += time.perf_counter() - t

    temporal.CameraMotion.motion = timed  # timed in this process, put back after
    try:
        gains: dict[str, list[float]] = {}
        flicker: dict[str, list[float]] = {}
        cuts = {"found": 0, "clips": 0, "after": []}
        for c in clips:
            blend = temporal.RecursiveBlend(**(settings or {}))
            out = [blend(o, c["sigma"]) for o in c["outs"]]
            frames += len(out)
            if c["kind"] == "cut":
                cuts["clips"] += 1
                cuts["found"] += blend.resets
                cuts["after"] += [psnr_u8(b, y) - psnr_u8(o, y)
                                  for b, o, y in zip(out[6:9], c["outs"][6:9], c["clean"][6:9])]
                continue
            gains.setdefault(c["kind"], []).append(float(np.mean([
                psnr_u8(b, y) - psnr_u8(o, y) for b, o, y in zip(out[1:], c["outs"][1:], c["clean"][1:])])))
            flicker.setdefault(c["kind"], []).append(tpsnr(out, c["clean"]) - tpsnr(c["outs"], c["clean"]))
    finally:
        temporal.CameraMotion.motion = measure
    return gains, spent / frames, flicker, cuts


def _setting(text: str) -> tuple[str, float]:
    key, _, value = text.partition("=")
    if not key or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. t_high=0.8")
    return key, float(value)


def main() -> int:
    from edgedenoise.data import default_data_root
    from edgedenoise.memory import keep_freed_memory

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hard", action="store_true", help="motions the camera-motion blocks cannot follow")
    ap.add_argument("--camera", action="store_true", help="the clips through the camera simulation")
    ap.add_argument("--model", default="tiny", help="the shipped model whose outputs are blended (default tiny)")
    ap.add_argument("--blend", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                    help="a RecursiveBlend setting (repeatable), e.g. t_high=0.5")
    a = ap.parse_args()
    keep_freed_memory()  # as the Denoiser does: large arrays reuse freed memory (timings without page faults)
    data = default_data_root() / "train" / "CBSD432"
    if a.hard:
        hard_motions(data)
        return 0
    settings = {k: (int(v) if k in ("max_age", "window") else v) for k, v in a.blend}
    clips = camera_clips(data, a.model) if a.camera else tuning_clips(data, a.model)
    gains, motion_s, flicker, cuts = blend_gains(clips, settings)
    n = sum(len(v) for v in gains.values())
    what = "camera-simulated (levels estimated)" if a.camera else "Gaussian"
    print(f"{n} {what} clips of {clips[0]['clean'][0].shape[1]}x{clips[0]['clean'][0].shape[0]}, blend "
          f"{settings or 'as shipped'}; gain over {a.model} frame by frame, frames 2.., dB (mean per motion):")
    print("  " + "  ".join(f"{k} {np.mean(v):+.3f}" for k, v in gains.items()))
    print(f"  least of any clip {min(min(v) for v in gains.values()):+.3f}; camera motion "
          f"{motion_s * 1e3:.3f} ms a frame")
    print("  tPSNR gain: " + "  ".join(f"{k} {np.mean(v):+.2f}" for k, v in flicker.items()))
    if cuts["clips"]:
        after = np.array(cuts["after"])
        print(f"  cuts: {cuts['found']} of {cuts['clips']} dropped the state; the three frames after: "
              f"least {after.min():+.2f}, mean {after.mean():+.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
