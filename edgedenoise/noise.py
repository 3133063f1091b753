"""Seeded noise models, in NumPy (no torch), shared by training, evaluation and the demo stream.

Images here are float32 arrays in [0,1] (any shape; HWC or CHW alike). Every model
takes a `numpy.random.Generator`, so a run is reproduced by its seed.

- AWGN: additive white Gaussian noise, fixed sigma or drawn from a range (uniformly, or
  skewed towards its low end with `sigma_power` > 1).
- Poisson-Gaussian: shot noise (variance a*x) plus read noise (variance b), the
  standard raw-sensor model (Foi et al., 2008), approximated by a Gaussian of the
  same signal-dependent variance.
- Camera: Poisson-Gaussian noise on linear light, then the sRGB-like gamma a camera
  applies, so noise is strongest in the mid-tones, plus optional JPEG compression.

- CameraSim: the camera pipeline of camera.py (sRGB unprocessed to raw, sensor noise, processed
  back, JPEG or a video codec), a random camera per image. Its target is not the clean input but
  the same pipeline without noise (`sample` returns it); `Mixture` draws either it or a base model.

Every model has `sample(clean, rng) -> (noisy, sigma, target)`; `apply` (noisy, sigma) is the
older form of the additive ones, whose target is the clean image itself.

`quantize` turns a noisy float image into what a camera stream delivers: clipped to
[0,255] and rounded to uint8 (the `camera` protocol of BENCHMARK_PROTOCOL.md).
Sigma values are on the 0-255 scale throughout this module's public API.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .trainconfig import CAMERA_LEVELS


def quantize(noisy: np.ndarray) -> np.ndarray:
    """Float image in [0,1] units -> clipped, rounded, back to float in [0,1] (uint8 levels)."""
    return np.round(np.clip(noisy * 255.0, 0.0, 255.0)).astype(np.float32) / 255.0


class _Additive:
    """`sample` for the models whose target is their clean input."""

    def sample(self, clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
        noisy, sigma = self.apply(clean, rng)
        return noisy, sigma, clean


@dataclass
class AWGN(_Additive):
    """Additive white Gaussian noise; `sigma` fixed, or drawn per image from `sigma_range`.

    From a range, sigma = lo + (hi - lo) * u ** sigma_power with u uniform in [0,1):
    power 1 is uniform; power 1.5 keeps the whole range but puts 76 % of the draws in
    its lower two thirds (67 % uniform), where a plain L2 loss otherwise under-weights
    them (the loss of a patch grows with its sigma squared)."""

    sigma: float | None = 25.0
    sigma_range: tuple[float, float] | None = None
    sigma_power: float = 1.0

    def draw_sigma(self, rng: np.random.Generator) -> float:
        if self.sigma_range is not None:
            lo, hi = self.sigma_range
            return float(lo + (hi - lo) * rng.uniform() ** self.sigma_power)
        return float(self.sigma)

    def fixed(self, rng: np.random.Generator) -> AWGN:
        """This noise with its sigma drawn once (a clip's frames share it; see `for_clip`)."""
        return AWGN(sigma=self.draw_sigma(rng))

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """Returns (noisy float32, effective sigma on the 0-255 scale)."""
        sigma = self.draw_sigma(rng)
        n = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(sigma / 255.0)
        return (clean + n).astype(np.float32), sigma


@dataclass
class PoissonGaussian(_Additive):
    """Shot + read noise: var(x) = a*x + b (x in [0,1]). Ranges draw a and b per image,
    log-uniformly, which is how gains and read noise spread across real sensors."""

    shot: tuple[float, float] = (1e-4, 1e-2)  # a
    read: tuple[float, float] = (1e-6, 2.5e-3)  # b = sigma_read**2

    def _draw(self, rng: np.random.Generator) -> tuple[float, float]:
        a = float(np.exp(rng.uniform(np.log(self.shot[0]), np.log(self.shot[1]))))
        b = float(np.exp(rng.uniform(np.log(self.read[0]), np.log(self.read[1]))))
        return a, b

    def fixed(self, rng: np.random.Generator) -> PoissonGaussian:
        a, b = self._draw(rng)
        return PoissonGaussian(shot=(a, a), read=(b, b))

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        a, b = self._draw(rng)
        var = a * np.clip(clean, 0.0, 1.0) + b
        n = rng.standard_normal(clean.shape, dtype=np.float32) * np.sqrt(var).astype(np.float32)
        # The model takes one sigma per image: the RMS of the signal-dependent std.
        sigma = float(np.sqrt(var.mean())) * 255.0
        return (clean + n).astype(np.float32), sigma


@dataclass
class Camera(_Additive):
    """Camera-like noise: Poisson-Gaussian on linear light, gamma-encoded, optional JPEG."""

    pg: PoissonGaussian = field(default_factory=PoissonGaussian)
    gamma: float = 2.2
    jpeg_quality: tuple[int, int] | None = None  # e.g. (70, 95); None = no JPEG

    def fixed(self, rng: np.random.Generator) -> Camera:
        q = self.jpeg_quality
        if q is not None:
            q = (int(rng.integers(q[0], q[1] + 1)),) * 2
        return Camera(pg=self.pg.fixed(rng), gamma=self.gamma, jpeg_quality=q)

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        lin = np.clip(clean, 0.0, 1.0) ** self.gamma
        noisy_lin, _ = self.pg.apply(lin, rng)
        noisy = np.sign(noisy_lin) * np.abs(noisy_lin) ** (1.0 / self.gamma)
        noisy = noisy.astype(np.float32)
        if self.jpeg_quality is not None:
            noisy = _jpeg(noisy, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        sigma = float(np.sqrt(np.mean((noisy - clean) ** 2))) * 255.0
        return noisy, sigma


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    hwc = img if img.ndim == 2 or img.shape[-1] in (1, 3) else np.moveaxis(img, 0, -1)
    u8 = np.round(np.clip(hwc * 255.0, 0, 255)).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255.0
    out = out.reshape(hwc.shape)
    return out if hwc is img else np.moveaxis(out, -1, 0)


@dataclass
class CameraSim:
    """The camera simulation (camera.py) as a training noise: a random camera per image, drawn by
    camera.sample_params from ``rng``. Takes float images in [0,1], CHW or HWC, 3 channels (RGB)
    or 1 (grey: simulated as grey RGB, the output's channel mean kept).

    ``sample`` returns (noisy, level, target): target is the pipeline without noise (same colour
    rendition and demosaicing), level the RMS of noisy - target on the 0-255 scale times
    exp(map_jitter * N(0, 1)), so that a model learns to take a level that an estimate gets
    only roughly right, as a blind estimate on a real camera will. With ``told="estimate"`` the
    level is instead what blind mode tells a model for the noisy patch (estimate.estimate_sigma at
    its default gain; no jitter: the estimate brings its own error), so that a model learns the
    map blind mode gives it: the RMS counts what the model cannot remove as well (a daylight JPEG's
    losses read 13 where the estimate reads 4 and the best level told is about 0)."""

    map_jitter: float = 0.15
    video_share: float | None = None  # None: camera.VIDEO_SHARE
    params: object = None  # a camera.CameraParams: this camera for every image (None: one drawn per image)
    level_gain: float = 1.0  # the level told is also multiplied by this (a clip's jitter, drawn once)
    told: str = "true"  # the level told: "true" (the RMS, jittered) or "estimate" (blind mode's estimate)
    optics: float = 0.0  # each camera's lens blur drawn from [optics_from * optics, optics] px (camera.sample_params)
    optics_from: float = 0.5

    def fixed(self, rng: np.random.Generator) -> CameraSim:
        """One camera and one level jitter for every frame of a clip; only the noise is new per frame."""
        from .camera import VIDEO_SHARE, sample_params

        share = VIDEO_SHARE if self.video_share is None else self.video_share
        params = sample_params(rng, share, self.optics, self.optics_from)
        gain = float(np.exp(self.map_jitter * rng.standard_normal())) if self.map_jitter else 1.0
        if self.told == "estimate":  # drawn all the same, so the clip's later draws stay as they were
            gain = 1.0  # the estimate brings its own error (the class docstring)
        return CameraSim(map_jitter=0.0, video_share=share, params=params, level_gain=gain, told=self.told,
                         optics=self.optics, optics_from=self.optics_from)

    def sample(self, clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
        from .camera import VIDEO_SHARE, sample_params, simulate

        chw = clean.ndim == 3 and clean.shape[0] in (1, 3) and clean.shape[-1] not in (1, 3)
        hwc = np.moveaxis(clean, 0, -1) if chw else (clean[:, :, None] if clean.ndim == 2 else clean)
        grey = hwc.shape[2] == 1
        u8 = np.round(np.clip(hwc * 255.0, 0, 255)).astype(np.uint8)
        if grey:
            u8 = np.repeat(u8, 3, axis=2)
        share = VIDEO_SHARE if self.video_share is None else self.video_share
        params = self.params if self.params is not None else sample_params(rng, share, self.optics, self.optics_from)
        noisy_u8, ref, info = simulate(np.ascontiguousarray(u8), rng, params=params)
        noisy = noisy_u8.astype(np.float32) / 255.0
        ref = ref.astype(np.float32) / 255.0
        if grey:
            noisy, ref = noisy.mean(axis=2, keepdims=True), ref.mean(axis=2, keepdims=True)
        if self.told == "estimate":  # on the uint8 frame blind mode would see
            from .estimate import estimate_sigma

            seen = np.round(noisy * 255.0).astype(np.uint8) if grey else noisy_u8
            level = estimate_sigma(seen) * self.level_gain
        else:
            level = float(np.sqrt(np.mean((noisy - ref) ** 2))) * 255.0 * self.level_gain
            if self.map_jitter:
                level *= float(np.exp(self.map_jitter * rng.standard_normal()))

        def back(a: np.ndarray) -> np.ndarray:
            a = np.moveaxis(a, -1, 0) if chw else (a[:, :, 0] if clean.ndim == 2 else a)
            return np.ascontiguousarray(a, dtype=np.float32)

        return back(noisy), level, back(ref)


def camera_sim_validation(clean_u8: np.ndarray, index: int, optics: float = 0.0) -> tuple[np.ndarray, np.ndarray,
                                                                                         float]:
    """Validation image `index` through the camera simulation as training validates it: a random
    camera drawn from seed [index, 17], no jitter. Returns (noisy, reference, true RMS level),
    uint8 in the layout of `clean_u8` and the level on the 0-255 scale. `optics` > 0: the same
    camera with a lens blur drawn from [optics / 2, optics] px (drawn after the rest, CameraSim.optics)."""
    noisy, level, ref = CameraSim(map_jitter=0.0, optics=optics).sample(clean_u8.astype(np.float32) / 255.0,
                                                                        np.random.default_rng([index, 17]))
    return np.round(noisy * 255.0).astype(np.uint8), np.round(ref * 255.0).astype(np.uint8), level


@dataclass
class Mixture:
    """Each image gets ``camera`` with probability ``share``, else ``base``."""

    base: object
    camera: CameraSim
    share: float

    def sample(self, clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
        if rng.random() < self.share:
            return self.camera.sample(clean, rng)
        return self.base.sample(clean, rng)

    def fixed(self, rng: np.random.Generator):
        return (self.camera if rng.random() < self.share else self.base).fixed(rng)


def for_clip(noise, rng: np.random.Generator):
    """The noise of one video clip: `noise` with its random settings (sigma, camera, JPEG quality,
    the Gaussian-or-camera choice of a mixture) drawn once from `rng`, so that every frame has the
    same kind and level of noise and only the realisation is new per frame, as in a real video."""
    return noise.fixed(rng)


def make_noise(kind: str, sigma: float | None = None, sigma_range: tuple[float, float] | None = None,
               jpeg: bool = False, sigma_power: float = 1.0):
    """Noise model by name: 'awgn', 'poisson-gaussian' or 'camera'."""
    if kind == "awgn":
        if sigma_range is None and sigma is None:
            raise ValueError("awgn noise needs a sigma or a sigma range")
        if sigma_power <= 0:
            raise ValueError(f"sigma_power must be > 0, got {sigma_power}")
        return AWGN(sigma=sigma, sigma_range=sigma_range, sigma_power=sigma_power)
    if kind == "poisson-gaussian":
        return PoissonGaussian()
    if kind == "camera":
        return Camera(jpeg_quality=(70, 95) if jpeg else None)
    if kind == "camera-sim":
        return CameraSim()
    raise ValueError(f"unknown noise model {kind!r}: choose awgn, poisson-gaussian, camera or camera-sim")


def training_noise(kind: str, sigma_range: tuple[float, float], jpeg: bool = False, sigma_power: float = 1.0,
                   camera_sim: float = 0.0, map_jitter: float = 0.15, camera_level: str = "true",
                   camera_optics: float = 0.0, camera_optics_from: float = 0.5):
    """The noise of a training run: `kind` (make_noise), with a share `camera_sim` of the images
    through the camera simulation instead (0: `kind` alone, and its random draws as before);
    `camera_level` is the level those images tell the model (CameraSim.told: "true" or "estimate"),
    `camera_optics` their cameras' lens blur (CameraSim.optics; 0: none), drawn from
    [camera_optics_from * camera_optics, camera_optics] px."""
    if not 0.0 <= camera_sim <= 1.0:
        raise ValueError(f"camera_sim is a share of images in [0, 1], got {camera_sim}")
    if camera_level not in CAMERA_LEVELS:
        raise ValueError(f"camera_level is one of {CAMERA_LEVELS}, got {camera_level!r}")
    sim = CameraSim(map_jitter=map_jitter, told=camera_level, optics=camera_optics, optics_from=camera_optics_from)
    if kind == "camera-sim":
        return sim
    base = make_noise(kind, sigma_range=sigma_range, jpeg=jpeg, sigma_power=sigma_power)
    if camera_sim == 0.0:
        return base
    return Mixture(base, sim, camera_sim)


def protocol_noisy(clean_u8: np.ndarray, sigma: float, index: int, protocol: str) -> np.ndarray:
    """The noisy image of BENCHMARK_PROTOCOL.md for image `index` (0-based, sorted order).

    paper: float32 in [0,1] units, clean/255 + n/255, neither clipped nor quantised.
    camera: uint8, round(clip(clean + n, 0, 255)).
    """
    rng = np.random.default_rng(index)
    n = rng.standard_normal(clean_u8.shape).astype(np.float32) * sigma
    if protocol == "paper":
        return clean_u8.astype(np.float32) / 255.0 + n / 255.0
    if protocol == "camera":
        return np.round(np.clip(clean_u8.astype(np.float32) + n, 0, 255)).astype(np.uint8)
    raise ValueError(f"unknown protocol {protocol!r}: choose camera or paper")
