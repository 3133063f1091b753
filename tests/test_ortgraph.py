"""The CPU provider's float graph: pixel-shuffles as one-hot ConvTranspose, a recurrent model's fusion in
cheaper ops (backends/ortgraph.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgedenoise.modelfile import resolve

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("name, shuffles", [("tiny", 3), ("tiny-video", 4), ("default", 4)])
def test_rewritten_graph_computes_what_the_file_does(name, shuffles):
    from edgedenoise.backends.ortgraph import cpu_graph

    path = resolve(name).onnx
    graph, n, _ = cpu_graph(path)
    assert graph is not None and n == shuffles  # the decoder's ups and the tail (and a gate's)
    ops = [node.op_type for node in onnx.load_from_string(graph).graph.node]
    assert "DepthToSpace" not in ops and ops.count("ConvTranspose") == n
    assert_same_outputs(path, graph, recurrent=name == "tiny-video")


def assert_same_outputs(path, graph: bytes, recurrent: bool) -> None:
    """The rewritten graph gives the file's outputs on a random frame: to the bit for a framewise
    model (the pixel-shuffles' numbers moved, never summed with others); a recurrent model's fusion
    sums a few numbers in another order (the gate's input as a strided conv, its padded convs), within
    1e-6 of the file, and a scene's first frame (previous = the frame) is still the framewise result
    to the bit (the known-pixel mask as Where)."""
    rng = np.random.default_rng(0)
    feed = {"noisy": rng.random((1, 3, 48, 80), dtype=np.float32), "sigma": np.full((1,), 25 / 255, np.float32)}
    feeds = [feed]
    if recurrent:
        prev = np.clip(feed["noisy"] + rng.normal(0, 0.02, feed["noisy"].shape), 0, 1).astype(np.float32)
        prev[..., :16, :] = feed["noisy"][..., :16, :]  # pixels where it equals the frame: the mask's 0
        feeds = [{**feed, "previous": prev}, {**feed, "previous": feed["noisy"]}]
    file = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rewritten = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    for f in feeds:
        want, got = file.run(None, f)[0], rewritten.run(None, f)[0]
        if recurrent:
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        else:
            assert np.array_equal(got, want)
    if recurrent:  # the first frame: no fusion anywhere, the model's own estimate in both
        assert np.array_equal(rewritten.run(None, feeds[1])[0], file.run(None, feeds[1])[0])


def test_only_the_cpu_float_graph_is_rewritten(tmp_path, monkeypatch):
    from edgedenoise.backends.onnxruntime import OnnxRuntimeBackend
    from edgedenoise.backends.ortgraph import cpu_graph
    from edgedenoise.denoiser import Denoiser
    from edgedenoise.errors import ModelError

    files = resolve("tiny")
    assert OnnxRuntimeBackend(files, threads=1).rewritten == 3
    assert "3 pixel-shuffles run as transposed convolutions" in Denoiser.load("tiny", backend="onnxruntime").why
    monkeypatch.setenv("EDGEDENOISE_ORT_GRAPH", "file")  # the file as it is, as without the onnx package
    assert OnnxRuntimeBackend(files, threads=1).rewritten == 0
    assert OnnxRuntimeBackend(resolve("tiny-video"), threads=1).rewritten_fusion == ()
    monkeypatch.delenv("EDGEDENOISE_ORT_GRAPH")
    # INT8: the decoder's DepthToSpace run on uint8 and stay; the one after the float tail is rewritten
    assert OnnxRuntimeBackend(files, threads=1, precision="int8").rewritten == 1
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    assert cpu_graph(bad) == (None, 0, ())  # ONNX Runtime's own load says what is wrong
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        OnnxRuntimeBackend(dataclasses.replace(files, onnx=bad), threads=1)


@pytest.mark.parametrize("name", ["tiny", "tiny-video"])
def test_an_int8_graph_keeps_its_uint8_pixel_shuffles_and_computes_what_the_file_does(name):
    from edgedenoise.backends.ortgraph import cpu_graph

    path = resolve(name).onnx_int8
    graph, n, _ = cpu_graph(path)
    g = onnx.load_from_string(graph).graph
    producer = {o: node for node in g.node for o in node.output}
    kept = [node for node in g.node if node.op_type == "DepthToSpace"]
    assert n == (2 if name == "tiny-video" else 1) and len(kept) == 2  # the tail's (and the gate's) rewritten
    assert all(producer[node.input[0]].op_type == "DequantizeLinear" for node in kept)
    assert_same_outputs(path, graph, recurrent=name == "tiny-video")


@pytest.mark.parametrize("name", ["tiny-video", "default-video"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_recurrent_fusion_runs_in_cheaper_ops_and_computes_what_the_file_does(name, precision):
    import platform

    from edgedenoise.backends.ortgraph import cpu_graph

    files = resolve(name)
    path = files.onnx if precision == "fp32" else files.onnx_int8
    graph, _, fusion = cpu_graph(path)
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert fusion == ((("gate convs padded to NCHWc blocks",) if x86 else ()) + (
        "sums as a strided conv", "channel max as Split and Max", "mask as Where", "clamp before the gate's shuffle"))
    g = onnx.load_from_string(graph).graph
    ops = [node.op_type for node in g.node]
    assert not {"ReduceSum", "ReduceMax", "AveragePool"} & set(ops) and "Where" in ops
    weights = {t.name: t for t in g.initializer}
    gate = [node for node in g.node if node.op_type == "Conv" and "gate" in node.name]
    assert len(gate) == 3
    if x86:  # 12 channels each between the gate's convs, padded with zeros to 16 (an NCHWc block of 8 or 16)
        widths = [weights[weight_name(g, node)].dims[0] for node in gate[:2]]
        assert widths == [16, 16] and weights[weight_name(g, gate[2])].dims[1] == 16
    assert_same_outputs(path, graph, recurrent=True)


def weight_name(g, node) -> str:
    cast = next((n for n in g.node if node.input[1] in n.output), None)
    return cast.input[0] if cast is not None else node.input[1]


def test_the_rewrite_does_not_import_the_onnx_package():
    # the package's import pulls in ml_dtypes (1.3-1.9 s here): the runtime reads the graph with its
    # protobuf classes alone
    import subprocess
    import sys

    code = ("import sys; from edgedenoise import Denoiser; d = Denoiser.load('tiny', backend='onnxruntime'); "
            "assert d.backend.rewritten == 3; assert 'onnx' not in sys.modules, 'onnx imported'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-500:]
