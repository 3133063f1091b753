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
  frame). The graph is edited with onnx-graphsurgeon (tensors by object, unused ones dropped by
  its cleanup), imported only here.
- `onnx_variant`: which of the two graphs a file holds, from the metadata `edgedenoise export` writes.
"""
from __future__ import annotations

import numpy as np

from ..onnxweights import fold_weight_casts
from .aot_kernels import NAMESPACE, PLUGIN_IO, KernelsError


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
    Returns the serialized graph and {'ingest': width, 'egest': width}."""
    onnx = _onnx()
    if dtype not in ("fp16", "fp32"):
        raise KernelsError(f"the boundary kernels come in fp16 and fp32, not {dtype}")
    m = onnx.load_from_string(data)
    fold_weight_casts(m)  # float16-stored weights: the kernels' packing reads float32 initializers
    if {p.key: p.value for p in m.metadata_props}.get("variant") != "frame-native":
        raise KernelsError("the TensorRT plugins need the frame-native graph: edgedenoise export --frame-native")
    gs = _graphsurgeon()
    graph = gs.import_onnx(m)
    np_dtype = np.float16 if dtype == "fp16" else np.float32
    widths = {}
    for node in graph.nodes:
        if node.domain != NAMESPACE:
            continue
        kind = node.op.lower()
        if kind not in PLUGIN_IO or kind in widths:
            raise KernelsError(f"unexpected node {NAMESPACE}::{node.op} in the frame-native graph: re-export it")
        if kind == "ingest":
            frame, sigma, w, b = node.inputs
        else:
            h, w, b, frame = node.inputs
        if not (isinstance(w, gs.Constant) and isinstance(b, gs.Constant)):
            raise KernelsError(f"{node.op}: weight and bias must be initializers of the graph: re-export it")
        w, bias = w.values.astype(np.float32), b.values.astype(np.float32)
        if kind == "ingest":
            if w.ndim != 4 or w.shape[1:] != (13, 3, 3):
                raise KernelsError(f"Ingest weight has shape {w.shape}, expected (width, 13, 3, 3)")
            w = w.copy()
            w[:, 12] *= np.float32(node.attrs["map_scale"])  # sigma goes to the kernel unscaled
            width, fields = w.shape[0], {"multiple": int(node.attrs["multiple"])}
        else:
            if w.ndim != 4 or w.shape[0] != 12 or w.shape[2:] != (3, 3):
                raise KernelsError(f"Egest weight has shape {w.shape}, expected (12, width, 3, 3)")
            width, fields = w.shape[1], {}
        if dtype == "fp16" and width % 8:
            raise KernelsError(f"{node.op}: width {width} is not a multiple of 8 (FP16 features cross the "
                               "plugin boundary as HWC8): build with --precision fp32")
        wp = gs.Constant(f"{NAMESPACE}_{kind}_wp", pack_weight(w).astype(np_dtype))
        b32 = gs.Constant(f"{NAMESPACE}_{kind}_bias", bias)
        node.inputs.clear()  # (the list keeps the tensors' consumers in step; cleanup drops the old weights)
        node.inputs.extend([frame, wp, b32, sigma] if kind == "ingest" else [h, wp, b32, frame])
        node.attrs = {**fields, "width": int(width), "half": int(dtype == "fp16"), "plugin_namespace": NAMESPACE,
                      "plugin_version": "1", **({"aot": 1} if flavour == "qdp" else {})}  # aot: the AOT implementation
        widths[kind] = int(width)
    if set(widths) != set(PLUGIN_IO):
        raise KernelsError("the frame-native graph lacks an Ingest or Egest node: re-export it")
    graph.cleanup()
    return gs.export_onnx(graph).SerializeToString(), widths
