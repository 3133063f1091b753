"""The float ONNX graph as ONNX Runtime's CPU provider runs it fastest.

The exported graph writes the decoder's pixel-shuffles as DepthToSpace, the op every ONNX consumer
(TensorRT included) reads the same way. ONNX Runtime's CPU kernel for it is slow: on two x86 cores
(2026-12-05, 640x480, 2 threads, its profiler) the three of `tiny` took 7.8 ms of its 37 per frame.
The same rearrangement is a transposed convolution of stride r, one group per output channel, whose
r x r weights are one-hot (input channel c*r*r + i*r + j to output channel c at sub-pixel (i, j),
the CRD order): the same numbers (ONNX Runtime's outputs identical to the last bit), in about a
third of the time. `edgedenoise bench` at 640x480 with and without (benchmarks/results/
ortgraph_cpu.md): `nano` 29.3 -> 23.5 ms p50, `tiny` 41.3 -> 33.7, `default` 123 -> 114.

Only the CPU provider's float graphs are rewritten, in memory, at load: the INT8 graphs run their
DepthToSpace on uint8 (a quarter of the bytes; rewritten, they were no faster), other providers
(a Jetson's CUDA) get the file as it is (not measured with the rewrite), and the files stay the
portable graph (TensorRT
users report transposed convolutions computed wrongly; STYLE.md). Needs the `onnx` package (in the
`runtime` extra); without it, or with EDGEDENOISE_ORT_GRAPH=file in the environment (to compare, or
should a provider ever compute the rewritten graph differently), the file is loaded as it is.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def shuffle_weights(channels: int, r: int) -> np.ndarray:
    """(channels, 1, r, r) one-hot weights: ConvTranspose(stride r, group channels / r^2) with them is
    DepthToSpace(blocksize r, mode CRD) on `channels` input channels."""
    one_hot = np.eye(r * r, dtype=np.float32).reshape(r * r, r, r)
    return np.ascontiguousarray(np.tile(one_hot, (channels // (r * r), 1, 1))[:, None])


def cpu_graph(path: str | Path) -> tuple[bytes | None, int]:
    """(the graph at `path` with each DepthToSpace of CRD order written as a one-hot grouped
    ConvTranspose, serialized; how many were rewritten). (None, 0) where there is nothing to
    rewrite, the onnx package is missing or the file cannot be read by it (ONNX Runtime then
    loads the file and says what is wrong with it)."""
    if os.environ.get("EDGEDENOISE_ORT_GRAPH", "") == "file":
        return None, 0
    try:
        import onnx
        from onnx import helper, numpy_helper, shape_inference
    except ImportError:
        return None, 0
    try:
        m = onnx.load(str(path))
    except Exception:  # noqa: BLE001 - a corrupt file: ONNX Runtime's own load reports it
        return None, 0
    if not any(n.op_type == "DepthToSpace" for n in m.graph.node):
        return None, 0
    try:
        inferred = shape_inference.infer_shapes(m)
    except Exception:  # noqa: BLE001 - shapes unknown: nothing is rewritten
        return None, 0
    channels = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            channels[vi.name] = dims[1].dim_value
    nodes, done = [], 0
    for node in m.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get("mode", b"DCR")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        c, r = channels.get(node.input[0] if node.input else ""), int(attrs.get("blocksize", 0))
        if node.op_type != "DepthToSpace" or mode != "CRD" or not c or r < 2 or c % (r * r):
            nodes.append(node)
            continue
        w = f"{node.name or node.output[0]}_one_hot"
        m.graph.initializer.append(numpy_helper.from_array(shuffle_weights(c, r), w))
        nodes.append(helper.make_node("ConvTranspose", [node.input[0], w], list(node.output), name=node.name,
                                      strides=[r, r], kernel_shape=[r, r], group=c // (r * r)))
        done += 1
    if not done:
        return None, 0
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m.SerializeToString(), done
