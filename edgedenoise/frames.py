"""Frames and pixels: the one place for pixel types, channels, image files and labels.

- `IMAGE_EXTS`: the image files every folder reader takes (sources, `denoise`, training data).
- `read_frame(path)`: an image file as OpenCV decodes it, unchanged (gray, BGR, BGRA, 16-bit),
  with a one-line `DataError` for an empty, unreadable or undecodable file; `write_image`.
- `to_uint8`, `to_channels`, `to_bgr8`: pixel type and channel conversions; `saturate`: float
  values as 8- or 16-bit pixels in one OpenCV pass (the Denoiser's output, the temporal blend's).
- `psnr_u8`: the PSNR of two 8-bit images (the runtime reports it live for the demo).
- `draw_label()`: outlined text that reads on any background, the same on OpenCV 4 and 5.

Imports only numpy and cv2 (no torch): the runtime imports it on the device.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from .atomic import write_atomic
from .errors import DataError

FONT = cv2.FONT_HERSHEY_SIMPLEX
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm", ".exr")


def read_frame(path: str | os.PathLike) -> np.ndarray:
    """An image file as OpenCV decodes it, unchanged (gray, BGR, BGRA, 16-bit); DataError if it
    is missing, empty, unreadable or not an image."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"image not found: {p}")
    try:
        data = np.fromfile(p, np.uint8)  # fromfile + imdecode: non-ASCII paths work
    except OSError as e:
        raise DataError(f"cannot read image {p}: {e.strerror or e}") from None
    if data.size == 0:
        raise DataError(f"image {p} is empty (0 bytes)")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"cannot decode image {p} ({data.size} bytes): file is corrupt or not an image")
    return img


def depth_stretch(img: np.ndarray) -> int:
    """For a 16-bit image whose values all stay below 2^12 (12-bit sensor data in a 16-bit file,
    or 10-bit below 2^10): the factor (16, or 64) that stretches it to the full 16-bit range, so
    that a model sees it as the picture it is rather than a dark one; else 1."""
    if img.dtype != np.uint16:
        return 1
    top = int(img.max())
    if top == 0:
        return 1
    for bits in (10, 12):
        if top < (1 << bits):
            return 1 << (16 - bits)
    return 1


# The pixel types each format holds (OpenCV's encoders); the first is what other types become.
FORMAT_DEPTHS = {".png": ("uint16", "uint8"), ".pgm": ("uint16", "uint8"), ".ppm": ("uint16", "uint8"),
                 ".pnm": ("uint16", "uint8"), ".tif": ("float32", "uint16", "uint8"),
                 ".tiff": ("float32", "uint16", "uint8"), ".exr": ("float32",)}  # others: 8 bits only


def fit_depth(img: np.ndarray, ext: str) -> tuple[np.ndarray, str | None]:
    """`img` in a pixel type the format `ext` holds, converted by value (16-bit / 257 to 8 bits,
    float in [0,1] x 255 or x 65535), not cast (a cast makes a 16-bit image white and a float one
    black in 8 bits). Returns (image, a note saying what was converted, or None)."""
    held = FORMAT_DEPTHS.get(ext.lower(), ("uint8",))
    if img.dtype.name in held:
        return img, None
    want = held[0]
    if want == "uint8":
        out = to_uint8(img)
    elif want == "uint16":  # every format that holds 16 bits holds 8: only float comes here
        out = np.round(np.clip(img, 0.0, 1.0) * 65535.0).astype(np.uint16)
    else:
        full = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(img.dtype, 1.0)
        out = (img.astype(np.float32) / np.float32(full)).astype(np.float32)
    bits = {"uint8": "8-bit", "uint16": "16-bit", "float32": "float"}
    note = f"{bits.get(img.dtype.name, img.dtype.name)} pixels written as {bits[want]} {ext}"
    if want == "uint8" and img.dtype != np.uint8:
        note += " (use .png or .tif to keep the depth)"
    return out, note


def write_image(path: str | os.PathLike, img: np.ndarray) -> str | None:
    """Encode by the file's extension, converting the pixel depth by value where the format needs
    it (fit_depth), and write it atomically (atomic.write_atomic); DataError if OpenCV cannot encode
    it or the file cannot be written. Returns fit_depth's note (None when nothing was converted)."""
    path = Path(path)
    img, note = fit_depth(img, path.suffix or ".png")
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", img)
    except cv2.error as e:
        raise DataError(f"cannot encode a {img.dtype} image as {path.suffix!r}: {str(e).strip().splitlines()[-1]}"
                        ) from None
    if not ok:
        raise DataError(f"cannot encode an image as {path.suffix!r}: use .png, .jpg, .tif or .bmp")
    write_atomic(path, buf.tobytes(), what="image")  # whole or not at all
    return note


_CV_DEPTHS = {np.dtype(np.uint8): cv2.CV_8U, np.dtype(np.uint16): cv2.CV_16U}


def saturate(a: np.ndarray, dtype, scale: float = 1.0) -> np.ndarray:
    """Float values `a` times `scale` as `dtype` (uint8 or uint16), rounded half to even and clipped
    to the type's range: np.clip(np.rint(a * scale), 0, max).astype(dtype) bit for bit (the product
    in float32 for a float32 `a`), in one OpenCV pass over a one-channel view of `a` (a Python number
    scales only the first channel of a multi-channel image). cv2.convertScaleAbs, as fast, mirrors
    negatives instead of clipping them."""
    return cv2.multiply(a.reshape(a.shape[0], -1), scale, dtype=_CV_DEPTHS[np.dtype(dtype)]).reshape(a.shape)


def to_uint8(img: np.ndarray, source: str = "image") -> np.ndarray:
    """Any frame OpenCV decodes to uint8: 16-bit scaled by 1/257, float in [0,1] by 255."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if img.dtype in (np.float32, np.float64):
        return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise DataError(f"{source}: unsupported pixel type {img.dtype} (expected 8- or 16-bit)")


def to_channels(img: np.ndarray, channels: int, source: str = "image", bgr: bool = True) -> np.ndarray:
    """HxW / HxWx1 / HxWx3 / HxWx4 -> HxWx`channels`. Alpha is dropped; grayscale is
    replicated for a colour model; colour is converted to luma for a grayscale model.
    `bgr` says whether 3/4-channel input is in OpenCV's BGR order (else RGB)."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise DataError(f"{source}: unsupported frame shape {img.shape} (expected HxW, HxWx1, HxWx3 or HxWx4)")
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if channels == 3 and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if channels == 1 and img.shape[2] == 3:
        code = cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY
        return cv2.cvtColor(np.ascontiguousarray(img), code)[:, :, None]
    return img


def to_bgr8(img: np.ndarray) -> np.ndarray:
    """Any frame the pipeline carries -> 8-bit BGR for viewing or lossy video."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = to_uint8(img)
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two 8-bit images (peak 255); inf when they are equal."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def draw_label(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.55,
               color: tuple[int, int, int] = (255, 255, 255), outline: tuple[int, int, int] = (0, 0, 0),
               width: int = 2) -> np.ndarray:
    """Draw `text` with its baseline starting at `org` (x, y) on a uint8 BGR image, in place.

    The text is rendered once, with thickness 1 and anti-aliasing, into a one-channel mask; the
    outline is that mask dilated by `width` pixels, so fill and outline line up whatever the
    OpenCV version does with glyph advances (OpenCV 5 makes them depend on the thickness, which
    garbles the old "thick black putText, then thin white putText" labels). The mask is the alpha
    of both blends, so edges stay smooth. Only the text's bounding box (plus a margin) is touched,
    clipped to the image: text partly or wholly outside the image is cut, never an error.
    Returns `img`.
    """
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"draw_label wants a uint8 BGR image (H, W, 3), got {img.dtype} {img.shape}")
    if not text:
        return img
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    # margin: the dilation, anti-aliasing, and glyphs past getTextSize's box (OpenCV 4's brackets: th / 5 above)
    m = width + 2 + th // 4
    x0, y0 = int(org[0]) - m, int(org[1]) - th - m  # the box, in image coordinates
    bw, bh = tw + 2 * m, th + base + 2 * m
    h, w = img.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + bw, w), min(y0 + bh, h)
    if cx0 >= cx1 or cy0 >= cy1:
        return img  # wholly outside
    mask = np.zeros((bh, bw), np.uint8)  # the whole box, so the outline is right at a clipped edge too
    cv2.putText(mask, text, (m, m + th), FONT, scale, 255, 1, cv2.LINE_AA)
    ring = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1,) * 2)) if width > 0 else mask
    sl = np.s_[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    a = mask[sl][:, :, None].astype(np.float32) * (1 / 255)
    o = ring[sl][:, :, None].astype(np.float32) * (1 / 255)
    roi = img[cy0:cy1, cx0:cx1]
    out = roi.astype(np.float32)
    out += (np.float32(outline) - out) * o
    out += (np.float32(color) - out) * a
    np.copyto(roi, np.round(out).astype(np.uint8))  # roi is a view: this writes into img
    return img
