"""tools/gpu_train.sh, the training call prepared for a GPU lease: its plan (--dry-run: every step
under a limit, within the 9-minute budget), its refusals, and a smoke run on the CPU that goes
through every step and leaves a run folder the shipping tools read (the weights load and differ
from the shipped ones; the validation table names both models)."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu_train.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(*args, **kw):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, **kw)


def test_dry_run_plans_every_step_within_nine_minutes():
    p = run("--dry-run", "/tmp/unused")
    assert p.returncode == 0, p.stdout + p.stderr
    steps = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)s\s", p.stdout, re.M)}
    total = steps.pop("total")
    assert list(steps) == ["probe", "rate", "train", "validate"]
    assert total == sum(steps.values()) <= 540 and "within" in p.stdout
    assert "--init default" in p.stdout and "--camera-sim" in p.stdout
    assert "--init tiny" in run("--dry-run", "/tmp/unused", "--model", "tiny").stdout
    # trained through a lens (both models' settings are, since 2026-12-08): validated through it too; a run
    # told no lens (-- --camera-optics 0) validated without one (compare_val.py takes the last --optics)
    assert re.search(r"^train .*--camera-optics 1\.0 --camera-optics-from 0 ", p.stdout, re.M), p.stdout
    assert re.search(r"^validate .*compare_val\.py .*--optics 1\.0 --json", p.stdout, re.M), p.stdout
    lens = run("--dry-run", "/tmp/unused", "--", "--camera-optics", "1.0").stdout
    assert re.search(r"^validate .*compare_val\.py .*--optics 1\.0", lens, re.M), lens
    none = run("--dry-run", "/tmp/unused", "--", "--camera-optics", "0").stdout
    assert re.search(r"^validate .*compare_val\.py .*--optics 1\.0 --optics 0 --json", none, re.M), none
    # TRAIN_ARGS reach the rate step too (a dearer loader, e.g. --camera-level estimate, sizes the run)
    assert re.search(r"^rate .*--camera-optics 1\.0", lens, re.M), lens
    # a recurrent model: validated on the clips beside the shipped framewise model and recurrent variant
    video = run("--dry-run", "/tmp/unused", "--model", "tiny", "--", "--video", "--frames", "4").stdout
    assert re.search(r"^validate .*compare_val\.py tiny tiny-video .*--clips", video, re.M), video
    assert re.search(r"^rate .*--video --frames 4 --steps 100 ", video, re.M), video
    assert "--act-limit" not in video  # train takes it for framewise fine-tunes only


def test_compare_val_adds_the_lens_cases_and_leaves_the_others_as_they_were(data_root):
    """compare_val.py --optics: the camera cases again through a lens, the cases of before unchanged."""
    import importlib.util

    import numpy as np

    from edgedenoise.data import validation_images
    from edgedenoise.frames import psnr_u8

    spec = importlib.util.spec_from_file_location("compare_val", ROOT / "tools" / "compare_val.py")
    cv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cv)
    val = validation_images(data_root / "train" / "CBSD432", 8)[:1]
    plain, lens = cv.cases(val), cv.cases(val, optics=1.0)
    by_name = {c: (n, r) for c, n, r, _ in lens}
    assert [c for c, *_ in lens if not c.endswith(", lens")] == [c for c, *_ in plain]
    for c, n, r, _ in plain:
        assert np.array_equal(by_name[c][0], n) and np.array_equal(by_name[c][1], r), c
    cams = [c for c, *_ in plain if c.startswith("camera")]
    assert [c for c, *_ in lens if c.endswith(", lens")] == [f"{c}, lens" for c in cams]
    for c in cams:  # the lens takes the sharp scene's false colour out of the reference: less of it to lose
        (n0, r0), (n1, r1) = by_name[c], by_name[f"{c}, lens"]
        assert not np.array_equal(r0, r1) and psnr_u8(n1, r1) > psnr_u8(n0, r0), c


def test_bad_usage_is_one_line_and_exit_2():
    for args in ([], ["--bogus", "x"], ["a", "b"], ["x", "--model", "huge"]):
        p = run(*args)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)


def test_smoke_run_leaves_a_run_folder_to_ship(tmp_path):
    pytest.importorskip("torch")
    import numpy as np
    from safetensors.numpy import load_file

    from edgedenoise.modelfile import resolve

    out = tmp_path / "out"
    p = run("--smoke", str(out), "--", "--camera-optics", "1.0", timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    names = sorted(f.name for f in out.iterdir())
    assert names == sorted(["config.json", "curves.png", "gpu_train.log", "gpu_train.md", "metrics.csv",
                            "model.json", "model.safetensors", "val.json"])
    run_files = resolve(out)  # a run folder as ship_model.py and compare_val.py take it
    trained, shipped = load_file(run_files.weights), load_file(resolve("default").weights)
    assert trained.keys() == shipped.keys()
    assert any(not np.array_equal(trained[k], shipped[k].astype(trained[k].dtype)) for k in trained)
    assert json.loads((out / "config.json").read_text())["init"] == "default"
    val = json.loads((out / "val.json").read_text())["results"]
    assert len(val) == 2 and all("camera low-light" in r and "gaussian 25" in r for r in val.values())
    assert all("camera low-light, lens" in r and "blind_y" in r["camera random"] for r in val.values())
    summary = (out / "gpu_train.md").read_text()
    assert "| train | ok |" in summary and "minus default, RGB" in summary and "minus default, luma" in summary
    assert "--camera-optics 1.0" in summary and "| camera daylight, lens |" in summary
    assert re.search(r"waited for its batches \d+% of its time", summary), summary


def test_a_shipped_models_training_record_keeps_the_camera_settings(tmp_path):
    """tools/ship_model.py's record of a run: the lens and the activation limit it was trained with too."""
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from ship_model import training_record
    finally:
        sys.path.remove(str(ROOT / "tools"))
    (tmp_path / "config.json").write_text(json.dumps({"steps": 12, "camera_sim": 0.35, "camera_optics": 1.0,
                                                      "camera_optics_from": 0.0, "act_limit": 0.03, "init": "tiny",
                                                      "workers": 3}))
    rec = training_record(tmp_path)
    assert rec["camera_optics"] == 1.0 and rec["camera_optics_from"] == 0.0 and rec["act_limit"] == 0.03
    assert "workers" not in rec and rec["init"] == "tiny" and "init_training" in rec


def test_smoke_run_of_a_recurrent_model_is_validated_on_clips(tmp_path):
    """`-- --video ...`: the run is a recurrent model from tiny, scored on the validation clips beside
    tiny (alone and with the blend) and the shipped tiny-video, and the summary says how to ship it."""
    pytest.importorskip("torch")
    out = tmp_path / "out"
    p = run("--smoke", str(out), "--model", "tiny", "--", "--video", "--frames", "2", "--gate", "12", "--fusion-only",
            timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((out / "model.json").read_text())["recurrent"] is True
    val = json.loads((out / "val.json").read_text())
    assert val["clips"] and list(val["results"])[:2] == ["tiny", "tiny-video"]
    assert set(val["results"]["tiny"]) == {"off", "blend"} and all(
        "model" in r for m, r in val["results"].items() if m != "tiny")
    summary = (out / "gpu_train.md").read_text()
    assert "| tiny + blend |" in summary and "--name tiny-video" in summary


def test_compare_val_scores_an_uncalibrated_run_at_the_gain_of_its_init(tmp_path):
    """A fine-tune not yet shipped has no blind gain of its own: compare_val scores it blind at the gain of
    the model it started from (config.json's init, followed back through run folders), not at the 2.0 of an
    uncalibrated model, so that its blind column stands beside the shipped model's like for like."""
    import importlib.util

    from edgedenoise.estimate import CORRELATED_GAIN
    from edgedenoise.modelfile import resolve

    spec = importlib.util.spec_from_file_location("compare_val", ROOT / "tools" / "compare_val.py")
    cv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cv)
    own = resolve("default").blind_gain
    assert own != CORRELATED_GAIN  # else this test tells nothing
    assert cv.blind_gain_of("default") == (own, "its own")

    def run_folder(name: str, init: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        cfg = json.loads((ROOT / "edgedenoise" / "models" / "small.json").read_text())
        cfg.pop("blind")
        (d / "model.json").write_text(json.dumps(cfg))
        shutil.copy(ROOT / "edgedenoise" / "models" / "small.safetensors", d / "model.safetensors")
        (d / "config.json").write_text(json.dumps({"model": "small", "init": init}))
        return d

    first = run_folder("first", "default")
    second = run_folder("second", str(first))  # resumed from a run: back through it to the shipped model
    assert cv.blind_gain_of(str(first)) == (own, "its --init's, default")
    assert cv.blind_gain_of(str(second)) == (own, "its --init's, default")
    assert cv.blind_gain_of(str(second / "model.safetensors")) == (own, "its --init's, default")
    gone = run_folder("gone", str(tmp_path / "deleted"))
    loop = run_folder("loop", str(tmp_path / "loop"))
    for d in (gone, loop):  # an init that is gone, a run that names itself: the uncalibrated default
        assert cv.blind_gain_of(str(d)) == (CORRELATED_GAIN, "the default, not calibrated")
    # a run folder with a gain of its own keeps it
    cfg = json.loads((first / "model.json").read_text())
    (first / "model.json").write_text(json.dumps({**cfg, "blind": {"correlated_gain": 1.4}}))
    assert cv.blind_gain_of(str(first)) == (1.4, "its own")
    assert cv.blind_gain_of(str(second)) == (1.4, f"its --init's, {first}")
