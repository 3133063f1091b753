"""tools/staging.py: the shipping tools make a model's files in a folder of their own and move them into
place together; a failure part way leaves the shipped files as they were. And one whole tool run
through it: tools/rebase_video.py writes a recurrent model's four files (--out: not the shipped ones)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from staging import move_into, staging  # noqa: E402


def test_files_move_in_together_and_a_failure_moves_none(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "m.json").write_text("old json")
    (models / "m.onnx").write_text("old onnx")
    with pytest.raises(RuntimeError, match="export failed"):
        with staging(models, "ship-m") as work:
            (work / "m.json").write_text("new json")
            raise RuntimeError("export failed")
    assert (models / "m.json").read_text() == "old json"  # untouched
    assert sorted(p.name for p in models.iterdir()) == ["m.json", "m.onnx"]  # the work folder is gone

    with staging(models, "ship-m") as work:
        (work / "m.json").write_text("new json")
        (work / "m.onnx").write_text("new onnx")
        (work / "m.int8.onnx").write_text("new int8")
        moved = move_into(work, models, ["m.json", "m.onnx"], verb=None)  # those named only
    assert [p.name for p in moved] == ["m.json", "m.onnx"]
    assert (models / "m.json").read_text() == "new json" and (models / "m.onnx").read_text() == "new onnx"
    assert sorted(p.name for p in models.iterdir()) == ["m.json", "m.onnx"]  # the rest went with the folder


def test_rebase_video_writes_a_working_model_through_staging(tmp_path, data_root):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "rebase_video.py"), "tiny-video", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["tiny-video.int8.onnx", "tiny-video.json", "tiny-video.onnx", "tiny-video.safetensors",
                     "tiny-video.trt.int8.onnx"]  # both INT8 graphs made from the new float weights
    assert not list((ROOT / "edgedenoise" / "models").glob(".rebase-*"))  # no work folder left behind
    doc = json.loads((out / "tiny-video.json").read_text())
    assert doc["extra"]["framewise_from"]["model"] == "tiny"

    import cv2

    from edgedenoise.clips import make_clip, noisy_clip
    from edgedenoise.temporal import VideoDenoiser

    img = cv2.imread(str(sorted((data_root / "test" / "Kodak24").iterdir())[0]))[:128, :128]
    noisy = noisy_clip(make_clip(img, "still", 3, margin=0), 25, seed=1)
    mine, shipped = (VideoDenoiser.load(m, backend="onnxruntime", temporal="model")
                     for m in (out / "tiny-video.onnx", "tiny-video"))
    for f in noisy:  # tiny-video rebased on its own base: the shipped model, file for file
        assert np.abs(mine.denoise(f, 25).astype(int) - shipped.denoise(f, 25).astype(int)).max() <= 1
