"""Synthetic video clips from still images: known clean frames under known motion, for temporal denoising.

    from edgedenoise.clips import make_clip, noisy_clip
    clean = make_clip(img, "pan", frames=16, seed=3)       # list of uint8 BGR frames
    noisy = noisy_clip(clean, sigma=25, seed=3)             # camera protocol noise, per frame

A clip is a window (the image less `margin` pixels on each side) moved over the image, frame by
frame, by an affine warp (bicubic, reflected borders). The motions (`KINDS`):

- `still`: a tripod: every frame the same pixels (an exact crop, no resampling);
- `pan`: a steady sub-pixel pan, 0.5-2.5 px per frame in a random direction;
- `drift`: a camera on a tripod that sways: 0.1-0.4 px per frame and a zoom of up to 0.1 % per
  frame, slower than a pan, the motion a temporal filter can mistake for noise;
- `zoom`: a zoom in or out of 0.4-1 % per frame about a point near the centre, with a slow drift;
- `shake`: a hand-held camera: each frame shifted up to 2 px and turned up to 0.4 degrees at random,
  about a still mean;
- `objects`: a still background with two or three patches of the image moving across it at 2-6 px
  per frame (feathered edges), the case where only part of the frame moves;
- `cut`: `still` on one image, then at the middle frame `still` on a second image (`second=`): a
  scene cut, after which a temporal filter must forget the first scene.

Everything is seeded: the same image, kind, frame count and seed give the same frames. NumPy and
OpenCV only (the runtime's dependencies); used by benchmarks/video.py and tools/make_clips.py.
"""
from __future__ import annotations

import cv2
import numpy as np

from .errors import DataError

KINDS = ("still", "pan", "zoom", "shake", "objects", "cut", "drift")
STILL = ("still", "cut")  # the kinds whose camera does not move (a cut changes the scene, not the camera)


def _warp(img: np.ndarray, a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The frame of `size` (w, h) whose pixel (x, y) shows the image at a @ (x, y, 1)."""
    return cv2.warpAffine(img, a.astype(np.float64), size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT101)


def _affine(scale: float, angle: float, cx: float, cy: float, tx: float, ty: float) -> np.ndarray:
    """Frame -> image: rotate by `angle` (radians) and scale about the frame point (cx, cy), which lands
    on the image point (cx + tx, cy + ty)."""
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, cx + tx - (c * cx - s * cy)],
                     [s, c, cy + ty - (s * cx + c * cy)]])


def make_clip(img: np.ndarray, kind: str, frames: int = 16, seed: int = 0, margin: int = 48,
              second: np.ndarray | None = None) -> list[np.ndarray]:
    """`frames` clean frames of `kind` (see the module docstring) from `img` (uint8, HxWx3 or HxW).

    Frames are (H - 2 margin) x (W - 2 margin); `second` (same size as `img`) is the scene after the
    cut of a `cut` clip."""
    if kind not in KINDS:
        raise DataError(f"unknown clip kind {kind!r}: choose from {', '.join(KINDS)}")
    if frames < 1:
        raise DataError(f"a clip needs at least one frame, not {frames}")
    h, w = img.shape[:2]
    fw, fh = w - 2 * margin, h - 2 * margin
    if fw < 32 or fh < 32:
        raise DataError(f"image {w}x{h} is too small for a clip with margin {margin}")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    size = (fw, fh)
    if kind in STILL:
        if kind == "cut":
            if second is None or second.shape[:2] != img.shape[:2]:
                raise DataError("a cut clip needs a second image of the same size as the first")
            half = frames // 2
            return ([img[margin:margin + fh, margin:margin + fw].copy() for _ in range(half)]
                    + [second[margin:margin + fh, margin:margin + fw].copy() for _ in range(frames - half)])
        crop = img[margin:margin + fh, margin:margin + fw]
        return [crop.copy() for _ in range(frames)]
    cx, cy = fw / 2.0, fh / 2.0
    out = []
    if kind == "pan":
        speed = rng.uniform(0.5, 2.5)
        theta = rng.uniform(0, 2 * np.pi)
        vx, vy = speed * np.cos(theta), speed * np.sin(theta)
        t0 = -(frames - 1) / 2.0  # centred on the middle frame: the window stays near the image's centre
        for t in range(frames):
            out.append(_warp(img, _affine(1.0, 0.0, cx, cy, margin + vx * (t + t0), margin + vy * (t + t0)), size))
    elif kind == "drift":
        speed, theta = rng.uniform(0.1, 0.4), rng.uniform(0, 2 * np.pi)
        rate = rng.uniform(-0.001, 0.001)
        for t in range(frames):
            out.append(_warp(img, _affine((1.0 + rate) ** (-t), 0.0, cx, cy, margin + speed * np.cos(theta) * t,
                                          margin + speed * np.sin(theta) * t), size))
    elif kind == "zoom":
        rate = rng.uniform(0.004, 0.01) * rng.choice([-1.0, 1.0])
        px, py = cx + rng.uniform(-0.15, 0.15) * fw, cy + rng.uniform(-0.15, 0.15) * fh
        drift = rng.uniform(-0.3, 0.3, 2)
        for t in range(frames):
            s = (1.0 + rate) ** (-t)  # frame -> image: zooming in shows a smaller part of the image
            out.append(_warp(img, _affine(s, 0.0, px, py, margin + drift[0] * t, margin + drift[1] * t), size))
    elif kind == "shake":
        for _ in range(frames):
            dx, dy = rng.uniform(-2.0, 2.0, 2)
            ang = np.deg2rad(rng.uniform(-0.4, 0.4))
            out.append(_warp(img, _affine(1.0, ang, cx, cy, margin + dx, margin + dy), size))
    else:  # objects
        background = img[margin:margin + fh, margin:margin + fw].astype(np.float32)
        movers = []
        for _ in range(int(rng.integers(2, 4))):
            ow, oh = int(fw * rng.uniform(0.15, 0.3)), int(fh * rng.uniform(0.15, 0.3))
            sx, sy = int(rng.integers(0, w - ow)), int(rng.integers(0, h - oh))
            patch = img[sy:sy + oh, sx:sx + ow].astype(np.float32)
            mask = np.zeros((oh, ow), np.float32)
            cv2.ellipse(mask, (ow // 2, oh // 2), (ow // 2 - 2, oh // 2 - 2), 0, 0, 360, 1.0, -1)
            mask = cv2.GaussianBlur(mask, (0, 0), 1.5)
            speed, theta = rng.uniform(2.0, 6.0), rng.uniform(0, 2 * np.pi)
            x0, y0 = rng.uniform(0, fw - ow), rng.uniform(0, fh - oh)
            movers.append((patch, mask, x0, y0, speed * np.cos(theta), speed * np.sin(theta)))
        for t in range(frames):
            frame = background.copy()
            for patch, mask, x0, y0, vx, vy in movers:
                # the patch's top-left corner at (x0 + vx t, y0 + vy t), bouncing off the frame's edges
                oh, ow = mask.shape
                x = _bounce(x0 + vx * t, fw - ow)
                y = _bounce(y0 + vy * t, fh - oh)
                a = np.array([[1.0, 0.0, -x], [0.0, 1.0, -y]])  # frame -> patch
                pw = cv2.warpAffine(patch, a, size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT)
                mw = cv2.warpAffine(mask, a, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT)
                mw = mw[:, :, None] if frame.ndim == 3 else mw
                frame = frame * (1.0 - mw) + pw * mw
            out.append(np.clip(np.round(frame), 0, 255).astype(np.uint8))
    return out


def _bounce(p: float, hi: float) -> float:
    """p folded into [0, hi] as a ball bouncing between two walls."""
    if hi <= 0:
        return 0.0
    p = abs(p) % (2 * hi)
    return 2 * hi - p if p > hi else p


def noisy_clip(clean: list[np.ndarray], sigma: float, seed: int = 0) -> list[np.ndarray]:
    """The camera protocol's noise (BENCHMARK_PROTOCOL.md: Gaussian, rounded and clipped to uint8),
    drawn independently for every frame from default_rng([seed, t])."""
    out = []
    for t, c in enumerate(clean):
        n = np.random.default_rng([seed, t]).standard_normal(c.shape, dtype=np.float32) * np.float32(sigma)
        out.append(np.clip(np.round(c.astype(np.float32) + n), 0, 255).astype(np.uint8))
    return out
