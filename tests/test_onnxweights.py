"""float16 weight storage: half the file, the same network (onnxweights.py)."""
import os
import stat

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, numpy_helper

from edgedenoise.data import SAMPLE_IMAGE, read_image
from edgedenoise.errors import ModelError
from edgedenoise.export import export_onnx
from edgedenoise.modelfile import load_model, save_model
from edgedenoise.noise import protocol_noisy
from edgedenoise.onnxweights import fold_weight_casts, halve_weights
from edgedenoise.quantize import quantize_model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    d = tmp_path_factory.mktemp("half")
    full = export_onnx("tiny", d / "full.onnx")
    half = export_onnx("tiny", d / "half.onnx", half_weights=True)
    return d, full, half


def has_half_weights(model) -> bool:
    return any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer)


def _run(path, x, s):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["denoised"], {"noisy": x, "sigma": s})[0]


def _clean():  # RGB, NCHW, [0, 1]
    return np.ascontiguousarray(read_image(SAMPLE_IMAGE, 3)[:96, :128].transpose(2, 0, 1)[None]) / 255


def _noisy_crop():
    img = protocol_noisy(read_image(SAMPLE_IMAGE, 3)[:96, :128], 25, 0, "camera")
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) / 255, np.array([25 / 255], np.float32)


def test_half_weight_export_is_half_the_size_and_the_same_network(exports):
    d, full, half = exports
    # export_onnx verified each against PyTorch (the half one against fp16-rounded weights) to 1e-4
    assert full["max_abs_err"] <= 1e-4 and half["max_abs_err"] <= 1e-4
    assert half["bytes"] < 0.55 * full["bytes"], (half["bytes"], full["bytes"])
    m = onnx.load(str(d / "half.onnx"))
    assert has_half_weights(m)
    assert {p.key: p.value for p in m.metadata_props}["weights_storage"] == "float16"
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    casts = {n.output[0] for n in m.graph.node if n.op_type == "Cast"}
    # every weight and bias (the input's unshuffle is a Conv without a bias: model.unshuffle)
    assert all(all(name in casts for name in n.input[1:]) for n in convs)
    assert sum(len(n.input) == 2 for n in convs) == 1
    # rounding the weights to float16 moves the output by far less than one uint8 level (1/255)
    x, s = _noisy_crop()
    a, b = _run(d / "full.onnx", x, s), _run(d / "half.onnx", x, s)
    assert np.abs(a - b).max() < 0.25 / 255


def test_folding_restores_float32_initializers_exactly(exports, tmp_path):
    d, _, _ = exports
    full, half = onnx.load(str(d / "full.onnx")), onnx.load(str(d / "half.onnx"))
    n = fold_weight_casts(half)
    assert n == sum(len(node.input) - 1 for node in half.graph.node if node.op_type == "Conv")  # weights and biases
    assert not has_half_weights(half) and not any(node.op_type == "Cast" and node.output[0].endswith(".weight")
                                                  for node in half.graph.node)
    got = {i.name: numpy_helper.to_array(i) for i in half.graph.initializer}
    want = {i.name: numpy_helper.to_array(i) for i in full.graph.initializer if i.data_type == TensorProto.FLOAT}
    convs = [node for node in full.graph.node if node.op_type == "Conv"]
    names = [i for node in convs for i in node.input[1:3]]
    assert len(names) == n
    for name in names:  # every folded weight is the float32 one, rounded to float16
        np.testing.assert_array_equal(got[name], want[name].astype(np.float16).astype(np.float32), err_msg=name)
    onnx.checker.check_model(half, full_check=True)
    onnx.save(half, str(tmp_path / "folded.onnx"))
    x, s = _noisy_crop()
    np.testing.assert_allclose(_run(tmp_path / "folded.onnx", x, s), _run(d / "half.onnx", x, s), rtol=0, atol=1e-6)
    assert fold_weight_casts(half) == 0  # nothing left to fold


def test_halving_refuses_weights_beyond_float16(exports):
    d, _, _ = exports
    m = onnx.load(str(d / "full.onnx"))
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    init = next(i for i in m.graph.initializer if i.name == conv.input[1])
    big = numpy_helper.to_array(init).copy()
    big.flat[0] = 1e6
    init.CopyFrom(numpy_helper.from_array(big, init.name))
    with pytest.raises(ValueError, match="does not fit in float16"):
        halve_weights(m)


def test_half_weight_export_of_an_oversized_weight_is_a_clear_error(tmp_path):
    net = load_model("tiny")
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = 1e6
    save_model(net, tmp_path / "big")
    (tmp_path / "out.onnx").write_bytes(b"the export of before")
    with pytest.raises(ModelError, match="cannot store the weights as float16: .*export without --half-weights"):
        export_onnx(tmp_path / "big.safetensors", tmp_path / "out.onnx", half_weights=True)
    # the export failed after the graph was written: the previous output is intact, no temporary file is left
    assert (tmp_path / "out.onnx").read_bytes() == b"the export of before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.json", "big.safetensors", "out.onnx"]


def test_half_safetensors_load_as_float32(tmp_path):
    net = load_model("tiny")
    save_model(net, tmp_path / "t", half=True)
    assert (tmp_path / "t.safetensors").stat().st_size < 0.55 * 2 * sum(p.numel() * 2 for p in net.parameters())
    umask = os.umask(0)
    os.umask(umask)
    for f in ("t.safetensors", "t.json"):  # a new file's usual permissions (safetensors writes 0600)
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o666 & ~umask, f
    back = load_model(tmp_path / "t.safetensors")
    for (k, p), q in zip(net.state_dict().items(), back.state_dict().values()):
        assert q.dtype == torch.float32, k
        torch.testing.assert_close(q, p.half().float(), rtol=0, atol=0)


def test_quantize_reads_half_weights(exports, train_subset, tmp_path):
    import shutil

    d, _, _ = exports
    shutil.copy(d / "half.onnx", tmp_path / "tiny.onnx")
    r = quantize_model(tmp_path / "tiny.onnx", train_subset, count=2, progress=False)
    m = onnx.load(r["path"])
    props = {p.key: p.value for p in m.metadata_props}
    assert props["precision"] == "int8" and "weights_storage" not in props
    assert not has_half_weights(m)
    assert sum(i.data_type == TensorProto.INT8 for i in m.graph.initializer) >= 2  # conv weights became int8
    x, s = _noisy_crop()
    clean = _clean()
    noisy_err = np.abs(x - clean).mean()
    assert np.abs(_run(r["path"], x, s) - clean).mean() < 0.7 * noisy_err


def test_tensorrt_build_reads_plain_float32_weights(exports):
    from edgedenoise.engine import plain_weights

    d, _, _ = exports
    full = (d / "full.onnx").read_bytes()
    assert plain_weights(full, log=print) is full  # float32 storage: passed through untouched
    folded = onnx.load_from_string(plain_weights((d / "half.onnx").read_bytes(), log=print))
    assert not has_half_weights(folded) and len(folded.graph.node) == len(onnx.load(str(d / "full.onnx")).graph.node)
