"""Temporal denoising without a network pass: a motion-adaptive recursive filter on a denoiser's outputs.

A framewise denoiser leaves a residual error that changes from frame to frame (it follows each
frame's noise); where the scene holds still, averaging the outputs over time removes much of
that error and the flicker it causes. `RecursiveBlend` keeps a running average of the outputs
and, per pixel, how many frames that average holds (its age). For each new output y:

1. Camera motion: the last output and y are compared at half resolution in up to 6 x 4 blocks by
   phase correlation; a similarity transform (shift, rotation, zoom) is fitted to the blocks'
   shifts with RANSAC (blocks on moving objects are outliers), made exact to about a tenth of a
   pixel by two Gauss-Newton steps on the whole frame (CameraMotion._refine), and kept only if it
   makes the two frames differ less. While the camera keeps moving, the last motion is refined
   instead (two steps, a third when the second was not small) and the blocks are measured again
   only when that does not converge. A shift beyond the blocks' reach (a whip pan; BLOCK_REACH)
   is found by one phase correlation of the whole frames, tried only where the blocks saw a
   change they could not follow. A fit is kept only if its refinement converged; where none did
   (a camera that turns several degrees a frame, zooms fast or jolts), corners are followed
   through an image pyramid instead (CameraMotion._track).
   While the camera holds still, one refinement step from no motion stands in for the blocks
   (CameraMotion._identity_step).
   The average (bicubic; a pure translation by a separable filter, `shift`) and the ages follow
   it; pixels that come into view start at age 0.
2. Agreement per pixel: m = 1 where y and the average differ by at most `t_low` x s, 0 beyond
   `t_high` x s (a tighter `t_high_moved` x s on a frame whose average was just moved with the
   camera: the bicubic resampling softened it, and a wider threshold there would average that
   softening in), linear between; the difference is averaged over the channels and a 5x5 window
   (computed at half resolution), and s = 25 (sigma / 25) ** `power` grows with the noise level
   told to the model (sigma, 0-255 scale), more slowly than sigma because the output's residual
   error does. s is capped at `floor` x the frame's 25th percentile of that difference (the
   error the model's output carries where nothing moves): a model that leaves little error, on
   clean footage, gets tighter thresholds than sigma alone would give it.
3. age <- min(m x age, max_age - 1) + 1 and average <- ((age - 1) average + y) / age: a still pixel
   becomes the mean of the last `max_age` outputs; where the scene moved, the average starts
   again from y, so the filter never blends across more than the thresholds allow.

When less than `cut_agreement` of the frame agrees and the frame's 8x8 block means show a new
scene (or less than a third of that agrees), the state is dropped and the frame passes as it is;
drops are counted in `resets`. Short of that, the per-pixel agreement alone decides.

Constants chosen on clips made by `clips.make_clip` from 10 CBSD432 training images (12 frames,
seven kinds of motion, Gaussian sigma 15, 25 and 50, the outputs of `tiny` and `default`), mean gain
over the framewise output per kind: still +0.9 to +1.4 dB, objects +0.8 to +1.3, drift, zoom and
shake +0.4 to +1.2, pan +0.3 to +0.8; no clip lost anything. `floor` is the smallest of 8, 10, 12
that costs those clips at most 0.05 dB (12: 0.05 for `default`, 0.00 for `tiny`); it was added
because without it `default` lost 0.26 dB on the first 40 frames of the shared bikes.mp4 (a
slow, compressed real scene the synthetic clips do not imitate), and with it gains there.
benchmarks/temporal.py measures it on test clips (Kodak24, CBSD68) and the shared videos.

`t_high` was 0.5 for every frame until 2026-12-07; chosen before the camera motion was refined, it
was not swept again after. On `python tools/blend_tuning.py`'s clips (12 other CBSD432 training
images, six motions, sigma 15 / 25 / 50) a wider one gained on every motion: 0.6 / 0.7 / 0.8 for
`tiny` +0.33 / +0.52 / +0.63 dB on still clips and +0.30 / +0.46 / +0.53 on pans, the least of any
clip +0.43 -> +0.55 / +0.60 / +0.57, cuts still all detected, and the same for `default`. On those
images through the camera simulation (daylight, low light, very low light; the level estimated as
`run` does) the still clips gained too (+0.36 -> +0.65 at 0.8), but a daylight pan and shake fell
from +0.005 to -0.03 at 0.7 (-0.06 at 0.8): on a frame whose average was resampled the wider
threshold keeps more of the resampling's softening. So a still camera gets 0.8 and a moved average
keeps 0.5: `tiny`'s still clips +1.32 -> +1.95 dB, moving objects +1.15 -> +1.63, tPSNR on the
moving ones +2.59 -> +3.06 dB; `default` +1.39 -> +2.17 and +1.22 -> +1.82; the pans, zooms and
shakes, the camera clips' losers and the hard motions of `--hard` as they were (`python
tools/blend_tuning.py [--camera] [--model default] [--blend t_high=0.5 --blend t_high_moved=0.5]`).

The refinement (2026-12-05) gained on the same kind of clips (12 other CBSD432 images, sigma 15, 25,
50, `tiny`): moving clips +0.86 -> +1.18 dB over framewise (pans +0.68 -> +1.15), still clips
unchanged; on the validation clips `tiny` + blend 29.55 -> 29.74 dB and `tiny-video` 30.08 -> 30.33
(pan 29.75 -> 30.73: RecurrentState aligns with the same motion).

NumPy and OpenCV only, so it runs wherever the runtime runs. Cost per 640x480 frame on the two-core
development machine (benchmarks/temporal.py, 2026-12-04): 2.5 ms for a still camera, 4.5 ms when
the camera moves, against 21 ms for `tiny` int8 in the same run. On the slower machine of
2026-12-05/06: 3.3-5.2 ms still, 7.2-9.0 ms for the demo's sub-pixel pan, against 33.5-37 ms for
`tiny` fp32 (that machine's speed moves by 10-20 % from run to run); 9.6 ms for a zoom with OpenCV
on one thread. The refinement sampled at its grid points and the still camera's single step
(2026-12-06) took 8 % (pan) and 14 % (still) off, old and new timed in turns in one process. On a
faster 2-core machine with VNNI and freed memory kept (memory.py; `benchmarks/temporal.py
--cost-only`, 2026-12-06): 2.1 ms still, 4.4 ms on the pan, against 14.0 ms for `tiny` fp32; later
that day 1.5 and 3.2 against 14.2, and after the refinement's inner loop was rewritten (CameraMotion.
_refine; `benchmarks/temporal.py` in full) 1.41 and 3.09 against 15.04 (9 % and 21 %).
"""
from __future__ import annotations

import time

import cv2
import numpy as np

from .backends.choice import ENGINES_ENV, cuda_devices
from .denoiser import Denoiser, Timing
from .errors import DataError, EdgeDenoiseError, ModelError
from .frames import saturate
from .modelfile import known_as, recurrent_variant, resolve
from .tiling import tiled

MODES = ("off", "blend", "model")
# a frame type's units per 0-255 level (uint16 frames span 0-65535, float frames 0-1)
UNITS_PER_LEVEL = {np.dtype(np.uint8): 1.0, np.dtype(np.uint16): 257.0, np.dtype(np.float32): 1.0 / 255.0}


def told(den, sigma: float) -> float:
    """The level `den` is told for noise level `sigma` (Denoiser.told: its sigma_scale), or `sigma` itself for
    a denoiser without one: what the blend's thresholds follow."""
    return den.told(sigma) if hasattr(den, "told") else sigma


def blends_apart(den) -> bool:
    """Whether a realtime stream through `den` blends on a thread of its own (runtime/pipeline.py): where
    `den` runs on a GPU, so that the blend runs on the CPU while the GPU works; on a CPU the two would
    share its cores (benchmarks/blend_stage.py). `auto` times such a model with the blend accordingly."""
    return bool(getattr(getattr(den, "backend", None), "on_gpu", False))


def check_mode(mode: str, model_name: str, recurrent: bool = False) -> str:
    """The temporal mode a model can run: `model` needs a recurrent model (ARCHITECTURE.md's
    recurrent contract: an input `previous`), refused in one line for any other."""
    if mode not in MODES:
        raise DataError(f"temporal mode {mode!r}: choose {', '.join(MODES)}")
    if mode == "model" and not recurrent:
        variant = recurrent_variant(model_name)
        use = f"--model {variant} (its shipped recurrent variant) or --temporal blend" if variant else \
            "--temporal blend"
        raise ModelError(f"--temporal model needs a recurrent model (an ONNX input 'previous', as tiny-video's); "
                         f"{known_as(model_name)} denoises frame by frame: use {use}")
    return mode


class RecurrentState:
    """The state a recurrent model carries through a stream: its last output, full frame.

    `previous(frame, sigma)` is what to give the model with `frame`: the last output, or None (the
    model then starts a scene from the frame itself) on the first frame, after `reset()`, when the
    frame's shape or dtype changed, and at a scene cut: the frame's 8x8 block means (gray) differ
    from the last frame's by more than max(10, 0.4 sigma) on average, far more than the noise
    moves them, and the histograms of those block means differ by more than CUT_HISTOGRAM (a moving
    camera changes the blocks, not the histogram). A cut between two scenes of one histogram is
    left to the model, which learnt cuts too. With `align` (the default) the last output follows
    the camera: the motion between the last frame and this one (CameraMotion, as the blend measures
    it) warps it before the model sees it, so a pan looks still to the model where the picture
    agrees. `update(out)` keeps the new output. `resets` counts the states dropped, `aligned` the
    frames whose previous output was moved."""

    def __init__(self, align: bool = True):
        self.resets = self.aligned = 0
        self.align = align
        self._prev: np.ndarray | None = None
        self._blocks: np.ndarray | None = None  # the last frame's 8x8 block means (the cut test's)
        self._gray: np.ndarray | None = None  # the last frame, gray, half resolution (the camera motion's)
        self._camera = CameraMotion()

    def reset(self) -> None:
        if self._prev is not None:
            self.resets += 1
        self._prev = None
        self._camera.forget()

    def previous(self, frame: np.ndarray, sigma: float) -> np.ndarray | None:
        p = self._prev
        blocks, last = _block_means(frame), self._blocks
        self._blocks = blocks
        gray, last_gray = (_calm_gray(frame) if self.align else None), self._gray
        self._gray = gray
        if p is None:
            return None
        if p.shape != frame.shape or p.dtype != frame.dtype or last is None or _scene_cut(blocks, last, sigma):
            self.reset()
            return None
        a = self._camera.motion(last_gray, gray) if self.align else None
        if a is not None:  # the camera moved: the last output moved with it, so the model sees it aligned
            p = warp(p, full_resolution(a))
            self.aligned += 1
        return p

    def update(self, out: np.ndarray) -> None:
        self._prev = out


IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # no motion, as a 2x3 transform
QUIET_RISE = 1.5  # a still camera's frames may differ by this much more than its last still frames did
PREDICTED_STEP = 0.1  # half-resolution pixels: a refinement from the last motion converged if its last step was smaller
REFINE_STRIDE = 2  # _refine samples every this many half-resolution pixels
BLOCK_REACH = 12  # half-resolution pixels: shifts the blocks follow; beyond, the whole frame is correlated
CONVERGED_STEP = 0.5  # half-resolution pixels: a fit is kept only if its refinement's last step was smaller
TRACK_CORNERS = 150  # _track: the corners followed (Shi-Tomasi, pyramidal Lucas-Kanade)
TRACK_EXPLAINS = 0.5  # _track's motion is kept only if it leaves at most this share of the frames' L1 difference
LOWERS = 0.97  # any other motion is kept only if it leaves less than this share: that it lowers the difference at all
CUT_HISTOGRAM = 0.3  # a cut: the 8x8-block-mean histograms (32 bins, each summing to 1) differ by more (L1)


def _calm_gray(frame: np.ndarray) -> np.ndarray | None:
    """half_gray of a noisy frame, blurred (sigma 1 px): the camera motion of noisy frames. Unblurred,
    the noise let phase correlation find motions in still clips that the L1 check took for real (a
    sub-pixel warp smooths noise, which lowers the difference too): on the 8 validation images'
    clips at sigma 25 it moved 6 of 7 frames of a still clip; blurred none, and 55 of 56 pan frames."""
    g = half_gray(frame, _units(frame.dtype))
    return None if g is None else cv2.GaussianBlur(g, (0, 0), 1.0)


def _units(dtype) -> float:
    """A frame type's units per 0-255 level (UNITS_PER_LEVEL; a float64 frame's as float32's)."""
    dtype = np.dtype(dtype)
    return UNITS_PER_LEVEL.get(dtype, 1.0 / 255.0 if dtype.kind == "f" else 1.0)


def _block_means(img: np.ndarray, units: float | None = None) -> np.ndarray:
    """The gray 8x8 block means of a frame, on the 0-255 scale (`units`: the frame's units per level,
    when not its dtype's)."""
    scale = 1.0 / (_units(img.dtype) if units is None else units)
    h, w = img.shape[:2]
    if img.dtype == np.uint8 and h >= 8 and w >= 8:
        # (a recurrent model's noisy frames) the block sums from the frame's integral image (int32,
        # exact), the 8 x 8 blocks from the top-left corner (a last partial row or column left out):
        # 0.19 against 0.37 ms for the float path at 640x480, which converts the whole frame first
        s = cv2.integral(img)[::8, ::8]
        c = 1
        if s.ndim == 3:
            c = min(s.shape[2], 3)  # alpha is no picture
            s = s[:, :, :c].sum(axis=2)
        b = (s[1:, 1:] - s[:-1, 1:] - s[1:, :-1] + s[:-1, :-1]).astype(np.float32)
        return b * np.float32(scale / (64.0 * c))
    g = img[:, :, :3].astype(np.float32) if img.ndim == 3 else img.astype(np.float32)
    # block means first, then the channel mean of the small image (both are averages: they commute;
    # NumPy's mean over the channels of the whole frame took 5 ms of a 640x480 frame)
    b = cv2.resize(g, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    b = b.mean(axis=2) if b.ndim == 3 else b
    return b * np.float32(scale)


def _scene_cut(a: np.ndarray, b: np.ndarray, sigma: float) -> bool:
    """Whether frames of block means `a` and `b` (_block_means, both noisy frames: the same clipping
    biases, the noise averaged over 64 pixels) show two scenes."""
    if float(np.abs(a - b).mean()) <= max(10.0, 0.4 * float(sigma)):
        return False
    # a moving camera changes the blocks but hardly the histogram of the picture; a new scene changes
    # both (CBSD432 frames at sigma 10, 25, 50: 120 pans, shakes, zooms and moving objects moved it
    # by 0.16 at most, never a cut; 97 % of 70 cuts between images by more than 0.3)
    return float(np.abs(_histogram(a) - _histogram(b)).sum()) > CUT_HISTOGRAM


def _histogram(a: np.ndarray) -> np.ndarray:
    """The histogram of block means (0-255 scale) in 32 bins of 8 levels, summing to 1; a mean outside
    0-256 (a blend's bicubic overshoot) counts in the nearest bin. np.histogram took 0.15 ms a call."""
    bins = np.clip((a.ravel() * np.float32(32 / 256)).astype(np.intp), 0, 31)
    return np.bincount(bins, minlength=32) / a.size


def _quantile(x: np.ndarray, q: float) -> float:
    """np.quantile(x, q) (linear between the order statistics) by a partial sort: a tenth of its time."""
    v = x.ravel()
    k = q * (v.size - 1)
    lo = int(k)
    hi = min(lo + 1, v.size - 1)
    part = np.partition(v, (lo, hi))
    return float(part[lo] + (k - lo) * (part[hi] - part[lo]))


def half_gray(y: np.ndarray, units: float = 1.0) -> np.ndarray | None:
    """A frame in gray at half resolution (float32), where camera motion is measured; None for a frame
    too small to measure it in blocks. `units`: the frame's units per 0-255 level (_units), divided
    out, so that the motion is measured on the 0-255 scale whatever the frame's type: its corner
    tracking (CameraMotion._track) runs on 8-bit images, and a float frame's 0-1 or a 16-bit frame's
    0-65535 gave it two levels or one saturated one (no corners: it never found a turn there)."""
    g = _half_gray(y)
    if g is None or units == 1.0:
        return g
    return cv2.multiply(g, 1.0 / units)


def _half_gray(y: np.ndarray) -> np.ndarray | None:
    h, w = y.shape[:2]
    if h < 128 or w < 128:
        return None
    if y.ndim == 3 and y.shape[2] != 3:
        y = np.ascontiguousarray(y[:, :, 0] if y.shape[2] == 1 else y[:, :, :3])
    if y.dtype == np.uint8:
        # (a recurrent model's noisy frames) halved first, as they are, then converted: a quarter of the
        # pixels to convert, the half-resolution means rounded to whole levels (0.2 -> 0.1 ms at 640x480)
        small = cv2.resize(y, (w // 2, h // 2), interpolation=cv2.INTER_AREA).astype(np.float32)
        return small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    y = np.asarray(y, np.float32)  # no copy for the blend's float32 frames
    g = y if y.ndim == 2 else cv2.cvtColor(y, cv2.COLOR_BGR2GRAY)
    return cv2.resize(g, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def full_resolution(a: np.ndarray) -> np.ndarray:
    """A 2x3 transform between half-resolution frames as one between the full-resolution frames
    (half-resolution pixel (x + 0.5) / 2 - 0.5)."""
    full = a.copy()
    full[:, 2] = 2.0 * a[:, 2] + 0.5 * (a[:, 0] + a[:, 1]) - 0.5
    return full


class CameraMotion:
    """The camera's motion between two frames (half_gray), as a 2x3 similarity, by phase correlation
    of up to 6x4 blocks and a RANSAC fit (the module docstring), or by refining the last motion it
    found. `motion(prev, g)` returns it only when it explains the change (it lowers the frames' L1
    difference by 3 % or more) and is worth a resampling; else None. `forget()` at a new scene."""

    def __init__(self, least: float = 0.05):
        self.least = least  # a motion smaller than this (half-resolution pixels, summed) is no motion
        self._hann = None
        self._hann_frame = None  # the whole frame's window (_whole_frame)
        self._grid = None  # _refine's pixel coordinates, per frame shape
        self._last = None  # the last motion `motion` found (None: none, or not moving)
        self._ready: list = []  # (frame, _prepared(frame)) of the last two frames
        self._quiet = None  # while the camera holds still: how much its last two frames differed

    def motion(self, prev: np.ndarray | None, g: np.ndarray | None) -> np.ndarray | None:
        """The motion from `prev` to `g`. A camera keeps moving as it moved: the last motion found is
        tried first, as the start of a refinement, and kept if that converges (its last step under
        PREDICTED_STEP) and the result explains the change; only otherwise are the blocks
        phase-correlated again (_fit). On pans of 12 CBSD432 images (sigma 15-50, `tiny`'s
        outputs) the error fell from 0.076 to 0.061 px (median; 0.18 to 0.12 at the 90th
        percentile), and no pan frame went unfollowed (3 of 396 before). The refinement takes two
        steps, and a third only when the second was not under PREDICTED_STEP (it took three
        always until 2026-12-06): a steady pan converges in two, one step (0.25 ms at 640x480)
        saved; the demo's pan, whose speed changes every frame, needed the third in 40 of 62
        frames. Blend gains on 216 tuning clips (12 other CBSD432 training images, six motions,
        sigma 15, 25, 50, `tiny`; `python tools/blend_tuning.py`) the same to 0.003 dB (pan +1.270
        -> +1.273)."""
        if prev is None or g is None or prev.shape != g.shape:
            self._last = self._quiet = None
            return None
        a = step = None
        if self._last is not None:
            a = self._confirm(prev, g, self._last, predicted=True)
        elif self._quiet is not None:
            step, residual = self._identity_step(prev, g)
            if step < self.least and residual <= QUIET_RISE * self._quiet:
                self._quiet = residual  # still as it was: no blocks to measure
                return None
        if a is None:
            unsettled: list = []  # refined motions whose refinement did not converge (_settled)
            fit, moved = self._fit(prev, g)
            a = self._settled(prev, g, fit, unsettled)
            if a is None and moved:  # the blocks saw a change they could not follow: a shift beyond their reach
                a = self._settled(prev, g, self._whole_frame(prev, g), unsettled)
            if a is None and (unsettled or (moved and fit is None)):
                # a motion whose refinement did not converge, or none where the blocks saw a change:
                # a turn, a fast zoom, a jolt (the corners, _track), kept only if it explains most
                # of the change, as a camera's motion of that size does
                a = self._confirm(prev, g, self._track(prev, g), explains=TRACK_EXPLAINS)
            for r in unsettled:  # as before the corners: what lowers the difference at all
                if a is None and self._explains(prev, g, r):
                    a = r
        if a is None:  # the camera holds still: how much two of its frames differ then
            if step is None:
                step, residual = self._identity_step(prev, g)
            self._quiet = residual
        else:
            self._quiet = None
        self._last = a
        return a

    def _identity_step(self, prev: np.ndarray, g: np.ndarray) -> tuple[float, float]:
        """One refinement step from no motion: its size (pixels, as _refine's) and the mean absolute
        difference of the blurred frames on its grid.

        A still camera would otherwise have its blocks phase-correlated every frame, a third of the
        blend's time on a still 640x480 stream (1.1 ms). After a frame where the blocks found no
        motion, the next is taken as still without them when this step is under `least` and the
        frames differ by no more than QUIET_RISE times what the still frames before differed: a
        camera that starts to move shows in one or the other (a motion beyond the step's reach, a
        few pixels, still changes the difference)."""
        _, step, residual = self._refine(prev, g, IDENTITY, steps=1)
        return step, residual

    def forget(self) -> None:
        """Drop the last motion (a new scene: the next one is measured afresh)."""
        self._last = self._quiet = None

    def patch_motion(self, prev: np.ndarray, g: np.ndarray) -> np.ndarray | None:
        """As `motion`, for a frame too small for blocks (a training patch, 64 px, at full resolution):
        phase correlation of the whole frames (a shift), then the same refinement and check."""
        if prev.shape != g.shape or min(g.shape) < 33:
            return None
        if self._hann is None or self._hann.shape != g.shape:
            self._hann = cv2.createHanningWindow(g.shape[::-1], cv2.CV_32F)
        (dx, dy), _ = cv2.phaseCorrelate(prev, g, self._hann)
        if abs(dx) + abs(dy) < self.least:
            return None
        return self._confirm(prev, g, np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]]), shift_only=True)

    def _confirm(self, prev: np.ndarray, g: np.ndarray, a: np.ndarray | None,
                 shift_only: bool = False, predicted: bool = False, explains: float = LOWERS) -> np.ndarray | None:
        """`a` refined, if it explains the change between `prev` and `g` (_explains); else None.
        `predicted`: `a` is a guess (the last frame's motion), kept only if the refinement converged
        from it (its last step under PREDICTED_STEP pixels)."""
        if a is None:
            return None
        a, last_step, _ = self._refine(prev, g, a, steps=2, shift_only=shift_only)
        if predicted and last_step > PREDICTED_STEP:  # not there yet: one more step, which must be small
            a, last_step, _ = self._refine(prev, g, a, steps=1, shift_only=shift_only)
            if last_step > PREDICTED_STEP:
                return None
        return a if self._explains(prev, g, a, explains) else None

    def _settled(self, prev: np.ndarray, g: np.ndarray, a: np.ndarray | None, unsettled: list) -> np.ndarray | None:
        """As _confirm, and kept only if the refinement's last step was under CONVERGED_STEP (not
        refused: a step of over 2 px, or an ill-posed one); a refined motion that did not converge
        is added to `unsettled` instead (what `motion` falls back on when the corners find nothing).

        Why for the blocks' fit (2026-12-06): under motions the blocks cannot follow (a turn
        of 4-8 degrees a frame, a zoom of 6 %, jolts of 10-30 px; an ad-hoc check on clips from the 8
        validation images of CBSD432 at sigma 25, measured on the noisy frames as RecurrentState does)
        their fit was wrong by more than 1 px (at the frame's corners) in 61-73 % of the frames, and most of those
        wrong fits still lowered the L1 difference enough to pass. In 93-100 % of them the
        refinement's last step was refused; in none of the fits within 1 px was it over 0.33 px."""
        if a is None:
            return None
        a, last_step, _ = self._refine(prev, g, a, steps=2)
        if not last_step <= CONVERGED_STEP:
            unsettled.append(a)
            return None
        return a if self._explains(prev, g, a) else None

    @staticmethod
    def _explains(prev: np.ndarray, g: np.ndarray, a: np.ndarray, share: float = LOWERS) -> bool:
        """Whether `prev` moved by `a` differs from `g` by less than `share` of what `prev` itself does
        (L1, away from the borders the warp has to invent); LOWERS asks only that it lowers it."""
        sh, sw = g.shape
        moved = cv2.warpAffine(prev, a, (sw, sh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        b = 8
        inner = (slice(b, sh - b), slice(b, sw - b))
        return cv2.norm(g[inner], moved[inner], cv2.NORM_L1) < share * cv2.norm(g[inner], prev[inner], cv2.NORM_L1)

    def _whole_frame(self, prev: np.ndarray, g: np.ndarray) -> np.ndarray | None:
        """The shift between the whole frames by one phase correlation (half resolution), where the
        blocks cannot reach: a block of 64 half-resolution pixels follows shifts of up to about a
        quarter of itself, so a fast pan (the bench's frames step 74 pixels at 640x480) went
        unfollowed and the recurrent model was given its last output unaligned (up to 0.28 dB under
        frame by frame there). Tried only after the blocks saw a change they could not explain, so a
        still camera never pays for it (~1 ms at 640x480). None: no peak."""
        if self._hann_frame is None or self._hann_frame.shape != g.shape:
            self._hann_frame = cv2.createHanningWindow(g.shape[::-1], cv2.CV_32F)
        (dx, dy), response = cv2.phaseCorrelate(prev, g, self._hann_frame)
        if response < 0.05 or max(abs(dx), abs(dy)) < BLOCK_REACH:
            return None  # no peak, or a shift the blocks would have followed: not the camera's (objects)
        return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])

    @staticmethod
    def _track(prev: np.ndarray, g: np.ndarray) -> np.ndarray | None:
        """The 2x3 similarity from `prev` to `g` by corners: up to TRACK_CORNERS Shi-Tomasi corners of
        `prev` followed into `g` by pyramidal Lucas-Kanade (4 levels: displacements of tens of
        pixels, turns and zooms, which each corner sees as a local shift), fitted with RANSAC; None
        where too few corners were followed (a flat frame). Tried only where the blocks and the whole
        frame's phase correlation found no motion that converged (`motion`): about 1.5 ms at half of
        a 353x193 frame. On the clips of _confirm's docstring, after the refinement: within 1 px in
        89-98 % of the frames (median 0.14-0.25 px), where the blocks' were in 27-39 %; on those of
        `python tools/blend_tuning.py --hard` (other images, a turn, a zoom-out and jolts), every
        frame within 1 px (a turn's fits were 7.85 px off at the median before)."""
        u0, u1 = cv2.convertScaleAbs(prev), cv2.convertScaleAbs(g)
        p0 = cv2.goodFeaturesToTrack(u0, maxCorners=TRACK_CORNERS, qualityLevel=0.01, minDistance=7, blockSize=7)
        if p0 is None or len(p0) < 8:
            return None
        p1, found, _ = cv2.calcOpticalFlowPyrLK(u0, u1, p0, None, winSize=(21, 21), maxLevel=3)
        h, w = g.shape
        ok = (found.ravel() == 1) & (p1[:, 0, 0] >= 0) & (p1[:, 0, 0] <= w - 1) & (p1[:, 0, 1] >= 0) \
            & (p1[:, 0, 1] <= h - 1)
        if ok.sum() < 8:
            return None
        a, inliers = cv2.estimateAffinePartial2D(p0[ok], p1[ok], method=cv2.RANSAC, ransacReprojThreshold=1.0)
        if a is None or int(inliers.sum()) < 6:
            return None
        return a.astype(np.float64)

    def _fit(self, prev: np.ndarray, g: np.ndarray) -> tuple[np.ndarray | None, bool]:
        """(the 2x3 similarity that maps `prev` onto `g` (half resolution), or None where none is found;
        whether the blocks saw motion: False where they found the frames still)."""
        sh, sw = g.shape
        for b in (64, 32):  # larger blocks measure sub-pixel shifts better
            ny, nx = min(4, sh // b), min(6, sw // b)
            if ny * nx >= 3:
                break
        else:
            return None, False
        if self._hann is None or self._hann.shape != (b, b):
            self._hann = cv2.createHanningWindow((b, b), cv2.CV_32F)
        src, dst = [], []
        for y0 in np.linspace(0, sh - b, ny).astype(int):
            for x0 in np.linspace(0, sw - b, nx).astype(int):
                (dx, dy), response = cv2.phaseCorrelate(prev[y0:y0 + b, x0:x0 + b], g[y0:y0 + b, x0:x0 + b],
                                                        self._hann)
                if response >= 0.1:  # a peak: the block has texture enough to be followed
                    c = (x0 + b / 2 - 0.5, y0 + b / 2 - 0.5)
                    src.append(c)
                    dst.append((c[0] + dx, c[1] + dy))
        if len(src) < 3:
            return None, True  # too few blocks followed: a change beyond them, or too little texture
        a, _ = cv2.estimateAffinePartial2D(np.float32(src), np.float32(dst), method=cv2.RANSAC,
                                           ransacReprojThreshold=0.75)
        if a is None:
            return None, True
        if abs(a[0, 2]) + abs(a[1, 2]) + abs(a[0, 0] - 1) * sw + abs(a[0, 1]) * sw < self.least:
            return None, False  # no motion worth a resampling
        return a.astype(np.float64), True

    def _prepared(self, img: np.ndarray) -> np.ndarray:
        """`img` blurred (5x5, sigma 1), with its x and y gradients: HxWx3 float32. Kept for the last two
        frames: the frame a motion is measured to is the one the next motion is measured from."""
        found = [ready for frame, ready in self._ready if frame is img]
        if found:
            ready = found[0]
        else:
            blurred = cv2.GaussianBlur(img, (5, 5), 1.0)
            ready = cv2.merge([blurred, cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3, scale=0.125),
                               cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)])
        # the last two frames asked for, the latest first
        self._ready = [(img, ready), *[(f, r) for f, r in self._ready if f is not img][:1]]
        return ready

    def _refine(self, prev: np.ndarray, g: np.ndarray, a: np.ndarray, steps: int = 2,
                shift_only: bool = False) -> tuple[np.ndarray, float, float]:
        """`a` made exact to about a tenth of a pixel by Gauss-Newton steps on the whole frame, the
        size of its last step (pixels, summed over the corner-scaled parameters; inf where a step was
        refused) and the mean absolute difference of the blurred frames that step started from (inf
        for a frame too small to refine).

        Phase correlation's sub-pixel peak leans towards whole pixels: on pans of training images
        (12 CBSD432 images, sigma 15-50, `tiny`'s outputs) it was 0.31 px off (full resolution,
        median; 0.81 at the 90th percentile), after these two steps 0.08 (0.18). The residual and
        the gradients are taken on every second pixel of the inner frame: each step samples `prev`
        and its gradients where `a` maps those pixels from (one bilinear warp of three channels;
        the gradients turned into `g`'s frame by `a`), linearises g(x) ~ moved(x) - grad(x) . d(x)
        for a small similarity d about the frame's centre (grad: the mean of both frames'
        gradients, which converges in fewer steps) and solves for d by least squares, leaving out
        the pixels that differ by more than 3x the median (moving objects). Both frames are blurred
        first: noise left in the gradients biases each step towards zero. A step that is
        ill-posed (a flat frame) or jumps by more than 2 px keeps what it had. NumPy without BLAS
        (einsum), so it stays on its thread. `shift_only`: the shift alone (a small frame, where a
        zoom or turn would be fitted to texture, not to the camera).

        Sampling only those pixels (it warped and differentiated the whole frame each step before)
        and blurring each frame once (_prepared) took `motion` on the demo's 640x480 pan from 2.4 to
        2.2 ms a frame, the same motions to 0.002 px; a coarser grid for the first steps (every
        fourth pixel) reached 1.4 ms but lost 0.02 dB on the blend's pan and zoom clips (every fourth
        pixel in all steps, REFINE_STRIDE 4: the same, 2026-12-06). Sampling by one warpAffine onto the
        grid instead of a remap with maps made in NumPy, and copying the channels out of their strided
        views before the arithmetic, took the blend on the demo's pan from 2.94 to 2.66 ms a frame
        (best of five runs each, in turns, one process; VNNI machine), the motions within 0.0004 px,
        the gains on the tuning clips unchanged to 0.001 dB."""
        sh, sw = g.shape
        b = 8
        if sh <= 4 * b or sw <= 4 * b:
            return a, np.inf, np.inf
        cx, cy = (sw - 1) / 2, (sh - 1) / 2
        k = REFINE_STRIDE
        if self._grid is None or self._grid[0] != (g.shape, k):
            py, px = np.mgrid[b:sh - b:k, b:sw - b:k].astype(np.float32)
            self._grid = ((g.shape, k), px - np.float32(cx), py - np.float32(cy))
        _, xs, ys = self._grid
        gh, gw = xs.shape
        # grid index (u, v) -> pixel (b + k u, b + k v): warpAffine samples `prev` at inv @ that pixel
        on_grid = np.array([[k, 0.0, b], [0.0, k, b], [0.0, 0.0, 1.0]])
        sub = (slice(b, sh - b, k), slice(b, sw - b, k))
        source = self._prepared(prev)  # (prev first: the frame asked for last is kept for the next call)
        # NumPy on strided views (every k-th pixel of one of three channels) took 8x as long as on
        # contiguous arrays: each channel is copied out once
        ready = self._prepared(g)[sub]
        target, gx, gy = (ready[:, :, i].copy() for i in range(3))
        last, ar = np.inf, None
        for _ in range(steps):
            inv = cv2.invertAffineTransform(a)  # moved(x) = prev(inv @ x), as warpAffine(prev, a) has it
            if np.array_equal(a, IDENTITY):
                moved = source[sub]
            else:  # (a bilinear warp onto the grid: a third of the time of a remap with the maps made here)
                moved = cv2.warpAffine(source, inv @ on_grid, (gw, gh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                       borderMode=cv2.BORDER_REPLICATE)
            v, sx, sy = (moved[:, :, i].copy() for i in range(3))  # prev and its gradients, turned below
            mx = cv2.scaleAdd(gx, 0.5, cv2.addWeighted(sx, 0.5 * inv[0, 0], sy, 0.5 * inv[1, 0], 0.0))
            my = cv2.scaleAdd(gy, 0.5, cv2.addWeighted(sx, 0.5 * inv[0, 1], sy, 0.5 * inv[1, 1], 0.0))
            r = target - v
            ar = np.abs(r)
            keep = (ar <= 3.0 * _quantile(ar[::4, ::4], 0.5) + 1e-6).astype(np.float32)
            jac = np.stack([mx, my] if shift_only else [mx * xs + my * ys, my * xs - mx * ys, mx, my]).reshape(
                2 if shift_only else 4, -1)
            jw = jac * keep.reshape(1, -1)
            h = np.einsum("ij,kj->ik", jw, jac).astype(np.float64)
            if not np.isfinite(h).all():
                last = np.inf
                break
            ev = cv2.eigen(h)[1].ravel()
            if ev[-1] <= 0 or ev[0] > 1e8 * ev[-1]:  # ill-posed (condition number over 1e8)
                last = np.inf
                break
            ok, d = cv2.solve(h, -np.einsum("ij,j->i", jw, r.reshape(-1)).astype(np.float64).reshape(-1, 1),
                              flags=cv2.DECOMP_CHOLESKY)
            if not ok:
                last = np.inf
                break
            d = d.ravel()
            da, db, dx, dy = (0.0, 0.0, *d) if shift_only else d
            size = abs(dx) + abs(dy) + (abs(da) + abs(db)) * max(sw, sh)
            if size > 2.0:
                last = np.inf
                break
            step = np.array([[1.0 + da, -db, dx - (da * cx - db * cy)],
                             [db, 1.0 + da, dy - (db * cx + da * cy)],
                             [0.0, 0.0, 1.0]])
            a = (step @ np.vstack([a, [0.0, 0.0, 1.0]]))[:2]
            last = size
        return a, last, np.inf if ar is None else float(ar.mean())


def warp(img: np.ndarray, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """`img` moved by the 2x3 transform `a` (full resolution, dst = a @ src), bicubic, borders
    replicated: cv2.warpAffine, or, when `a` is a translation to within 0.1 px over the whole frame
    (a pan, the commonest camera motion), a whole-pixel shift and a separable 4-tap cubic filter
    for the fraction, under a third of warpAffine's CPU time (1.1 against 3.7 ms for a 640x480
    float frame). `out`: a float32 array of `img`'s shape to write a float32 frame's result into
    (not `img` itself; the blend's state moves between two such buffers)."""
    h, w = img.shape[:2]
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    lin = a[:, :2] - np.eye(2)
    t = lin @ c + a[:, 2]  # the displacement at the centre
    if float(np.abs(lin @ np.array([[c[0], -c[0]], [c[1], c[1]]])).max()) <= 0.1 and abs(t[0]) < w / 4 \
            and abs(t[1]) < h / 4:
        return shift(img, float(t[0]), float(t[1]), out)
    dst = _reusable(out, img)
    moved = cv2.warpAffine(img, a, (w, h), dst=dst, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return moved.reshape(img.shape)


def _reusable(out: np.ndarray | None, img: np.ndarray) -> np.ndarray | None:
    """`out` laid out as OpenCV writes a result of `img`'s shape (a 2-D array for one channel), where it
    can hold it: float32, `img`'s shape, contiguous and not `img` itself; else None (a new array)."""
    if out is None or out is img or img.dtype != np.float32 or out.dtype != np.float32 \
            or out.shape != img.shape or not out.flags.c_contiguous:
        return None
    return out.reshape(img.shape[:2]) if img.ndim == 3 and img.shape[2] == 1 else out


def _cubic_taps(f: float) -> np.ndarray:
    """The 4 taps (at -1, 0, 1, 2) of OpenCV's bicubic kernel (A = -0.75) for a sample at fraction f."""
    A = -0.75
    w0 = ((A * (f + 1) - 5 * A) * (f + 1) + 8 * A) * (f + 1) - 4 * A
    w1 = ((A + 2) * f - (A + 3)) * f * f + 1
    w2 = ((A + 2) * (1 - f) - (A + 3)) * (1 - f) * (1 - f) + 1
    return np.array([w0, w1, w2, 1.0 - w0 - w1 - w2], np.float32)


SHIFT_IN_KERNEL = 1  # whole pixels a shift's filter takes up itself (its kernel grows by one tap a pixel)


def _shift_kernel(i: int, f: float) -> tuple[np.ndarray, int]:
    """(taps, anchor) of a 1-D filter whose output at x is the cubic sample at x + i + f: the 4 taps
    at offsets i - 1 .. i + 2, zeros between them and offset 0, where the anchor sits."""
    taps = _cubic_taps(f)  # (at f = 0: 0, 1, 0, 0, the whole pixel)
    lo, hi = min(0, i - 1), max(0, i + 2)
    k = np.zeros(hi - lo + 1, np.float32)
    k[i - 1 - lo:i + 3 - lo] = taps
    return k, -lo


def _axis(i: int, f: float, n: int) -> tuple[np.ndarray, int, slice, slice] | None:
    """How `shift` filters one axis of n pixels whose output at x is the cubic sample at x + i + f:
    (taps, anchor, the source's slice, the output's slice); None for a shift past the frame.

    Up to SHIFT_IN_KERNEL whole pixels the kernel takes the shift up itself (_shift_kernel): the
    whole axis, read and written once. Further, the 4 taps are run over the part of the source the
    output reads, anchored at the first tap (i > 0) or the last (i < 0), so that the source's own
    edge is where the filter replicates; the output outside its slice reads only that replicated
    edge pixel, so it repeats the slice's edge value (_fill). The same sums as filtering a padded
    copy of the frame (the way before 2026-12-07), without writing that copy (3.7 MB for a 640x480
    float frame) or leaving a strided cut; OpenCV's vector loop may end at another column, so a
    value can differ in its last bit, and an integer frame's by one level where the sum sat on a
    rounding tie (none in 18 million values of the demo's frames; a few on a small test frame)."""
    if abs(i) <= SHIFT_IN_KERNEL:
        k, a = _shift_kernel(i, f)
        return k, a, slice(0, n), slice(0, n)
    if i > n or i < -n - 1:
        return None
    if i > 0:  # out[x] reads x + i - 1 .. x + i + 2: the source from i - 1, up to x = n - i
        return _cubic_taps(f), 0, slice(i - 1, n), slice(0, n - i + 1)
    return _cubic_taps(f), 3, slice(0, n + i + 2), slice(-i - 2, n)  # from x = -i - 2 on


def _fill(res: np.ndarray, rows: slice, cols: slice) -> None:
    """`res` outside [rows, cols] as the nearest edge of that block (columns first, then whole rows)."""
    h, w = res.shape[:2]
    if cols.start > 0:
        res[rows, :cols.start] = res[rows, cols.start:cols.start + 1]
    if cols.stop < w:
        res[rows, cols.stop:] = res[rows, cols.stop - 1:cols.stop]
    if rows.start > 0:
        res[:rows.start] = res[rows.start:rows.start + 1]
    if rows.stop < h:
        res[rows.stop:] = res[rows.stop - 1:rows.stop]


def shift(img: np.ndarray, tx: float, ty: float, out: np.ndarray | None = None) -> np.ndarray:
    """`img` moved by (tx, ty) pixels: out(x, y) = img(x - tx, y - ty), bicubic, borders replicated;
    the same dtype (uint8 rounded and saturated). `out`: as for `warp`.

    One separable filter over the part of the frame the output reads (_axis), borders replicated by
    the filter itself: the frame is read once and the result written once. Shifts of up to
    SHIFT_IN_KERNEL whole pixels have been so since 2026-12-06 (a padded copy was filtered, then cut,
    before); larger ones (the demo's pan: 4-5 px a frame) since 2026-12-07: the blend on that pan
    (`tiny`'s outputs, before and after in turns in one process) from 2.32 to 2.08 ms a frame, its
    outputs the same to the bit. Only a shift past the frame's size still pads."""
    if img.dtype == np.float64:  # (a recurrent model's float64 frames) OpenCV filters float64 only into float64
        return shift(img.astype(np.float32), tx, ty).astype(np.float64)
    h, w = img.shape[:2]
    sx, sy = -tx, -ty
    ix, iy = int(np.floor(sx)), int(np.floor(sy))
    fx, fy = sx - ix, sy - iy
    if fx > 1 - 1 / 64:  # a fraction this near a whole pixel is that pixel (as warpAffine's 1/32 grid)
        ix, fx = ix + 1, 0.0
    if fy > 1 - 1 / 64:
        iy, fy = iy + 1, 0.0
    if fx < 1 / 64 and fy < 1 / 64:  # a whole-pixel shift (a small fraction on one axis alone still counts)
        fx = fy = 0.0
    dst = _reusable(out, img)
    along_x, along_y = _axis(ix, fx, w), _axis(iy, fy, h)
    if along_x is not None and along_y is not None:  # (within the kernel's reach: the whole frame, nothing to fill)
        (kx, ax, src_x, cols), (ky, ay, src_y, rows) = along_x, along_y
        src = img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img
        res = np.empty(src.shape, np.float32) if dst is None else dst.reshape(src.shape)
        block = res[rows, cols]
        got = cv2.sepFilter2D(src[src_y, src_x], cv2.CV_32F, kx, ky, dst=block, anchor=(ax, ay),
                              borderType=cv2.BORDER_REPLICATE)
        if not np.may_share_memory(got, res):  # (OpenCV wrote a new array: the block as it should be)
            block[...] = got.reshape(block.shape)
        _fill(res, rows, cols)
    else:  # past the frame: every pixel is a replicated edge; padded, as before
        px, py = abs(ix) + 2, abs(iy) + 2
        padded = cv2.copyMakeBorder(img, py, py, px, px, cv2.BORDER_REPLICATE)
        if padded.ndim < img.ndim:
            padded = padded[:, :, None]
        win = padded[py + iy - 1:py + iy + h + 2, px + ix - 1:px + ix + w + 2]
        res = cv2.sepFilter2D(win, cv2.CV_32F, _cubic_taps(fx), _cubic_taps(fy), anchor=(1, 1),
                              borderType=cv2.BORDER_REPLICATE)[1:h + 1, 1:w + 1]
    # into float32 whatever the frame's type: OpenCV's uint8 -> uint8 filter took twice as long
    # (1.7 against 0.8 ms for a 640x480 BGR frame, with the rounding below)
    if img.dtype != np.float32:  # uint8 or uint16: rounded and saturated
        res = saturate(res, img.dtype)
    return res.reshape(img.shape)


class RecursiveBlend:
    """The motion-adaptive recursive filter (see the module docstring). Call it with each denoised
    frame in order, `out = blend(denoised, sigma)`; `reset()` forgets the past.

    Frames: HxW, HxWx1, HxWx3 or HxWx4 (alpha is passed through, not averaged); uint8, uint16 or
    float32 in [0,1]. The output has the frame's shape and dtype. A frame of another shape or
    dtype than the last starts a new state.

    Counters: `frames` (frames seen), `resets` (states dropped: at a cut, a change of frame size or
    a `reset()` call while a state was held; the first frame starts one and is not counted),
    `aligned` (frames whose camera motion was followed); `agreement` is the last frame's mean
    agreement with the average (1: all of it still)."""

    def __init__(self, t_low: float = 0.1, t_high: float = 0.8, power: float = 0.6, max_age: int = 8,
                 cut_agreement: float = 0.3, window: int = 5, align: bool = True, floor: float = 12.0,
                 t_high_moved: float = 0.5):
        if not 0 <= t_low < min(t_high, t_high_moved):
            raise DataError(f"blend thresholds must satisfy 0 <= low < high, not {t_low}, "
                            f"{min(t_high, t_high_moved)}")
        if max_age < 1:
            raise DataError(f"max_age must be at least 1, not {max_age}")
        self.t_low, self.t_high, self.power, self.max_age = float(t_low), float(t_high), float(power), int(max_age)
        self.t_high_moved = float(t_high_moved)  # on a frame whose average followed the camera (module docstring)
        self.cut_agreement, self.window, self.align = float(cut_agreement), int(window), bool(align)
        self.frames = self.resets = self.aligned = 0
        self.floor = floor
        self.agreement = 1.0
        self._avg: np.ndarray | None = None  # float32, HxW or HxWxC, the frame's own scale
        self._age: np.ndarray | None = None  # float32, half resolution: outputs held in the average
        self._gray: np.ndarray | None = None  # the last output, gray, half resolution (for the motion)
        self._key = None
        self._camera = CameraMotion()
        self._ones: np.ndarray | None = None  # blendLinear's weight of the new output
        self._bufs: dict[str, np.ndarray] = {}  # float32 arrays reused from frame to frame (_buf)

    def reset(self) -> None:
        """Forget the past: the next frame starts a new average."""
        if self._avg is not None:
            self.resets += 1
        self._avg = self._age = self._gray = self._key = None

    @property
    def state_shape(self) -> tuple | None:
        """The shape of the average held (None: no state)."""
        return None if self._avg is None else self._avg.shape

    def __call__(self, frame: np.ndarray, sigma: float) -> np.ndarray:
        if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
            raise DataError(f"the temporal blend takes HxW or HxWxC frames, not {getattr(frame, 'shape', frame)}")
        if frame.dtype not in UNITS_PER_LEVEL:
            raise DataError(f"the temporal blend takes uint8, uint16 or float32 frames, not {frame.dtype}")
        alpha = frame[:, :, 3:] if frame.ndim == 3 and frame.shape[2] == 4 else None
        img = frame[:, :, :3] if alpha is not None else frame
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]
        y = self._buf("y", img.shape)
        np.copyto(y, img, casting="unsafe")
        key = (frame.shape, frame.dtype)
        self.frames += 1
        if self._avg is None or key != self._key:
            if self._avg is not None:  # a new size mid-stream: a new scene
                self.resets += 1
            return self._start(y, key, frame)
        # the thresholds' unit, in the frame's own scale; some blending even when told sigma 0
        s = 25.0 * (max(float(sigma), 1.0) / 25.0) ** self.power * UNITS_PER_LEVEL[frame.dtype]
        moved = self._follow_camera(y) if self.align else False
        # at the state's resolution (half, unless the frame is tiny)
        m = self._agreement(y, s, self.t_high_moved if moved else self.t_high)
        self.agreement = float(m.mean())
        if self.agreement < self.cut_agreement and self._cut(y, frame.dtype, sigma):
            self.resets += 1
            return self._start(y, key, frame)
        age = np.minimum(m * self._age, np.float32(self.max_age - 1))
        self._age = age + np.float32(1.0)
        h, w = y.shape[:2]
        if age.shape != (h, w):
            age = cv2.resize(age, (w, h), dst=self._buf("age", (h, w)), interpolation=cv2.INTER_LINEAR)
        # blendLinear divides by the weights' sum: (age x average + 1 x y) / (age + 1), one pass
        if self._ones is None or self._ones.shape != (h, w):
            self._ones = np.ones((h, w), np.float32)
        self._swap(cv2.blendLinear(self._avg, y, age, self._ones, dst=self._buf("spare", y.shape)))
        return self._emit(frame, alpha)

    def _buf(self, name: str, shape: tuple) -> np.ndarray:
        """A float32 array of `shape` kept between frames under `name` (its values are whatever was
        last written). Allocated afresh each frame, the full-resolution arrays' pages went back to the
        system and were taken again: on the demo's 640x480 pan 680-880 page faults a frame, 170-260
        with these buffers (the rest: the motion's and a padded shift's own arrays); 5.1-5.6 against
        5.4-6.6 ms a frame, the same outputs bit for bit (each in its own process, in turns, three
        times; 2026-12-07, a 2-core machine at half the speed of the day before)."""
        b = self._bufs.get(name)
        if b is None or b.shape != tuple(shape):
            b = self._bufs[name] = np.empty(shape, np.float32)
        return b

    def _swap(self, new: np.ndarray) -> None:
        """`new` (written into the "spare" buffer) becomes the average; the old average the spare."""
        new = new.reshape(self._avg.shape)
        if np.may_share_memory(new, self._bufs["spare"]):  # (the buffers never overlap: bounds suffice)
            self._bufs["spare"] = self._avg
        self._avg = new

    # -- steps

    def _start(self, y: np.ndarray, key, frame: np.ndarray) -> np.ndarray:
        self._avg = y
        self._bufs.pop("y", None)  # the average now: the next frame is converted into a new one
        self._age = np.ones(self._state_size(y), np.float32)
        self._gray = half_gray(y, _units(frame.dtype)) if self.align else None
        self._camera.forget()
        self._key = key
        self.agreement = 0.0 if self.frames > 1 else 1.0
        return frame.copy()

    def _cut(self, y: np.ndarray, dtype, sigma: float) -> bool:
        """Whether a frame that hardly agrees with the average shows a new scene: it agrees with less
        than a third of `cut_agreement`, or its 8x8 block means and their histogram moved as a cut's
        do (_scene_cut). A still scene of fine texture (rock, foliage) leaves a frame-to-frame error
        in the output that the agreement's thresholds take for motion: on such a training image at
        sigma 15 a quarter of a still clip agreed (0.24), each frame was called a cut and nothing was
        averaged; the pixels that agree are now averaged there."""
        if self.agreement < self.cut_agreement / 3:
            return True
        units = UNITS_PER_LEVEL[np.dtype(dtype)]
        return _scene_cut(_block_means(y, units), _block_means(self._avg, units), sigma)

    @staticmethod
    def _state_size(y: np.ndarray) -> tuple[int, int]:
        """The (rows, cols) of the ages and agreement: half the frame's, unless the frame is tiny."""
        h, w = y.shape[:2]
        return (h // 2, w // 2) if h >= 16 and w >= 16 else (h, w)

    def _agreement(self, y: np.ndarray, s: float, t_high: float) -> np.ndarray:
        """Per state pixel (float32): 1 where the output agrees with the average, 0 where it moved."""
        h, w = y.shape[:2]
        d = cv2.absdiff(y, self._avg, dst=self._buf("diff", y.shape))
        if d.ndim == 3:
            d = cv2.transform(d, np.full((1, d.shape[2]), 1.0 / d.shape[2], np.float32), dst=self._buf("gray", (h, w)))
        d = d.reshape(h, w)
        sh, sw = self._state_size(y)
        half = (sh, sw) != (h, w)
        if half:
            d = cv2.resize(d, (sw, sh), interpolation=cv2.INTER_AREA)
        k = max(1, (self.window + 1) // 2 if half else self.window)
        d = cv2.blur(d, (k, k), borderType=cv2.BORDER_REFLECT101)
        if self.floor:  # no looser than the output's own frame-to-frame error allows (module docstring)
            s = max(min(s, _quantile(d[::4, ::4], 0.25) * self.floor), 1e-3)
        lo, hi = self.t_low * s, t_high * s
        return np.clip((np.float32(hi) - d) * np.float32(1.0 / (hi - lo)), 0.0, 1.0)

    def _follow_camera(self, y: np.ndarray) -> bool:
        """Move the average (and the ages) with the camera, if it moved (see the module docstring);
        whether it did."""
        prev, g = self._gray, half_gray(y, _units(self._key[1]))
        self._gray = g
        a = self._camera.motion(prev, g)
        if a is None:
            return False
        sh, sw = g.shape
        self._swap(warp(self._avg, full_resolution(a), out=self._buf("spare", self._avg.shape)))
        self._age = cv2.warpAffine(self._age, a, (sw, sh), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        self.aligned += 1
        return True

    def _emit(self, frame: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
        out = self._avg
        if frame.dtype != np.float32:
            # rounded and saturated: the bicubic move of the average leaves it below 0 beside bright
            # edges (a pan of a night scene, blacks crushed, 2026-12-07: down to -6), which
            # cv2.convertScaleAbs, used before, mirrored: pure black came out at up to 7
            out = saturate(out, frame.dtype)
        else:
            out = out.copy()
        out = out.reshape(frame.shape[:2] + (() if frame.ndim == 2 else (-1,)))
        if alpha is not None:
            out = np.concatenate([out, alpha], axis=2)
        return out


class TemporalStep:
    """One frame of a stream through a denoiser, with the stream's temporal state: the one place
    where `VideoDenoiser`, the pipeline (`run`) and `denoise` on a folder of frames do it.

    `mode` (checked by the caller, check_mode): `off`, `blend` (RecursiveBlend on the outputs) or
    `model` (a recurrent model given its last output, RecurrentState). `blend_on` False skips the
    blend (the realtime ladder's rung without it). Frames may be tiled: one full-frame state,
    sliced per tile (tiling.tiled(state=...))."""

    def __init__(self, mode: str):
        self.mode = mode
        self.blend = RecursiveBlend() if mode == "blend" else None
        self.state = RecurrentState() if mode == "model" else None
        self.blend_on = True

    @property
    def resets(self) -> int:
        return self.blend.resets if self.blend is not None else self.state.resets if self.state is not None else 0

    def reset(self) -> None:
        """Forget the past: the next frame is denoised as the first of a new video."""
        if self.blend is not None:
            self.blend.reset()
        if self.state is not None:
            self.state.reset()

    @property
    def running(self) -> str:
        """The temporal mode this frame gets: `mode`, or `off` while the blend is switched off."""
        return "off" if self.mode == "blend" and not self.blend_on else self.mode

    def set_blend(self, on: bool, restart: bool = True) -> None:
        """Switch the blend on or off (the realtime ladder). Switched on again, it starts afresh (its
        last frames are from before it was off), unless `restart` is False: a pipeline whose blend runs
        on a thread of its own restarts it there, in the frames' order (Pipeline._blend_stage)."""
        if self.blend is not None and on and not self.blend_on and restart:
            self.blend.reset()
        self.blend_on = on

    def __call__(self, den, frame: np.ndarray, sigma: float, tile: tuple[int, int] | None = None,
                 overlap: int = 32, blend: bool = True) -> tuple[np.ndarray, Timing, float]:
        """(the denoised frame, the denoiser's stage times, the blend's seconds) for `frame` at noise
        level `sigma` (0-255, before the denoiser's sigma_scale). `den`: a Denoiser, or any object
        with denoise(frame, sigma); `tile` (height, width) cuts the frame into overlapping tiles.
        `blend` False: the frame comes back unblended even while the blend is on (a pipeline that blends
        on a thread of its own, at the level `told(den, sigma)`)."""
        level = told(den, sigma)
        t0 = time.perf_counter()
        prev = self.state.previous(frame, level) if self.state is not None else None
        state = () if prev is None else (prev,)  # a recurrent model's state is one more argument
        t1 = time.perf_counter()
        timed = getattr(den, "denoise_timed", None)
        if tile:
            out = tiled(frame, lambda t, *p: den.denoise(t, sigma, *p), tile, overlap, state=prev)
            timing = Timing(0.0, time.perf_counter() - t1, 0.0)
        elif timed is not None:  # the Denoiser takes the frame as it is: uint8 stays uint8 to the backend
            out, timing = timed(frame, sigma, *state)
        else:
            out = den.denoise(frame, sigma)
            timing = Timing(0.0, time.perf_counter() - t1, 0.0)
        # the state's look at the frame (alignment, cut test) counts as preprocessing
        timing = Timing(timing.preprocess + t1 - t0, timing.inference, timing.postprocess)
        if self.state is not None:
            self.state.update(out)
        if self.running != "blend" or not blend:
            return out, timing, 0.0
        t3 = time.perf_counter()
        out = self.blend(out, level)
        return out, timing, time.perf_counter() - t3


def load_recurrent_variant(model, load, framewise=None) -> tuple[Denoiser | None, str]:
    """(the shipped recurrent variant of framewise model `model`, as `load(name)` gives it; None where
    none ships or the backend cannot run it), and what was done: what `--temporal auto` runs on a
    stream (VideoDenoiser.load, `run`). `framewise`: the model as loaded to run framewise (a
    Denoiser, or a function that loads it, called only where the variant landed on the CPU of a
    machine with a CUDA device); where it runs on a GPU and the variant would not (a Jetson with an
    engine for `default` and none for `default-video`: the variant on ONNX Runtime on the CPU), the
    variant is not used: the blend on the GPU's output is faster by far, and the note says how to
    build the variant's engine."""
    variant = recurrent_variant(model) if isinstance(model, str) else None
    if variant is None:
        return None, ""
    try:
        rec = load(variant)
    except EdgeDenoiseError as e:
        return None, f"{variant} not used ({e}): the blend"
    used = f"temporal auto: {variant}, the same model with a learned fusion of the frames before"
    if getattr(rec, "fusion_note", ""):
        used += f"; {rec.fusion_note}"
    if framewise is None or rec.backend.on_gpu:
        return rec, used
    if not isinstance(framewise, Denoiser):
        framewise = framewise() if cuda_devices() else None  # no GPU here: nothing to compare with
    if framewise is not None and framewise.backend.on_gpu:
        rec.close()
        onnx = resolve(variant).onnx
        return None, (f"{variant} not used: it would run on {rec.backend_name} on the CPU where {model} runs on "
                      f"{framewise.backend_name} on the GPU (an engine for it: edgedenoise build {onnx} --out "
                      f"ENGINE, beside it or in ${ENGINES_ENV}): the blend")
    return rec, used


class VideoDenoiser:
    """A `Denoiser` with a memory: the frames of one video, in order.

        from edgedenoise import VideoDenoiser
        vd = VideoDenoiser.load("default")          # default-video: default and its learned fusion
        for frame in frames:
            out = vd.denoise(frame, sigma=25)       # sigma=None: estimated per frame
        vd.reset()                                  # a new video (or a reconnect)

    Frames are what `Denoiser` takes (any size, gray/BGR/BGRA, uint8/uint16/float32). The state is
    dropped on the first frame, a change of frame size or type, a detected scene cut, and `reset()`;
    `resets` counts the drops. `temporal`: `blend` (RecursiveBlend on the model's outputs), `model`
    (a recurrent model given its last output: RecurrentState; `tiny-video` is one), `off`
    (framewise, as `Denoiser`), or `auto`: `model` for a recurrent model, else `blend` (`load` with
    `auto` takes a shipped model's recurrent variant where one ships: default -> default-video).
    Not for several threads at once: the state belongs to one stream."""

    def __init__(self, denoiser: Denoiser, temporal: str = "auto", blend: RecursiveBlend | None = None):
        self.den = denoiser
        if temporal == "auto":
            temporal = "model" if denoiser.recurrent else "blend"
        self.mode = check_mode(temporal, denoiser.name, denoiser.recurrent)
        self.step = TemporalStep(self.mode)
        if blend is not None and self.mode == "blend":
            self.step.blend = blend

    @classmethod
    def load(cls, model: str = "default", backend: str = "auto", threads: int | None = None,
             device: str | None = None, precision: str = "fp32", sigma_scale: float = 1.0,
             temporal: str = "auto") -> VideoDenoiser:
        """As `Denoiser.load`, plus the temporal mode. `auto` on a shipped framewise model that has a
        recurrent variant (tiny-video, default-video) loads that variant, in `model` mode, where the
        backend runs it; else the blend."""
        def load(m):
            return Denoiser.load(m, backend, threads, device, precision, sigma_scale)

        held: list = []  # the framewise model, where the variant's check loaded it
        if temporal == "auto":
            rec, _ = load_recurrent_variant(model, load, framewise=lambda: held.append(load(model)) or held[0])
            if rec is not None:
                for d in held:
                    d.close()
                return cls(rec, "model")
        den = held[0] if held else load(model)
        try:
            return cls(den, temporal)
        except BaseException:
            den.close()
            raise

    # the Denoiser's attributes, for code that takes either
    name = property(lambda self: self.den.name)
    backend_name = property(lambda self: self.den.backend_name)
    precision = property(lambda self: self.den.precision)
    multiple = property(lambda self: self.den.multiple)
    channels = property(lambda self: self.den.channels)
    max_pixels = property(lambda self: self.den.max_pixels)

    @property
    def sigma_scale(self) -> float:
        return self.den.sigma_scale

    @sigma_scale.setter
    def sigma_scale(self, k: float) -> None:
        self.den.sigma_scale = k

    blend = property(lambda self: self.step.blend)  # the recursive filter (blend mode), else None
    state = property(lambda self: self.step.state)  # a recurrent model's state (model mode), else None

    @property
    def resets(self) -> int:
        return self.step.resets

    def told(self, sigma: float) -> float:
        return self.den.told(sigma)

    def reset(self) -> None:
        """Forget the past: the next frame is denoised as the first of a new video."""
        self.step.reset()

    def close(self) -> None:
        self.den.close()

    def denoise(self, frame: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """The next frame of the video, denoised."""
        return self.denoise_timed(frame, sigma)[0]

    def denoise_timed(self, frame: np.ndarray, sigma: float | None = None) -> tuple[np.ndarray, Timing]:
        """`denoise` and the seconds of its stages; the blend counts as post-processing."""
        if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
            return self.den.denoise_timed(frame, sigma)  # refused by the Denoiser, in its words
        if sigma is None:  # estimated here: the blend and the state need the level too
            sigma = self.den.estimate(frame)
        out, timing, blend_s = self.step(self.den, frame, sigma)
        return out, Timing(timing.preprocess, timing.inference, timing.postprocess + blend_s)
