"""Frame and pixel helpers shared by the runtime, evaluation and benchmarks.

For now only the label drawing: `draw_label()`, outlined text that reads on any background.
This module imports only numpy and cv2 (no torch): the runtime imports it on the device.
"""
from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


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
