"""Training clips for recurrent models (`edgedenoise train --video`): short videos cut from still images.

A clip is `frames` clean patches of `patch` x `patch` pixels that show one scene under one motion,
drawn per clip:

- still (30 %): a tripod, every frame the same pixels (an exact crop, no resampling);
- camera (50 %): a moving camera: a pan of 0.05-2 px per frame (60 %) or a fast one of 2-8 px
  (where a recurrent model must fall back to the frame alone), a slow zoom and turn, and in 40 %
  of clips a hand-held shake of up to 2.5 px per frame on top; bicubic warps with reflected borders;
- objects (20 %): a still background with one or two feathered patches of the image moving
  across it at 1-6 px per frame, the case where only part of the frame moves.

On top of any motion: a scene cut (10 % of clips: from a random frame on, a still crop elsewhere
in the image), a brightness ramp (15 %: the exposure drifts up to 6 % per frame), a repeated frame
(10 %: one frame shows the last one again, as when a camera drops one) and one of the 8 dihedral
transforms for the whole clip.

Like data.PatchSampler, everything is a pure function of (seed, step, index): clip i of step s
reads the image picked by `default_rng([seed, s, i // PATCHES_PER_IMAGE, 0])` and draws its window
and motion from `default_rng([seed, s, i, 1])`. NumPy and OpenCV only.
"""
from __future__ import annotations

import cv2
import numpy as np

from .clips import _affine, _bounce
from .data import ImageInfo, augment, batch_images


class ClipSampler:
    """Random clean clips, float32 in [0, 1], shape (clips, frames, C, patch, patch)."""

    def __init__(self, images: list[ImageInfo], patch: int, frames: int, channels: int, seed: int):
        if frames < 1:
            raise ValueError(f"a clip needs at least one frame, not {frames}")
        self.images, self.patch, self.frames, self.channels, self.seed = images, patch, frames, channels, seed

    def clips(self, step: int, start: int, stop: int) -> np.ndarray:
        """Clips start..stop-1 of the global batch of `step`."""
        p, t = self.patch, self.frames
        out = np.empty((stop - start, t, self.channels, p, p), np.float32)
        for j, img, rng in batch_images(self.images, self.channels, self.seed, step, start, stop):
            out[j] = np.moveaxis(make_training_clip(img, p, t, rng), -1, 1).astype(np.float32) / 255.0
        return out


def make_training_clip(img: np.ndarray, patch: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """One clip (frames, patch, patch, C) uint8 from `img` (HxWxC uint8, both sides >= patch), drawn
    from `rng` as the module docstring says."""
    h, w, c = img.shape
    p = patch

    def corner() -> tuple[int, int]:
        return int(rng.integers(w - p + 1)), int(rng.integers(h - p + 1))

    x0, y0 = corner()
    u = rng.random()
    if u < 0.3:
        clip = [img[y0:y0 + p, x0:x0 + p] for _ in range(frames)]
    elif u < 0.8:
        clip = _camera_motion(img, p, frames, x0, y0, rng)
    else:
        clip = _moving_objects(img, p, frames, x0, y0, rng)
    clip = np.stack([f.reshape(p, p, c) for f in clip]).astype(np.float32)
    if frames > 1 and rng.random() < 0.1:  # a scene cut: a still crop elsewhere from frame tc on
        tc = int(rng.integers(1, frames))
        x1, y1 = corner()
        clip[tc:] = img[y1:y1 + p, x1:x1 + p]
    if rng.random() < 0.15:  # the exposure drifts
        rate = rng.uniform(-0.06, 0.06)
        clip *= np.exp(rate * np.arange(frames, dtype=np.float32))[:, None, None, None]
    if frames > 1 and rng.random() < 0.1:  # a repeated frame
        t = int(rng.integers(1, frames))
        clip[t] = clip[t - 1]
    k = int(rng.integers(8))
    clip = np.stack([augment(f, k) for f in clip])
    return np.clip(np.round(clip), 0, 255).astype(np.uint8)


def _warp(img: np.ndarray, a: np.ndarray, p: int) -> np.ndarray:
    return cv2.warpAffine(img, a, (p, p), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT101)


def _camera_motion(img: np.ndarray, p: int, frames: int, x0: int, y0: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    speed = float(np.exp(rng.uniform(np.log(0.05), np.log(2.0)))) if rng.random() < 0.6 else rng.uniform(2.0, 8.0)
    theta = rng.uniform(0, 2 * np.pi)
    vx, vy = speed * np.cos(theta), speed * np.sin(theta)
    zoom = rng.normal(0.0, 0.004)
    turn = np.deg2rad(rng.normal(0.0, 0.15))
    shake = rng.uniform(0.5, 2.5) if rng.random() < 0.4 else 0.0
    mid = (frames - 1) / 2.0  # the window's path is centred on the chosen corner
    out = []
    for t in range(frames):
        jx, jy = rng.uniform(-shake, shake, 2) if shake else (0.0, 0.0)
        a = _affine((1.0 + zoom) ** -(t - mid), turn * (t - mid), p / 2.0, p / 2.0,
                    x0 + vx * (t - mid) + jx, y0 + vy * (t - mid) + jy)
        out.append(_warp(img, a, p))
    return out


def _moving_objects(img: np.ndarray, p: int, frames: int, x0: int, y0: int,
                    rng: np.random.Generator) -> list[np.ndarray]:
    h, w = img.shape[:2]
    background = img[y0:y0 + p, x0:x0 + p].astype(np.float32).reshape(p, p, -1)
    movers = []
    for _ in range(int(rng.integers(1, 3))):
        ow, oh = (max(8, int(p * rng.uniform(0.2, 0.45))) for _ in range(2))
        sx, sy = int(rng.integers(w - ow + 1)), int(rng.integers(h - oh + 1))
        patch = img[sy:sy + oh, sx:sx + ow].astype(np.float32).reshape(oh, ow, -1)
        mask = np.zeros((oh, ow), np.float32)
        cv2.ellipse(mask, (ow // 2, oh // 2), (max(1, ow // 2 - 1), max(1, oh // 2 - 1)), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), 1.0)[:, :, None]
        speed, theta = rng.uniform(1.0, 6.0), rng.uniform(0, 2 * np.pi)
        movers.append((patch, mask, rng.uniform(0, p - ow), rng.uniform(0, p - oh),
                       speed * np.cos(theta), speed * np.sin(theta)))
    out = []
    for t in range(frames):
        frame = background.copy()
        for patch, mask, px, py, vx, vy in movers:
            oh, ow = mask.shape[:2]
            x, y = _bounce(px + vx * t, p - ow), _bounce(py + vy * t, p - oh)
            a = np.array([[1.0, 0.0, -x], [0.0, 1.0, -y]])  # frame -> patch
            pw = cv2.warpAffine(patch, a, (p, p), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT).reshape(p, p, -1)
            mw = cv2.warpAffine(mask, a, (p, p), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT).reshape(p, p, 1)
            frame = frame * (1.0 - mw) + pw * mw
        out.append(frame)
    return out
