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
    p = run("--smoke", str(out), timeout=400)
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
    summary = (out / "gpu_train.md").read_text()
    assert "| train | ok |" in summary and "minus default" in summary
    assert re.search(r"waited for its batches \d+% of its time", summary), summary
