"""Triton kernels at the frame boundary: uint8 BGR in (ingest), uint8 BGR out (egest).

Both are implicit-GEMM convolutions (as in conv_kernels.py) whose operand gathers and
epilogues do the frame-format work, so no float copy of the frame is ever written.

The network runs at half resolution on pixel-unshuffled input. For a frame of H x W
(any size) padded up to Hp x Wp (multiples of the model's size multiple, by reflection,
done here by index arithmetic), the half-resolution grid is Hh x Wh = Hp/2 x Wp/2 and
unshuffled channel k = c*4 + dy*2 + dx holds RGB channel c of full-resolution pixel
(2*y + dy, 2*x + dx), as torch.nn.functional.pixel_unshuffle orders it.

ingest_conv_kernel:
    frame (N, H, W, 3) uint8 BGR  ->  out (N, Hh, Wh, CO): relu(conv3x3([unshuffle(rgb/255), sigma_map]) + b)
    wp    (9*CIN, CO)  packed as conv.pack_weight, CIN = 13 (12 image channels + the noise-level map)
    smap  (N,) float32  value of the noise-level map per image (sigma * SIGMA_MAP_SCALE)
egest_conv_kernel:
    h     (N, Hh, Wh, CI) features  ->  conv3x3 to 12 channels = predicted noise n (unshuffled)
    out   (N, H, W, 3) uint8 BGR  = round(clamp(frame/255 - pixel_shuffle(n), 0, 1) * 255), cropped to H x W
"""
import triton
import triton.language as tl

from .conv_kernels import accumulate_tap, mma, unflatten_pixels


@triton.jit
def _reflect(i, n):
    # Index into the padded frame -> index into the real one (reflection without the edge
    # pixel repeated, as numpy.pad(mode="reflect")); valid while the pad is smaller than n.
    return tl.where(i < n, i, 2 * n - 2 - i)


@triton.jit
def ingest_conv_kernel(
    frame_ptr, wp_ptr, b_ptr, smap_ptr, out_ptr,
    N, H, W, HH, WH, CO: tl.constexpr,  # the model's first width, compiled in (as conv_kernels.py says why)
    CIN: tl.constexpr,  # 13
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # BLOCK_K >= CIN
    IEEE: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < CO
    mask_m, n, y, x = unflatten_pixels(offs_m, N, HH, WH)
    sig = tl.load(smap_ptr + n, mask=mask_m, other=0.0)

    k = tl.arange(0, BLOCK_K)  # unshuffled input channel
    c = k // 4  # RGB channel
    dy = (k // 2) % 2
    dx = k % 2
    is_img = k < 12
    is_map = k == 12
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kh in range(3):
        yy = y - 1 + kh
        for kw in range(3):
            xx = x - 1 + kw
            # zero padding of the half-resolution conv input
            inside = mask_m & (yy >= 0) & (yy < HH) & (xx >= 0) & (xx < WH)
            fy = _reflect(2 * yy[:, None] + dy[None, :], H)
            fx = _reflect(2 * xx[:, None] + dx[None, :], W)
            src = ((n[:, None] * H + fy) * W + fx) * 3 + (2 - c[None, :])  # BGR storage, RGB order
            m_img = inside[:, None] & is_img[None, :]
            pix = tl.load(frame_ptr + src, mask=m_img, other=0).to(tl.float32) * (1.0 / 255.0)
            a = tl.where(is_map[None, :] & inside[:, None], sig[:, None], pix)
            krow = (kh * 3 + kw) * CIN + k
            b = tl.load(wp_ptr + krow[:, None] * CO + offs_n[None, :],
                        mask=(k < CIN)[:, None] & mask_n[None, :], other=0.0)
            acc = mma(acc, a.to(b.dtype), b, IEEE)
    acc += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0)[None, :]
    acc = tl.maximum(acc, 0.0)
    o_off = offs_m[:, None] * CO + offs_n[None, :]
    tl.store(out_ptr + o_off, acc.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def twelve_channel_tile(N, HH, WH, BLOCK_M: tl.constexpr):
    """This program's BLOCK_M half-res pixels and the 12 unshuffled channels (r = 2, RGB) in a 16-wide
    tile: (offs_m, mask_m, n, y, x, co, mask_n)."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    co = tl.arange(0, 16)
    mask_m, n, y, x = unflatten_pixels(offs_m, N, HH, WH)
    return offs_m, mask_m, n, y, x, co, co < 12


@triton.jit
def tail_noise(h_ptr, wp_ptr, b_ptr, N, HH, WH, CI: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
               IEEE: tl.constexpr):
    """The tail conv3x3 to 12 channels (padded to a 16-wide tile) for this program's BLOCK_M half-res
    pixels: (offs_m, mask_m, n, y, x, co, mask_n, the predicted noise (BLOCK_M, 16) fp32)."""
    offs_m, mask_m, n, y, x, co, mask_n = twelve_channel_tile(N, HH, WH, BLOCK_M)
    acc = tl.zeros((BLOCK_M, 16), dtype=tl.float32)
    for kh in range(3):
        yy = y - 1 + kh
        for kw in range(3):
            xx = x - 1 + kw
            inside = mask_m & (yy >= 0) & (yy < HH) & (xx >= 0) & (xx < WH)
            pix = tl.where(inside, (n * HH + yy) * WH + xx, 0)
            acc = accumulate_tap(acc, h_ptr, wp_ptr, pix, inside, kh * 3 + kw, CI, 12, co, mask_n, BLOCK_K, IEEE)
    noise = acc + tl.load(b_ptr + co, mask=mask_n, other=0.0)[None, :]
    return offs_m, mask_m, n, y, x, co, mask_n, noise


@triton.jit
def egest_conv_kernel(
    h_ptr, wp_ptr, b_ptr, frame_ptr, out_ptr,
    N, H, W, HH, WH, CI: tl.constexpr,  # the features' width, compiled in
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
    IEEE: tl.constexpr,
):
    # one program owns BLOCK_M half-res pixels (tail_noise)
    offs_m, mask_m, n, y, x, co, mask_n, noise = tail_noise(h_ptr, wp_ptr, b_ptr, N, HH, WH, CI, BLOCK_M, BLOCK_K,
                                                            IEEE)
    # Epilogue: pixel-shuffle index arithmetic, residual from the uint8 frame, clamp, round, crop.
    c = co // 4
    fy = 2 * y[:, None] + ((co // 2) % 2)[None, :]
    fx = 2 * x[:, None] + (co % 2)[None, :]
    keep = mask_m[:, None] & mask_n[None, :] & (fy < H) & (fx < W)
    off = ((n[:, None] * H + fy) * W + fx) * 3 + (2 - c[None, :])
    src = tl.load(frame_ptr + off, mask=keep, other=0).to(tl.float32) * (1.0 / 255.0)
    val = tl.minimum(tl.maximum(src - noise, 0.0), 1.0)
    q = tl.floor(val * 255.0 + 0.5)  # round half up; the reference does the same
    tl.store(out_ptr + off, q.to(tl.uint8), mask=keep)


# ------------------------------------------------- a recurrent model's gate branch (model.gate, gate_in "sums")
#
# The framewise network runs as above up to the tail; then, with `prev` the stream's last output
# (N, H, W, 3) uint8 BGR (the frame itself on a scene's first frame):
#   own  = frame/255 - pixel_shuffle(tail conv)                  the model's own estimate
#   e    = prev/255 - own
#   gin  = [avgpool2(sum_c relu(e)), avgpool2(sum_c relu(-e)), sigma map]   (N, Hh, Wh, 3)
#   g    = relu(conv3x3(relu(conv3x3(gin))))                     (conv2d_nhwc)
#   gate = clamp(pixel_shuffle(conv1x1(g) to r*r = 4), 0, 1) * known,  known: prev != frame in any colour
#   out  = round(clamp(own + gate (prev/255 - own), 0, 1) * 255)
# egest_gate_kernel: the tail conv, the noise stored (N, Hh, Wh, 12) fp32, and gin. The padded grid
# reads frame and prev by reflection, as the model is run on frames padded by reflection.
# fuse_egest_kernel: the 1x1 conv (its 4 columns repeated for each colour: wp is (CI, 12), column
# k = the gate logit k % 4 of sub-pixel (dy, dx)) and the fusion, uint8 out, cropped to H x W.


@triton.jit
def egest_gate_kernel(
    h_ptr, wp_ptr, b_ptr, frame_ptr, prev_ptr, smap_ptr, noise_ptr, gin_ptr,
    N, H, W, HH, WH, CI: tl.constexpr,  # the features' width, compiled in
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
    IEEE: tl.constexpr,
):
    offs_m, mask_m, n, y, x, co, mask_n, noise = tail_noise(h_ptr, wp_ptr, b_ptr, N, HH, WH, CI, BLOCK_M, BLOCK_K,
                                                            IEEE)
    both = mask_m[:, None] & mask_n[None, :]
    tl.store(noise_ptr + offs_m[:, None] * 12 + co[None, :], noise, mask=both)
    c = co // 4
    fy = _reflect(2 * y[:, None] + ((co // 2) % 2)[None, :], H)
    fx = _reflect(2 * x[:, None] + (co % 2)[None, :], W)
    off = ((n[:, None] * H + fy) * W + fx) * 3 + (2 - c[None, :])
    src = tl.load(frame_ptr + off, mask=both, other=0).to(tl.float32) * (1.0 / 255.0)
    prv = tl.load(prev_ptr + off, mask=both, other=0).to(tl.float32) * (1.0 / 255.0)
    e = tl.where(both, prv - (src - noise), 0.0)
    # the 2 x 2 pixels' colour sums, averaged: each half-res pixel owns exactly its 12 values
    pos = tl.sum(tl.maximum(e, 0.0), axis=1) * 0.25
    neg = tl.sum(tl.maximum(-e, 0.0), axis=1) * 0.25
    sig = tl.load(smap_ptr + n, mask=mask_m, other=0.0)
    dt = gin_ptr.dtype.element_ty
    tl.store(gin_ptr + offs_m * 3, pos.to(dt), mask=mask_m)
    tl.store(gin_ptr + offs_m * 3 + 1, neg.to(dt), mask=mask_m)
    tl.store(gin_ptr + offs_m * 3 + 2, sig.to(dt), mask=mask_m)


@triton.jit
def fuse_egest_kernel(
    g_ptr, wp_ptr, b_ptr, noise_ptr, frame_ptr, prev_ptr, out_ptr,
    N, H, W, HH, WH, CI: tl.constexpr,  # the features' width, compiled in
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
    IEEE: tl.constexpr,
):
    offs_m, mask_m, n, y, x, co, mask_n = twelve_channel_tile(N, HH, WH, BLOCK_M)
    acc = tl.zeros((BLOCK_M, 16), dtype=tl.float32)
    acc = accumulate_tap(acc, g_ptr, wp_ptr, offs_m, mask_m, 0, CI, 12, co, mask_n, BLOCK_K, IEEE)
    gate = tl.minimum(tl.maximum(acc + tl.load(b_ptr + co, mask=mask_n, other=0.0)[None, :], 0.0), 1.0)
    both = mask_m[:, None] & mask_n[None, :]
    noise = tl.load(noise_ptr + offs_m[:, None] * 12 + co[None, :], mask=both, other=0.0)
    c = co // 4
    fy = 2 * y[:, None] + ((co // 2) % 2)[None, :]
    fx = 2 * x[:, None] + (co % 2)[None, :]
    keep = both & (fy < H) & (fx < W)
    base = ((n[:, None] * H + fy) * W + fx) * 3
    off = base + (2 - c[None, :])
    src = tl.load(frame_ptr + off, mask=keep, other=0).to(tl.float32) * (1.0 / 255.0)
    prv = tl.load(prev_ptr + off, mask=keep, other=0).to(tl.float32) * (1.0 / 255.0)
    # known: the previous output differs from the frame in some colour of this pixel (a scene's first
    # frame is its own previous: no fusion there)
    known = tl.zeros((BLOCK_M, 16), dtype=tl.int1)
    for k in range(3):
        a = tl.load(frame_ptr + base + k, mask=keep, other=0)
        b = tl.load(prev_ptr + base + k, mask=keep, other=0)
        known = known | (a != b)
    own = src - noise
    val = own + tl.where(known, gate, 0.0) * (prv - own)
    val = tl.minimum(tl.maximum(val, 0.0), 1.0)
    q = tl.floor(val * 255.0 + 0.5)
    tl.store(out_ptr + off, q.to(tl.uint8), mask=keep)
