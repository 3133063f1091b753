"""Training recurrent (video) models: clips from still images, noise per clip, back-propagation
through the model's own outputs, validation on clips, and the refusals."""
import json

import numpy as np
import pytest
import torch

from edgedenoise.data import scan_images
from edgedenoise.errors import DataError, ModelError
from edgedenoise.model import ModelConfig, build_model, make_recurrent
from edgedenoise.modelfile import load_model
from edgedenoise.noise import AWGN, CameraSim, Mixture, for_clip, training_noise
from edgedenoise.train import ClipValSet, Unroll, align_previous, clip_motions, make_clip_batch, train
from edgedenoise.trainconfig import TrainConfig
from edgedenoise.videodata import ClipSampler, make_training_clip


def cfg(data, out, **kw):
    base = dict(data=str(data), out=str(out), model="tiny", steps=6, batch=4, patch=32, val_count=2,
                val_every=6, ckpt_every=6, workers=0, warmup=2, seed=1, sigma_min=10, sigma_max=40,
                video=True, frames=3, init="tiny")
    base.update(kw)
    return TrainConfig(**base)


def test_training_clips_are_seeded_and_hold_one_scene(train_subset):
    images = scan_images(train_subset, min_size=48)
    s = ClipSampler(images, patch=48, frames=5, channels=3, seed=3)
    a, b = s.clips(7, 0, 12), s.clips(7, 0, 12)
    assert a.shape == (12, 5, 3, 48, 48) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a, b)  # a pure function of (seed, step, index)
    assert np.array_equal(s.clips(7, 4, 8), a[4:8])  # a rank's slice is the same clips
    assert not np.array_equal(s.clips(8, 0, 12), a)
    # frames of a clip show one scene: neighbours differ far less than clips do
    within = np.abs(np.diff(a, axis=1)).mean()
    across = np.abs(a[1:, 0] - a[:-1, 0]).mean()
    assert within < 0.5 * across, (within, across)
    # the motions are drawn: over many clips some stand still (equal frames) and some move
    img = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    still = [np.array_equal(c[0], c[-1]) for c in (make_training_clip(img, 48, 4, np.random.default_rng(k))
                                                   for k in range(40))]
    assert 3 < sum(still) < 37


def test_a_clip_shares_its_noise_settings_but_not_its_noise(train_subset):
    images = scan_images(train_subset, min_size=32)
    c = cfg(train_subset, "unused", camera_sim=0.5, camera_fraction=0.0)
    noise = training_noise("awgn", sigma_range=(10, 40), camera_sim=0.5)
    noisy, clean, sigma = make_clip_batch(ClipSampler(images, 32, 4, 3, c.seed), noise, c, 5, 0, 6)
    assert noisy.shape == clean.shape == (6, 4, 3, 32, 32) and sigma.shape == (6, 4)
    for j in range(6):
        s = sigma[j].numpy() * 255
        assert s.max() - s.min() < 0.35 * s.mean() + 1e-6, s  # one level per clip (a camera's RMS wavers a little)
        d = (noisy[j] - clean[j]).numpy()
        assert not np.allclose(d[0], d[1])  # a new realisation every frame
    # AWGN: the same sigma on every frame; a mixture picks Gaussian or camera once per clip
    fixed = for_clip(AWGN(sigma_range=(0, 50)), np.random.default_rng(1))
    assert fixed.sigma == AWGN(sigma_range=(0, 50)).draw_sigma(np.random.default_rng(1))
    mix = Mixture(AWGN(sigma_range=(0, 50)), CameraSim(), 0.5)
    kinds = {type(for_clip(mix, np.random.default_rng(k))).__name__ for k in range(20)}
    assert kinds == {"AWGN", "CameraSim"}
    cam = for_clip(CameraSim(), np.random.default_rng(2))
    x = np.random.default_rng(3).random((3, 32, 32), dtype=np.float32)
    (n1, l1, r1), (n2, l2, r2) = cam.sample(x, np.random.default_rng(4)), cam.sample(x, np.random.default_rng(5))
    assert np.array_equal(r1, r2) and not np.array_equal(n1, n2)  # one camera, two noise draws
    assert abs(l1 - l2) < 0.2 * l1  # of about the same level


def test_gradients_reach_the_fusion_weights_through_the_models_own_outputs():
    """Unroll feeds each frame's rounded output to the next; the loss of a later frame reaches the
    head weights of `previous`, which start at zero, and also the frames before it."""
    torch.manual_seed(0)
    rec = make_recurrent(build_model("tiny")).train()
    with torch.no_grad():  # a model that does something, and uses its previous output
        torch.nn.init.normal_(rec.tail.weight, std=0.05)
        torch.nn.init.normal_(rec.head[0].weight[:, -12:], std=0.05)
    noisy = torch.rand(2, 3, 3, 32, 32, requires_grad=True)
    out = Unroll(rec)(noisy, torch.full((2, 3), 0.1))
    assert out.shape == (2, 3, 3, 32, 32)
    out[:, 2].square().mean().backward()
    w = rec.head[0].weight.grad
    assert w[:, -12:].abs().sum() > 0  # the previous-frame channels learn
    assert noisy.grad[:, 0].abs().sum() > 0 and noisy.grad[:, 1].abs().sum() > 0  # through time
    with torch.no_grad():  # frame 0 has no previous: the framewise result
        assert torch.allclose(out[:, 0], rec(noisy[:, 0], torch.full((2,), 0.1)), atol=1e-6)


def test_video_align_moves_the_last_output_with_the_camera_as_the_runtime_does(train_subset):
    import cv2

    from edgedenoise.clips import _affine, _warp

    img = cv2.imread(str(sorted(train_subset.iterdir())[0]), cv2.IMREAD_COLOR)
    # a pan of (1.3, -0.6) px per frame, then a still frame: clip_motions finds the shift, then the identity
    frames = [_warp(img, _affine(1.0, 0.0, 32, 32, 60 + 1.3 * t, 60 - 0.6 * t), (64, 64)) for t in range(3)]
    frames.append(frames[-1])
    clip = np.stack(frames).transpose(0, 3, 1, 2)[None].astype(np.float32) / 255
    m = clip_motions(clip)[0]
    assert np.array_equal(m[0], np.eye(2, 3)) and np.array_equal(m[3], np.eye(2, 3))
    for t in (1, 2):  # dst = a @ src: the picture moves by minus the camera's motion
        assert np.abs(m[t][:, 2] - (-1.3, 0.6)).max() < 0.1 and np.abs(m[t][:, :2] - np.eye(2)).max() < 0.01, m[t]
    # the differentiable warp is OpenCV's bicubic warpAffine (replicated borders); the identity is exact
    smooth = cv2.GaussianBlur(img[:64, :96].astype(np.float32), (0, 0), 1.0)
    rot = cv2.getRotationMatrix2D((48, 32), 2.0, 1.01)
    x = torch.from_numpy(smooth.transpose(2, 0, 1).copy())[None].repeat(2, 1, 1, 1).requires_grad_(True)
    out = align_previous(x, torch.from_numpy(np.stack([rot, np.eye(2, 3)]).astype(np.float32)))
    ref = cv2.warpAffine(smooth, rot, (96, 64), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    assert np.abs(out[0].detach().numpy().transpose(1, 2, 0) - ref)[4:-4, 4:-4].max() < 0.05
    assert torch.equal(out[1], x[1])
    out.sum().backward()
    assert x.grad.abs().sum() > 0  # back-propagation through time passes the warp


def test_a_video_run_with_align_trains(train_subset, tmp_path):
    c = cfg(train_subset, tmp_path / "aligned", video_align=True, patch=48)
    res = train(c, progress=False)
    assert res["step"] == 6 and res["val_video_psnr"] is not None
    assert json.loads((tmp_path / "aligned" / "config.json").read_text())["video_align"] is True
    with pytest.raises(DataError, match="--video-align"):
        TrainConfig(data="d", out="o", video_align=True).check()


def test_a_video_run_trains_a_recurrent_model_and_validates_it_on_clips(train_subset, tmp_path):
    run = tmp_path / "video"
    res = train(cfg(train_subset, run), progress=False)
    assert res["step"] == 6 and res["val_video_psnr"] is not None
    m = load_model(str(run))
    assert m.config.recurrent
    base = json.loads((run / "video_baselines.json").read_text())
    # at step 0 the recurrent model is the framewise tiny: the same scores; the blend gains on still clips
    assert base["model"] == base["off"]
    assert base["blend"]["still"] > base["off"]["still"]
    assert set(base["off"]) == {"still", "pan", "objects", "cut", "all"}
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].endswith("val_video_psnr") and 15 < float(rows[-1].split(",")[-1]) < 45
    # resuming the run keeps the baselines of its start
    train(cfg(train_subset, run, steps=8, val_every=8, ckpt_every=8), progress=False)
    assert json.loads((run / "video_baselines.json").read_text()) == base


def test_video_settings_and_mismatched_runs_are_refused(train_subset, tmp_path):
    with pytest.raises(DataError, match="--frames 1"):
        cfg(train_subset, tmp_path / "r", frames=1).check()
    framewise = tmp_path / "framewise"
    train(cfg(train_subset, framewise, video=False, init="", steps=2, val_every=2, ckpt_every=2), progress=False)
    with pytest.raises(ModelError, match="framewise model: use another --out, or drop --video"):
        train(cfg(train_subset, framewise), progress=False)
    with pytest.raises(ModelError, match="recurrent .*train it with --video"):
        rec = tmp_path / "rec"
        train(cfg(train_subset, rec, steps=2, val_every=2, ckpt_every=2), progress=False)
        train(cfg(train_subset, tmp_path / "again", video=False, init=str(rec)), progress=False)


def test_clip_validation_runs_the_model_as_the_runtime_does(train_subset):
    """ClipValSet's recurrent pass equals feeding VideoDenoiser-style rounded outputs by hand."""
    images = scan_images(train_subset, min_size=32)[:2]
    vs = ClipValSet(images, 3, 25.0, frames=3, side=64)
    rec = make_recurrent(load_model("tiny")).eval()
    with torch.no_grad():
        torch.nn.init.normal_(rec.head[0].weight[:, -12:], std=0.05)
    kinds = [k for k, _, _ in vs.clips]
    assert kinds == list(ClipValSet.KINDS) * 2  # four kinds of clip per image
    kind, noisy, clean = vs.clips[0]
    prev, ps = None, []
    for x, c in zip(noisy, clean):
        t = torch.from_numpy(np.moveaxis(x, -1, 0).copy()).float()[None] / 255
        with torch.no_grad():
            out = rec(t, torch.tensor([25 / 255]), prev).clamp(0, 1)
        prev = (out * 255).round() / 255
        mse = ((prev[0].permute(1, 2, 0).numpy() * 255 - c) ** 2).mean()
        ps.append(10 * np.log10(255 ** 2 / mse))
    vs.clips = vs.clips[:1]
    got = vs.evaluate(rec, torch.device("cpu"))
    assert abs(got["still"] - float(np.mean(ps))) < 1e-3 and got["all"] == got["still"]
    # "off" gives the model no previous frame: not the same as the recurrent pass once it uses it
    assert vs.evaluate(rec, torch.device("cpu"), temporal="off")["still"] != got["still"]


def test_the_gate_fuses_the_previous_output_but_never_a_scenes_first_frame():
    """out = own + g (previous - own); where previous is the frame itself (a scene's first frame)
    the gate is 0, so that frame is the model's own estimate, exactly."""
    tiny = load_model("tiny").eval()
    rec = make_recurrent(tiny).eval()
    with torch.no_grad():
        rec.tail.bias[12:] = 0.7  # a gate of 0.7 everywhere
    x, s = torch.rand(1, 3, 32, 48), torch.tensor([0.1])
    prev = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        own = tiny(x, s)
        assert torch.allclose(rec(x, s), own, atol=1e-6) and torch.allclose(rec(x, s, x), own, atol=1e-6)
        assert torch.allclose(rec(x, s, prev), own + 0.7 * (prev - own), atol=1e-5)


def test_fusion_only_keeps_the_framewise_model_exactly(train_subset, tmp_path):
    """--fusion-only trains the fusion weights alone: every other weight is the init model's, so a
    scene's first frame (its fusion inputs are 0) is exactly the framewise model's output, while a
    later frame uses the previous output."""
    run = tmp_path / "fusion"
    train(cfg(train_subset, run, fusion_only=True, fusion_lr=20.0), progress=False)
    tiny, rec = load_model("tiny"), load_model(str(run))
    k = 3 * 2 * 2
    got, want = rec.state_dict(), tiny.state_dict()
    for name, t in want.items():
        if name == "head.0.weight":
            assert torch.equal(got[name][:, :t.shape[1]], t)
            assert got[name][:, t.shape[1]:].abs().sum() > 0  # the previous output's columns learnt
        elif name in ("tail.weight", "tail.bias"):
            assert torch.equal(got[name][:k], t)
        else:
            assert torch.equal(got[name], t), name
    x = torch.rand(1, 3, 32, 32)
    s = torch.tensor([25 / 255])
    with torch.no_grad():
        assert torch.equal(rec(x, s), tiny(x, s))  # first frame: the framewise output, bit for bit
        assert not torch.equal(rec(x, s, (x * 0.9).round()), tiny(x, s))
    with pytest.raises(DataError, match="--fusion-only"):
        cfg(train_subset, tmp_path / "r", video=False, fusion_only=True).check()


def test_a_gate_branch_learns_the_fusion_while_the_framewise_model_stays_exact(train_subset, tmp_path):
    """--gate W: the gate comes from a branch of its own; made recurrent it computes exactly the
    framewise model whatever `previous` is, and --fusion-only training moves the branch alone: every
    other weight is the init model's (bit for bit), the first frame is the framewise output, a later
    frame lies between the model's own estimate and the previous output."""
    tiny = load_model("tiny").eval()
    x, prev = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    s = torch.tensor([25 / 255])
    for gate_in in ("parts", "sums"):
        fresh = make_recurrent(tiny, gate=8, gate_in=gate_in).eval()
        with torch.no_grad():
            assert torch.equal(fresh(x, s, prev), tiny(x, s))
    run = tmp_path / "gate"
    train(cfg(train_subset, run, fusion_only=True, fusion_lr=1.0, gate=8, lr=1e-2), progress=False)
    rec = load_model(str(run)).eval()
    written = json.loads((run / "model.json").read_text())
    assert rec.config.gate == 8 and written["gate"] == 8 and written["gate_in"] == "sums"  # train's default
    got = rec.state_dict()
    for name, t in tiny.state_dict().items():
        assert torch.equal(got[name], t), name
    assert got["gate.4.weight"].abs().sum() > 0  # the branch's last layer left zero
    with torch.no_grad():
        own = tiny(x, s)
        assert torch.equal(rec(x, s), own)
        out = rec(x, s, prev)
        lo, hi = torch.minimum(own, prev), torch.maximum(own, prev)
        assert ((out >= lo - 1e-6) & (out <= hi + 1e-6)).all()
    with pytest.raises(DataError, match="--gate"):
        cfg(train_subset, tmp_path / "r", video=False, gate=8).check()
    with pytest.raises(ModelError, match="gate"):  # resuming with another branch
        train(cfg(train_subset, run, fusion_only=True, gate=4, steps=8), progress=False)
    with pytest.raises(ModelError, match="--gate 4"):  # starting from a recurrent model of another branch
        train(cfg(train_subset, tmp_path / "g4", init=str(run), gate=4), progress=False)
    with pytest.raises(ModelError, match="parts"):  # the same width, fed otherwise
        train(cfg(train_subset, run, fusion_only=True, gate=8, gate_in="parts", steps=8), progress=False)
    with pytest.raises(DataError, match="--gate-in"):
        cfg(train_subset, tmp_path / "r", gate=8, gate_in="colours").check()


def test_a_gate_branch_config_without_gate_in_is_the_first_kind():
    """A model file written before gate_in existed (the first tiny-video) is fed the parts; a
    framewise model's config carries neither key; an unknown input kind is refused."""
    base = {"name": "v", "widths": [16, 32, 64], "depths": [1, 2, 2], "recurrent": True, "gate": 8}
    assert ModelConfig.from_dict(base).gate_in == "parts"
    assert ModelConfig.from_dict({**base, "gate_in": "sums"}).to_dict()["gate_in"] == "sums"
    assert "gate_in" not in ModelConfig.from_dict({"name": "f", "widths": [16], "depths": [1]}).to_dict()
    with pytest.raises(ValueError, match="gate_in"):
        ModelConfig.from_dict({**base, "gate_in": "colours"})
