"""Tests of the real-camera noise synthesis (edgedenoise.camera)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgedenoise import camera as C
from edgedenoise.data import list_images, read_image


def _hcorr(r: np.ndarray) -> float:
    return float(np.corrcoef(r[:, :-1].ravel(), r[:, 1:].ravel())[0, 1])


def _ccorr(r: np.ndarray, i: int, j: int) -> float:
    return float(np.corrcoef(r[..., i].ravel(), r[..., j].ravel())[0, 1])


def _psnr(a, b, mask=None):
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = d[mask].mean() if mask is not None else d.mean()
    if mse == 0:
        return float("inf")
    return 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def train_image(data_root):
    files = list_images(data_root / "train" / "CBSD432")
    return read_image(files[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_raw_noise_variance_follows_shot_read_line(seed):
    rng = np.random.default_rng(seed)
    shot, read = C.sample_noise_levels(rng)
    p = C.CameraParams(shot=shot, read=read)
    x = np.linspace(0.02, 0.98, 48, dtype=np.float32)
    raw = np.tile(x, (4000, 1))                       # flat ramp: each column one level
    var = (C.add_raw_noise(raw, p, rng) - raw).var(axis=0)
    slope, intercept = np.polyfit(x, var, 1)
    # 4000 samples per level: std error of a variance ~2.2 %; the fit averages 48 levels
    assert abs(slope - shot) < 0.03 * shot
    assert abs(intercept - read) < 0.05 * read + 0.01 * shot


def test_read_is_tied_to_shot_like_real_sensors():
    rng = np.random.default_rng(0)
    s, r = np.log(np.array([C.sample_noise_levels(rng) for _ in range(4000)])).T
    assert np.log(1e-4) - 1e-9 <= s.min() and s.max() <= np.log(1.2e-2) + 1e-9
    a, b = np.polyfit(s, r, 1)
    assert abs(a - 2.18) < 0.05 and abs(b - 1.20) < 0.25
    assert abs((r - (a * s + b)).std() - 0.26) < 0.02


@pytest.mark.parametrize("dem", C.DEMOSAICS)
def test_demosaicing_correlates_noise(dem):
    img = np.full((192, 192, 3), 110, np.uint8)
    p = C.setting_params("low-light")
    p.demosaic = dem
    raw = C.unprocess(img, p)
    noisy = C.add_raw_noise(raw, p, np.random.default_rng(0))
    assert abs(_hcorr(noisy - raw)) < 0.05                    # raw noise: independent
    r = C.demosaic(noisy, p.pattern, dem) - C.demosaic(raw, p.pattern, dem)
    assert min(_hcorr(r[..., c]) for c in range(3)) > 0.2     # spread over neighbours
    out = C.process(noisy, p).astype(np.float32) - C.process(raw, p).astype(np.float32)
    assert min(_hcorr(out[..., c]) for c in range(3)) > 0.2
    # colours coupled: VNG already in the demosaic (it interpolates colour differences);
    # bilinear/EA fill each plane from its own samples, the colour matrix then mixes them
    # (its off-diagonals are negative, so R-G and G-B become anti-correlated)
    if dem == "vng":
        assert min(_ccorr(r, 0, 1), _ccorr(r, 1, 2)) > 0.2
    assert min(abs(_ccorr(out, 0, 1)), abs(_ccorr(out, 1, 2))) > 0.2


@pytest.mark.parametrize("pattern", C.BAYER_PATTERNS)
@pytest.mark.parametrize("dem", C.DEMOSAICS)
def test_bayer_patterns_keep_colours(pattern, dem):
    cam = np.empty((16, 16, 3), np.float32)
    cam[:] = (0.8, 0.4, 0.1)
    back = C.demosaic(C.mosaic(cam, pattern), pattern, dem)[4:-4, 4:-4]
    assert np.abs(back - cam[4:-4, 4:-4]).max() < 0.01


def test_round_trip_without_noise_or_compression(train_image):
    p = C.setting_params("daylight")
    h, w = train_image.shape[:2]
    keep = train_image.max(axis=2) < 230                       # away from highlights
    back = C.process(C.unprocess(train_image, p, mosaic_out=False), p, out_shape=(h, w))
    assert _psnr(back, train_image, keep) > 40
    # with mosaic + demosaic on a smooth image (demosaicing itself loses only fine detail)
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float32)
    smooth = np.stack([60 + 120 * xx / 128, 50 + 100 * yy / 96, 150 - 60 * xx / 128], -1)
    smooth = smooth.round().astype(np.uint8)
    for dem in ("bilinear", "ea"):
        back = C.process(C.unprocess(smooth, p), p, dem, out_shape=smooth.shape[:2])
        assert _psnr(back[2:-2, 2:-2], smooth[2:-2, 2:-2]) > 40


def test_settings_reproducible_and_ordered(train_image):
    a = C.simulate(train_image, np.random.default_rng(3), setting="low-light")
    b = C.simulate(train_image, np.random.default_rng(3), setting="low-light")
    c = C.simulate(train_image, np.random.default_rng(4), setting="low-light")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    ps = [C.simulate(train_image, np.random.default_rng(0), setting=s)[2]["psnr"]
          for s in ("daylight", "low-light", "very-low-light")]
    assert ps[0] > ps[1] + 2 > ps[2] + 4
    assert a[2]["jpeg_quality"] == 90 and a[2]["compression"] == "jpeg"
    with pytest.raises(ValueError, match="unknown camera setting"):
        C.simulate(train_image, np.random.default_rng(0), setting="moonlight")


def _lowpass_share(res: np.ndarray) -> float:
    """Energy of the residual after a 3x3 box blur over its energy: 1/9 for white noise,
    higher for blotchy (low-frequency) noise."""
    res = res - res.mean(axis=(0, 1))
    blur = cv2.blur(res.astype(np.float32), (3, 3), borderType=cv2.BORDER_REFLECT)
    return float((blur ** 2).sum() / (res ** 2).sum())


def test_jpeg_makes_noise_blotchier(train_image):
    shares = {}
    for comp, q in (("none", 90), ("jpeg", 90), ("jpeg", 60)):
        p = C.setting_params("low-light")
        p.compression, p.jpeg_quality = comp, q
        noisy, ref, _ = C.simulate(train_image, np.random.default_rng(0), params=p)
        shares[(comp, q)] = _lowpass_share(noisy.astype(np.float32) - ref)
    assert shares[("jpeg", 90)] > shares[("none", 90)] * 1.1
    assert shares[("jpeg", 60)] > shares[("jpeg", 90)]


@pytest.mark.parametrize("shape", [(64, 64), (33, 47), (1, 5), (128, 97)])
def test_shape_and_dtype_contract(shape):
    img = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    for seed in range(3):
        noisy, ref, info = C.simulate(img, np.random.default_rng(seed))
        assert noisy.shape == ref.shape == img.shape
        assert noisy.dtype == ref.dtype == np.uint8
        assert info["noise_std"] >= 0 and "params" in info
    with pytest.raises(ValueError):
        C.simulate(img[..., 0], np.random.default_rng(0))


def test_random_params_are_in_range_and_seeded():
    ps = [C.sample_params(np.random.default_rng(i)) for i in range(300)]
    assert C.sample_params(np.random.default_rng(5)) == ps[5]
    assert all(1.9 <= p.red_gain <= 2.4 and 1.5 <= p.blue_gain <= 1.9 for p in ps)
    assert {p.demosaic for p in ps} == set(C.DEMOSAICS)
    assert {p.pattern for p in ps} == set(C.BAYER_PATTERNS)
    assert 0.05 < np.mean([p.compression == "video" for p in ps]) < 0.3
    for p in ps[:5]:
        assert np.allclose(p.rgb2cam.sum(axis=1), 1.0)


def test_optics_leave_every_other_draw_as_it_was_and_stay_in_range():
    """`optics` (a lens blur, off by default) is drawn after everything else: without it the draws and the
    generator's state are exactly those of before; with it the same camera, a blur in [o/2, o] px."""
    import dataclasses

    for i in range(20):
        a, b, c = (np.random.default_rng(i) for _ in range(3))
        plain, zero, blurred = C.sample_params(a), C.sample_params(b, optics=0.0), C.sample_params(c, optics=1.2)
        assert plain == zero and a.random() == b.random() and plain.optics == 0.0
        assert dataclasses.replace(blurred, optics=0.0) == plain and 0.6 <= blurred.optics <= 1.2
    # optics_from: the range's low end as a share of its top (0: sharp cameras too, 1: always the top)
    wide = [C.sample_params(np.random.default_rng(i), optics=1.2, optics_from=0.0).optics for i in range(200)]
    assert 0.0 <= min(wide) < 0.2 and 1.0 < max(wide) <= 1.2
    assert C.sample_params(np.random.default_rng(3), optics=1.2, optics_from=1.0).optics == 1.2


def test_optics_take_the_demosaicings_false_colour_out_of_the_reference(train_image):
    """A lens-like blur before the mosaic: the simulation's JPEG then loses what a real one does, not the
    false colour that demosaicing a pixel-sharp scene leaves (docs/blind-notes.md); off, the images are
    those of before, to the bit."""
    import dataclasses

    quiet = dataclasses.replace(C.setting_params("daylight"), shot=1e-12, read=1e-12)
    sharp = C.simulate(train_image, np.random.default_rng(0), params=quiet)
    again = C.simulate(train_image, np.random.default_rng(0), params=dataclasses.replace(quiet, optics=0.0))
    soft = C.simulate(train_image, np.random.default_rng(0), params=dataclasses.replace(quiet, optics=1.0))
    assert all(np.array_equal(x, y) for x, y in zip(sharp[:2], again[:2]))
    jpeg_sharp, jpeg_soft = _psnr(sharp[0], sharp[1]), _psnr(soft[0], soft[1])
    assert jpeg_soft > jpeg_sharp + 5, (jpeg_sharp, jpeg_soft)


def test_training_can_blur_its_cameras_and_says_when_there_are_none():
    from edgedenoise.errors import DataError
    from edgedenoise.noise import training_noise
    from edgedenoise.trainconfig import TrainConfig

    mix = training_noise("awgn", (0.0, 75.0), camera_sim=0.3, camera_optics=0.8)
    assert mix.camera.optics == 0.8 and mix.camera.fixed(np.random.default_rng(0)).params.optics >= 0.4
    assert training_noise("camera-sim", (0.0, 75.0)).optics == 0.0
    TrainConfig(camera_sim=0.3, camera_optics=0.8).check()
    with pytest.raises(DataError, match="--camera-optics 0.8: .*needs --camera-sim"):
        TrainConfig(camera_optics=0.8).check()


def test_video_path_and_fallback():
    img = np.random.default_rng(0).integers(60, 200, (40, 50, 3), dtype=np.uint8)
    p = C.setting_params("daylight")
    p.compression, p.codec = "video", "MJPG"
    out, info = C.compress(img, p)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert info["video_fallback"] == (info["compression"] == "jpeg")
    p.codec = "ZZZZ"                                   # no such codec: JPEG, flagged
    out, info = C.compress(img, p)
    assert info["video_fallback"] is True and info["compression"] == "jpeg"
    assert out.shape == img.shape


def test_eval_scores_a_model_on_a_camera_sim_setting(tmp_path, data_root):
    """`eval --noise camera-sim:SETTING`: seeded simulated camera noise, scored against the clean pipeline."""
    import os

    from edgedenoise.errors import DataError
    from edgedenoise.evaluate import check_protocol, evaluate

    d = tmp_path / "two"
    d.mkdir()
    for f in sorted((data_root / "test" / "Kodak24").iterdir())[:2]:
        os.symlink(f, d / f.name)
    told = evaluate("tiny", d, [25], "camera-sim:low-light", progress=False)
    again = evaluate("tiny", d, [25], "camera-sim:low-light", progress=False)
    r = told["results"][0]
    assert r["psnr"] > r["psnr_noisy"] + 0.5  # the model told a level removes some of the camera noise
    assert r["psnr"] == again["results"][0]["psnr"]  # seeded: the same images get the same noise
    blind = evaluate("tiny", d, [15, 25], "camera-sim:low-light", blind=True, progress=False)
    assert len(blind["results"]) == 1 and blind["blind"]  # one blind pass, whatever --sigma lists
    with pytest.raises(DataError, match="unknown camera-sim setting"):
        check_protocol("camera-sim:moonlight")


@pytest.mark.parametrize("setting", ["low-light", "very-low-light"])
def test_noise_level_estimate_reads_camera_noise(data_root, setting):
    """The fine-scale estimate reads under half of camera noise's RMS (demosaicing and JPEG move
    it to coarser scales). estimate_sigma, which also looks at half resolution, tells the models
    the level they remove it best at: about 1.5x the RMS (best sigma per image on training images:
    25 for an RMS of 16 at low light, 40 for 25 at very low light), never less than 0.75x."""
    from edgedenoise.camera import simulate
    from edgedenoise.data import list_images, read_image
    from edgedenoise.estimate import estimate_sigma, estimate_white_sigma

    for i, p in enumerate(list_images(data_root / "test" / "Kodak24")[:4]):
        noisy, ref, info = simulate(read_image(p), np.random.default_rng(i), setting=setting)
        rms = info["noise_std"]
        assert estimate_white_sigma(noisy) < 0.5 * rms
        est = estimate_sigma(noisy[:, :, ::-1])
        assert 0.75 * rms < est < 2.2 * rms, f"{p.name}: estimated {est:.1f} for RMS {rms:.1f}"
