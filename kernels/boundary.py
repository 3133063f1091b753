"""Launchers and PyTorch references for the frame-boundary kernels (boundary_kernels.py).

    h0 = ingest(frame_u8, pack_weight(w_head), b_head, smap, multiple)   # (N, Hh, Wh, C0) after the head
    out = egest(h, pack_weight(w_tail), b_tail, frame_u8)                 # (N, H, W, 3) uint8 BGR

Weights come packed (conv.pack_weight, in the features' dtype): a caller packs them once.

`frame_u8` is (N, H, W, 3) uint8 BGR, any H and W; the network's grid is the frame padded by
reflection to multiples of `multiple`, then halved by the pixel-unshuffle. `smap` is the
noise-level map value per image (sigma in [0,1] units times the model's map scale).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .blocks import cdiv, conv_blocks, half_grid  # noqa: F401  (half_grid: part of this module's API)


def ingest(frame: torch.Tensor, wp: torch.Tensor, bias: torch.Tensor, smap: torch.Tensor, multiple: int,
           block_m: int = 64) -> torch.Tensor:
    """wp: the head conv packed, (9*CIN, CO); its dtype is the features' dtype."""
    from .boundary_kernels import ingest_conv_kernel

    n, h, w, _ = frame.shape
    if (-h) % multiple >= h or (-w) % multiple >= w:
        raise ValueError(f"frame {w}x{h} is too small to pad to a multiple of {multiple} by reflection")
    cin, co = wp.shape[0] // 9, wp.shape[1]
    hh, wh = half_grid(h, w, multiple)
    out = torch.empty((n, hh, wh, co), device=frame.device, dtype=wp.dtype)
    bn, _ = conv_blocks(cin, co)
    # Grid: one program per (BLOCK_M half-res pixels) x (BLOCK_N output channels).
    grid = (cdiv(n * hh * wh, block_m), cdiv(co, bn))
    ingest_conv_kernel[grid](
        frame, wp, bias.float().contiguous(), smap.float().contiguous(), out,
        n, h, w, hh, wh, co,
        CIN=cin, BLOCK_M=block_m, BLOCK_N=bn, BLOCK_K=16, IEEE=wp.dtype == torch.float32,
    )
    return out


def egest(hfeat: torch.Tensor, wp: torch.Tensor, bias: torch.Tensor, frame: torch.Tensor,
          block_m: int = 64) -> torch.Tensor:
    """wp: the tail conv packed, (9*CI, 12), in hfeat's dtype."""
    from .boundary_kernels import egest_conv_kernel

    n, hh, wh, ci = hfeat.shape
    _, h, w, _ = frame.shape
    if wp.shape[1] != 12:
        raise ValueError("egest expects the 3x3 tail convolution to 12 channels (RGB, pixel-shuffle 2)")
    out = torch.empty_like(frame)
    _, bk = conv_blocks(ci, 12)
    grid = (cdiv(n * hh * wh, block_m),)
    egest_conv_kernel[grid](
        hfeat, wp, bias.float().contiguous(), frame, out,
        n, h, w, hh, wh, ci,
        BLOCK_M=block_m, BLOCK_K=bk, IEEE=hfeat.dtype == torch.float32,
    )
    return out


# ---------------------------------------------------------------- references (fp32 PyTorch)


def frame_to_input(frame: torch.Tensor, multiple: int) -> torch.Tensor:
    """uint8 BGR (N,H,W,3) -> float RGB (N,3,Hp,Wp) in [0,1], reflect-padded."""
    x = frame.flip(-1).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), mode="reflect")


def ingest_reference(frame, weight, bias, smap, multiple):
    x = F.pixel_unshuffle(frame_to_input(frame, multiple), 2)
    m = smap.float().view(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[-2:])
    y = F.relu(F.conv2d(torch.cat([x, m], 1), weight.float(), bias.float(), padding=1))
    return y.permute(0, 2, 3, 1)


def egest_reference(hfeat, weight, bias, frame):
    n, h, w, _ = frame.shape
    noise = F.pixel_shuffle(F.conv2d(hfeat.permute(0, 3, 1, 2).float(), weight.float(), bias.float(), padding=1), 2)
    x = frame.flip(-1).permute(0, 3, 1, 2).float() / 255.0
    y = (x - noise[..., :h, :w]).clamp(0, 1)
    return torch.floor(y * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).flip(-1)
