"""Triton kernel: fused 2-D convolution + bias + activation (+ residual add), NHWC.

Implicit GEMM. The convolution is the matrix product

    out[m, co] = sum_k  A[m, k] * Wp[k, co]          m = (n, ho, wo),  k = (kh, kw, ci)

where A is never materialised: each A tile is gathered straight from the NHWC input,
with zeros where the window leaves the frame (the padding). Accumulation is fp32 for
fp16 and fp32 inputs alike; bias, activation and the residual are applied to the fp32
accumulator before the one store, so the layer costs one read of its input, one of the
residual, and one write.

Pointers and shapes (all tensors contiguous):
    x    (N, H, W, CI)              input, fp16 or fp32
    wp   (KH*KW*CI, CO)             weights packed K-major: row (kh*KW + kw)*CI + ci
    b    (CO,)                      bias, fp32
    res  (N, HO, WO, CO)            residual added after the activation (when HAS_RES)
    out  (N, HO, WO, CO)            output, same dtype as x

The channel counts CI and CO are compile-time constants (one compiled kernel per layer shape):
as run-time integers, Triton knows nothing of a count that is not a multiple of 16, so a 24-channel
layer (the first level of `small`, the largest frame) got 2-byte loads and stores and no software
pipelining, where a 48-channel one got 16-byte vectors and asynchronous copies overlapping the MMAs
(PTX for sm_90 and sm_87; on the first H200 the 24-channel conv3x3 took 3.3x the time of the
48-channel one with the same MACs). Known counts also fold the channel masks away.

Only Triton code lives in this file; the launcher and the PyTorch reference are in conv.py.
"""
import triton
import triton.language as tl


@triton.jit
def unflatten_pixels(offs_m, N, HO, WO):
    """Flat output-pixel indices m = (n*HO + ho)*WO + wo -> (mask m < N*HO*WO, n, ho, wo)."""
    wo = offs_m % WO
    t = offs_m // WO
    return offs_m < N * HO * WO, t // HO, t % HO, wo


@triton.jit
def mma(acc, a, b, IEEE: tl.constexpr):
    """acc + a @ b on tensor cores; IEEE: exact fp32 products (fp32 inputs) instead of TF32."""
    if IEEE:
        acc += tl.dot(a, b, input_precision="ieee")
    else:
        acc += tl.dot(a, b)
    return acc


@triton.jit
def accumulate_tap(acc, x_ptr, wp_ptr, pix, inside, tap, CI, CO, offs_n, mask_n,
                   BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
    """One kernel tap of an implicit-GEMM convolution over NHWC input with CI channels:
    acc += x[pix, :] @ wp[tap*CI:(tap+1)*CI, offs_n], BLOCK_K input channels at a time
    (rows where `inside` is False read zeros: the convolution's zero padding)."""
    offs_k = tl.arange(0, BLOCK_K)
    for c0 in range(0, CI, BLOCK_K):
        ci = c0 + offs_k
        mask_k = ci < CI
        a = tl.load(x_ptr + pix[:, None] * CI + ci[None, :], mask=inside[:, None] & mask_k[None, :], other=0.0)
        krow = tap * CI + ci
        b = tl.load(wp_ptr + krow[:, None] * CO + offs_n[None, :], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc = mma(acc, a, b, IEEE)
    return acc


@triton.jit
def conv2d_nhwc_kernel(
    x_ptr, wp_ptr, b_ptr, res_ptr, out_ptr,
    N, H, W, CI: tl.constexpr, HO, WO, CO: tl.constexpr,  # channel counts compiled in (the docstring says why)
    KH: tl.constexpr, KW: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr,
    ACT: tl.constexpr,  # 0: none, 1: ReLU
    HAS_RES: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    IEEE: tl.constexpr,  # fp32 inputs: exact fp32 products instead of TF32 on tensor cores
):
    # One program computes a BLOCK_M (output pixels) x BLOCK_N (output channels) tile.
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < CO
    mask_m, n, ho, wo = unflatten_pixels(offs_m, N, HO, WO)

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kh in range(KH):
        hi = ho * STRIDE - PAD + kh
        for kw in range(KW):
            wi = wo * STRIDE - PAD + kw
            inside = mask_m & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
            # Row start of pixel (n, hi, wi) in x; clamped where outside (masked anyway).
            pix = tl.where(inside, (n * H + hi) * W + wi, 0)
            acc = accumulate_tap(acc, x_ptr, wp_ptr, pix, inside, kh * KW + kw, CI, CO, offs_n, mask_n, BLOCK_K, IEEE)

    bias = tl.load(b_ptr + offs_n, mask=mask_n, other=0.0)
    acc += bias[None, :]
    if ACT == 1:
        acc = tl.maximum(acc, 0.0)
    o_off = offs_m[:, None] * CO + offs_n[None, :]
    o_mask = mask_m[:, None] & mask_n[None, :]
    if HAS_RES:
        acc += tl.load(res_ptr + o_off, mask=o_mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + o_off, acc.to(out_ptr.dtype.element_ty), mask=o_mask)
