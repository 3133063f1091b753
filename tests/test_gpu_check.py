"""benchmarks/gpu_check.sh, the check prepared for a short GPU lease: what a CPU can check of it
without running a benchmark. Its syntax, its plan (--dry-run: every step under a limit, the limits
within the 6-minute budget), its refusals, and that the benchmark scripts accept the arguments the
plan gives them (kernels.py lists the layers it would time; latency.py gets past its arguments to the
missing GPU)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(*args, **kw):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, **kw)


def plan() -> dict:
    """step -> (expected s, limit s, command), from --dry-run."""
    p = run("--dry-run", "/tmp/unused")
    assert p.returncode == 0, p.stdout + p.stderr
    steps = {}
    for line in p.stdout.splitlines():
        m = re.match(r"(\w+)\s+(\d+)s\s+(\d+)s\s+(.*)", line)
        if m:
            steps[m[1]] = (int(m[2]), int(m[3]), m[4])
    return steps


def test_syntax():
    p = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_dry_run_lists_every_step_within_six_minutes():
    steps = plan()
    total = steps.pop("total")
    assert list(steps) == ["probe", "tests", "kernels", "latency"]
    assert all(exp <= lim for exp, lim, _ in steps.values())
    assert total[1] == sum(lim for _, lim, _ in steps.values()) <= 360
    assert "within" in total[2]


def test_bad_usage_is_one_line_and_exit_2():
    for args in ([], ["--bogus", "x"], ["a", "b"]):
        p = run(*args)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)


def step_args(cmd: str, script: str) -> list[str]:
    tail = cmd.split(script, 1)[1].replace('"$OUT"', "OUTDIR")
    return tail.split()


def test_the_kernels_step_measures_the_default_models_layers_at_1080p():
    pytest.importorskip("torch")
    args = [a for a in step_args(plan()["kernels"][2], "benchmarks/kernels.py") if a not in ("--out", "OUTDIR")]
    p = subprocess.run([sys.executable, "benchmarks/kernels.py", "--list", *args], capture_output=True, text=True,
                       cwd=ROOT)
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if "conv" in ln]
    assert lines and all(ln.split()[0] == "1080p" and ln.split()[1] == "small" for ln in lines)
    assert f"{len(lines)} distinct shapes" in p.stdout


def test_the_latency_step_arguments_parse():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the step would run the benchmark")
    args = step_args(plan()["latency"][2], "benchmarks/latency.py")
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    p = subprocess.run([sys.executable, "benchmarks/latency.py", *args], capture_output=True, text=True, cwd=ROOT,
                       env=env)
    assert p.returncode == 2 and "no CUDA device" in p.stderr, p.stderr


@pytest.mark.slow
def test_the_kernel_sweep_runs_in_the_interpreter_and_sums_each_model(tmp_path):
    """benchmarks/kernel_sweep.py, the launch settings timed per layer (for the GPU session after
    gpu_check): its code path in Triton's interpreter (one setting beside the default): every setting's
    output checked against PyTorch, a best setting per layer that is never slower than the default by
    construction, and `tiny`'s layers summed once each shape is measured."""
    import json

    env = dict(os.environ, TRITON_INTERPRET="1")
    p = subprocess.run([sys.executable, "benchmarks/kernel_sweep.py", "--smoke", "--models", "tiny", "--out",
                        str(tmp_path)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    doc = json.loads((tmp_path / "kernel_sweep_cpu_interpreter.json").read_text())
    assert doc["results"] and not doc["not_measured"]
    for r in doc["results"]:
        assert r["best_ms"] <= r["default_ms"] and set(r["configs"]) == {"M64 w4", "M32 w2 s2"}
        assert all(c["max_abs_err"] < 0.05 for c in r["configs"].values())  # fp16 outputs of O(1) values
    (t,) = doc["totals"]
    assert t["model"] == "tiny" and t["layers"] == 11 and t["best_ms"] <= t["default_ms"]
    p = subprocess.run([sys.executable, "benchmarks/kernel_sweep.py", "--out", str(tmp_path)], capture_output=True,
                       text=True, cwd=ROOT, env=dict(os.environ, TRITON_INTERPRET="0"), timeout=120)
    assert p.returncode == 2 and "needs a CUDA GPU" in p.stderr  # here: no GPU, one line
