"""Block sizes of the conv kernel, shared by the launcher (conv.py) and the AOT build (aot.py)."""
from __future__ import annotations


def next_pow2(v: int) -> int:
    return 1 << max(0, (int(v) - 1).bit_length())


def cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def conv_blocks(ci: int, co: int) -> tuple[int, int]:
    """(BLOCK_N, BLOCK_K): channel tiles follow the layer's width, 16..64 (tl.dot needs >= 16)."""
    return max(16, min(64, next_pow2(co))), max(16, min(64, next_pow2(ci)))
