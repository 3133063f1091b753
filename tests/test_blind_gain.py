"""A model's blind gain: blind mode tells each model a camera's correlated noise at the gain calibrated for
it (tools/calibrate_blind.py, stored in its JSON), white noise at its level whatever the gain; a bad gain
is refused at load; the calibration tool measures, chooses on its grid and writes what the Denoiser reads."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgedenoise import Denoiser
from edgedenoise.camera import simulate
from edgedenoise.data import read_image
from edgedenoise.errors import ModelError
from edgedenoise.estimate import CORRELATED_GAIN, combine, estimate_parts, estimate_sigma
from edgedenoise.modelfile import MODELS_DIR
from edgedenoise.noise import protocol_noisy

ROOT = Path(__file__).resolve().parent.parent


def copy_tiny(tmp_path: Path, blind=None) -> Path:
    for ext in (".json", ".safetensors", ".onnx"):
        shutil.copy(MODELS_DIR / f"tiny{ext}", tmp_path / f"tiny{ext}")
    doc = json.loads((tmp_path / "tiny.json").read_text())
    doc.pop("blind", None)
    if blind is not None:
        doc["blind"] = blind
    (tmp_path / "tiny.json").write_text(json.dumps(doc))
    return tmp_path / "tiny.onnx"


@pytest.fixture(scope="module")
def frames(data_root):
    clean = read_image(data_root / "test" / "Kodak24" / "kodim03.png", 3)
    cam = simulate(clean, np.random.default_rng(0), setting="low-light")[0][:, :, ::-1]
    white = protocol_noisy(clean, 25, 0, "camera")[:, :, ::-1]
    return np.ascontiguousarray(cam), np.ascontiguousarray(white)


def test_the_models_gain_scales_correlated_noise_only(tmp_path, frames):
    cam, white = frames
    fine, coarse, w = estimate_parts(cam)
    assert w > 0.5 and coarse > fine, "low-light camera noise reads as correlated"
    own = Denoiser.load(copy_tiny(tmp_path, {"correlated_gain": 1.0}))
    assert own.blind_gain == 1.0
    assert own.estimate(cam) == pytest.approx(estimate_sigma(cam, 1.0))
    assert own.estimate(cam) < estimate_sigma(cam) - 0.5 * (CORRELATED_GAIN - 1.0) * coarse * w
    assert own.estimate(white) == pytest.approx(estimate_sigma(white))  # white noise: its level, any gain
    # blind denoising takes the model's level: the same output as told it
    assert np.array_equal(own.denoise(cam), own.denoise(cam, own.estimate(cam)))
    own.close()
    plain = Denoiser.load(copy_tiny(tmp_path))  # no gain in its JSON
    assert plain.blind_gain == CORRELATED_GAIN
    plain.close()


@pytest.mark.parametrize("bad", ["two", 0.0, 50])
def test_a_bad_gain_is_refused_at_load(tmp_path, bad):
    with pytest.raises(ModelError, match="correlated_gain"):
        Denoiser.load(copy_tiny(tmp_path, {"correlated_gain": bad}))


def test_shipped_models_carry_a_calibrated_gain():
    for name in ("nano", "tiny", "default"):
        den = Denoiser.load(name)
        assert 0.8 <= den.blind_gain <= 2.6, name  # the calibration grid
        den.close()


def test_calibration_chooses_on_its_grid_and_writes_what_the_denoiser_reads(tmp_path, data_root):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from calibrate_blind import GRID, MARGIN, calibrate, write_gain
    finally:
        sys.path.remove(str(ROOT / "tools"))
    onnx = copy_tiny(tmp_path)
    gain, res, table = calibrate(str(onnx.with_suffix(".safetensors")), data_root / "train" / "CBSD432",
                                 val_count=2, cameras=1, progress=False)
    assert gain in GRID and f"chosen on the random cameras: {gain:g}" in table
    cols = [f"gain {g:g}" for g in GRID]
    cam = res["random cameras"]
    best = max(cam[c] for c in cols)
    # the best gain of the grid, or the default one where none beats it by MARGIN
    assert cam[f"gain {gain:g}"] == best or (gain == CORRELATED_GAIN
                                             and best - cam[f"gain {CORRELATED_GAIN:g}"] < MARGIN)
    for s in ("15", "25", "50"):  # Gaussian noise reads as white: the gain changes nothing, in luma either
        for luma in ("", "luma "):
            vals = [res[f"gaussian {s}"][luma + c] for c in cols]
            assert max(vals) - min(vals) < 1e-9, (s, luma)
    # luma alone scores the same outputs: a gain that moved the RGB figure moves the luma one too
    assert "in luma (Y) alone" in table and all(f"luma {c}" in cam for c in cols)
    assert np.ptp([cam[f"luma {c}"] for c in cols]) > 0
    write_gain(onnx.with_suffix(".json"), gain, res, "test")
    den = Denoiser.load(onnx)
    assert den.blind_gain == gain
    den.close()
    assert combine((4.0, 10.0, 1.0), gain) == pytest.approx(gain * 10.0)


def test_calibration_cases_through_a_lens(data_root):
    """calibrate_blind.py --optics: the same cameras with a lens, whose
    reference has less of the false colour the JPEG then loses; without it the cases of before."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from calibrate_blind import cases
    finally:
        sys.path.remove(str(ROOT / "tools"))
    from edgedenoise.camera import simulate
    from edgedenoise.data import read_image, validation_images
    from edgedenoise.frames import psnr_u8

    val = validation_images(data_root / "train" / "CBSD432", 8)[:1]
    plain, lens = cases(val, 2), cases(val, 2, optics=1.0)
    assert [g for g, *_ in plain] == [g for g, *_ in lens]
    first = simulate(read_image(val[0].path, 3), np.random.default_rng([0, 31, 0]))  # as before the option
    cam = next(i for i, (g, *_) in enumerate(plain) if g == "random cameras")
    assert np.array_equal(plain[cam][1], first[0][:, :, ::-1]) and np.array_equal(plain[cam][2], first[1][:, :, ::-1])
    for (g, n0, r0, _), (_, n1, r1, _) in zip(plain, lens):
        if g.startswith("gaussian"):
            assert np.array_equal(n0, n1)
        else:
            assert psnr_u8(n1, r1) > psnr_u8(n0, r0), g


def test_the_pipeline_estimates_with_the_models_gain(tmp_path, frames):
    """`run`'s noise level (offline: every frame estimated) is the running model's, gain included."""
    from edgedenoise.runtime.pipeline import Pipeline
    from edgedenoise.runtime.sinks import NullSink
    from edgedenoise.runtime.sources import DemoSource

    cam = frames[0][:256, :256]
    den = Denoiser.load(copy_tiny(tmp_path, {"correlated_gain": 1.0}))
    pipe = Pipeline(DemoSource(15.0, size=(256, 256)), NullSink(), den, mode="offline", sigma=None, status=False)
    assert pipe.sigma(cam) == pytest.approx(den.estimate(cam)) and den.estimate(cam) < estimate_sigma(cam) - 1
    den.close()


def test_runs_sigma_tracker_follows_the_running_models_gain(frames):
    """run's tracker smooths the estimate's two terms, not a level: a switch of model on the ladder
    (another blind gain) gives at once the level the new model's own estimate would, and a single
    estimate is the Denoiser's estimate exactly."""
    from edgedenoise.runtime.pipeline import SigmaTracker

    cam = np.ascontiguousarray(frames[0][:256, :256])
    gain = [1.4]
    tr = SigmaTracker(None, crop=256, gain=lambda: gain[0])
    assert tr(cam) == pytest.approx(estimate_sigma(cam, 1.4))
    gain[0] = 2.0  # the ladder stepped to a model of another gain
    assert tr.value == pytest.approx(estimate_sigma(cam, 2.0)) and tr.value > estimate_sigma(cam, 1.4) + 1
    assert combine(estimate_parts(cam), 2.0) == pytest.approx(estimate_sigma(cam, 2.0))


def test_camera_psnr_is_the_random_cameras_figure_at_the_models_own_gain():
    """What `auto` ranks by (ModelFiles.camera_psnr): the validation figure at the gain the model uses;
    None where its JSON has no such figure (a model shipped before the calibration, a user's model)."""
    from edgedenoise.modelfile import ModelFiles

    def files(blind):
        return ModelFiles("m", {"blind": blind} if blind is not None else {}, None, None)

    table = {"1.8": 25.1, "2": 25.3, "2.6": 25.2}
    assert files({"correlated_gain": 2.0, "psnr_random_cameras": table}).camera_psnr == 25.3
    assert files({"correlated_gain": 2.6, "psnr_random_cameras": table}).camera_psnr == 25.2
    assert files({"correlated_gain": 2.2, "psnr_random_cameras": table}).camera_psnr is None  # not measured
    assert files({"correlated_gain": 2.0}).camera_psnr is None
    assert files(None).camera_psnr is None
    assert files({"correlated_gain": 2.0, "psnr_random_cameras": {"2": "n/a"}}).camera_psnr is None
