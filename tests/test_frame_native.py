"""The frame-native ONNX graph (uint8 BGR in and out, boundary layers as custom ops in domain
`edgedenoise`) computes what the plain float graph computes. ONNX Runtime runs it with Python
implementations of the two custom ops (onnxruntime-extensions PyOps, which live in the domain
ai.onnx.contrib, so a copy of the graph is renamed for the run). Tolerance: one uint8 level
(the two paths round values within float error of a .5 boundary differently)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ox = pytest.importorskip("onnxruntime_extensions", reason="onnxruntime-extensions is not installed")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from edgedenoise_kernels.boundary import egest_reference, ingest_reference  # noqa: E402
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


@pytest.fixture(scope="module")
def frame_native_session(tmp_path_factory):
    path = tmp_path_factory.mktemp("fn") / "frame.onnx"
    export_onnx("default", path, frame_native=True)
    m = onnx.load(str(path))
    assert {n.op_type for n in m.graph.node if n.domain == "edgedenoise"} == {"Ingest", "Egest"}
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


@pytest.mark.parametrize("h,w", [(64, 96), (45, 71)], ids=["multiple of 16", "odd size"])
def test_frame_native_graph_matches_plain_graph(frame_native_session, kodak_rgb, h, w):
    frame = protocol_noisy(np.ascontiguousarray(kodak_rgb[:h, :w, ::-1]), 25, 0, "camera")
    feeds = {"frame": frame[None], "sigma": np.array([25 / 255], np.float32)}
    got = frame_native_session.run(["denoised"], feeds)[0][0]
    ref = Denoiser.load("default").denoise(frame, 25)
    assert got.shape == frame.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"max {diff.max()}, {(diff > 0).sum()} pixels differ"
