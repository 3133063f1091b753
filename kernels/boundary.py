"""Launchers and PyTorch references for the frame-boundary kernels (boundary_kernels.py).

    h0 = ingest(frame_u8, pack_weight(w_head), b_head, smap, multiple)   # (N, Hh, Wh, C0) after the head
    out = egest(h, pack_weight(w_tail), b_tail, frame_u8)                 # (N, H, W, 3) uint8 BGR

A recurrent model with a gate branch (model.gate, gate_in "sums") ends instead in

    noise, gin = egest_gate(h, pack_weight(w_tail), b_tail, frame_u8, prev_u8, smap)
    g = ... the branch's two 3x3 convs on gin (conv.conv2d_nhwc, ReLU) ...
    out = fuse_egest(g, *pack_gate_logits(w_gate_1x1, b_gate_1x1), noise, frame_u8, prev_u8)

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
        n, h, w, hh, wh,
        CO=co, CIN=cin, BLOCK_M=block_m, BLOCK_N=bn, BLOCK_K=16, IEEE=wp.dtype == torch.float32,
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
        n, h, w, hh, wh,
        CI=ci, BLOCK_M=block_m, BLOCK_K=bk, IEEE=hfeat.dtype == torch.float32,
    )
    return out


def egest_gate(hfeat: torch.Tensor, wp: torch.Tensor, bias: torch.Tensor, frame: torch.Tensor,
               prev: torch.Tensor, smap: torch.Tensor, block_m: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A recurrent model's tail: (the predicted noise (N, Hh, Wh, 12) fp32, the gate branch's input
    (N, Hh, Wh, 3) in hfeat's dtype). wp: the tail conv packed, (9*CI, 12); prev: the stream's last
    output, laid out as `frame` (the frame itself on a scene's first frame)."""
    from .boundary_kernels import egest_gate_kernel

    n, hh, wh, ci = hfeat.shape
    _, h, w, _ = frame.shape
    if wp.shape[1] != 12:
        raise ValueError("egest_gate expects the 3x3 tail convolution to 12 channels (RGB, pixel-shuffle 2)")
    if prev.shape != frame.shape or prev.dtype != torch.uint8:
        raise ValueError(f"prev {tuple(prev.shape)} {prev.dtype} must be uint8 frames like {tuple(frame.shape)}")
    noise = torch.empty((n, hh, wh, 12), device=hfeat.device, dtype=torch.float32)
    gin = torch.empty((n, hh, wh, 3), device=hfeat.device, dtype=hfeat.dtype)
    _, bk = conv_blocks(ci, 12)
    egest_gate_kernel[(cdiv(n * hh * wh, block_m),)](
        hfeat, wp, bias.float().contiguous(), frame, prev, smap.float().contiguous(), noise, gin,
        n, h, w, hh, wh,
        CI=ci, BLOCK_M=block_m, BLOCK_K=bk, IEEE=hfeat.dtype == torch.float32,
    )
    return noise, gin


def pack_gate_logits(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gate branch's last conv (4, CI, 1, 1) and its bias (4,) -> a weight (CI, 12) and a bias (12,)
    fp32: column k holds logit k % 4 (sub-pixel (dy, dx) of every colour k // 4), so the kernel's 12
    columns line up with the unshuffled noise. Packed once, as pack_weight packs the convs."""
    if tuple(weight.shape[2:]) != (1, 1) or weight.shape[0] != 4 or tuple(bias.shape) != (4,):
        raise ValueError(f"the gate's last conv must be 1x1 to 4 logits, not {tuple(weight.shape)}")
    cols = torch.arange(12, device=weight.device) % 4
    return weight[:, :, 0, 0].t()[:, cols].contiguous(), bias.float()[cols.to(bias.device)].contiguous()


def fuse_egest(g: torch.Tensor, wp: torch.Tensor, bias: torch.Tensor, noise: torch.Tensor, frame: torch.Tensor,
               prev: torch.Tensor, block_m: int = 64) -> torch.Tensor:
    """The gate logits (1x1 conv of g; wp and bias from pack_gate_logits) and the fusion: uint8 BGR
    (N, H, W, 3)."""
    from .boundary_kernels import fuse_egest_kernel

    n, hh, wh, ci = g.shape
    if wp.shape != (ci, 12) or bias.shape != (12,):
        raise ValueError(f"fuse_egest expects the gate logits packed as ({ci}, 12) and (12,) (pack_gate_logits), "
                         f"not {tuple(wp.shape)} and {tuple(bias.shape)}")
    if noise.shape != (n, hh, wh, 12) or prev.shape != frame.shape:
        raise ValueError("fuse_egest: noise, frame and prev do not match the gate's grid")
    out = torch.empty_like(frame)
    _, bk = conv_blocks(ci, 12)
    fuse_egest_kernel[(cdiv(n * hh * wh, block_m),)](
        g, wp.to(g.dtype), bias, noise, frame, prev, out,
        n, frame.shape[1], frame.shape[2], hh, wh,
        CI=ci, BLOCK_M=block_m, BLOCK_K=bk, IEEE=g.dtype == torch.float32,
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


def egest_gate_reference(hfeat, weight, bias, frame, prev, smap):
    """(noise NHWC (N, Hh, Wh, 12), gin NHWC (N, Hh, Wh, 3)), fp32, as model.DenoiseUNet computes them
    on the frame padded by reflection."""
    noise = F.conv2d(hfeat.permute(0, 3, 1, 2).float(), weight.float(), bias.float(), padding=1)
    hp, wp = 2 * noise.shape[-2], 2 * noise.shape[-1]
    x = frame_to_input(frame, 1)
    p = frame_to_input(prev, 1)
    pad = (0, wp - x.shape[-1], 0, hp - x.shape[-2])
    x, p = F.pad(x, pad, mode="reflect"), F.pad(p, pad, mode="reflect")
    e = p - (x - F.pixel_shuffle(noise, 2))
    s2 = torch.cat([F.relu(e).sum(1, keepdim=True), F.relu(-e).sum(1, keepdim=True)], 1)
    m = smap.float().view(-1, 1, 1, 1).expand(x.shape[0], 1, hp // 2, wp // 2)
    gin = torch.cat([F.avg_pool2d(s2, 2), m], 1)
    return noise.permute(0, 2, 3, 1), gin.permute(0, 2, 3, 1)


def fuse_egest_reference(g, weight, bias, noise, frame, prev):
    """uint8 BGR out, fp32, as model.DenoiseUNet fuses (weight: the gate's 1x1 conv, (4, CI, 1, 1))."""
    n, h, w, _ = frame.shape
    logits = F.conv2d(g.permute(0, 3, 1, 2).float(), weight.float(), bias.float())
    gate = F.pixel_shuffle(logits, 2).clamp(0, 1)[..., :h, :w]
    own = frame_to_input(frame, 1) - F.pixel_shuffle(noise.permute(0, 3, 1, 2).float(), 2)[..., :h, :w]
    p = frame_to_input(prev, 1)
    known = (frame != prev).any(dim=-1)[:, None].float()
    y = (own + gate * known * (p - own)).clamp(0, 1)
    return torch.floor(y * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).flip(-1)
