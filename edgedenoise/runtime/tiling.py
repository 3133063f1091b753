"""Tiling for frames larger than an engine's optimization profile (pure NumPy).

A frame is cut into tiles of at most `tile` = (height, width) pixels that overlap by
`overlap` pixels; each tile is processed on its own and the results are blended with
weights that ramp linearly across every overlap, so no seam shows where tiles meet.
Tiles keep one fixed size (the last row/column is shifted back inside the frame) so an
engine with a static profile sees a single shape.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis: tiles of `tile` pixels, neighbours overlapping by >= `overlap`."""
    if length <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap {overlap} must be in [0, tile={tile})")
    n = -(-(length - overlap) // (tile - overlap))  # fewest tiles that overlap by at least `overlap`
    # spread them evenly, first at 0 and last ending at the frame's edge: every overlap is alike
    return [round(k * (length - tile) / (n - 1)) for k in range(n)]


def _ramp(n: int, overlap_lo: int, overlap_hi: int) -> np.ndarray:
    """1-D blend weight of a tile of n pixels: rises over the first overlap, falls over the last."""
    w = np.ones(n, np.float32)
    if overlap_lo > 0:
        w[:overlap_lo] = (np.arange(overlap_lo, dtype=np.float32) + 0.5) / overlap_lo
    if overlap_hi > 0:
        w[n - overlap_hi:] = np.minimum(w[n - overlap_hi:], (np.arange(overlap_hi, 0, -1, dtype=np.float32) - 0.5) / overlap_hi)
    return w


def tiled(frame: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], tile: tuple[int, int],
          overlap: int = 32) -> np.ndarray:
    """Apply `fn` (frame -> frame of the same shape) tile by tile and blend.

    `frame` is HxW or HxWxC of any dtype; the result has its shape and dtype. A frame that
    fits in one tile is passed to `fn` whole.
    """
    h, w = frame.shape[:2]
    th, tw = min(tile[0], h), min(tile[1], w)
    if th == h and tw == w:
        return fn(frame)
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    acc = np.zeros(frame.shape, np.float32)  # hidden cost: two float32 frame-sized buffers
    wsum = np.zeros((h, w), np.float32)
    for i, y in enumerate(ys):
        # overlap actually shared with the neighbour above/below (the last tile may overlap more)
        top = ys[i - 1] + th - y if i > 0 else 0
        bottom = y + th - ys[i + 1] if i + 1 < len(ys) else 0
        wy = _ramp(th, top, bottom)
        for j, x in enumerate(xs):
            left = xs[j - 1] + tw - x if j > 0 else 0
            right = x + tw - xs[j + 1] if j + 1 < len(xs) else 0
            wgt = wy[:, None] * _ramp(tw, left, right)[None, :]
            out = fn(np.ascontiguousarray(frame[y:y + th, x:x + tw]))
            if out.shape != (th, tw) + frame.shape[2:]:
                raise ValueError(f"tile function returned shape {out.shape} for a tile of {(th, tw) + frame.shape[2:]}")
            acc[y:y + th, x:x + tw] += out.astype(np.float32) * (wgt[:, :, None] if frame.ndim == 3 else wgt)
            wsum[y:y + th, x:x + tw] += wgt
    res = acc / (wsum[:, :, None] if frame.ndim == 3 else wsum)
    if np.issubdtype(frame.dtype, np.integer):
        info = np.iinfo(frame.dtype)
        res = np.clip(np.round(res), info.min, info.max)
    return res.astype(frame.dtype)
