"""The fused NHWC convolution kernel against PyTorch, under TRITON_INTERPRET=1 on the CPU
(or on a CUDA GPU where one is present), for every convolution shape of the model family.

Tolerances (max |kernel - reference| <= atol + rtol * |reference|):
- fp32: both sides compute in fp32 (the kernel with exact-IEEE dot products), so they differ
  only by summation order over K <= 9*384 products: atol 1e-4, rtol 1e-5.
- fp16: inputs and weights are rounded to fp16 the same way on both sides and both accumulate
  in fp32; the kernel then rounds its output to fp16 (half an ulp = 2^-11 relative), which the
  fp32 reference does not: atol 2e-3 (accumulation order), rtol 2^-10.
"""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton", reason="triton is not installed (pip install -e .[kernels])")

from edgedenoise_kernels.conv import conv2d_nhwc, conv2d_nhwc_reference, out_size, pack_weight  # noqa: E402

from edgedenoise.model import SIZES, build_model  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: (1e-4, 1e-5), torch.float16: (2e-3, 2.0**-10)}


def layer_shapes():
    """(label, ci, co, k, stride, pad) of every distinct convolution in every model size."""
    seen = {}
    for size in SIZES:
        for name, m in build_model(size).named_modules():
            if isinstance(m, torch.nn.Conv2d):
                key = (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0])
                seen.setdefault(key, f"{size}.{name}")
    return [pytest.param(*k, id=f"{lbl} {k[0]}->{k[1]} k{k[2]}s{k[3]}") for k, lbl in seen.items()]


def check(ci, co, k, stride, pad, n, h, w, dtype, act="relu", residual=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, w, ci, generator=g)
    weight = torch.randn(co, ci, k, k, generator=g) / (ci * k * k) ** 0.5
    bias = torch.randn(co, generator=g) * 0.1
    ho, wo = out_size(h, w, (k, k), stride, pad)
    res = torch.randn(n, ho, wo, co, generator=g) if residual else None
    xd = x.to(DEVICE, dtype)
    rd = res.to(DEVICE, dtype) if residual else None
    got = conv2d_nhwc(xd, pack_weight(weight).to(DEVICE), bias.to(DEVICE), (k, k), stride, pad, act, rd).float().cpu()
    ref = conv2d_nhwc_reference(xd.cpu(), weight.to(dtype), bias, stride, pad, act, None if rd is None else rd.cpu())
    atol, rtol = TOL[dtype]
    err = (got - ref).abs()
    bad = err > atol + rtol * ref.abs()
    if bad.any():
        idx = bad.nonzero()[0].tolist()
        pytest.fail(f"{int(bad.sum())} of {err.numel()} elements differ; max error {err.max():.3g}; "
                    f"first at (n,h,w,c)={idx}: got {got[tuple(idx)]:.6g}, expected {ref[tuple(idx)]:.6g}")


@pytest.mark.parametrize("ci,co,k,stride,pad", layer_shapes())
def test_every_model_layer_fp32(ci, co, k, stride, pad):
    check(ci, co, k, stride, pad, n=2, h=7, w=9, dtype=torch.float32)  # batch 2, odd H and W


@pytest.mark.parametrize("ci,co,k,stride,pad", layer_shapes())
def test_every_model_layer_fp16(ci, co, k, stride, pad):
    check(ci, co, k, stride, pad, n=2, h=7, w=9, dtype=torch.float16)


@pytest.mark.parametrize("ci,co,k,stride,pad", [
    pytest.param(13, 24, 3, 1, 1, id="head: 12+1 channels, odd K"),
    pytest.param(24, 48, 2, 2, 0, id="down: strided 2x2"),
    pytest.param(96, 192, 1, 1, 0, id="up: 1x1 before pixel-shuffle"),
    pytest.param(24, 12, 3, 1, 1, id="tail: 12 outputs, no activation"),
])
def test_fp16_accumulates_in_fp32(ci, co, k, stride, pad):
    check(ci, co, k, stride, pad, n=1, h=11, w=5, dtype=torch.float16)


@pytest.mark.parametrize("n,h,w", [(1, 1, 1), (1, 2, 3), (2, 16, 16), (1, 33, 17)],
                         ids=["minimal", "smaller than the window", "even", "odd, several M tiles"])
@pytest.mark.parametrize("act,residual", [("none", False), ("relu", False), ("relu", True)])
def test_sizes_activation_and_residual(n, h, w, act, residual):
    check(16, 32, 3, 1, 1, n=n, h=h, w=w, dtype=torch.float32, act=act, residual=residual)
