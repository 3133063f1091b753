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

A recurrent model's fusion (model.py: the gate branch, its input and the known-pixel mask) is written
in fewer, cheaper ops as well (`_fusion`; the same numbers but for the order of a few float sums,
within 1e-7, a scene's first frame to the bit): mostly its 12-channel convs padded with zero filters
to whole NCHWc blocks, which took ONNX Runtime back to plain NCHW between them. `tiny-video` over
`tiny` +38 -> +27 % and +41 -> +33 % fp32, +50 -> +36 % and +53 -> +37 % INT8 in two runs of
benchmarks/fusion_graph.py (2026-12-07, graphs alone, results/fusion_graph_cpu.md).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import platform
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
    if producer is not None and producer.op_type == "Clip":  # a clamp moved before the shuffle (_clip_first)
        producer = next((n for n in graph.node if producer.input[0] in n.output), None)
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


def cpu_graph(path: str | Path, fusion: bool = True) -> tuple[bytes | None, int, tuple[str, ...]]:
    """(the graph at `path` as the CPU provider runs it fastest, serialized; how many DepthToSpace of
    CRD order it writes as one-hot grouped ConvTranspose; what else it rewrote, a short phrase each:
    a recurrent model's fusion, see `_fusion`; fusion=False: only the shuffles, to compare).
    (None, 0, ()) where there is nothing to rewrite, the
    onnx package is missing or the file cannot be parsed (ONNX Runtime then loads the file and says
    what is wrong with it)."""
    if os.environ.get("EDGEDENOISE_ORT_GRAPH", "") == "file":
        return None, 0, ()
    try:
        pb = _onnx_proto()
        if pb is None:
            return None, 0, ()
        m = pb.ModelProto()
        m.ParseFromString(Path(path).read_bytes())
    except Exception:  # noqa: BLE001 - a corrupt file, an onnx without the classes: the file as it is
        return None, 0, ()
    graph = m.graph
    other = _fusion(m, pb) if fusion else ()  # first: it moves a Clip in front of the gate's DepthToSpace
    done = 0
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
    return (m.SerializeToString(), done, other) if done or other else (None, 0, ())


# --- a recurrent model's fusion (model.py's gate branch and its known-pixel mask) -------------------
# Each part measured 2026-12-07 on the 2-core EPYC (640x480, 2 threads, ONNX Runtime spinning, in turns
# in one process, 6 x 15 runs, the median of the medians): `tiny-video` 26.1 -> 24.6 ms against
# `tiny`'s 19.4, its INT8 graph 18.9 -> 17.3 against 12.9; of that, padding the gate's 12 channels to
# 16 about 1.0 ms, the sums as one strided Conv 0.2-0.3, the last three together 0.3-0.4. (A strided
# Conv alone, without the padding, had been no faster than the seven ops it replaces: 2026-12-06,
# docs/temporal-notes.md.)

_BLOCK = 8  # the CPU provider's NCHWc block: 8 floats with AVX2, 16 with AVX-512 (which 16 also fills)


def _fusion(model, pb) -> tuple[str, ...]:
    """Rewrites of the float ops a recurrent model adds, each computing what it replaces (the same
    numbers but for the order of a few float sums: within 1e-7 of the file's outputs):
    - a Conv whose channel count is not a whole NCHWc block, read only by Convs (through a Relu):
      padded with zero filters and the readers with zero input channels (the gate branch's 12
      channels: between its convs ONNX Runtime went back to plain NCHW and the slow conv path);
    - ReduceSum over the channels of n tensors, concatenated and average-pooled k x k: one Conv of
      stride k over the n tensors concatenated (weights 1 / k^2), already in the NCHWc layout;
    - ReduceMax over a few channels: Split and an elementwise Max (ReduceMax is slow along axis 1);
    - Mul by a comparison Cast to float: Where (the gate times the known-pixel mask);
    - Clip after a DepthToSpace: before it (the same numbers moved), fused into the Conv before."""
    other = []
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=17)
    channel_max = functools.partial(_channel_max, opset=opset)
    for name, rewrite in (("gate convs padded to NCHWc blocks", _pad_widths), ("sums as a strided conv", _sums),
                          ("channel max as Split and Max", channel_max), ("mask as Where", _mask_where),
                          ("clamp before the gate's shuffle", _clip_first)):
        if rewrite(model.graph, pb):
            other.append(name)
    return tuple(other)


def _index(graph) -> tuple[dict, dict]:
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    for o in graph.output:
        readers.setdefault(o.name, []).append(None)  # a graph output: never rewritten away
    return producer, readers


def _attr(node, name: str, default=None):
    a = next((a for a in node.attribute if a.name == name), None)
    if a is None:
        return default
    return list(a.ints) if a.ints else a.i if a.type == 2 else a.f if a.type == 1 else a.s


def _init_behind(graph, producer, readers, name: str):
    """The initializer holding tensor `name` (directly or behind one Cast, as the float16-stored
    weights are), if it and its Cast feed nothing else; else None."""
    cast = producer.get(name)
    if cast is not None:
        if cast.op_type != "Cast" or len(readers.get(name, [])) != 1:
            return None
        name = cast.input[0]
    init = next((t for t in graph.initializer if t.name == name), None)
    if init is None or len(readers.get(name, [])) != 1 or init.data_type not in (1, 10):
        return None
    return init


def _array(init) -> np.ndarray:
    dtype = np.float32 if init.data_type == 1 else np.float16
    if init.raw_data:
        a = np.frombuffer(init.raw_data, dtype=np.dtype(dtype).newbyteorder("<"))
    elif init.data_type == 1:
        a = np.asarray(init.float_data, np.float32)
    else:  # float16 kept as its bits in int32_data
        a = np.asarray(init.int32_data, np.uint16).view(np.float16)
    return a.astype(dtype).reshape(tuple(init.dims))


def _set_array(init, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a.astype(np.float32 if init.data_type == 1 else np.float16))
    del init.dims[:]
    init.dims.extend(a.shape)
    init.ClearField("float_data")
    init.ClearField("int32_data")
    init.raw_data = a.astype(a.dtype.newbyteorder("<")).tobytes()


def _channels_of(graph, name: str) -> int | None:
    """The static channel count (dimension 1) recorded for tensor `name`, if any."""
    for v in list(graph.value_info) + list(graph.input):
        if v.name == name:
            dims = v.type.tensor_type.shape.dim
            return int(dims[1].dim_value) if len(dims) == 4 and dims[1].dim_value > 0 else None
    return None


def _forget_shapes(graph, names: set) -> None:
    """Drop the recorded shapes of tensors a rewrite changed (ONNX Runtime infers them again)."""
    keep = [v for v in graph.value_info if v.name not in names]
    del graph.value_info[:]
    graph.value_info.extend(keep)


def _pad_widths(graph, pb) -> int:
    if platform.machine().lower() not in ("x86_64", "amd64", "x86", "i686"):
        return 0  # NCHWc is the x86 provider's layout: elsewhere the zeros would only cost
    done = 0
    producer, readers = _index(graph)  # again after each rewrite only
    for conv in list(graph.node):
        if conv.op_type != "Conv" or len(conv.input) < 2 or (_attr(conv, "group", 1) or 1) != 1:
            continue
        w = _init_behind(graph, producer, readers, conv.input[1])
        b = _init_behind(graph, producer, readers, conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        if w is None or len(w.dims) != 4 or w.dims[0] % _BLOCK == 0 or (len(conv.input) > 2 and conv.input[2]
                                                                       and b is None):
            continue
        out, changed = conv.output[0], {conv.output[0]}
        nxt = readers.get(out, [])
        if len(nxt) == 1 and nxt[0] is not None and nxt[0].op_type == "Relu":
            out = nxt[0].output[0]
            changed.add(out)
            nxt = readers.get(out, [])
        weights = [_init_behind(graph, producer, readers, n.input[1]) if n is not None and n.op_type == "Conv"
                   and n.input[0] == out and (_attr(n, "group", 1) or 1) == 1 else None for n in nxt]
        if not nxt or any(x is None or len(x.dims) != 4 or x.dims[1] != w.dims[0] for x in weights):
            continue
        c = int(w.dims[0])
        pad = -c % _BLOCK
        a = _array(w)
        _set_array(w, np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)]))
        if b is not None:
            a = _array(b)
            _set_array(b, np.concatenate([a, np.zeros(pad, a.dtype)]))
        for x in weights:
            a = _array(x)
            _set_array(x, np.concatenate([a, np.zeros((a.shape[0], pad) + a.shape[2:], a.dtype)], axis=1))
        for n in [conv] + [n for n in nxt]:
            changed.update(i for i in n.input[1:3] if producer.get(i) is not None)  # the Casts' outputs
        _forget_shapes(graph, changed)
        done += 1
        producer, readers = _index(graph)
    return done


def _replace(graph, old: list, new: list) -> None:
    """Drop `old` and put `new` where the last of them stood: every input of `new` is an input of
    `old`, made before that place, so the graph stays in topological order."""
    at = max(list(graph.node).index(n) for n in old) - (len(old) - 1)
    for n in old:
        graph.node.remove(n)
    for k, n in enumerate(new):
        graph.node.insert(at + k, n)


def _sums(graph, pb) -> int:
    done = 0
    producer, readers = _index(graph)  # again after each rewrite only
    for pool in list(graph.node):
        if pool.op_type != "AveragePool":
            continue
        k = _attr(pool, "kernel_shape") or []
        if (len(k) != 2 or k[0] != k[1] or (_attr(pool, "strides") or [1, 1]) != k or any(_attr(pool, "pads") or [])
                or _attr(pool, "ceil_mode", 0) or _attr(pool, "auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")):
            continue
        cat = producer.get(pool.input[0])
        if cat is None or cat.op_type != "Concat" or _attr(cat, "axis") != 1 or len(readers[cat.output[0]]) != 1:
            continue
        sums = [producer.get(i) for i in cat.input]
        if not all(s is not None and s.op_type == "ReduceSum" and len(readers[s.output[0]]) == 1
                   and _attr(s, "keepdims", 1) == 1 and _reduce_axes(graph, s) == [1] for s in sums):
            continue
        chans = [_channels_of(graph, s.input[0]) for s in sums]
        if not all(chans):
            continue
        n_in, n = sum(chans), len(sums)
        w = np.zeros((n, n_in, k[0], k[1]), np.float32)
        start = 0
        for j, c in enumerate(chans):
            w[j, start:start + c] = 1.0 / (k[0] * k[1])
            start += c
        wname, joined = f"{pool.output[0]}_sum_weights", f"{pool.output[0]}_summands"
        init = graph.initializer.add(name=wname, dims=list(w.shape), data_type=pb.TensorProto.FLOAT)
        init.raw_data = w.astype("<f4").tobytes()
        ints = pb.AttributeProto.INTS
        _replace(graph, sums + [cat, pool], [
            pb.NodeProto(name=f"{pool.name}_concat", op_type="Concat", input=[s.input[0] for s in sums],
                         output=[joined], attribute=[pb.AttributeProto(name="axis", type=pb.AttributeProto.INT, i=1)]),
            pb.NodeProto(name=pool.name, op_type="Conv", input=[joined, wname], output=list(pool.output),
                         attribute=[pb.AttributeProto(name="kernel_shape", type=ints, ints=k),
                                    pb.AttributeProto(name="strides", type=ints, ints=k)])])
        done += 1
        producer, readers = _index(graph)
    return done


def _reduce_axes(graph, node) -> list | None:
    """A Reduce node's axes, from its attribute (opset < 18; ReduceSum < 13) or its constant input."""
    axes = _attr(node, "axes")
    if axes is not None:
        return axes
    if len(node.input) > 1 and node.input[1]:
        init = next((t for t in graph.initializer if t.name == node.input[1]), None)
        if init is not None and init.data_type == 7:  # INT64
            return [int(v) for v in (np.frombuffer(init.raw_data, "<i8") if init.raw_data else init.int64_data)]
        const = next((n for n in graph.node if node.input[1] in n.output and n.op_type == "Constant"), None)
        if const is not None and const.attribute and const.attribute[0].t.data_type == 7:
            t = const.attribute[0].t
            return [int(v) for v in (np.frombuffer(t.raw_data, "<i8") if t.raw_data else t.int64_data)]
    return None


def _channel_max(graph, pb, opset: int) -> int:
    done = 0
    for node in list(graph.node):
        if node.op_type != "ReduceMax" or _attr(node, "keepdims", 1) != 1 or _reduce_axes(graph, node) != [1]:
            continue
        c = _channels_of(graph, node.input[0])
        if not c or c > 4:
            continue
        parts = [f"{node.output[0]}_channel{i}" for i in range(c)]
        one = pb.AttributeProto.INT
        attrs = [pb.AttributeProto(name="axis", type=one, i=1)]
        if opset >= 18:  # Split-18 wants its output count said
            attrs.append(pb.AttributeProto(name="num_outputs", type=one, i=c))
        _replace(graph, [node], [
            pb.NodeProto(name=f"{node.name}_split", op_type="Split", input=[node.input[0]], output=parts,
                         attribute=attrs),
            pb.NodeProto(name=node.name, op_type="Max", input=parts, output=list(node.output))])
        done += 1
    return done


def _mask_where(graph, pb) -> int:
    done = 0
    producer, readers = _index(graph)  # again after each rewrite only
    for mul in list(graph.node):
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        for j in (0, 1):
            cast = producer.get(mul.input[j])
            cmp = producer.get(cast.input[0]) if cast is not None and cast.op_type == "Cast" else None
            if (cmp is None or cmp.op_type not in ("Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual")
                    or _attr(cast, "to") != 1 or len(readers[cast.output[0]]) != 1):
                continue
            zero = f"{mul.output[0]}_zero"
            init = graph.initializer.add(name=zero, dims=[], data_type=pb.TensorProto.FLOAT)
            init.raw_data = np.zeros((), "<f4").tobytes()
            _replace(graph, [cast, mul], [pb.NodeProto(name=mul.name, op_type="Where", output=list(mul.output),
                                                       input=[cmp.output[0], mul.input[1 - j], zero])])
            done += 1
            producer, readers = _index(graph)
            break
    return done


def _clip_first(graph, pb) -> int:
    done = 0
    producer, readers = _index(graph)  # again after each rewrite only
    for clip in list(graph.node):
        if clip.op_type != "Clip" or len(clip.input) < 1:
            continue
        shuffle = producer.get(clip.input[0])
        if shuffle is None or shuffle.op_type != "DepthToSpace" or len(readers[shuffle.output[0]]) != 1:
            continue
        before = f"{shuffle.input[0]}_clipped"
        new_clip = pb.NodeProto()
        new_clip.CopyFrom(clip)
        new_clip.input[0], new_clip.output[0] = shuffle.input[0], before
        new_shuffle = pb.NodeProto()
        new_shuffle.CopyFrom(shuffle)
        new_shuffle.input[0], new_shuffle.output[0] = before, clip.output[0]
        _replace(graph, [shuffle, clip], [new_clip, new_shuffle])
        _forget_shapes(graph, {shuffle.output[0]})
        done += 1
        producer, readers = _index(graph)
    return done
