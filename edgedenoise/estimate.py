"""Blind noise-level estimation from one frame (NumPy only, runtime-safe).

Method: the eigenvalues of the covariance of small image patches (Chen, Zhu and Heng,
"An Efficient Statistical Method for Image Noise Level Estimation", ICCV 2015). Patches
of a noisy image span a low-dimensional signal subspace plus white noise, whose
variance every remaining eigenvalue shares. Sorting eigenvalues in descending order,
the noise variance is the mean of the smallest ones, taken from the first index at
which that mean no longer exceeds their median (signal eigenvalues skew the mean up).

Patches touching 0 or 255 are left out: clipping shrinks the noise there, and the models
expect the noise level before clipping.
"""
from __future__ import annotations

import numpy as np

PATCH = 7
MAX_PATCHES = 20_000


def _channel_variance(ch: np.ndarray, rng: np.random.Generator, clip_lo: float, clip_hi: float) -> float | None:
    h, w = ch.shape
    if h < PATCH or w < PATCH:
        return None
    win = np.lib.stride_tricks.sliding_window_view(ch, (PATCH, PATCH))[::2, ::2]
    x = win.reshape(-1, PATCH * PATCH)
    need = 4 * PATCH * PATCH
    ok = (x.min(axis=1) > clip_lo) & (x.max(axis=1) < clip_hi)
    if ok.sum() < need and np.isfinite(clip_hi):
        # strong noise clips almost every patch somewhere: fall back to mid-tone patches
        m = x.mean(axis=1)
        ok = (m > 0.3 * clip_hi) & (m < 0.7 * clip_hi)
    x = x[ok] if ok.sum() >= need else x
    if len(x) < need:
        return None
    if len(x) > MAX_PATCHES:
        x = x[rng.choice(len(x), MAX_PATCHES, replace=False)]
    x = x.astype(np.float64)
    x -= x.mean(axis=0)
    lam = np.linalg.eigvalsh(x.T @ x / len(x))[::-1]  # descending
    lam = np.maximum(lam, 0.0)
    for i in range(len(lam)):
        tail = lam[i:]
        if tail.mean() <= np.median(tail):
            return float(tail.mean())
    return float(lam[-1])


def estimate_sigma(frame: np.ndarray) -> float:
    """Noise std on the 0-255 scale of a uint8/uint16/float frame (HxW or HxWxC)."""
    if frame.dtype == np.uint8:
        f, lo, hi = frame.astype(np.float32), 0.5, 254.5
    elif frame.dtype == np.uint16:
        f, lo, hi = frame.astype(np.float32) / 257.0, 0.5, 254.5
    else:
        f, lo, hi = frame.astype(np.float32) * 255.0, -np.inf, np.inf
    if f.ndim == 2:
        f = f[:, :, None]
    rng = np.random.default_rng(0)
    vs = [v for c in range(min(f.shape[2], 3)) if (v := _channel_variance(f[:, :, c], rng, lo, hi)) is not None]
    if not vs:
        return 0.0
    return float(np.sqrt(np.mean(vs)))
