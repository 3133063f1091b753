"""Synthetic real-camera noise: unprocess sRGB to raw, add sensor noise, process back.

The pipeline follows the idea of Brooks et al., "Unprocessing Images for Learned Raw
Denoising" (CVPR 2019), and the in-camera pipeline of CBDNet (Guo et al., CVPR 2019):

    sRGB --inverse tone curve--> linear RGB --inverse CCM--> camera RGB
         --inverse white balance (highlight safe)--> Bayer mosaic = linear raw in [0, 1]
    raw + shot/read noise (heteroscedastic Gaussian, var = shot * x + read)
         --demosaic--> white balance --> CCM --> tone curve --> uint8 --> JPEG / video codec

NumPy and OpenCV only; every random draw comes from the caller's ``numpy.random.Generator``.

Reference image. ``simulate`` returns as reference the *same* pipeline with the same sampled
parameters and the same demosaicing, without noise and without compression. The noisy image
differs from it by the sensor noise as it comes out of the pipeline (spread by demosaicing,
coupled by the colour matrix, shaped by the tone curve) plus the compression artefacts, which
a denoiser should also remove; it does not differ by the demosaicing or colour rendition of the
clean content, which are not noise.

The source images are sharp to the pixel, which no camera's optics deliver to its sensor, so the
reference's demosaicing leaves false colour along every sharp edge, and a JPEG's chroma subsampling
then takes much of it away: at the named settings that loss alone is 27-29 dB RGB PSNR, more than the
sensor noise in daylight (docs/blind-notes.md). ``CameraParams.optics`` > 0 blurs the camera RGB before
the mosaic, as a lens and a low-pass filter do (1 px: the demosaicing's error 24 -> 36 dB, the JPEG's
loss 27 -> 37, as JPEG costs the source images themselves); `train --camera-optics` draws it. The named
settings and the shipped models' training leave it at 0, the simulation as it was.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import cv2
import numpy as np

from .frames import psnr_u8

__all__ = [
    "CameraParams", "SETTINGS", "sample_params", "setting_params", "unprocess", "add_raw_noise",
    "sample_noise_levels", "process", "compress", "simulate", "mosaic", "demosaic",
]

# --------------------------------------------------------------------------------------------
# Colour data.
# sRGB (linear, D65) -> CIE XYZ, the standard IEC 61966-2-1 matrix.
RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                    [0.2126729, 0.7151522, 0.0721750],
                    [0.0193339, 0.1191920, 0.9503041]], np.float64)

# XYZ -> camera matrices (D65 colour matrices of the Adobe DNG / dcraw camera table, /10000)
# for four real sensors. A camera CCM is drawn as a random convex mix of them, as Brooks et al.
# do with their own set of cameras; rows of rgb->camera are normalised so white stays white.
XYZ2CAMS = np.array([
    [[6347, -479, -972], [-8297, 15954, 2480], [-1968, 2131, 7649]],     # Canon EOS 5D
    [[4716, 603, -830], [-7798, 15474, 2480], [-1496, 1937, 6651]],      # Canon EOS 5D Mark II
    [[8139, -2171, -663], [-8747, 16541, 2295], [-1925, 2008, 8093]],    # Nikon D700
    [[5271, -712, -347], [-6153, 13653, 2763], [-1601, 2366, 7242]],     # Sony ILCE-7
], np.float64) / 10000.0

# --------------------------------------------------------------------------------------------
# Sampling ranges. All from Brooks et al. 2019 (Sec. 3 and their released unprocess.py, which
# fit them to the Darmstadt Noise Dataset cameras); none is tuned to any test set.
LOG_SHOT_RANGE = (np.log(1e-4), np.log(1.2e-2))   # bright daylight ... very low light
READ_SLOPE, READ_INTERCEPT, READ_SCATTER = 2.18, 1.20, 0.26  # log(read) = a log(shot) + b + N(0, s)
RED_GAIN_RANGE = (1.9, 2.4)
BLUE_GAIN_RANGE = (1.5, 1.9)
BRIGHTNESS_MEAN, BRIGHTNESS_STD = 0.8, 0.1          # global gain 1 / N(0.8, 0.1)
JPEG_QUALITY_RANGE = (60, 95)                        # our choice: phone/webcam-like qualities
VIDEO_SHARE = 0.15                                   # share of images through a video codec
DEMOSAICS = ("bilinear", "ea", "vng")
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

# OpenCV names a Bayer code after the 2x2 block starting at row 1, column 1, so a layout with
# R at (0, 0) (RGGB) is OpenCV's "BG". Checked by tests/test_camera.py.
_CV_NAME = {"RGGB": "BG", "BGGR": "RG", "GRBG": "GB", "GBRG": "GR"}
_CV_SUFFIX = {"bilinear": "", "ea": "_EA", "vng": "_VNG"}


@dataclass
class CameraParams:
    """Everything one simulated shot needs. ``sample_params`` draws one, ``SETTINGS`` fix one."""

    xyz2cam_weights: tuple = (0.25, 0.25, 0.25, 0.25)
    red_gain: float = 2.15
    blue_gain: float = 1.7
    brightness: float = 1.25           # global digital gain (>1 darkens the raw)
    tone: str = "srgb"                 # "srgb" or "gamma2.2"
    pattern: str = "RGGB"
    shot: float = 1e-3                 # variance per unit signal, raw [0, 1] scale
    read: float = 1e-5                 # signal-independent variance
    demosaic: str = "bilinear"         # bilinear | ea | vng
    compression: str = "jpeg"          # jpeg | video | none
    jpeg_quality: int = 90
    codec: str = "mp4v"                # for compression == "video": mp4v or MJPG
    optics: float = 0.0                # lens blur before the mosaic: Gaussian sigma in pixels (0: none)

    @property
    def rgb2cam(self) -> np.ndarray:
        w = np.asarray(self.xyz2cam_weights, np.float64)
        xyz2cam = np.tensordot(w / w.sum(), XYZ2CAMS, axes=1)
        m = xyz2cam @ RGB2XYZ
        return m / m.sum(axis=1, keepdims=True)

    @property
    def cam2rgb(self) -> np.ndarray:
        return np.linalg.inv(self.rgb2cam)

    @property
    def wb_gains(self) -> np.ndarray:
        """Per-channel gains applied in processing (camera RGB -> white balanced)."""
        return np.array([self.red_gain, 1.0, self.blue_gain]) * self.brightness


def sample_noise_levels(rng: np.random.Generator) -> tuple[float, float]:
    """(shot, read) as real sensors relate them: log(shot) uniform, log(read) on a line."""
    log_shot = rng.uniform(*LOG_SHOT_RANGE)
    log_read = READ_SLOPE * log_shot + READ_INTERCEPT + rng.normal(0.0, READ_SCATTER)
    return float(np.exp(log_shot)), float(np.exp(log_read))


def read_for_shot(shot: float) -> float:
    """The read variance on the fitted line (no scatter): what the named settings use."""
    return float(np.exp(READ_SLOPE * np.log(shot) + READ_INTERCEPT))


def sample_params(rng: np.random.Generator, video_share: float = VIDEO_SHARE, optics: float = 0.0,
                  optics_from: float = 0.5) -> CameraParams:
    """A random camera: CCM mix, WB gains, brightness, tone curve, pattern, noise, demosaic,
    compression: the draw for training data (noise.CameraSim, `train --camera-sim`), INT8
    calibration and the blind gain's calibration (tools/calibrate_blind.py). `optics` > 0: a lens
    blur too, its sigma drawn from [optics_from * optics, optics] pixels after every other draw (0:
    none, and the draws exactly as without it)."""
    weights = rng.uniform(1e-8, 1.0, size=len(XYZ2CAMS))
    red = rng.uniform(*RED_GAIN_RANGE)
    blue = rng.uniform(*BLUE_GAIN_RANGE)
    brightness = 1.0 / max(rng.normal(BRIGHTNESS_MEAN, BRIGHTNESS_STD), 0.4)
    tone = "srgb" if rng.random() < 0.5 else "gamma2.2"
    pattern = BAYER_PATTERNS[rng.integers(len(BAYER_PATTERNS))]
    shot, read = sample_noise_levels(rng)
    dem = DEMOSAICS[rng.choice(3, p=[0.4, 0.4, 0.2])]
    comp = "video" if rng.random() < video_share else "jpeg"
    q = int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))
    codec = "mp4v" if rng.random() < 0.7 else "MJPG"
    blur = float(rng.uniform(optics_from * optics, optics)) if optics > 0 else 0.0
    return CameraParams(tuple(float(x) for x in weights), float(red), float(blue),
                        float(brightness), tone, pattern, shot, read, dem, comp, q, codec, blur)


# --------------------------------------------------------------------------------------------
# Named evaluation settings: fixed sensor, WB, CCM, demosaic and JPEG quality 90. Only the noise
# realisation depends on the seed. Shot levels picked (on CBSD432 training images only, see
# docs/benchmark-protocol.md) for noisy PSNR ~30 / ~24 / ~20 dB; read from the line. Daylight
# and very-low-light are the two ends of Brooks et al.'s shot range; at daylight JPEG q90 of
# the demosaiced image, not the sensor noise, limits the PSNR on textured images.
_SETTING_SHOT = {"daylight": 1.0e-4, "low-light": 4.0e-3, "very-low-light": 1.2e-2}
SETTINGS: dict[str, dict] = {
    name: dict(xyz2cam_weights=(0.25, 0.25, 0.25, 0.25), red_gain=2.15, blue_gain=1.7,
               brightness=1.25, tone="srgb", pattern="RGGB", shot=shot, read=read_for_shot(shot),
               demosaic="bilinear", compression="jpeg", jpeg_quality=90)
    for name, shot in _SETTING_SHOT.items()
}


def setting_params(name: str, optics: float = 0.0) -> CameraParams:
    """The named setting's camera; `optics` > 0: with a lens blur of that many px (CameraParams.optics)."""
    if name not in SETTINGS:
        raise ValueError(f"unknown camera setting {name!r}; known: {', '.join(SETTINGS)}")
    return CameraParams(**SETTINGS[name], optics=optics)


# --------------------------------------------------------------------------------------------
# Tone curves.
def _to_linear(x: np.ndarray, tone: str) -> np.ndarray:
    if tone == "gamma2.2":
        return np.power(x, 2.2, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4)).astype(np.float32)


def _from_linear(x: np.ndarray, tone: str) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    if tone == "gamma2.2":
        return np.power(x, 1 / 2.2, dtype=np.float32)
    return np.where(x <= 0.0031308, x * 12.92,
                    1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


_LUT_CACHE: dict = {}


def _u8_to_linear(img: np.ndarray, tone: str) -> np.ndarray:
    lut = _LUT_CACHE.get(("in", tone))
    if lut is None:
        lut = _LUT_CACHE[("in", tone)] = _to_linear(np.arange(256, dtype=np.float32) / 255.0, tone)
    return lut[img]


_OUT_LEVELS = 1 << 14


def _linear_to_u8(x: np.ndarray, tone: str) -> np.ndarray:
    """Tone curve and 8-bit quantisation through a 14-bit LUT (exact to well under 1/255 LSB
    in the mid-tones; fast enough for data loading)."""
    lut = _LUT_CACHE.get(("out", tone))
    if lut is None:
        v = _from_linear(np.arange(_OUT_LEVELS + 1, dtype=np.float64) / _OUT_LEVELS, tone)
        lut = _LUT_CACHE[("out", tone)] = np.round(np.asarray(v) * 255.0).astype(np.uint8)
    idx = np.clip(x * _OUT_LEVELS + 0.5, 0, _OUT_LEVELS).astype(np.int32)
    return lut[idx]


# --------------------------------------------------------------------------------------------
# Mosaic / demosaic.
def _pattern_offsets(pattern: str) -> dict:
    """Channel index (0 R, 1 G, 2 B) of each of the four (dy, dx) sites."""
    pattern = pattern.upper()
    if pattern not in _CV_NAME:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; known: {', '.join(BAYER_PATTERNS)}")
    ch = {"R": 0, "G": 1, "B": 2}
    return {(0, 0): ch[pattern[0]], (0, 1): ch[pattern[1]],
            (1, 0): ch[pattern[2]], (1, 1): ch[pattern[3]]}


def mosaic(cam_rgb: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """HxWx3 (even H, W) camera RGB -> HxW Bayer mosaic."""
    out = np.empty(cam_rgb.shape[:2], cam_rgb.dtype)
    for (dy, dx), c in _pattern_offsets(pattern).items():
        out[dy::2, dx::2] = cam_rgb[dy::2, dx::2, c]
    return out


def demosaic(raw: np.ndarray, pattern: str = "RGGB", method: str = "bilinear") -> np.ndarray:
    """HxW raw in [0, 1] -> HxWx3 camera RGB float32, with OpenCV. bilinear and ea work on a
    16-bit image; OpenCV's VNG only takes 8 bits, so it gets a raw scaled to 8 bits (coarse in
    the shadows: a real 8-bit-raw VNG camera would be as coarse)."""
    _pattern_offsets(pattern)
    if method not in _CV_SUFFIX:
        raise ValueError(f"unknown demosaic {method!r}; known: {', '.join(DEMOSAICS)}")
    code = getattr(cv2, f"COLOR_Bayer{_CV_NAME[pattern.upper()]}2RGB{_CV_SUFFIX[method]}")
    if method == "vng":
        u = np.clip(raw * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return cv2.cvtColor(u, code).astype(np.float32) * np.float32(1 / 255.0)
    u = np.clip(raw * 65535.0 + 0.5, 0, 65535).astype(np.uint16)
    return cv2.cvtColor(u, code).astype(np.float32) * np.float32(1 / 65535.0)


# --------------------------------------------------------------------------------------------
def _pad_even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    ph, pw = h % 2, w % 2
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)) + ((0, 0),) * (img.ndim - 2), mode="reflect"
                     if min(h, w) > 1 else "edge")
    return img


def unprocess(rgb: np.ndarray, params: CameraParams, mosaic_out: bool = True) -> np.ndarray:
    """sRGB (uint8, or float in [0, 1]) HxWx3 -> linear raw in [0, 1].

    Returns the HxW Bayer mosaic (H, W padded up to even by reflection), or with
    ``mosaic_out=False`` the HxWx3 camera RGB before mosaicing."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB, got shape {rgb.shape}")
    rgb = _pad_even(rgb)
    if rgb.dtype == np.uint8:
        lin = _u8_to_linear(rgb, params.tone)
    else:
        lin = _to_linear(np.clip(rgb.astype(np.float32), 0.0, 1.0), params.tone)
    cam = lin @ params.rgb2cam.T.astype(np.float32)          # inverse of the CCM (cam -> rgb)
    # Inverse white balance, highlight safe (the idea of Brooks et al.): dividing by the gains
    # would put a white pixel at 1/gain (~0.4 in red) in raw, where a real sensor would have
    # clipped it. Near white (mean > 0.9) the inverse gain is blended towards 1, so highlights
    # saturate in every raw channel and come back white; never below the plain inverse gain;
    # anything that still exceeds 1 (a gain < 1) is clipped, as the sensor would.
    gains = params.wb_gains.astype(np.float32)
    grey = cam.mean(axis=2, keepdims=True)
    t = np.float32(0.9)
    mask = np.square(np.maximum(grey - t, 0.0) / (1.0 - t))
    inv = np.maximum(mask + (1.0 - mask) / gains, 1.0 / gains)
    cam = np.clip(cam * inv, 0.0, 1.0)
    if params.optics > 0:  # the lens (and a sensor's low-pass filter) soften the scene before the mosaic
        cam = cv2.GaussianBlur(cam, (0, 0), params.optics, borderType=cv2.BORDER_REFLECT_101)
    return mosaic(cam, params.pattern) if mosaic_out else cam


def add_raw_noise(raw: np.ndarray, params: CameraParams, rng: np.random.Generator) -> np.ndarray:
    """Heteroscedastic Gaussian shot + read noise: var = shot * x + read, on the raw scale.
    Not clipped here (the sensor's black level lets values go slightly negative); clipped when
    the raw is digitised in ``demosaic``."""
    var = params.shot * np.maximum(raw, 0.0) + params.read
    n = rng.standard_normal(raw.shape, dtype=np.float32)
    return (raw + n * np.sqrt(var).astype(np.float32)).astype(np.float32)


def process(raw: np.ndarray, params: CameraParams, demosaic_method: str | None = None,
            out_shape: tuple | None = None) -> np.ndarray:
    """Linear raw -> uint8 sRGB, no compression. ``raw`` is the HxW mosaic (demosaiced with
    ``demosaic_method``, default params.demosaic) or HxWx3 camera RGB (no demosaicing).
    ``out_shape`` (h, w) crops the padding away."""
    if raw.ndim == 2:
        cam = demosaic(raw, params.pattern, demosaic_method or params.demosaic)
    else:
        cam = np.clip(raw, 0.0, 1.0).astype(np.float32)
    # white balance, then clip as a camera does: a sensor-saturated pixel becomes white, not
    # magenta (green's gain is the smallest, so unclipped it would lag behind red and blue)
    cam = np.minimum(cam * params.wb_gains.astype(np.float32), 1.0)
    rgb = cam @ params.cam2rgb.T.astype(np.float32)
    out = _linear_to_u8(rgb, params.tone)
    if out_shape is not None:
        out = out[: out_shape[0], : out_shape[1]]
    return np.ascontiguousarray(out)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


def _video(img: np.ndarray, codec: str, quality: int) -> np.ndarray | None:
    """One frame through cv2.VideoWriter and back; None where the codec is unavailable."""
    h, w = img.shape[:2]
    ext = ".avi" if codec == "MJPG" else ".mp4"
    fd, path = tempfile.mkstemp(suffix=ext, prefix="edgedenoise-cam-")
    os.close(fd)
    try:
        # codecs want even (often multiple-of-16) sizes: pad by edge replication, crop back
        H, W = -(-h // 16) * 16, -(-w // 16) * 16
        frame = np.pad(img, ((0, H - h), (0, W - w), (0, 0)), mode="edge")[:, :, ::-1]
        vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), 25.0, (W, H))
        if not vw.isOpened():
            return None
        try:
            vw.set(cv2.VIDEOWRITER_PROP_QUALITY, float(quality))
        except cv2.error:
            pass
        vw.write(np.ascontiguousarray(frame))
        vw.release()
        cap = cv2.VideoCapture(path)
        ok, back = cap.read()
        cap.release()
        if not ok or back is None or back.shape[:2] != (H, W):
            return None
        return np.ascontiguousarray(back[:h, :w, ::-1])
    except cv2.error:
        return None
    finally:
        try:
            os.remove(path)
        except OSError:
            pass


def compress(img: np.ndarray, params: CameraParams) -> tuple[np.ndarray, dict]:
    """Apply params.compression to a uint8 RGB image; info says what was actually done."""
    info = {"compression": params.compression, "video_fallback": False}
    if params.compression == "none":
        return img, info
    if params.compression == "video":
        out = _video(img, params.codec, params.jpeg_quality)
        if out is not None:
            info["codec"] = params.codec
            return out, info
        info["video_fallback"] = True           # codec unavailable: JPEG instead
        info["compression"] = "jpeg"
    elif params.compression != "jpeg":
        raise ValueError(f"unknown compression {params.compression!r}")
    info["jpeg_quality"] = params.jpeg_quality
    return _jpeg(img, params.jpeg_quality), info


def simulate(clean_rgb_u8: np.ndarray, rng: np.random.Generator, setting: str | None = None,
             params: CameraParams | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Real-camera-like noisy image from a clean sRGB one.

    Returns (noisy_u8, clean_ref_u8, info), both HxWx3 uint8 RGB of the input's size.
    ``clean_ref_u8`` is the same pipeline (same parameters, same demosaicing) without noise and
    without compression. With ``setting`` (a key of SETTINGS) all parameters are fixed and
    ``rng`` only draws the noise; without it (and without ``params``) they are drawn from rng.
    ``info``: the parameters, what compression was applied, and ``noise_std`` = std of
    noisy - clean_ref on the 0-255 scale."""
    img = np.asarray(clean_rgb_u8)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3 RGB, got {img.dtype} {img.shape}")
    if params is None:
        params = setting_params(setting) if setting is not None else sample_params(rng)
    h, w = img.shape[:2]
    raw = unprocess(img, params)
    ref = process(raw, params, out_shape=(h, w))
    noisy = process(add_raw_noise(raw, params, rng), params, out_shape=(h, w))
    noisy, cinfo = compress(noisy, params)
    d = noisy.astype(np.float32) - ref.astype(np.float32)
    info = {"setting": setting, "params": params, **cinfo,
            "shot": params.shot, "read": params.read, "demosaic": params.demosaic,
            "noise_std": float(d.std()), "psnr": psnr_u8(noisy, ref)}
    return noisy, ref, info

