"""ONNX graphs as TensorRT's parser should see them.

- `plain_weights`: the float graph (`--kernels native`) with float16-stored weights folded back to
  float32 initializers, so that the parser sees constant weights.
- `prepare_onnx`: the frame-native graph (`--kernels triton`) with its boundary nodes made into
  plugin nodes. TensorRT's ONNX parser maps a node of an unknown op to the plugin creator named by
  its op_type, in the namespace given by the node's `plugin_namespace` attribute (the ONNX domain
  is ignored), hands the creator the node attributes that match the creator's field names, and
  turns every node input -- initializers included -- into a plugin input tensor (constants become
  IConstantLayer outputs). So each boundary node gets `plugin_namespace`, its weight initializer
  is replaced by the weight already packed the way the kernel reads it ((9*CIN, CO),
  kernels/conv.pack_weight's layout, in the kernel's dtype), and the noise-map scale of Ingest is
  folded into the packed weight's map-channel rows, so that the kernel takes sigma itself as its
  `smap` (the head conv is linear in the map channel: w * (sigma * scale) == (w * scale) * sigma).
  The weights thus reach the kernel as constant input tensors that TensorRT keeps in the engine;
  the plugin fields are only small integers (multiple, width, half). The nodes' inputs are put in
  the order the kernel takes its pointers: Ingest (frame, wp, bias, sigma), Egest (h, wp, bias,
  frame). A recurrent graph ends in EgestGate (h, wp, bias, frame, previous, smap: the tail packed
  as Egest's; the map comes scaled by a Mul of the graph) and FuseEgest (g, wp, bias, noise, frame,
  previous: the gate's 1x1 conv packed (CI, 12), each logit's column once per colour, as
  kernels/boundary.pack_gate_logits; fp32, as the branch's features reach it). The graph is
  edited with onnx-graphsurgeon (tensors by object, unused ones dropped by its cleanup),
  imported only here.
- `onnx_variant`: which of the two graphs a file holds, from the metadata `edgedenoise export` writes.
"""
from __future__ import annotations

import numpy as np

from ..onnxweights import fold_weight_casts
from .aot_kernels import GRAPH_KINDS, NAMESPACE, PLUGIN_IO, PLUGIN_NAMES, KernelsError


def _onnx():
    try:
        import onnx
    except ImportError:
        raise KernelsError("--kernels triton needs the onnx package to prepare the graph: pip install onnx") from None
    return onnx


def _graphsurgeon():
    try:
        import onnx_graphsurgeon as gs
    except ImportError:
        raise KernelsError("--kernels triton prepares the frame-native graph with onnx-graphsurgeon: "
                           "pip install onnx-graphsurgeon") from None
    return gs


def plain_weights(data: bytes, log=print) -> bytes:
    """The graph with float16-stored weights (the shipped models: onnxweights.py) folded back to
    float32 initializers, so TensorRT's parser sees constant weights; unchanged without the onnx
    package (the parser then reads each Cast as a layer, which the builder folds)."""
    if b"weights_storage" not in data or b"float16" not in data:
        return data
    try:
        import onnx
    except ImportError:
        log("onnx is not installed: TensorRT parses the float16 weights through their Cast layers")
        return data
    m = onnx.load_from_string(data)
    return m.SerializeToString() if fold_weight_casts(m) else data


def pack_weight(w: np.ndarray) -> np.ndarray:
    """(CO, CI, KH, KW) -> (KH*KW*CI, CO), the layout kernels/conv.pack_weight gives the kernels."""
    co, ci, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(kh * kw * ci, co))


def pack_gate_logits(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(4, CI, 1, 1), (4,) -> (CI, 12), (12,): column k is logit k % 4 (kernels/boundary.pack_gate_logits)."""
    cols = np.arange(12) % 4
    return np.ascontiguousarray(w[:, :, 0, 0].T[:, cols]), np.ascontiguousarray(b[cols])


def onnx_variant(path) -> str:
    """'frame-native' or 'float', from the metadata edgedenoise export writes."""
    onnx = _onnx()
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise KernelsError(f"cannot read ONNX model {path}: {e.__class__.__name__} "
                           "(corrupt or truncated? re-export it)") from None
    return {p.key: p.value for p in m.metadata_props}.get("variant", "float")


def prepare_onnx(data: bytes, dtype: str, flavour: str) -> tuple[bytes, dict]:
    """The frame-native graph as TensorRT's parser should see it (see the module docstring).
    Returns the serialized graph and each plugin kind's width ({'ingest': 24, 'egest': 24}; a
    recurrent graph: ingest, egest_gate and fuse_egest, the gate branch's width)."""
    onnx = _onnx()
    if dtype not in ("fp16", "fp32"):
        raise KernelsError(f"the boundary kernels come in fp16 and fp32, not {dtype}")
    m = onnx.load_from_string(data)
    fold_weight_casts(m)  # float16-stored weights: the kernels' packing reads float32 initializers
    if {p.key: p.value for p in m.metadata_props}.get("variant") != "frame-native":
        raise KernelsError("the TensorRT plugins need the frame-native graph: edgedenoise export --frame-native")
    gs = _graphsurgeon()
    graph = gs.import_onnx(m)
    kinds = {v: k for k, v in PLUGIN_NAMES.items()}
    widths = {}
    for node in graph.nodes:
        if node.domain != NAMESPACE:
            continue
        kind = kinds.get(node.op)
        if kind is None or kind in widths:
            raise KernelsError(f"unexpected node {NAMESPACE}::{node.op} in the frame-native graph: re-export it")
        ins = list(node.inputs)
        if len(ins) != len(PLUGIN_IO[kind][0]):
            raise KernelsError(f"{node.op} has {len(ins)} inputs, the plugin takes {len(PLUGIN_IO[kind][0])}: "
                               "re-export it")
        # weight and bias: the ingest node's 3rd and 4th inputs (frame, sigma, w, b), the others' 2nd and 3rd
        iw = 2 if kind == "ingest" else 1
        w, b = ins[iw], ins[iw + 1]
        if not (isinstance(w, gs.Constant) and isinstance(b, gs.Constant)):
            raise KernelsError(f"{node.op}: weight and bias must be initializers of the graph: re-export it")
        w, bias = w.values.astype(np.float32), b.values.astype(np.float32)
        half = dtype == "fp16"
        if kind == "ingest":
            if w.ndim != 4 or w.shape[1:] != (13, 3, 3):
                raise KernelsError(f"Ingest weight has shape {w.shape}, expected (width, 13, 3, 3)")
            w = w.copy()
            w[:, 12] *= np.float32(node.attrs["map_scale"])  # sigma goes to the kernel unscaled
            width, fields, wp = w.shape[0], {"multiple": int(node.attrs["multiple"])}, pack_weight(w)
        elif kind == "fuse_egest":
            if w.shape[0] != 4 or w.shape[2:] != (1, 1) or bias.shape != (4,):
                raise KernelsError(f"FuseEgest weight has shape {w.shape}, expected (4, width, 1, 1)")
            width, fields, half = w.shape[1], {}, False  # the gate branch's features reach it as FP32
            wp, bias = pack_gate_logits(w, bias)
        else:
            if w.ndim != 4 or w.shape[0] != 12 or w.shape[2:] != (3, 3):
                raise KernelsError(f"{node.op} weight has shape {w.shape}, expected (12, width, 3, 3)")
            width, fields, wp = w.shape[1], {}, pack_weight(w)
        if half and width % 8:
            raise KernelsError(f"{node.op}: width {width} is not a multiple of 8 (FP16 features cross the "
                               "plugin boundary as HWC8): build with --precision fp32")
        wp = gs.Constant(f"{NAMESPACE}_{kind}_wp", wp.astype(np.float16 if half else np.float32))
        b32 = gs.Constant(f"{NAMESPACE}_{kind}_bias", bias)
        ins[iw], ins[iw + 1] = wp, b32
        if kind == "ingest":  # the kernel's order: frame, wp, bias, sigma
            ins = [ins[0], wp, b32, ins[1]]
        node.inputs.clear()  # (the list keeps the tensors' consumers in step; cleanup drops the old weights)
        node.inputs.extend(ins)
        node.attrs = {**fields, "width": int(width), "half": int(half), "plugin_namespace": NAMESPACE,
                      "plugin_version": "1", **({"aot": 1} if flavour == "qdp" else {})}  # aot: the AOT implementation
        widths[kind] = int(width)
    if set(widths) not in GRAPH_KINDS:
        raise KernelsError(f"the frame-native graph has {', '.join(sorted(widths)) or 'no plugin node'}: not the "
                           "nodes of a framewise (Ingest, Egest) or recurrent (Ingest, EgestGate, FuseEgest) graph: "
                           "re-export it")
    graph.cleanup()
    return gs.export_onnx(graph).SerializeToString(), widths
