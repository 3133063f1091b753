"""`edgedenoise explain`: the bias-free identity, the shipped model's filters, the toy, the command's figures."""
import json

import cv2
import numpy as np
import pytest
import torch

from edgedenoise.cli import main
from edgedenoise.data import list_images, read_image
from edgedenoise.explain import filter_at, toy_experiment
from edgedenoise.model import SIZES, ModelConfig, build_model
from edgedenoise.modelfile import load_model


def _randomised(bias: bool) -> torch.nn.Module:
    """tiny (bias-free or not) with random weights everywhere, the tail too (it starts at zero)."""
    torch.manual_seed(3)
    m = build_model(ModelConfig("tiny", widths=(16, 32, 64), depths=(1, 2, 2), bias=bias))
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(torch.randn_like(p) * (0.05 if name.endswith("bias") else 0.25))
    return m.eval()


def test_bias_free_network_is_exactly_linear_in_its_input():
    m = _randomised(bias=False)
    assert not any(n.endswith("bias") for n, _ in m.named_parameters())
    x = torch.rand(2, 3, 32, 40)
    s = torch.tensor([0.1, 0.2])
    with torch.no_grad():
        y, jx = torch.func.jvp(lambda z: m(z, s), (x,), (x,))
        y2 = m(2.5 * x, s)
    assert (y - x).abs().max() > 0.1  # the random net does change its input
    # float32 tolerance: 1e-5 of the output's scale
    tol = 1e-5 * y.abs().max().item()
    assert (y - jx).abs().max().item() < tol, f"max |y - J(x)x| {(y - jx).abs().max():.3g} > {tol:.3g}"
    assert (y2 - 2.5 * y).abs().max().item() < 2.5 * tol  # degree-1 homogeneous: f(a x) = a f(x)
    # one Jacobian row, by autograd, dotted with x gives that output pixel
    xr = x[:1].clone().requires_grad_(True)
    (row,) = torch.autograd.grad(m(xr, s[:1])[0, 1, 13, 21], xr)
    assert abs((row * x[:1]).sum().item() - y[0, 1, 13, 21].item()) < tol
    # ... which the same network with biases does not satisfy
    mb = _randomised(bias=True)
    with torch.no_grad():
        yb, jxb = torch.func.jvp(lambda z: mb(z, s), (x,), (x,))
    assert (yb - jxb).abs().max().item() > 100 * tol


def test_bias_option_leaves_the_shipped_models_unchanged():
    for name, cfg in SIZES.items():
        assert "bias" not in cfg.to_dict() and "skips" not in cfg.to_dict(), name
    shipped = load_model("tiny")
    keys = set(build_model("tiny").state_dict())
    assert keys == set(shipped.state_dict())
    bf = build_model(ModelConfig.from_dict({**SIZES["tiny"].to_dict(), "bias": False}))
    assert bf.config.bias is False and ModelConfig.from_dict(bf.config.to_dict()).bias is False
    assert all(not k.endswith(".bias") for k in bf.state_dict())


def test_non_residual_variant_gives_the_image_itself_and_stays_out_of_the_shipped_configs(tmp_path):
    """residual=False: the tail's output is the image (a fresh one is mid-grey everywhere, whatever the
    input), written to the JSON only when off; the standard configs have no variant."""
    from edgedenoise.modelfile import save_model

    for name, cfg in SIZES.items():
        assert "residual" not in cfg.to_dict() and cfg.variant is None, name
    cfg = ModelConfig.from_dict({**SIZES["tiny"].to_dict(), "name": "ae", "skips": False, "residual": False})
    assert cfg.variant == "no skips, no residual"
    net = build_model(cfg).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        y = net(x, torch.tensor([0.1, 0.2]))
    assert torch.allclose(y, torch.full_like(y, 0.5))
    save_model(net, tmp_path / "ae", half=False)
    back = load_model(str(tmp_path / "ae.safetensors"))
    assert back.config.residual is False and back.config.skips is False
    with pytest.raises(ValueError, match="recurrent model is residual"):
        ModelConfig("v", recurrent=True, residual=False)


def test_shipped_filter_on_a_flat_patch_keeps_the_mean_and_widens_with_sigma():
    """On a nearly flat patch (a faint ripple, 4 % contrast) the shipped tiny's filter keeps the
    local mean and spreads wider the more noise it is told about. (On an exactly flat patch the
    camera-trained tiny averages as widely as its window allows from sigma 10 on, so the widening
    shows on the ripple.)"""
    net = load_model("tiny")
    y, x = np.mgrid[0:128, 0:128]
    ripple = (0.45 + 0.04 * np.sin(x / 3.0) * np.cos(y / 5.0))[..., None].repeat(3, axis=2).astype(np.float32)
    got = {}
    for sigma in (10.0, 50.0):
        noise = np.random.default_rng([0, int(sigma)]).standard_normal(ripple.shape).astype(np.float32)
        got[sigma] = filter_at(net, ripple + noise * sigma / 255, sigma, 64, 64)
    for sigma, r in got.items():
        # the weights of a denoiser that keeps the local mean sum to 1: measured 0.98-1.01 for the
        # tiny shipped before and after its camera fine-tune; tolerance 0.05
        assert abs(r["sum"] - 1) < 0.05, (sigma, r["sum"])
        assert r["share_pixel"] > 0.8, (sigma, r["share_pixel"])
    # measured over 4 seeds: effective size 7-21 px at sigma 10, 35-54 px at sigma 50 (both tinys)
    assert got[50.0]["neff"] > 1.4 * got[10.0]["neff"], (got[10.0]["neff"], got[50.0]["neff"])
    assert got[10.0]["neff"] > 5  # averaged, not passed through


def test_toy_fc_denoiser_lowers_the_test_mse(tmp_path):
    r = toy_experiment(tmp_path, steps=1500, progress=False)
    assert r["factor"] > 2.5, r  # measured 3.2 at 1500 steps, 3.5 at 3000
    assert abs(r["flat_row"]["sum"] - 1) < 0.15 and r["flat_row"]["neff"] > 3, r["flat_row"]
    for f in r["files"]:
        assert cv2.imread(str(tmp_path / f)) is not None, f


@pytest.fixture(scope="module")
def small_image(tmp_path_factory, data_root):
    img = read_image(list_images(data_root / "test" / "Kodak24")[22], 3)  # kodim23: parrots
    p = tmp_path_factory.mktemp("img") / "crop.png"
    cv2.imwrite(str(p), img[150:246, 40:168, ::-1])  # 128x96 BGR
    return p


def test_explain_writes_every_figure_it_promises(small_image, tmp_path, capsys):
    out = tmp_path / "ex"
    assert main(["explain", str(small_image), "--out", str(out), "--dims-sigma", "10", "50", "--quiet"]) == 0
    numbers = json.loads((out / "explain.json").read_text())
    for f in numbers["files"]:
        assert (out / f).stat().st_size > 0, f
        if f.endswith(".png"):
            img = cv2.imread(str(out / f))
            assert img is not None and min(img.shape[:2]) > 200, f
    assert {r["kind"] for r in numbers["filters"]} == {"flat", "edge", "texture", "corner"}
    assert len(numbers["filters"]) == 4 * 3
    dims = {p["sigma"]: p["dim_frobenius"] for p in numbers["subspace"]["per_sigma"]}
    assert dims[50.0] < dims[10.0]  # more noise, fewer dimensions kept
    assert "effective size" in capsys.readouterr().out


def test_explain_refuses_bad_input(small_image, tmp_path, capsys):
    assert main(["explain", str(small_image), "--pixel", "500,10", "--out", str(tmp_path / "a"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "outside image" in err and len(err.splitlines()) == 1, err
    assert main(["explain", str(tmp_path / "missing.png"), "--out", str(tmp_path / "b"), "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    assert main(["explain", str(bad), "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "cannot decode" in capsys.readouterr().err
    assert main(["explain", str(small_image), "--pixel", "3;4", "--out", str(tmp_path / "d"), "--quiet"]) == 2
    assert "x,y" in capsys.readouterr().err


def test_the_video_part_draws_the_gate_of_the_products_own_path(kodak_rgb):
    """docs/how-it-denoises.md part 7: tools/explain_figures.video_gates runs the shipped tiny-video in
    PyTorch with the product's state and reads its gate; its outputs are VideoDenoiser's (ONNX
    Runtime) to a level's rounding, its gate is 0 on a scene's first frame and takes the last output
    in where a still scene agrees."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from explain_figures import video_gates

    from edgedenoise.clips import make_clip, noisy_clip
    from edgedenoise.temporal import VideoDenoiser

    bgr = np.ascontiguousarray(kodak_rgb[:256, :320, ::-1])
    noisy = noisy_clip(make_clip(bgr, "still", 4, margin=16), 25.0, seed=1)
    outs, gates = video_gates(load_model("tiny-video").eval(), noisy, 25.0)
    vd = VideoDenoiser.load("tiny-video", backend="onnxruntime")
    for f, out in zip(noisy, outs):
        ref = vd.denoise(f, 25.0)
        diff = np.abs(ref.astype(int) - out)
        assert diff.max() <= 2 and (diff > 0).mean() < 0.05, (diff.max(), (diff > 0).mean())
    assert gates[0].shape == noisy[0].shape[:2] and not gates[0].any()
    assert all(g.min() >= 0 and g.max() <= 1 for g in gates)
    assert all(g.mean() > 0.3 for g in gates[1:]), [float(g.mean()) for g in gates]
