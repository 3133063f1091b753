"""The frame-native ONNX graph (uint8 BGR in and out, boundary layers as custom ops in domain
`edgedenoise`) computes what the plain float graph computes, framewise and recurrent (tiny-video:
the previous output in as uint8, EgestGate / gate convs / FuseEgest). ONNX Runtime runs it with Python
implementations of the custom ops (onnxruntime-extensions PyOps, which live in the domain
ai.onnx.contrib, so a copy of the graph is renamed for the run). Tolerance: one uint8 level
(the two paths round values within float error of a .5 boundary differently)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ox = pytest.importorskip("onnxruntime_extensions", reason="onnxruntime-extensions is not installed")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from edgedenoise_kernels.boundary import (  # noqa: E402
    egest_gate_reference,
    egest_reference,
    fuse_egest_reference,
    ingest_reference,
)
from onnxruntime_extensions import PyCustomOpDef, get_library_path, onnx_op  # noqa: E402

from edgedenoise import Denoiser  # noqa: E402
from edgedenoise.export import export_onnx  # noqa: E402
from edgedenoise.noise import protocol_noisy  # noqa: E402

from .test_cli import ALLOWED_OPS  # noqa: E402

F, U8, I64 = PyCustomOpDef.dt_float, PyCustomOpDef.dt_uint8, PyCustomOpDef.dt_int64


@onnx_op(op_type="Ingest", inputs=[U8, F, F, F], outputs=[F], attrs={"multiple": I64, "map_scale": F})
def _ingest(frame, sigma, weight, bias, multiple, map_scale):
    t = torch.from_numpy
    y = ingest_reference(t(frame), t(weight), t(bias), t(sigma) * map_scale, int(multiple))
    return y.permute(0, 3, 1, 2).contiguous().numpy()


@onnx_op(op_type="Egest", inputs=[F, F, F, U8], outputs=[U8])
def _egest(h, weight, bias, frame):
    t = torch.from_numpy
    return egest_reference(t(h).permute(0, 2, 3, 1), t(weight), t(bias), t(frame)).contiguous().numpy()


@onnx_op(op_type="EgestGate", inputs=[F, F, F, U8, U8, F], outputs=[F, F])
def _egest_gate(h, weight, bias, frame, previous, smap):
    t = torch.from_numpy
    noise, gin = egest_gate_reference(t(h).permute(0, 2, 3, 1), t(weight), t(bias), t(frame), t(previous), t(smap))
    return noise.permute(0, 3, 1, 2).contiguous().numpy(), gin.permute(0, 3, 1, 2).contiguous().numpy()


@onnx_op(op_type="FuseEgest", inputs=[F, F, F, F, U8, U8], outputs=[U8])
def _fuse_egest(g, weight, bias, noise, frame, previous):
    t = torch.from_numpy
    return fuse_egest_reference(t(g).permute(0, 2, 3, 1), t(weight), t(bias), t(noise).permute(0, 2, 3, 1),
                                t(frame), t(previous)).contiguous().numpy()


def session(path, ops):
    m = onnx.load(str(path))
    assert {n.op_type for n in m.graph.node if n.domain == "edgedenoise"} == ops
    # everything else is an op TensorRT's ONNX parser takes (the list test_cli.py checks the plain graph with)
    assert {n.op_type for n in m.graph.node if n.domain == ""} <= ALLOWED_OPS
    for n in m.graph.node:
        if n.domain == "edgedenoise":
            n.domain = "ai.onnx.contrib"
    for o in m.opset_import:
        if o.domain == "edgedenoise":
            o.domain = "ai.onnx.contrib"
    so = ort.SessionOptions()
    so.register_custom_ops_library(get_library_path())
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def frame_native_session(tmp_path_factory):
    path = tmp_path_factory.mktemp("fn") / "frame.onnx"
    export_onnx("default", path, frame_native=True)
    return session(path, {"Ingest", "Egest"})


@pytest.mark.parametrize("h,w", [(64, 96), (45, 71)], ids=["multiple of 16", "odd size"])
def test_frame_native_graph_matches_plain_graph(frame_native_session, kodak_rgb, h, w):
    frame = protocol_noisy(np.ascontiguousarray(kodak_rgb[:h, :w, ::-1]), 25, 0, "camera")
    feeds = {"frame": frame[None], "sigma": np.array([25 / 255], np.float32)}
    got = frame_native_session.run(["denoised"], feeds)[0][0]
    ref = Denoiser.load("default").denoise(frame, 25)
    assert got.shape == frame.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"max {diff.max()}, {(diff > 0).sum()} pixels differ"


@pytest.fixture(scope="module")
def recurrent_session(tmp_path_factory):
    path = tmp_path_factory.mktemp("fn") / "tiny-video.frame.onnx"
    export_onnx("tiny-video", path, frame_native=True)
    assert [i.name for i in onnx.load(str(path)).graph.input] == ["frame", "sigma", "previous"]
    return session(path, {"Ingest", "EgestGate", "FuseEgest"})


@pytest.mark.parametrize("h,w", [(64, 96), (45, 71)], ids=["multiple of 16", "odd size"])
def test_recurrent_frame_native_graph_matches_the_model(recurrent_session, kodak_rgb, h, w):
    """Over three frames of a still scene, each fed the graph's own last output: equal to the
    recurrent model through the Denoiser (ONNX Runtime, float graph) given the same previous frame,
    to one level; the first frame (previous = the frame itself) is the framewise model's."""
    clean = np.ascontiguousarray(kodak_rgb[:h, :w, ::-1])
    vd = Denoiser.load("tiny-video", backend="onnxruntime")
    tiny = Denoiser.load("tiny", backend="onnxruntime")
    prev = None
    for i in range(3):
        frame = protocol_noisy(clean, 25, i, "camera")
        feeds = {"frame": frame[None], "sigma": np.array([25 / 255], np.float32),
                 "previous": (frame if prev is None else prev)[None]}
        got = recurrent_session.run(["denoised"], feeds)[0][0]
        ref = vd.denoise(frame, 25, previous=prev)
        assert got.shape == frame.shape and got.dtype == np.uint8
        diff = np.abs(got.astype(int) - ref.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"frame {i}: max {diff.max()}, {(diff > 0).sum()} differ"
        own = np.abs(got.astype(int) - tiny.denoise(frame, 25).astype(int))
        if i == 0:
            assert own.max() <= 1
        else:  # the state reached the fusion: later frames are not the framewise model's
            assert own.mean() > 0.5, f"frame {i}: {own.mean():.2f} levels from framewise"
        prev = got


def test_frame_native_refuses_a_recurrent_model_without_the_fused_gate(tmp_path):
    from edgedenoise.errors import ModelError
    from edgedenoise.model import build_model, make_recurrent
    from edgedenoise.modelfile import save_model

    src = tmp_path / "tiny-rec"
    save_model(make_recurrent(build_model("nano")), src)
    with pytest.raises(ModelError, match="gate branch fed colour sums"):
        export_onnx(str(src), tmp_path / "x.onnx", frame_native=True)
    assert not (tmp_path / "x.onnx").exists()
