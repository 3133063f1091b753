"""Blind noise-level estimation from one frame (NumPy only, runtime-safe).

Method: the eigenvalues of the covariance of small image patches (Chen, Zhu and Heng,
"An Efficient Statistical Method for Image Noise Level Estimation", ICCV 2015). Patches
of a noisy image span a low-dimensional signal subspace plus white noise, whose
variance every remaining eigenvalue shares. Sorting eigenvalues in descending order,
the noise variance is the mean of the smallest ones, taken from the first index at
which that mean no longer exceeds their median (signal eigenvalues skew the mean up).

Patches touching 0 or 255 are left out: clipping shrinks the noise there, and the models
expect the noise level before clipping.

Camera noise is not white: demosaicing spreads it over neighbouring pixels and JPEG or a video
codec removes its finest scales, so the estimate above (which sees the finest scale) reads a
quarter of its RMS. `estimate_sigma` therefore also estimates at half resolution (2x2 block means,
whose noise std is half the RMS for white noise, more for correlated noise) and returns the RMS
level of the noise, which is what the models are told in training for any noise (noise.CameraSim):
- white noise: the two scales agree (ratio ~1 at sigma >= 15) and the fine-scale estimate is kept;
- correlated noise: the half-resolution estimate reads 2-10x the fine one (median 4.9 over random
  cameras of the simulation) and is kept;
- in between (ratio 2-4) the two are blended. Texture raises the half-resolution estimate on
  clean-ish images too (Gaussian sigma 2-5: ratio 1.2-4.7), so a weak white noise on a textured
  image can read up to twice its sigma; measured in the benchmark protocol's camera-sim rows.
"""
from __future__ import annotations

import threading

import numpy as np

PATCH = 7
MAX_PATCHES = 20_000


def _channel_variance(ch: np.ndarray, rng: np.random.Generator, clip_lo: float, clip_hi: float,
                      fallback: bool = True) -> float | None:
    h, w = ch.shape
    if h < PATCH or w < PATCH:
        return None
    win = np.lib.stride_tricks.sliding_window_view(ch, (PATCH, PATCH))[::2, ::2]
    x = win.reshape(-1, PATCH * PATCH)
    need = 4 * PATCH * PATCH
    ok = (x.min(axis=1) > clip_lo) & (x.max(axis=1) < clip_hi)
    if ok.sum() < need and not fallback:
        return None
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


# half-resolution / full-resolution estimate ratios between which the result blends from the
# full-resolution (white noise) estimate to the half-resolution (correlated noise) one; set from
# CBSD432 training images (Gaussian sigma 2-25 and random simulated cameras), not from test sets
RATIO_WHITE, RATIO_CORRELATED = 2.5, 4.5
# full-resolution estimates over which the half-resolution one is phased out: camera noise reads
# a quarter of its RMS at full resolution (very low light: about 6), so a fine estimate this high
# is white noise, whose half-resolution estimate strong clipping and texture only spoil
FINE_WHITE = (10.0, 16.0)


def _planes(frame: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Float HxWxC on the 0-255 scale and the clip bounds that mark saturated pixels."""
    if frame.dtype == np.uint8:
        f, lo, hi = frame.astype(np.float32), 0.5, 254.5
    elif frame.dtype == np.uint16:
        f, lo, hi = frame.astype(np.float32) / 257.0, 0.5, 254.5
    else:
        f, lo, hi = frame.astype(np.float32) * 255.0, -np.inf, np.inf
    return (f[:, :, None] if f.ndim == 2 else f), lo, hi


def _white_sigma(f: np.ndarray, lo: float, hi: float, fallback: bool = True) -> float:
    rng = np.random.default_rng(0)
    vs = [v for c in range(min(f.shape[2], 3))
          if (v := _channel_variance(f[:, :, c], rng, lo, hi, fallback)) is not None]
    return float(np.sqrt(np.mean(vs))) if vs else 0.0


def _half(f: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """2x2 block means; a block with a clipped pixel is marked clipped (below `lo`), so the
    patches that hold it are left out as at full resolution."""
    h, w = (f.shape[0] // 2) * 2, (f.shape[1] // 2) * 2
    b = f[:h, :w].reshape(h // 2, 2, w // 2, 2, f.shape[2])
    m = b.mean(axis=(1, 3))
    if np.isfinite(lo):
        clipped = ((b <= lo) | (b >= hi)).any(axis=(1, 3))
        m[clipped] = lo - 1.0
    return m


# One BLAS thread for the estimate. NumPy's BLAS spreads the 49x49 covariance product over every
# core, and its threads spin waiting for one another: with another process holding a core, a
# 720p `run` stalled up to 1.5 s per estimate (5.7 -> 1.8 fps). On one thread the product takes
# about 1 ms, and the estimate's cost no longer depends on what else runs. The limit is
# process-wide while it holds, so estimates take turns (the lock) and restore what was set.
_BLAS_LOCK = threading.Lock()
_BLAS = None


def _one_blas_thread():
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController().select(user_api="blas")
    return _BLAS.limit(limits=1)


def estimate_white_sigma(frame: np.ndarray) -> float:
    """The finest-scale estimate alone: the std of white noise (0-255 scale)."""
    with _BLAS_LOCK, _one_blas_thread():
        return _white_sigma(*_planes(frame))


def estimate_sigma(frame: np.ndarray) -> float:
    """RMS noise level on the 0-255 scale of a uint8/uint16/float frame (HxW or HxWxC): the
    std of white noise, or of correlated (camera) noise, as the module's docstring says.
    Single-threaded (one BLAS thread, whatever NumPy's default)."""
    with _BLAS_LOCK, _one_blas_thread():
        return _estimate(frame)


def _estimate(frame: np.ndarray) -> float:
    f, lo, hi = _planes(frame)
    fine = _white_sigma(f, lo, hi)
    if f.shape[0] < 4 * PATCH or f.shape[1] < 4 * PATCH or fine <= 0.0:
        return fine
    if fine >= FINE_WHITE[1]:
        return fine
    coarse = 2.0 * _white_sigma(_half(f, lo, hi), lo, hi, fallback=False)
    if coarse <= 0.0:  # too few unclipped patches at half resolution: strong noise, read as white
        return fine
    w = float(np.clip((coarse / fine - RATIO_WHITE) / (RATIO_CORRELATED - RATIO_WHITE), 0.0, 1.0))
    w *= float(np.clip((FINE_WHITE[1] - fine) / (FINE_WHITE[1] - FINE_WHITE[0]), 0.0, 1.0))
    return fine + w * (coarse - fine)
