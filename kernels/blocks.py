"""Block sizes and grid arithmetic shared by the launchers (conv.py, boundary.py), the AOT build
(aot.py) and the TensorRT plugins (edgedenoise/trt/). No torch, no triton here."""
from __future__ import annotations


def next_pow2(v: int) -> int:
    return 1 << max(0, (int(v) - 1).bit_length())


def cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def conv_blocks(ci: int, co: int) -> tuple[int, int]:
    """(BLOCK_N, BLOCK_K): channel tiles follow the layer's width, 16..64 (tl.dot needs >= 16)."""
    return max(16, min(64, next_pow2(co))), max(16, min(64, next_pow2(ci)))


def half_grid(h: int, w: int, multiple: int) -> tuple[int, int]:
    """The network's half-resolution grid for an H x W frame padded to multiples of `multiple`."""
    hp, wp = h + (-h) % multiple, w + (-w) % multiple
    return hp // 2, wp // 2
