"""The frame-boundary kernels (ingest, egest) against their PyTorch references, under
TRITON_INTERPRET=1 on the CPU or on a CUDA GPU where one is present, at fp32 and fp16.

Tolerances:
- ingest (features out, max |kernel - reference| <= atol + rtol * |reference|): fp32 both sides in
  fp32, K = 9*13 products: atol 1e-4, rtol 1e-5. fp16: the packed weight is rounded to fp16 (the
  reference uses the same rounded weight) and the kernel rounds its output to fp16: atol 2e-3, rtol 2^-10.
- egest (uint8 frame out): at most one level, on under 1 % of the pixels at fp32 (a value within float
  error of a .5 boundary rounds either way); fp16 features make the noise estimate differ by about
  2^-11 of its size, so at most one level on under 5 % of the pixels.
"""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton", reason="triton is not installed (pip install -e .[kernels])")

from edgedenoise_kernels.boundary import egest, egest_reference, half_grid, ingest, ingest_reference  # noqa: E402
from edgedenoise_kernels.conv import pack_weight  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
INGEST_TOL = {"fp32": (1e-4, 1e-5), "fp16": (2e-3, 2.0**-10)}
EGEST_SHARE = {"fp32": 0.01, "fp16": 0.05}  # share of pixels allowed to differ by one level
WIDTH, MULT = 24, 16  # the default model's first width and size multiple

SIZES = [pytest.param(1, 16, 16, id="one block of the multiple"),
         pytest.param(1, 37, 53, id="odd size, reflect-padded"),
         pytest.param(2, 20, 33, id="batch 2, odd width"),
         pytest.param(1, 9, 9, id="minimal: padding nearly the frame")]


def frames(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,h,w", SIZES)
def test_ingest_matches_reference(n, h, w, dtype):
    g = torch.Generator().manual_seed(1)
    weight = (torch.randn(WIDTH, 13, 3, 3, generator=g) / 117 ** 0.5).to(DTYPES[dtype])
    bias = torch.randn(WIDTH, generator=g) * 0.1
    smap = torch.rand(n, generator=g)
    fr = frames(n, h, w)
    got = ingest(fr.to(DEVICE), pack_weight(weight).to(DEVICE), bias.to(DEVICE), smap.to(DEVICE), MULT).float().cpu()
    ref = ingest_reference(fr, weight, bias, smap, MULT)
    assert got.shape == ref.shape == (n, *half_grid(h, w, MULT), WIDTH)
    atol, rtol = INGEST_TOL[dtype]
    err = (got - ref).abs()
    bad = err > atol + rtol * ref.abs()
    assert not bad.any(), (f"{int(bad.sum())} of {err.numel()} elements differ; max error {err.max():.3g}; "
                           f"first at (n,h,w,c)={bad.nonzero()[0].tolist()}")


def tail_inputs(g, n, h, w, dtype):
    """Features on the half-resolution grid and a tail conv (12, WIDTH, 3, 3) that predicts noise of a
    few levels, with its bias."""
    hh, wh = half_grid(h, w, MULT)
    feats = torch.randn(n, hh, wh, WIDTH, generator=g).relu().to(DTYPES[dtype])
    weight = (torch.randn(12, WIDTH, 3, 3, generator=g) * 0.02).to(DTYPES[dtype])
    return feats, weight, torch.randn(12, generator=g) * 0.01


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,h,w", SIZES)
def test_egest_matches_reference(n, h, w, dtype):
    feats, weight, bias = tail_inputs(torch.Generator().manual_seed(2), n, h, w, dtype)
    fr = frames(n, h, w, seed=3)
    got = egest(feats.to(DEVICE), pack_weight(weight).to(DEVICE), bias.to(DEVICE), fr.to(DEVICE)).cpu()
    ref = egest_reference(feats, weight, bias, fr)
    assert got.shape == fr.shape and got.dtype == torch.uint8
    diff = (got.int() - ref.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < EGEST_SHARE[dtype], \
        f"max {diff.max()} levels, {int((diff > 0).sum())} of {diff.numel()} values differ"
    assert (ref.int() - fr.int()).abs().float().mean() > 1, "the test's noise estimate changes nothing"


# ---- a recurrent model's gate branch: egest_gate (tail + the branch's input), fuse_egest (gate + fusion)
# Tolerances: gin (sums of 12 differences of values in [0, 1], then averaged) as ingest's; the noise
# stored fp32 as egest's; fuse_egest's uint8 out as egest's (one level on under 1 % / 5 % of values).


def previous_of(fr, seed, moved=0.3):
    """A previous output: the frame where it held still, other values where it moved (a share
    `moved` of the pixels), and pixels equal to the frame in every colour (a first frame's)."""
    g = torch.Generator().manual_seed(seed)
    n, h, w, _ = fr.shape
    near = (fr.int() + torch.randint(-6, 7, fr.shape, generator=g)).clamp(0, 255)
    far = torch.randint(0, 256, fr.shape, generator=g)
    where = torch.rand(n, h, w, 1, generator=g)
    p = torch.where(where < moved, far, near)
    return torch.where(where > 0.9, fr.int(), p).to(torch.uint8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,h,w", SIZES)
def test_egest_gate_matches_reference(n, h, w, dtype):
    from edgedenoise_kernels.boundary import egest_gate, egest_gate_reference

    g = torch.Generator().manual_seed(4)
    hh, wh = half_grid(h, w, MULT)
    feats, weight, bias = tail_inputs(g, n, h, w, dtype)
    smap = torch.rand(n, generator=g)
    fr = frames(n, h, w, seed=5)
    prev = previous_of(fr, 6)
    noise, gin = egest_gate(feats.to(DEVICE), pack_weight(weight).to(DEVICE), bias.to(DEVICE), fr.to(DEVICE),
                            prev.to(DEVICE), smap.to(DEVICE))
    rn, rg = egest_gate_reference(feats, weight, bias, fr, prev, smap)
    assert noise.shape == rn.shape == (n, hh, wh, 12) and gin.shape == rg.shape == (n, hh, wh, 3)
    assert gin.dtype == DTYPES[dtype] and noise.dtype == torch.float32
    err_n = (noise.cpu() - rn).abs().max().item()
    assert err_n <= (1e-5 if dtype == "fp32" else 2e-3), f"noise differs by {err_n:.3g}"
    atol, rtol = INGEST_TOL[dtype]
    err = (gin.float().cpu() - rg).abs()
    bad = err > atol + rtol * rg.abs()
    assert not bad.any(), f"{int(bad.sum())} of {err.numel()} gate inputs differ; max error {err.max():.3g}"
    assert rg[..., 0].mean() > 0.05 and rg[..., 1].mean() > 0.05, "the test's previous output adds nothing"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,h,w", SIZES)
def test_fuse_egest_matches_reference(n, h, w, dtype):
    from edgedenoise_kernels.boundary import fuse_egest, fuse_egest_reference, pack_gate_logits

    g = torch.Generator().manual_seed(7)
    hh, wh = half_grid(h, w, MULT)
    gw = 12  # the shipped gate branches' width
    feats = torch.randn(n, hh, wh, gw, generator=g).relu().to(DTYPES[dtype])
    weight = (torch.randn(4, gw, 1, 1, generator=g) * 0.5).to(DTYPES[dtype])  # gates across 0..1, clamped
    bias = torch.randn(4, generator=g) * 0.3
    noise = torch.randn(n, hh, wh, 12, generator=g) * 0.03
    fr = frames(n, h, w, seed=8)
    prev = previous_of(fr, 9)
    wp, b12 = pack_gate_logits(weight, bias)
    got = fuse_egest(feats.to(DEVICE), wp.to(DEVICE), b12.to(DEVICE), noise.to(DEVICE),
                     fr.to(DEVICE), prev.to(DEVICE)).cpu()
    ref = fuse_egest_reference(feats, weight, bias, noise, fr, prev)
    assert got.shape == fr.shape and got.dtype == torch.uint8
    diff = (got.int() - ref.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < EGEST_SHARE[dtype], \
        f"max {diff.max()} levels, {int((diff > 0).sum())} of {diff.numel()} values differ"
    # the fusion did something, and nothing where the previous output is the frame (a first frame)
    own = fuse_egest_reference(feats, weight * 0, bias * 0, noise, fr, prev)
    assert (ref.int() - own.int()).abs().float().mean() > 1
    same = (fr == prev).all(dim=-1)
    assert same.any() and torch.equal(got[same], own[same])
