"""Tiling (overlap + blend) and `edgedenoise bench`: cheap checks on small frames."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from edgedenoise.cli import main
from edgedenoise.denoiser import Denoiser
from edgedenoise.evaluate import psnr_u8
from edgedenoise.runtime.sources import bench_frames
from edgedenoise.tiling import tile_starts, tiled


@pytest.mark.parametrize("length,tile,overlap", [
    (100, 64, 16),  # two tiles
    (1080, 256, 32),  # many tiles
    (257, 256, 32),  # one pixel too many
    (64, 64, 16),  # fits exactly
    (30, 64, 16),  # smaller than a tile
])
def test_tile_starts_cover_the_axis_with_enough_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    t = min(tile, length)
    assert starts[0] == 0 and starts[-1] + t == length
    for a, b in itertools.pairwise(starts):
        assert a + t - b >= overlap  # neighbours overlap by at least `overlap`
        assert b > a


@pytest.mark.parametrize("shape,dtype", [((100, 130, 3), np.uint8), ((77, 90), np.uint16), ((50, 70, 4), np.float32)])
def test_tiling_an_identity_is_exact(shape, dtype):
    rng = np.random.default_rng(0)
    img = (rng.random(shape) * (255 if dtype == np.uint8 else 65535 if dtype == np.uint16 else 1)).astype(dtype)
    out = tiled(img, lambda t: t, (32, 48), overlap=12)
    assert out.dtype == img.dtype and out.shape == img.shape
    np.testing.assert_allclose(out.astype(np.float64), img.astype(np.float64), atol=1e-5 if dtype == np.float32 else 0)


def test_tiled_denoising_matches_whole_frame_without_seams():
    den = Denoiser.load("default", backend="onnxruntime")
    clean, noisy = bench_frames(320, 192, 25.0, n=1)
    whole = den.denoise(noisy[0], 25.0)
    tile = tiled(noisy[0], lambda t: den.denoise(t, 25.0), (96, 128), overlap=32)
    assert psnr_u8(tile, whole) > 38, psnr_u8(tile, whole)  # the same picture...
    assert psnr_u8(tile, clean[0]) > psnr_u8(whole, clean[0]) - 0.3  # ...and as good
    # no seam: the error next to tile borders is no larger than elsewhere
    err = np.abs(tile.astype(np.float32) - clean[0]).mean(axis=2)
    ys = [y for y in range(1, 192) if y % 48 < 2 or y % 48 > 46]
    assert err[ys].mean() < err.mean() * 1.25


def test_bench_writes_a_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--backend", "onnxruntime", "--resolution", "96x64,64x48", "--frames", "3", "--warmup", "1",
               "--vs", "nlm", "--nlm-frames", "1", "--json", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "p50 ms" in cap.out and "NLM/this" in cap.out
    doc = json.loads(out.read_text())
    assert [r["resolution"] for r in doc["results"]] == ["96x64", "64x48"]
    r = doc["results"][0]
    assert r["count"] == 3 and r["backend"] == "onnxruntime" and r["nlm_p50_ratio"] > 0
    assert {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "fps"} <= set(r)
    assert "transposed convolutions" in r["backend_choice"]  # what the timing depends on (backends/ortgraph.py)
    assert doc["anchors"][0]["method"] == "opencv-nlm"
    assert doc["machine"]["cpu"] and doc["versions"]["onnxruntime"]


def test_bench_says_the_precision_that_ran(tmp_path, capsys):
    """A named INT8 file runs INT8 whatever --precision says (Denoiser.load): the table and JSON say so."""
    from edgedenoise.modelfile import resolve

    out = tmp_path / "bench.json"
    rc = main(["bench", "--backend", "onnxruntime", "--model", str(resolve("tiny").onnx_int8), "--resolution", "64x48",
               "--frames", "2", "--warmup", "1", "--json", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert json.loads(out.read_text())["precision"] == "int8" and "model tiny; int8" in cap.out


def test_bench_runs_a_recurrent_model_as_a_stream(tmp_path, capsys):
    """tiny-video is timed as a stream runs it (each frame given its last output, the state's work
    included) and scores above tiny frame by frame on the bench's panned frames, as the row says;
    `--temporal blend` times tiny with the blend, which gains too; `--temporal model` on a framewise
    model is refused in one line."""
    rows = {}
    for model, temporal in (("tiny", "auto"), ("tiny-video", "auto"), ("tiny", "blend")):
        out = tmp_path / f"{model}-{temporal}.json"
        rc = main(["bench", "--model", model, "--backend", "onnxruntime", "--resolution", "320x240", "--frames", "8",
                   "--warmup", "1", "--temporal", temporal, "--json", str(out)])
        cap = capsys.readouterr()
        assert rc == 0, cap.err
        rows[model, temporal] = json.loads(out.read_text())["results"][0]
        if model == "tiny-video":
            assert "each frame given the model's last output" in cap.out
    assert [rows[k]["temporal"] for k in rows] == ["off", "model", "blend"]
    off = rows["tiny", "auto"]["psnr_db"]
    assert rows["tiny-video", "auto"]["psnr_db"] > off + 0.3  # the last frame: the state's gain
    assert rows["tiny", "blend"]["psnr_db"] > off + 0.3
    rc = main(["bench", "--model", "tiny", "--backend", "onnxruntime", "--resolution", "64x48", "--temporal", "model"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "needs a recurrent model" in err[0]


def test_bench_tensorrt_without_an_engine_is_refused(capsys):
    assert main(["bench", "--backend", "tensorrt", "--frames", "1"]) == 2
    assert "needs an engine" in capsys.readouterr().err


def test_tiled_memory_is_bounded_by_the_strip_not_the_frame():
    import tracemalloc

    frame = np.random.default_rng(0).integers(0, 256, (4096, 512, 3), dtype=np.uint8)
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = tiled(frame, lambda t: t, (256, 256), overlap=32)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(out, frame)
    float_frame = frame.size * 4  # what blending the whole frame in float32 would take, once
    # the output (uint8) plus a 256-row float strip and its weights, never a float frame
    assert peak < frame.nbytes + 0.15 * float_frame, f"peak {peak / 1e6:.1f} MB"


def test_tiles_keep_the_frame_dtype_for_frame_native_backends():
    seen = []
    frame = np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    tiled(frame, lambda t: seen.append(t.dtype) or t, (96, 128), overlap=16)
    assert seen and all(d == np.uint8 for d in seen)


def test_bench_reports_a_status_per_backend(tmp_path, capsys):
    """One backend that cannot run does not stop the others (as Ultralytics' benchmark table)."""
    out = tmp_path / "bench.json"
    rc = main(["bench", "--backend", "tensorrt,onnxruntime", "--resolution", "64x48", "--frames", "2", "--warmup", "0",
               "--json", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    rows = {r["requested"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["tensorrt"]["status"].startswith("failed: the tensorrt backend needs an engine")
    assert rows["onnxruntime"]["status"] == "ok" and rows["onnxruntime"]["p50_ms"] > 0
    assert "failed: the tensorrt backend needs an engine" in cap.out
