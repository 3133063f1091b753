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
