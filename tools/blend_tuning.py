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

--hard: 8-frame clips of the same 12 images under motions beyond the camera-motion blocks' reach
(HARD: a camera turning 4-8 degrees a frame, zooming out 6 % a frame, jolting up to 12 px and
2 degrees about a still mean), sigma 25. Printed per motion: how far the motion measured on the
noisy frames (as RecurrentState measures it) lands from the true one at the frame's corners
(median, and the share over 1 px), and the gain over `tiny` frame by frame (frames 2..) of the
blend and of `tiny-video`.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = ("still", "pan", "zoom", "shake", "objects", "drift")
SIGMAS = (15, 25, 50)


def tuning_clips(data: Path) -> list[dict]:
    from edgedenoise.clips import make_clip, noisy_clip
    from edgedenoise.data import read_image, scan_images, split
    from edgedenoise.denoiser import Denoiser

    den = Denoiser.load("tiny", backend="onnxruntime")
    train = split(scan_images(data, channels=3), 8)[0]  # train's own split: its training part only
    clips = []
    for n, info in enumerate(train[5::35][:12]):
        img = read_image(info.path, 3)[:, :, ::-1].copy()  # BGR, as frames come
        for kind in KINDS:
            clean = make_clip(img, kind, 12, seed=n)
            for s in SIGMAS:
                noisy = noisy_clip(clean, s, seed=100 * n + s)
                clips.append({"kind": kind, "sigma": s, "clean": clean, "outs": [den.denoise(f, s) for f in noisy]})
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
    from edgedenoise.data import read_image, scan_images, split
    from edgedenoise.evaluate import psnr_u8
    from edgedenoise.temporal import IDENTITY, CameraMotion, _calm_gray, full_resolution

    tiny = Denoiser.load("tiny", backend="onnxruntime")
    video = Denoiser.load("tiny-video", backend="onnxruntime")
    train = split(scan_images(data, channels=3), 8)[0]
    print("motions beyond the blocks, 12 clips each (8 frames, sigma 25): motion error at the corners "
          "(median px, share over 1 px); gain over tiny frame by frame, frames 2.., dB")
    for kind in HARD:
        errors, blend_gain, model_gain = [], [], []
        for n, info in enumerate(train[5::35][:12]):
            img = read_image(info.path, 3)[:, :, ::-1].copy()
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


def blend_gains(clips: list[dict]) -> tuple[dict, float]:
    """(mean gain per motion over the clips' frames 2.., dB; the camera motion's seconds a frame)."""
    from edgedenoise import temporal
    from edgedenoise.evaluate import psnr_u8

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
        gains: dict[str, list[float]] = {k: [] for k in KINDS}
        for c in clips:
            blend = temporal.RecursiveBlend()
            out = [blend(o, c["sigma"]) for o in c["outs"]]
            gains[c["kind"]].append(float(np.mean([psnr_u8(b, y) - psnr_u8(o, y)
                                                   for b, o, y in zip(out[1:], c["outs"][1:], c["clean"][1:])])))
            frames += len(out)
    finally:
        temporal.CameraMotion.motion = measure
    return gains, spent / frames


def main() -> int:
    from edgedenoise.data import default_data_root
    from edgedenoise.memory import keep_freed_memory

    keep_freed_memory()  # as the Denoiser does: large arrays reuse freed memory (timings without page faults)
    if "--hard" in sys.argv[1:]:
        hard_motions(default_data_root() / "train" / "CBSD432")
        return 0
    clips = tuning_clips(default_data_root() / "train" / "CBSD432")
    gains, motion_s = blend_gains(clips)
    print(f"{len(clips)} clips of {clips[0]['clean'][0].shape[1]}x{clips[0]['clean'][0].shape[0]}; blend gain "
          "over tiny frame by frame, frames 2.., dB (mean per motion):")
    print("  " + "  ".join(f"{k} {np.mean(v):+.3f}" for k, v in gains.items()))
    print(f"  least of any clip {min(min(v) for v in gains.values()):+.3f}; camera motion "
          f"{motion_s * 1e3:.3f} ms a frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
