import numpy as np
import pytest

from edgedenoise.noise import AWGN, Camera, PoissonGaussian, make_noise, protocol_noisy, quantize


def test_awgn_is_seeded_and_has_its_sigma():
    clean = np.full((256, 256, 3), 0.5, np.float32)
    a, s1 = AWGN(sigma=25).apply(clean, np.random.default_rng(3))
    b, s2 = AWGN(sigma=25).apply(clean, np.random.default_rng(3))
    assert np.array_equal(a, b) and s1 == s2 == 25
    assert abs((a - clean).std() * 255 - 25) < 0.3


def test_awgn_range_draws_inside_range():
    sig = [AWGN(sigma=None, sigma_range=(5, 30)).apply(np.zeros((4, 4), np.float32), np.random.default_rng(i))[1]
           for i in range(50)]
    assert min(sig) >= 5 and max(sig) <= 30 and np.std(sig) > 3


def test_sigma_power_skews_draws_low_but_keeps_the_range():
    rng = np.random.default_rng(0)
    skewed = AWGN(sigma=None, sigma_range=(0, 75), sigma_power=1.5)
    sig = np.array([skewed.draw_sigma(rng) for _ in range(20000)])
    assert sig.min() >= 0 and sig.max() <= 75 and sig.max() > 74  # the whole range is still drawn
    # P(sigma < 50) = (2/3) ** (1 / 1.5) = 0.763 (uniform: 0.667); 20k draws: std error 0.003
    assert abs((sig < 50).mean() - (2 / 3) ** (1 / 1.5)) < 0.015
    with pytest.raises(ValueError, match="sigma_power"):
        make_noise("awgn", sigma_range=(0, 75), sigma_power=0)


def test_poisson_gaussian_noise_grows_with_signal():
    pg = PoissonGaussian(shot=(1e-2, 1e-2), read=(1e-6, 1e-6))
    dark = np.full((128, 128), 0.05, np.float32)
    bright = np.full((128, 128), 0.9, np.float32)
    nd, _ = pg.apply(dark, np.random.default_rng(0))
    nb, _ = pg.apply(bright, np.random.default_rng(0))
    # variance a*x: std ratio sqrt(0.9/0.05) ~ 4.2
    assert 3.5 < (nb - bright).std() / (nd - dark).std() < 5.0


def test_camera_noise_with_jpeg_is_seeded():
    clean = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    cam = Camera(jpeg_quality=(80, 90))
    a, sa = cam.apply(clean, np.random.default_rng(1))
    b, sb = cam.apply(clean, np.random.default_rng(1))
    assert np.array_equal(a, b) and sa == sb > 0


def test_protocols_follow_the_benchmark_page():
    clean = np.random.default_rng(9).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    n = np.random.default_rng(4).standard_normal(clean.shape).astype(np.float32) * 25
    paper = protocol_noisy(clean, 25, 4, "paper")
    camera = protocol_noisy(clean, 25, 4, "camera")
    assert paper.dtype == np.float32 and np.allclose(paper, clean / 255 + n / 255, atol=1e-6)
    assert camera.dtype == np.uint8 and np.array_equal(camera, np.round(np.clip(clean + n, 0, 255)).astype(np.uint8))
    assert np.array_equal(quantize(paper), camera / np.float32(255))


def test_unknown_noise_is_refused():
    with pytest.raises(ValueError, match="unknown noise model"):
        make_noise("speckle")


def _patch(seed=0, size=64):
    """A smooth colour patch with an edge, CHW float in [0,1] (uint8 levels, as training's patches)."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.5 + 0.3 * (x > 0.5)], 0)
    return np.round(img * 255).astype(np.float32) / 255


def test_camera_sim_targets_the_pipeline_without_noise():
    from edgedenoise.noise import CameraSim

    clean = _patch()
    noisy, level, target = CameraSim().sample(clean, np.random.default_rng(4))
    again = CameraSim().sample(clean, np.random.default_rng(4))
    assert noisy.shape == target.shape == clean.shape and noisy.dtype == np.float32
    assert all(np.array_equal(a, b) for a, b in zip((noisy, target), (again[0], again[2]))) and level == again[1]
    # the target is the camera's rendition of the scene (colour, tone, demosaicing), not the input
    assert not np.array_equal(target, clean)
    rms = float(np.sqrt(np.mean((noisy - target) ** 2))) * 255
    # the level told is the RMS of the noise up to the jitter: exp(0.15 * N(0,1)) is inside 0.5-2
    assert 0.5 * rms < level < 2 * rms
    _, exact, _ = CameraSim(map_jitter=0.0).sample(clean, np.random.default_rng(4))
    assert abs(exact - rms) < 1e-3
    grey, _, gt = CameraSim().sample(clean[:1], np.random.default_rng(1))
    assert grey.shape == gt.shape == (1, 64, 64)


def test_camera_sim_can_tell_blind_modes_estimate():
    """told="estimate": the level is blind mode's estimate of the uint8 patch (no jitter), the same
    noise and target as told="true" draws; a daylight camera whose JPEG losses count in the RMS
    reads far lower than its RMS."""
    from edgedenoise.estimate import estimate_sigma
    from edgedenoise.noise import CameraSim, training_noise

    clean = _patch(size=112)
    true = CameraSim(map_jitter=0.0).sample(clean, np.random.default_rng(3))
    est = CameraSim(told="estimate").sample(clean, np.random.default_rng(3))
    assert np.array_equal(true[0], est[0]) and np.array_equal(true[2], est[2])
    u8 = np.round(np.moveaxis(est[0], 0, -1) * 255).astype(np.uint8)
    assert est[1] == pytest.approx(estimate_sigma(u8)) and est[1] != true[1]
    clip = CameraSim(told="estimate").fixed(np.random.default_rng(3))  # a clip's camera: no jitter on top
    assert clip.told == "estimate" and clip.level_gain == 1.0
    assert training_noise("awgn", (0, 75), camera_sim=0.5, camera_level="estimate").camera.told == "estimate"
    with pytest.raises(ValueError, match="camera_level"):
        training_noise("awgn", (0, 75), camera_sim=0.5, camera_level="rms")


def test_training_noise_mixes_and_leaves_old_runs_alone():
    from edgedenoise.noise import AWGN, Mixture, training_noise

    plain = training_noise("awgn", (0, 75))
    assert isinstance(plain, AWGN)  # no camera share: the same model, so the same draws as before
    mix = training_noise("awgn", (0, 75), camera_sim=0.5)
    assert isinstance(mix, Mixture)
    clean = _patch(size=32)
    kinds = [np.array_equal(mix.sample(clean, np.random.default_rng(i))[2], clean) for i in range(40)]
    assert 10 < sum(kinds) < 30  # about half keep the clean target (Gaussian), half the camera's
    with pytest.raises(ValueError, match="camera_sim"):
        training_noise("awgn", (0, 75), camera_sim=1.5)
