"""Launcher and PyTorch reference for the fused NHWC convolution in conv_kernels.py.

    wp = pack_weight(conv.weight)                       # once, at load time
    y = conv2d_nhwc(x, wp, conv.bias, kernel=(3, 3), stride=1, padding=1, act="relu", residual=r)

x is (N, H, W, CI) contiguous (channels-last memory as its own shape), fp16 or fp32;
the result is (N, HO, WO, CO) in x's dtype. `conv2d_nhwc_reference` computes the same
thing with torch.nn.functional.conv2d in fp32 and is what the tests compare against.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .blocks import cdiv, conv_blocks

ACTS = {"none": 0, "relu": 1}


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """(CO, CI, KH, KW) PyTorch layout -> (KH*KW*CI, CO), K-major as the kernel reads it."""
    co, ci, kh, kw = weight.shape
    return weight.permute(2, 3, 1, 0).reshape(kh * kw * ci, co).contiguous()


def out_size(h: int, w: int, kernel: tuple[int, int], stride: int, padding: int) -> tuple[int, int]:
    return (h + 2 * padding - kernel[0]) // stride + 1, (w + 2 * padding - kernel[1]) // stride + 1


def conv2d_nhwc(x: torch.Tensor, wp: torch.Tensor, bias: torch.Tensor | None, kernel: tuple[int, int],
                stride: int = 1, padding: int = 0, act: str = "none", residual: torch.Tensor | None = None,
                block_m: int = 64, block_n: int | None = None, block_k: int | None = None,
                num_warps: int = 4, ieee: bool = True, num_stages: int | None = None) -> torch.Tensor:
    """Fused conv + bias + activation (+ residual added after the activation). block_m, num_warps and
    num_stages (None: Triton's default) are launch choices that change the speed, not the result
    (benchmarks/kernel_sweep.py times them per layer on a GPU)."""
    from .conv_kernels import conv2d_nhwc_kernel

    n, h, w, ci = x.shape
    kh, kw = kernel
    k, co = wp.shape
    if k != kh * kw * ci:
        raise ValueError(f"packed weight has {k} rows, expected {kh}*{kw}*{ci}")
    ho, wo = out_size(h, w, kernel, stride, padding)
    out = torch.empty((n, ho, wo, co), device=x.device, dtype=x.dtype)
    if bias is None:
        bias = torch.zeros(co, device=x.device, dtype=torch.float32)
    if residual is not None and residual.shape != out.shape:
        raise ValueError(f"residual {tuple(residual.shape)} does not match output {tuple(out.shape)}")
    bn, bk = conv_blocks(ci, co)
    block_n, block_k = block_n or bn, block_k or bk
    # Grid: one program per (BLOCK_M output pixels) x (BLOCK_N output channels) tile.
    grid = (cdiv(n * ho * wo, block_m), cdiv(co, block_n))
    conv2d_nhwc_kernel[grid](
        x, wp.to(x.dtype), bias.float().contiguous(), residual if residual is not None else out, out,
        n, h, w, CI=ci, HO=ho, WO=wo, CO=co,  # CI, CO: compile-time (conv_kernels.py says why)
        KH=kh, KW=kw, STRIDE=stride, PAD=padding, ACT=ACTS[act], HAS_RES=residual is not None,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, IEEE=ieee and x.dtype == torch.float32,
        num_warps=num_warps, **({} if num_stages is None else {"num_stages": num_stages}),
    )
    return out


def conv2d_nhwc_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1,
                          padding: int = 0, act: str = "none", residual: torch.Tensor | None = None) -> torch.Tensor:
    """The same computation in PyTorch, fp32, NHWC in and out."""
    y = F.conv2d(x.permute(0, 3, 1, 2).float(), weight.float(), None if bias is None else bias.float(),
                 stride=stride, padding=padding)
    if act == "relu":
        y = F.relu(y)
    y = y.permute(0, 2, 3, 1)
    if residual is not None:
        y = y + residual.float()
    return y
