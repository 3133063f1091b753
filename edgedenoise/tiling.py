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
        fall = (np.arange(overlap_hi, 0, -1, dtype=np.float32) - 0.5) / overlap_hi
        w[n - overlap_hi:] = np.minimum(w[n - overlap_hi:], fall)
    return w


def tiled(frame: np.ndarray, fn: Callable[..., np.ndarray], tile: tuple[int, int],
          overlap: int = 32, state: np.ndarray | None = None) -> np.ndarray:
    """Apply `fn` (frame -> frame of the same shape and dtype) tile by tile and blend.

    `state`: a full-frame array (a recurrent model's last output) sliced with the frame: `fn` is
    then called as fn(tile, state_tile), so the stream keeps one full-frame state across tiles.

    `frame` is HxW or HxWxC of any dtype; `fn` gets tiles of that dtype (a uint8 frame gives
    uint8 tiles, which frame-native backends need); the result has the frame's shape and dtype.
    A frame that fits in one tile is passed to `fn` whole.

    Memory: blending needs float sums only for one row of tiles at a time (a tile-high strip,
    carried down by the overlap), never a float copy of the whole frame: a 10000x10000 frame in
    1024x1024 tiles blends in a 1024x10000 strip (about 160 MB) instead of two 1.2 GB frames.
    """
    h, w = frame.shape[:2]
    th, tw = min(tile[0], h), min(tile[1], w)
    if th == h and tw == w:
        return fn(frame) if state is None else fn(frame, state)
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    out = np.empty_like(frame)
    extra = frame.shape[2:]
    acc = np.zeros((th, w) + extra, np.float32)  # rows ys[i] .. ys[i] + th of the current strip
    wsum = np.zeros((th, w), np.float32)
    integer = np.issubdtype(frame.dtype, np.integer)
    for i, y in enumerate(ys):
        # overlap actually shared with the neighbour above/below (the last tile may overlap more)
        top = ys[i - 1] + th - y if i > 0 else 0
        bottom = y + th - ys[i + 1] if i + 1 < len(ys) else 0
        wy = _ramp(th, top, bottom)
        for j, x in enumerate(xs):
            left = xs[j - 1] + tw - x if j > 0 else 0
            right = x + tw - xs[j + 1] if j + 1 < len(xs) else 0
            wgt = wy[:, None] * _ramp(tw, left, right)[None, :]
            part_in = np.ascontiguousarray(frame[y:y + th, x:x + tw])
            res = fn(part_in) if state is None else fn(part_in, np.ascontiguousarray(state[y:y + th, x:x + tw]))
            if res.shape != (th, tw) + extra:
                raise ValueError(f"tile function returned shape {res.shape} for a tile of {(th, tw) + extra}")
            acc[:, x:x + tw] += np.multiply(res, wgt[:, :, None] if extra else wgt, dtype=np.float32)
            wsum[:, x:x + tw] += wgt
        # rows above the next strip's start get nothing more: finish them, carry the rest down
        done = (ys[i + 1] if i + 1 < len(ys) else y + th) - y
        part = acc[:done]  # normalised in place: no float temporaries the size of the strip
        np.divide(part, wsum[:done, :, None] if extra else wsum[:done], out=part)
        if integer:
            info = np.iinfo(frame.dtype)
            np.clip(np.rint(part, out=part), info.min, info.max, out=part)
        out[y:y + done] = part  # cast to the frame's dtype
        keep = th - done
        acc[:keep], wsum[:keep] = acc[done:].copy(), wsum[done:].copy()
        acc[keep:], wsum[keep:] = 0, 0
    return out
