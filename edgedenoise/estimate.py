"""Blind noise-level estimation from one frame (NumPy only, runtime-safe, one thread).

What it returns is the level to tell the model: the noise std on the 0-255 scale for white
noise, and for a camera's correlated noise the level at which the shipped models remove it best.

1. Noise in the flat parts of the frame, at one scale. The eigenvalues of the covariance of 7x7
   patches (Chen, Zhu and Heng, "An Efficient Statistical Method for Image Noise Level
   Estimation", ICCV 2015): patches span a low-dimensional signal subspace plus noise, whose
   variance the smallest eigenvalues share (their mean, from the first index at which that mean
   no longer exceeds their median). Texture leaks into those eigenvalues (a clean textured image
   read up to 19), so the patches are first narrowed to weak-texture ones, as Liu, Tanaka and
   Okutomi ("Single-image noise level estimation for blind denoising", 2013) do with gradients:
   a patch stays if its mean squared neighbour difference is below what white noise of the
   current estimate gives in 99 % of patches (4 sigma^2 x 1.63), and the estimate and selection
   are repeated until they agree. Patches touching 0 or 255 are left out (clipping shrinks the
   noise there; the models expect the level before clipping). Strong noise still reads low on
   the patches kept, because keeping only patches with no pixel at a bound keeps the noise draws
   that stayed inside: each patch's noise is a truncated Gaussian around its level, whose variance
   ratio to the untruncated one is known, so the estimate is divided by the patches' mean ratio
   (a fixed point in sigma; censored instead of truncated where mid-tone patches had to be taken
   with their clipped pixels). Gaussian sigma 50 read 0.93x before, 0.98x now; 75: 0.88x, 0.98x
   (the 8 validation images of CBSD432). A channel nearly all clipped (the dark green and blue of
   a red door at sigma 50) keeps only its calmest few patches and still reads low; weighting the
   channels by their patches fixed that but told camera noise too much where one channel is
   brighter and noisier than the others (kodim02 at very low light: 51 instead of about 45, 0.9 dB
   lost), so the channels keep equal weight.
1b. Noise that depends on the brightness. The selection above keeps patches whose noise is no
   stronger than the level found so far, so where the noise differs between dark and bright areas
   it settles on the calmest one: RNI15's Glass, a photograph whose dark glass is visibly grainy
   beside a bright, nearly clean wall, read 2.0 and came out unchanged; Pattern2, whose bright
   patches are the noisiest, 20.8. So the full-resolution estimate is taken a second time within
   each of LEVEL_CLASSES classes of patch brightness (equal patch counts), averaged over the
   classes that have flat patches of their own (weighted by them), and the larger of the two
   readings is kept (Glass 7.1, Pattern2 29.1; the denoised pictures show the change, none of
   RNI15's other images moved by more than 0.9). Only at full resolution: at half resolution a
   class of texture alone took its own texture for noise (a daylight camera image read 6.6 for
   2.0). On the validation images (Gaussian noise 5-50, the named and random cameras, clean) the
   blind PSNR of `default` and `tiny` moved by 0.002 dB at most on average, 0.06 on one image.
2. Two scales. Demosaicing spreads a camera's noise over neighbouring pixels and JPEG or a video
   codec removes its finest scales, so at full resolution camera noise reads a fraction of its
   RMS. The same estimate on 2x2 block means (x2: white noise's std halves there) tells the two
   apart: for white noise the scales agree; for correlated noise the half-resolution level is
   several times the fine one. Between ratios RATIO_WHITE and RATIO_CORRELATED the result moves
   from the fine level to CORRELATED_GAIN x the half-resolution one.

Constants chosen on CBSD432 training images (30 of them; no test set), default model, by the
PSNR of its output at the estimate against the best of a sigma grid per image (interpolated), over
Gaussian sigma 5-50, random simulated cameras (camera.sample_params) and the three named camera
settings. Mean shortfall to that per-image best: 0.16 dB (worst condition: Gaussian 50, 0.42,
where clipping hides noise); the same two scales over all patches fell 0.39 dB short (worst
0.69), and the estimate shipped before (fine scale, all patches) 0.71 dB (very low light 2.46).
Clean images read median 0.3-1 instead of 7 (two scales over all patches).
"""
from __future__ import annotations

import math
import threading

import numpy as np

PATCH = 7
MAX_PATCHES = 20_000


def _channel_variance(ch: np.ndarray, rng: np.random.Generator, clip_lo: float, clip_hi: float,
                      fallback: bool = True, weak_texture: bool = True,
                      by_level: bool = False) -> tuple[float, int] | None:
    """Noise variance of one plane from its weak-texture patches (module docstring, step 1) and the
    number of patches it rests on; None when too few patches are usable. `by_level`: the larger of
    that and the flat areas' variance measured per brightness class (step 1b)."""
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
    censored = not (x[ok].min(axis=1) > clip_lo).all() or not (x[ok].max(axis=1) < clip_hi).all()
    x = x[ok] if ok.sum() >= need else x
    if len(x) < need:
        return None
    if len(x) > MAX_PATCHES:
        x = x[rng.choice(len(x), MAX_PATCHES, replace=False)]
    x = x.astype(np.float64)
    if not weak_texture:
        return _pca_variance(x), len(x)
    p = x.reshape(-1, PATCH, PATCH)
    # mean squared neighbour difference: 4 sigma^2 on average for white noise
    energy = (np.diff(p, axis=2) ** 2).mean(axis=(1, 2)) + (np.diff(p, axis=1) ** 2).mean(axis=(1, 2))
    var, sel, _ = _weak_texture(x, energy, need)
    if np.isfinite(clip_hi) and var > 0:
        var = _unclipped_variance(var, x[sel].mean(axis=1), clip_lo, clip_hi, censored)
    n = int(sel.sum()) if sel.dtype == bool else len(sel)
    if by_level and not censored:
        var, n = max((var, n), _by_level(x, energy, need, clip_lo, clip_hi), key=lambda v: v[0])
    return var, n


def _weak_texture(x: np.ndarray, energy: np.ndarray, need: int) -> tuple[float, np.ndarray, bool]:
    """(variance, the patches selected, whether they were forced): the weak-texture selection and
    estimate repeated until they agree (module docstring, step 1); forced: too few patches passed,
    the `need` calmest were taken."""
    var = _pca_variance(x)
    order, forced = None, False
    for _ in range(WEAK_TEXTURE_ROUNDS):
        sel = energy < 4.0 * var * WEAK_TEXTURE_Q
        forced = sel.sum() < need
        if forced:  # (almost) all texture: the calmest patches
            order = np.argsort(energy) if order is None else order
            sel = order[:need]
        new = _pca_variance(x[sel])
        done = abs(new - var) <= 0.01 * var
        var = new
        if done:
            break
    return var, sel, forced


def _by_level(x: np.ndarray, energy: np.ndarray, need: int, clip_lo: float,
              clip_hi: float) -> tuple[float, int]:
    """The noise variance of the flat areas at every brightness (module docstring, step 1b): the
    weak-texture estimate within each of LEVEL_CLASSES classes of patch mean (equal patch counts),
    averaged over the classes with flat patches of their own, weighted by those patches; (0, 0)
    where no class has enough. Only for patches with no clipped pixel (truncated noise, not censored)."""
    means = x.mean(axis=1)
    edges = np.quantile(means, np.linspace(0.0, 1.0, LEVEL_CLASSES + 1)[1:-1])
    cls = np.searchsorted(edges, means, side="right")
    each = max(PATCH * PATCH, need // LEVEL_CLASSES)
    total, count = 0.0, 0
    for c in range(LEVEL_CLASSES):
        inside = cls == c
        if inside.sum() < each:
            continue
        xc = x[inside]
        var, sel, forced = _weak_texture(xc, energy[inside], each)
        if forced:  # a class of texture only: no flat area at this brightness
            continue
        if np.isfinite(clip_hi) and var > 0:
            var = _unclipped_variance(var, xc[sel].mean(axis=1), clip_lo, clip_hi, False)
        total += var * int(sel.sum())
        count += int(sel.sum())
    return (total / count, count) if count >= need else (0.0, 0)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf, vectorised (Abramowitz and Stegun 7.1.26, error below 1.5e-7): math.erf element by element
    cost the estimate 100-250 ms a 640x480 frame."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _cdf_pdf(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return 0.5 * (1.0 + _erf(z / math.sqrt(2.0))), np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _clip_ratio(sigma: float, means: np.ndarray, lo: float, hi: float, censored: bool) -> float:
    """Mean over patches of Var[noise as seen] / sigma^2 for Gaussian noise of std `sigma` around each
    patch's mean, bounded by lo and hi: truncated (patches chosen with no pixel at a bound: each pixel's
    noise is conditioned to stay inside) or censored (mid-tone patches taken with their clipped pixels)."""
    near = ((means - lo) < 6.0 * sigma) | ((hi - means) < 6.0 * sigma)  # elsewhere the bounds are out of reach
    if not near.any():
        return 1.0
    seen = means[near]
    mu = seen.copy()
    for _ in range(3):  # the patch's level before clipping: its mean as seen is pushed away from the bound
        a, b = np.maximum((lo - mu) / sigma, -8.0), np.minimum((hi - mu) / sigma, 8.0)
        ca, pa = _cdf_pdf(a)
        cb, pb = _cdf_pdf(b)
        if censored:  # Y = clip(Z, a, b)
            m1 = a * ca + b * (1 - cb) + (pa - pb)
            m2 = a * a * ca + b * b * (1 - cb) + (cb - ca) + (a * pa - b * pb)
            r = m2 - m1 * m1
        else:  # Z given a < Z < b
            z = np.maximum(cb - ca, 1e-12)
            m1 = (pa - pb) / z
            r = 1.0 + (a * pa - b * pb) / z - m1 * m1
        mu = seen - sigma * m1
    r = np.clip(r, 0.05, 1.0)
    return float((near.size - near.sum() + r.sum()) / near.size)


RATIO_PATCHES = 2000


def _unclipped_variance(var: float, means: np.ndarray, lo: float, hi: float, censored: bool) -> float:
    """The variance before clipping whose clipped version reads `var` on patches of these means:
    strong noise near black or white is cut by the bounds, so the patches read less of it than the
    model should be told (Gaussian sigma 50 read 0.93x). A fixed point of var / ratio(sigma)."""
    means = means[::max(1, len(means) // RATIO_PATCHES)]  # the mean ratio needs no more patches than this
    true = var
    for _ in range(4):
        true = var / _clip_ratio(math.sqrt(true), means, lo, hi, censored)
    return true


def _pca_variance(x: np.ndarray) -> float:
    """The noise variance of patches (rows of x) from their covariance's eigenvalues."""
    x = x - x.mean(axis=0)
    lam = np.linalg.eigvalsh(x.T @ x / len(x))[::-1]  # descending
    lam = np.maximum(lam, 0.0)
    # the first i at which the mean of lam[i:] no longer exceeds its median, for every i at once (a
    # loop of np.mean and np.median took a third of the estimate's time): the tail is sorted, so its
    # median is the mean of its middle two
    n = len(lam)
    i = np.arange(n)
    means = np.cumsum(lam[::-1])[::-1] / (n - i)
    medians = 0.5 * (lam[i + (n - i - 1) // 2] + lam[i + (n - i) // 2])
    first = np.flatnonzero(means <= medians)
    return float(means[first[0]]) if len(first) else float(lam[-1])


# Weak-texture selection: 99 % of white-noise 7x7 patches have a mean squared neighbour
# difference below 4 sigma^2 x 1.63 (simulated); selection and estimate repeat until they agree.
WEAK_TEXTURE_Q = 1.63
WEAK_TEXTURE_ROUNDS = 4
# Brightness classes of the full-resolution estimate's second reading (step 1b).
LEVEL_CLASSES = 6
# Half-resolution / full-resolution ratios between which the result moves from the fine level
# (white noise) to CORRELATED_GAIN x the half-resolution one (correlated noise). The gain: the
# models, trained on white noise, remove correlated noise best when told about twice its
# flat-area level at half resolution (best sigma per image: low light 25 for an RMS of 16, very
# low light 40 for 25). Chosen as the module docstring says.
RATIO_WHITE, RATIO_CORRELATED = 3.0, 6.0
CORRELATED_GAIN = 2.0
# Fine estimates over which the half-resolution one is phased out: camera noise reads a fraction
# of its RMS at full resolution, so a fine level this high is white noise, whose half-resolution
# estimate strong clipping only spoils.
FINE_WHITE = (10.0, 16.0)


def _planes(frame: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Float HxWxC (at most 3 channels: alpha is no image) on the 0-255 scale and the clip bounds
    that mark saturated pixels."""
    if frame.ndim == 3 and frame.shape[2] > 3:
        frame = frame[:, :, :3]
    if frame.dtype == np.uint8:
        f, lo, hi = frame.astype(np.float32), 0.5, 254.5
    elif frame.dtype == np.uint16:
        f, lo, hi = frame.astype(np.float32) / 257.0, 0.5, 254.5
    else:
        f, lo, hi = frame.astype(np.float32) * 255.0, -np.inf, np.inf
    return (f[:, :, None] if f.ndim == 2 else f), lo, hi


def _white_sigma(f: np.ndarray, lo: float, hi: float, fallback: bool = True, weak_texture: bool = True,
                 by_level: bool = False) -> float:
    rng = np.random.default_rng(0)
    vs = [v for c in range(min(f.shape[2], 3))
          if (v := _channel_variance(f[:, :, c], rng, lo, hi, fallback, weak_texture, by_level)) is not None]
    return float(np.sqrt(np.mean([v for v, _ in vs]))) if vs else 0.0


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


def _one_blas_thread():
    # the BLAS libraries loaded now: a library loaded after a first estimate (another package's
    # OpenBLAS) must be limited too, and finding them takes under a millisecond
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas").limit(limits=1)


def estimate_white_sigma(frame: np.ndarray, weak_texture: bool = True) -> float:
    """The full-resolution estimate alone (step 1): the std of white noise (0-255 scale).
    weak_texture=False takes every patch: the blind estimate edgedenoise shipped until
    December 2026 (kept for the benchmarks' "before" rows)."""
    with _BLAS_LOCK, _one_blas_thread():
        return _white_sigma(*_planes(frame), weak_texture=weak_texture)


# Frames larger than 4K UHD are estimated on a mosaic of MOSAIC x MOSAIC crops of MOSAIC_CROP pixels
# spread evenly over them (4 Mpixel): the estimate's working memory (about 110 bytes a pixel) stays
# near half a gigabyte for any size (a 12000 x 9000 image took 12 GB whole), and weak-texture
# patches are plentiful in 4 Mpixel.
MOSAIC_ABOVE = 3840 * 2160
MOSAIC, MOSAIC_CROP = 4, 512


def mosaic(frame: np.ndarray) -> np.ndarray:
    """`frame` itself up to MOSAIC_ABOVE pixels; above, MOSAIC x MOSAIC crops of it (evenly spread,
    corners included) side by side in one image."""
    h, w = frame.shape[:2]
    if h * w <= MOSAIC_ABOVE:
        return frame
    c = min(MOSAIC_CROP, h // MOSAIC, w // MOSAIC) // 2 * 2  # even: the half-resolution step pairs pixels
    ys = np.linspace(0, h - c, MOSAIC).round().astype(int)
    xs = np.linspace(0, w - c, MOSAIC).round().astype(int)
    return np.concatenate([np.concatenate([frame[y:y + c, x:x + c] for x in xs], axis=1) for y in ys], axis=0)


def estimate_sigma(frame: np.ndarray, correlated_gain: float = CORRELATED_GAIN) -> float:
    """The noise level to tell the model, 0-255 scale, of a uint8/uint16/float frame (HxW or
    HxWxC; a 4th channel, alpha, is not looked at): the std of white noise; for correlated
    (camera) noise, `correlated_gain` x its half-resolution level (the module docstring; a model
    may carry its own gain, `Denoiser.estimate`). Single-threaded (one BLAS thread, whatever
    NumPy's default). A frame larger than 4K UHD is estimated on a 4 Mpixel mosaic of its crops
    (`mosaic`), so that memory stays bounded."""
    return combine(estimate_parts(frame), correlated_gain)


def estimate_parts(frame: np.ndarray) -> tuple[float, float, float]:
    """(fine, coarse, weight): the full-resolution level, the half-resolution one (x2, on the
    full-resolution scale; 0 when not measured) and how far the frame's noise counts as correlated
    (0 white .. 1 correlated). `combine` turns them into the level told for a given gain."""
    with _BLAS_LOCK, _one_blas_thread():
        return _parts(mosaic(frame))


def combine(parts: tuple[float, float, float], correlated_gain: float = CORRELATED_GAIN) -> float:
    """The level told: from the fine level (weight 0) to `correlated_gain` x the coarse one (weight 1)."""
    a, b = gain_terms(parts)
    return a + correlated_gain * b


def gain_terms(parts: tuple[float, float, float]) -> tuple[float, float]:
    """(a, b) with combine(parts, gain) = a + gain x b for every gain: averages of a and b over
    frames give the average level for any model's gain (run's sigma tracker keeps them so)."""
    fine, coarse, w = parts
    return (1.0 - w) * fine, w * coarse


def _parts(frame: np.ndarray) -> tuple[float, float, float]:
    f, lo, hi = _planes(frame)
    fine = _white_sigma(f, lo, hi, by_level=True)
    if f.shape[0] < 4 * PATCH or f.shape[1] < 4 * PATCH or fine >= FINE_WHITE[1]:
        return fine, 0.0, 0.0
    coarse = 2.0 * _white_sigma(_half(f, lo, hi), lo, hi, fallback=False)
    if coarse <= 0.0:  # clean, or too few unclipped patches at half resolution (strong noise): as white
        return fine, 0.0, 0.0
    if fine <= 0.0:  # flat patches exactly flat at full resolution (a codec's work), noise only coarser
        return fine, coarse, 1.0
    w = float(np.clip((coarse / fine - RATIO_WHITE) / (RATIO_CORRELATED - RATIO_WHITE), 0.0, 1.0))
    w *= float(np.clip((FINE_WHITE[1] - fine) / (FINE_WHITE[1] - FINE_WHITE[0]), 0.0, 1.0))
    return fine, coarse, w
