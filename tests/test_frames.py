"""Labels (edgedenoise.frames.draw_label): the outline surrounds the fill whatever OpenCV does with
glyph advances, only the text's box is touched, and text at or past the border is cut, not an error."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgedenoise.frames import FONT, draw_label

# A mid-grey with a tint (B < G < R): white fill and black outline are grey, so any pixel the label
# touched has a smaller R - B than the background's 64 (it is scaled by how much background shows
# through), which tells the background apart even from an anti-aliased half white, half black pixel.
BG = (96, 128, 160)
TEXT, ORG, SCALE = "noisy sigma=25: 20.33 dB", (8, 30), 0.55


def grey(h=48, w=260):
    return np.full((h, w, 3), BG, np.uint8)


def regions(img):
    """(fill, outline, background) masks of a label drawn with the default colours on BG."""
    i = img.astype(np.int16)
    tint = i[:, :, 2] - i[:, :, 0]
    fill = i.min(axis=2) >= 200  # mostly white: at least 65 % fill alpha
    outline = i.max(axis=2) < 64  # mostly black
    background = tint > 32  # more than half the background shows through
    return fill, outline, background


def bbox(mask):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max(), ys.max()


@pytest.mark.parametrize("text,scale", [(TEXT, 0.4), (TEXT, SCALE), (TEXT, 0.6), (TEXT, 1.0),
                                        ("[gjpq|{}] (y)", SCALE), ("[gjpq|{}] (y)", 2.0)])
def test_outline_surrounds_fill(text, scale):
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    org = (ORG[0], 2 * th)  # glyphs may reach above getTextSize's height: leave room
    img = grey(org[1] + base + 20, org[0] + tw + 20)
    draw_label(img, text, org, scale)
    fill, outline, background = regions(img)
    assert fill.sum() > 50 and outline.sum() > 50  # there is text, and an outline
    # (a) no fill pixel touches the background: the fill grown by one pixel (8-neighbourhood) meets none
    grown = cv2.dilate(fill.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert not (grown & background).any(), f"fill touches the background at {np.argwhere(grown & background)[:5]}"
    # (b) the fill's bounding box lies strictly inside the outline's
    fx0, fy0, fx1, fy1 = bbox(fill)
    ox0, oy0, ox1, oy1 = bbox(outline)
    assert ox0 < fx0 and oy0 < fy0 and fx1 < ox1 and fy1 < oy1


def test_only_the_text_box_changes():
    img = grey()
    before = img.copy()
    out = draw_label(img, TEXT, ORG, SCALE)
    assert out is img and img.shape == before.shape and img.dtype == np.uint8
    changed = np.any(img != before, axis=2)
    (tw, th), base = cv2.getTextSize(TEXT, FONT, SCALE, 1)
    x0, y0, x1, y1 = bbox(changed)
    m = 5  # the outline's 2 px and anti-aliasing
    assert ORG[0] - m <= x0 and x1 < ORG[0] + tw + m and ORG[1] - th - m <= y0 and y1 < ORG[1] + base + m
    box = np.zeros_like(changed)
    box[y0:y1 + 1, x0:x1 + 1] = True
    assert np.array_equal(img[~box], before[~box])  # the rest of the image is untouched


@pytest.mark.parametrize("org", [(-30, 12), (200, 30), (8, 5), (8, 54), (-1000, -1000), (10**6, 30), (300, 100)])
def test_near_or_past_the_border(org):
    img = grey()
    before = img.copy()
    draw_label(img, TEXT, org, SCALE)
    assert img.shape == before.shape
    changed = np.any(img != before, axis=2)
    if org in ((-1000, -1000), (10**6, 30), (300, 100)):  # wholly outside
        assert not changed.any()
    else:
        assert changed.any()  # the part inside is drawn


def test_tiny_image_and_empty_text():
    img = np.zeros((3, 4, 3), np.uint8)
    draw_label(img, "x", (0, 2))
    draw_label(img, "", (0, 2))
    with pytest.raises(ValueError, match="uint8 BGR"):
        draw_label(np.zeros((10, 10), np.uint8), "x", (0, 5))


def test_compose_is_labelled():
    from edgedenoise.runtime.sinks import Result, compose

    rng = np.random.default_rng(0)
    noisy = rng.integers(60, 200, (120, 160, 3), np.uint8)
    den = np.full((120, 160, 3), 128, np.uint8)
    res = Result(index=0, noisy=noisy, denoised=den, sigma=25.0, t_captured=0.0)
    pic = compose(res, "24.8 fps | latency 41 ms")
    assert pic.shape == (120, 324, 3) and pic.dtype == np.uint8
    plain = np.concatenate([noisy, np.full((120, 4, 3), 255, np.uint8), den], axis=1)
    changed = np.any(pic != plain, axis=2)
    assert changed[:30, :80].any()  # "noisy"
    assert changed[:30, 170:].any()  # "denoised (sigma 25.0)", over the right half
    assert changed[90:, :].any()  # the status line
    assert not changed[40:80].any()  # nothing else
    fill, outline, _ = regions(pic[:30, 164:])  # on the flat right half the label reads white on black
    assert fill.sum() > 20 and outline.sum() > fill.sum()
    assert compose(res, max_width=162).shape == (60, 162, 3)


def test_comparison_labels_a_copy():
    from edgedenoise.evaluate import comparison

    rgb = np.full((64, 96, 3), 128, np.uint8)
    pic = comparison([("clean", rgb), ("noisy 20.33 dB", rgb)])
    assert pic.shape == (64, 196, 3)
    assert np.all(rgb == 128)  # the caller's frame is not drawn on
    assert np.any(pic[:30, :96] != 128) and np.any(pic[:30, 100:] != 128)
