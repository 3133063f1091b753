"""fp16 storage for the weights of an exported graph (the onnx package only: no torch).

Shipped models store their convolution weights as float16 initializers, each followed by
a Cast to float32. The file is half the size and computes exactly what the float32 graph
with the same (fp16-rounded) weights computes: ONNX Runtime folds the casts when it loads
the graph. Tools that want plain float32 initializers (ONNX Runtime's quantizer, the
TensorRT plugin packing, TensorRT's parser) fold them first with `fold_weight_casts`.
"""
from __future__ import annotations

import numpy as np

# (domain, op_type) -> positions of the weight and bias inputs
WEIGHT_INPUTS = {
    ("", "Conv"): (1, 2),
    ("edgedenoise", "Ingest"): (2, 3),
    ("edgedenoise", "Egest"): (1, 2),
}
HALF_SUFFIX = "__fp16"


def _weight_names(graph) -> list[str]:
    names: list[str] = []
    for node in graph.node:
        for pos in WEIGHT_INPUTS.get((node.domain, node.op_type), ()):
            if pos < len(node.input) and node.input[pos] and node.input[pos] not in names:
                names.append(node.input[pos])
    return names


def halve_weights(model) -> int:
    """Store the float32 weight and bias initializers of every convolution as float16, each
    behind a Cast back to float32. Changes `model` in place; returns how many were halved.
    Raises ValueError if a weight does not fit in float16."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    casts = []
    for name in _weight_names(graph):
        init = inits.get(name)
        if init is None or init.data_type != TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(init)
        with np.errstate(over="ignore"):
            h = a.astype(np.float16)
        if not np.isfinite(h).all():
            raise ValueError(f"weight {name} does not fit in float16 (max abs {np.abs(a).max():.3g})")
        init.CopyFrom(numpy_helper.from_array(h, name + HALF_SUFFIX))
        casts.append(helper.make_node("Cast", [name + HALF_SUFFIX], [name], name=name + "_to_fp32",
                                      to=TensorProto.FLOAT))
    nodes = casts + list(graph.node)  # casts first: the graph stays in topological order
    del graph.node[:]
    graph.node.extend(nodes)
    return len(casts)


def fold_weight_casts(model) -> int:
    """Undo `halve_weights`: each Cast of a float16 initializer to float32 becomes a float32
    initializer (exact: every float16 value is a float32 value). In place; returns the count."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    folded, keep_nodes = {}, []
    for node in graph.node:
        src = inits.get(node.input[0]) if node.op_type == "Cast" and node.domain == "" else None
        to = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "to"), None) if src else None
        if src is not None and src.data_type == TensorProto.FLOAT16 and to == TensorProto.FLOAT:
            folded[node.output[0]] = numpy_helper.to_array(src).astype(np.float32)
            continue
        keep_nodes.append(node)
    if not folded:
        return 0
    del graph.node[:]
    graph.node.extend(keep_nodes)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    keep += [numpy_helper.from_array(a, name) for name, a in folded.items()]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return len(folded)
