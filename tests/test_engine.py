"""TensorRT engines. Building and running need TensorRT and a GPU (skipped elsewhere, with the
reason); the sidecar checks that refuse an engine from another machine run everywhere."""
import json
import subprocess
import sys

import numpy as np
import pytest

from edgedenoise.engine import EngineError, check_sidecar, read_sidecar, sidecar_path

META = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "precision": "fp16", "onnx": "m.onnx"}


def test_engine_from_another_tensorrt_or_gpu_is_refused(tmp_path):
    eng = tmp_path / "m.engine"
    check_sidecar(META, {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}, eng)  # same: fine
    with pytest.raises(EngineError, match="built with TensorRT 10.3.0, this machine has 10.7.0: rebuild it here"):
        check_sidecar(META, {"tensorrt": "10.7.0", "gpu": "Orin", "compute_capability": "8.7"}, eng)
    with pytest.raises(EngineError, match=r"built for Orin \(sm 8.7\), this is NVIDIA H100 \(sm 9.0\)"):
        check_sidecar(META, {"tensorrt": "10.3.0", "gpu": "NVIDIA H100", "compute_capability": "9.0"}, eng)


def test_missing_or_corrupt_sidecar_and_engine(tmp_path):
    eng = tmp_path / "m.engine"
    with pytest.raises(EngineError, match="engine not found"):
        read_sidecar(eng)
    eng.write_bytes(b"plan")
    with pytest.raises(EngineError, match="has no sidecar"):
        read_sidecar(eng)
    sidecar_path(eng).write_text("{truncated")
    with pytest.raises(EngineError, match="not valid JSON"):
        read_sidecar(eng)
    sidecar_path(eng).write_text(json.dumps(META))
    assert read_sidecar(eng)["precision"] == "fp16"


def test_build_without_tensorrt_says_so(tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here: the real build test covers it")
    except ImportError:
        pass
    p = subprocess.run([sys.executable, "-m", "edgedenoise.cli", "build", "m.onnx", "--out", str(tmp_path / "m.engine")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "TensorRT is not installed here" in p.stderr


def test_build_and_run_matches_onnxruntime(tmp_path, kodak_rgb):
    pytest.importorskip("tensorrt", reason="TensorRT is not installable on this machine")
    from edgedenoise import Denoiser
    from edgedenoise.engine import build_engine
    from edgedenoise.modelfile import resolve
    from edgedenoise.noise import protocol_noisy

    onnx = resolve("default").onnx
    eng = tmp_path / "m.engine"
    build_engine(onnx, eng, "fp32", profile={"min": (64, 64), "opt": (512, 512), "max": (512, 512)})
    frame = protocol_noisy(np.ascontiguousarray(kodak_rgb[:, :, ::-1]), 25, 0, "camera")
    a = Denoiser.load(eng).denoise(frame, 25)
    b = Denoiser.load("default").denoise(frame, 25)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
