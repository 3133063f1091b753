"""The `onnxruntime` backend: the runtime default, on any CPU (and a Jetson's onnxruntime-gpu)."""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from ..modelfile import ModelFiles
from .base import Backend
from .ortgraph import cpu_graph


class OnnxRuntimeBackend(Backend):
    """The ONNX export (or its INT8 variant) in an ONNX Runtime session; CPU by default."""

    name = "onnxruntime"

    def __init__(self, files: ModelFiles, threads: int | None = None, providers: list[str] | None = None,
                 precision: str = "fp32"):
        import onnxruntime as ort

        if files.onnx is None and not (precision == "int8" and files.onnx_int8 is not None):  # (an INT8 file alone
            # runs: the file named, or a model whose float export was not copied along)
            raise ModelError(f"model {files.name} has no .onnx export: run "
                             "`edgedenoise export --model ... --out X.onnx`")
        path = files.onnx
        if precision == "int8":
            if files.onnx_int8 is None:
                raise ModelError(f"model {files.name} has no INT8 variant: run `edgedenoise quantize --model "
                                 f"{files.onnx} --calib DIR` (DIR: clean training images)")
            path = files.onnx_int8
        elif precision != "fp32":
            raise ModelError(f"precision {precision!r} is not one ONNX Runtime runs here: choose fp32 or int8")
        self.precision = precision
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = threads
        # No busy-waiting between ops: on a 2-core machine the spinning pool threads fight the
        # capture and output threads (and each other); measured at 640x480 with `default`, p50 was
        # 80 or 103 ms from one run to the next with spinning, a steady 82-87 ms without.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        providers = providers or ["CPUExecutionProvider"]
        # the float pixel-shuffles as ConvTranspose, a recurrent model's fusion in cheaper ops (ortgraph.py)
        graph, self.rewritten, self.rewritten_fusion = None, 0, ()
        if providers == ["CPUExecutionProvider"]:
            graph, self.rewritten, self.rewritten_fusion = cpu_graph(path)
        try:
            self.session = ort.InferenceSession(str(path) if graph is None else graph, so, providers=providers)
            self.on_gpu = self.session.get_providers()[0] != "CPUExecutionProvider"
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            msg = str(e).splitlines()[0][:200]
            if "edgedenoise:" in msg and "not a registered" in msg:  # the custom ops Ingest/Egest
                raise ModelError(f"{path} is a frame-native graph (custom ops edgedenoise::Ingest/Egest), for "
                                 f"`edgedenoise build`; ONNX Runtime runs the plain export: `edgedenoise export "
                                 f"--model MODEL --out X.onnx` without --frame-native") from None
            raise ModelError(f"cannot load ONNX model {path}: {msg} (corrupt or truncated? re-export it)") from None

        inputs = {i.name for i in self.session.get_inputs()}
        want = {"noisy", "sigma", "previous"} if files.recurrent else {"noisy", "sigma"}
        if inputs != want:
            kind = "a recurrent" if files.recurrent else "an"
            raise ModelError(f"ONNX model {path} has inputs {', '.join(sorted(inputs))}; {kind} edgedenoise model "
                             f"has {', '.join(sorted(want))}")
        self.recurrent = files.recurrent

    def infer(self, x: np.ndarray, sigma: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        feed = {"noisy": x, "sigma": sigma}
        if self.recurrent:
            feed["previous"] = x if previous is None else previous
        elif previous is not None:
            raise ModelError("this model is not recurrent: it takes no previous frame")
        return self.session.run(["denoised"], feed)[0]


