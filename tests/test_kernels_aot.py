"""Ahead-of-time build of the kernels for the Jetson (sm_72, sm_87) and H100 (sm_90) targets,
on a machine with no GPU."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton", reason="triton is not installed (pip install -e .[kernels])")

# compiling needs the real JIT, not the interpreter the other kernel tests run in
COMPILE_ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


@pytest.mark.slow
def test_build_writes_ptx_and_cubin_for_every_target(tmp_path):
    out = tmp_path / "kb"
    p = subprocess.run([sys.executable, "-m", "edgedenoise.cli", "kernels", "build", "--target", "sm_72,sm_87,sm_90",
                        "--sizes", "tiny", "--out", str(out)], capture_output=True, text=True, env=COMPILE_ENV)
    assert p.returncode == 0, p.stderr[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    targets = {k["target"] for k in m["kernels"]}
    assert targets == {"sm_72", "sm_87", "sm_90"}
    per_target = {t: {k["name"] for k in m["kernels"] if k["target"] == t} for t in targets}
    assert per_target["sm_72"] == per_target["sm_87"] == per_target["sm_90"]
    assert {"fp16", "fp32"} <= {k["variant"]["dtype"] for k in m["kernels"]}
    # the boundary kernels the TensorRT plugins launch exist for every target
    assert {"ingest_w16_fp16", "egest_w16_fp16", "ingest_w16_fp32", "egest_w16_fp32"} <= per_target["sm_87"]
    for k in m["kernels"]:
        cubin = (out / k["cubin"]).read_bytes()
        assert cubin[:4] == b"\x7fELF" and hashlib.sha256(cubin).hexdigest() == k["cubin_sha256"]
        ptx = (out / k["ptx"]).read_text()
        assert f".target {k['target']}" in ptx and k["function"] in ptx
        assert ".version 8.5" in ptx  # JetPack 6's CUDA 12.6 driver JIT-compiles PTX ISA <= 8.5
        assert k["global_scratch_bytes"] == 0 and k["profile_scratch_bytes"] == 0  # plugins pass NULL scratch


def test_bad_target_is_refused(tmp_path):
    p = subprocess.run([sys.executable, "-m", "edgedenoise.cli", "kernels", "build", "--target", "sm_50",
                        "--out", str(tmp_path)], capture_output=True, text=True, env=COMPILE_ENV)
    assert p.returncode == 2 and "compute capability >= 7.0" in p.stderr


def test_an_out_folder_of_something_else_is_refused(tmp_path):
    """--out a folder that holds other files and no manifest.json (the package, a bundle): refused before
    anything is compiled or written; a file too."""
    other = tmp_path / "pkg"
    other.mkdir()
    (other / "module.py").write_text("x = 1\n")
    for out, needle in ((other, "holds other files and no manifest.json"), (other / "module.py", "is a file")):
        p = subprocess.run([sys.executable, "-m", "edgedenoise.cli", "kernels", "build", "--target", "sm_87",
                            "--sizes", "tiny", "--out", str(out)], capture_output=True, text=True, env=COMPILE_ENV)
        assert p.returncode == 2 and needle in p.stderr.strip().splitlines()[-1], p.stderr
    assert sorted(f.name for f in other.iterdir()) == ["module.py"]
