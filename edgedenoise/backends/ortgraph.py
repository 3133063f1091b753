"""The float ONNX graph as ONNX Runtime's CPU provider runs it fastest.

The exported graph writes the decoder's pixel-shuffles as DepthToSpace, the op every ONNX consumer
(TensorRT included) reads the same way. ONNX Runtime's CPU kernel for it is slow: on two x86 cores
(2026-12-05, 640x480, 2 threads, its profiler) the three of `tiny` took 7.8 ms of its 37 per frame.
The same rearrangement is a transposed convolution of stride r, one group per output channel, whose
r x r weights are one-hot (input channel c*r*r + i*r + j to output channel c at sub-pixel (i, j),
the CRD order): the same numbers (ONNX Runtime's outputs identical to the last bit), in about a
third of the time. `edgedenoise bench` at 640x480 with and without (benchmarks/results/
ortgraph_cpu.md): `nano` 29.3 -> 23.5 ms p50, `tiny` 41.3 -> 33.7, `default` 123 -> 114.

Only the CPU provider's graphs are rewritten, in memory, at load, and in them only the float
pixel-shuffles: an INT8 graph's decoder runs its DepthToSpace on uint8, behind DequantizeLinear (a
quarter of the bytes; rewritten, they were no faster), and keeps it; its last one, after the float
tail (and a recurrent model's gate's), is float and is rewritten (2026-12-06, 640x480, 2 threads, in
turns in one process, p50, the same outputs to the bit: `tiny` int8 9.7 -> 9.1 ms, `default` 20.9 ->
19.7 and 22.1 -> 21.2, `nano` 8.0 -> 7.3, `tiny-video` 13.9 -> 13.4 and 15.2 -> 14.0). Other providers
(a Jetson's CUDA) get the file as it is (not measured with the rewrite), and the files stay the
portable graph (TensorRT users report transposed convolutions computed wrongly; STYLE.md). Needs
the `onnx` package (in the `runtime` extra); without it, or with EDGEDENOISE_ORT_GRAPH=file in the
environment (to compare, or should a provider ever compute the rewritten graph differently), the
file is loaded as it is. It reads the graph with the package's protobuf classes alone (not the
package: its import took 1.3-1.9 s) and takes a few ms per model.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np


def shuffle_weights(channels: int, r: int) -> np.ndarray:
    """(channels, 1, r, r) one-hot weights: ConvTranspose(stride r, group channels / r^2) with them is
    DepthToSpace(blocksize r, mode CRD) on `channels` input channels."""
    one_hot = np.eye(r * r, dtype=np.float32).reshape(r * r, r, r)
    return np.ascontiguousarray(np.tile(one_hot, (channels // (r * r), 1, 1))[:, None])


def _onnx_proto():
    """onnx's generated protobuf classes (onnx_ml_pb2), loaded without the onnx package, whose import
    pulls in ml_dtypes (1.3-1.9 s here, against 50 ms for the classes alone); the same classes as
    the package's (protobuf keeps one per message type). None without the onnx package."""
    global _PROTO
    if _PROTO is None:
        mod = sys.modules.get("onnx.onnx_ml_pb2")
        if mod is None:
            spec = importlib.util.find_spec("onnx")  # finds the package without importing it
            path = Path(spec.submodule_search_locations[0]) / "onnx_ml_pb2.py" if spec and \
                spec.submodule_search_locations else None
            if path is None or not path.is_file():
                return None
            file_spec = importlib.util.spec_from_file_location("_edgedenoise_onnx_ml_pb2", path)
            mod = importlib.util.module_from_spec(file_spec)
            file_spec.loader.exec_module(mod)
        _PROTO = mod
    return _PROTO


_PROTO = None


def _channels(graph, name: str) -> int | None:
    """The channel count of tensor `name` where a Conv writes it: its weight's first dimension (an
    initializer, or one behind a Cast: the float16-stored weights); None for any other producer (in
    an INT8 graph a DequantizeLinear writes the uint8 pixel-shuffles' inputs: they are left as they are)."""
    producer = next((n for n in graph.node if name in n.output), None)
    if producer is None or producer.op_type != "Conv" or len(producer.input) < 2:
        return None
    w = producer.input[1]
    cast = next((n for n in graph.node if w in n.output), None)
    if cast is not None:
        if cast.op_type != "Cast":
            return None
        w = cast.input[0]
    init = next((t for t in graph.initializer if t.name == w), None)
    return int(init.dims[0]) if init is not None and len(init.dims) == 4 else None


def cpu_graph(path: str | Path) -> tuple[bytes | None, int]:
    """(the graph at `path` with each DepthToSpace of CRD order written as a one-hot grouped
    ConvTranspose, serialized; how many were rewritten). (None, 0) where there is nothing to
    rewrite, the onnx package is missing or the file cannot be parsed (ONNX Runtime then loads the
    file and says what is wrong with it)."""
    if os.environ.get("EDGEDENOISE_ORT_GRAPH", "") == "file":
        return None, 0
    try:
        pb = _onnx_proto()
        if pb is None:
            return None, 0
        m = pb.ModelProto()
        m.ParseFromString(Path(path).read_bytes())
    except Exception:  # noqa: BLE001 - a corrupt file, an onnx without the classes: the file as it is
        return None, 0
    graph, done = m.graph, 0
    for node in graph.node:
        if node.op_type != "DepthToSpace" or node.domain not in ("", "ai.onnx") or not node.input:
            continue
        attrs = {a.name: a for a in node.attribute}
        r = int(attrs["blocksize"].i) if "blocksize" in attrs else 0
        mode = attrs["mode"].s.decode() if "mode" in attrs else "DCR"
        c = _channels(graph, node.input[0])
        if mode != "CRD" or r < 2 or not c or c % (r * r):
            continue
        w = f"{node.name or node.output[0]}_one_hot"
        init = graph.initializer.add(name=w, dims=[c, 1, r, r], data_type=pb.TensorProto.FLOAT)
        init.raw_data = shuffle_weights(c, r).astype("<f4").tobytes()
        ints, one = pb.AttributeProto.INTS, pb.AttributeProto.INT
        node.CopyFrom(pb.NodeProto(
            name=node.name, op_type="ConvTranspose", input=[node.input[0], w], output=list(node.output),
            attribute=[pb.AttributeProto(name="strides", type=ints, ints=[r, r]),
                       pb.AttributeProto(name="kernel_shape", type=ints, ints=[r, r]),
                       pb.AttributeProto(name="group", type=one, i=c // (r * r))]))
        done += 1
    return (m.SerializeToString(), done) if done else (None, 0)
