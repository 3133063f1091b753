"""INT8 Q/DQ graphs of an exported model: ONNX Runtime static quantization, for two targets.

    edgedenoise quantize --model default --calib ../shared/data/train/CBSD432 [--for tensorrt]

Both calibrate activation ranges on noisy crops of clean training images (half with
camera-protocol Gaussian noise at sigmas spread over 0-60, half through the camera simulation
with random cameras, told up to twice the noise's RMS as blind mode tells correlated noise; so the
ranges cover what a camera stream delivers) and quantize the weights per output channel (int8,
symmetric). The graph keeps the float model's inputs, outputs
and metadata, so everything else stays the same.

- `--for onnxruntime` (the default): INT8 for CPUs, `<model>.int8.onnx` beside the model's
  `.onnx` (or `--out`). Activations per tensor in uint8 (asymmetric), Q/DQ around every op ONNX
  Runtime quantizes but the first (head) and last (tail) convolutions, which stay float, as do
  what the head reads (the frame, the noise map, their concatenation) and what a recurrent model
  adds after its framewise network (its gate branch and the fusion with the previous output). The
  Denoiser loads it with `precision="int8"` (`--precision int8`).
- `--for tensorrt`: the explicit Q/DQ graph `edgedenoise build --precision int8` builds from,
  `<model>.trt.int8.onnx`. TensorRT quantizes symmetrically only (int8, zero point 0), so the
  activations are int8 and symmetric, the bias stays float, and Q/DQ pairs sit only on the
  inputs of the convolutions (TensorRT's recommended placement; it fuses each with the conv
  that reads it), the first (head) and last (tail) convolutions and a recurrent model's gate
  branch left in float. ONNX Runtime
  runs it too, which is how its PSNR is checked on the CPU (tests/test_quantize.py).

Needs only onnxruntime and onnx (no torch). What INT8 costs in PSNR and gains in speed is
measured in benchmarks/ (quality.py and latency.py), not assumed.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import DataError, ModelError
from .modelfile import MODELS_DIR, resolve
from .onnxweights import fold_weight_casts
from .outputs import guard

CALIB_CROP = 128  # calibration crops are CALIB_CROP x CALIB_CROP (a multiple of every size_multiple)
CALIB_SIGMA = (5.0, 60.0)
# The Gaussian crops' levels are spread evenly over CALIB_SIGMA (stratified: one in each of as many
# equal slices as there are Gaussian crops, in shuffled order), and a camera crop is told at least
# CALIB_SIGMA[0]. Until 2026-12-06 the levels were drawn uniform on 0-60, and the ranges hung on
# whether a near-clean crop was drawn: `default`'s decoder answers a told level under about 2 with
# activations 3-10x their size at 5-50 (the 99.99th percentile of dec.1's last ReLU per crop: 18.7
# at sigma 0-3, 2.3-3.5 at 3-60), so one such crop in 65 stretched four ranges 2-3.6x and the INT8
# lost 1.0-1.3 dB instead of 0.43 at Gaussian 25 (`quantize --count 96/128/256`; 64 and 32 happened
# to draw none). Measured in the PyTorch simulation of the INT8 graph (qat.py), the 8 held-out
# training images, INT8 minus fp32 averaged over Gaussian 5/15/25/50 told and camera low / very low
# light blind: the draw of before -0.52 with the 64 crops of seed 0 (the shipped file), -1.0 to -2.0
# with other counts or seeds; this one -0.49 / -0.51 / -0.51 / -0.54 (64 crops seeds 0 and 1, 128,
# 256); stratified from 0 instead of 5: -1.05 / -1.99 / -0.98 (64 seeds 0 and 1, 128); `tiny` hardly
# cares (its activations do not grow at low levels). What it costs: `default` INT8 has a noise floor
# of its own (about 44 dB on a clean image with either rule), and below the calibrated levels it
# loses more than the lucky draw did: Gaussian 2 told -2.0 to -2.8 dB (was -1.8; fp32 43.3), 1 told
# -3.8 to -5.7 (was -3.0; fp32 47.9, the noisy frame itself 47.9). docs/int8-notes.md.
# Half the calibration crops come through the camera simulation, told CALIB_TOLD x its RMS (blind
# mode tells a camera's correlated noise up to about twice it), and the head and tail convolutions
# stay float for ONNX Runtime as for TensorRT. Chosen on the 8 held-out training images (2026-12-06,
# whole images, ONNX Runtime int8 against fp32; Gaussian 25 told, camera low / very low light blind):
# with the shipped `tiny` of that day the Gaussian-only calibration lost 0.56 / 0.45 / 1.71 dB, camera
# crops alone 0.61 / 0.29 / 0.36, both changes 0.37 / 0.17 / 0.11; `default` 0.59 / 0.15 / 0.24 before,
# 0.44 / 0.20 / 0.15 after (benchmarks/int8_val.py measures the shipped files so). The float boundary
# convs cost 0.6 ms a 640x480 frame (tiny 11.6 -> 12.2 ms, default 21.9 -> 22.5; 2 cores with VNNI);
# 128 Gaussian-only crops instead of 32 changed nothing.
# A recurrent model's gate branch's last conv stays float too (output_convs): still clips, frames
# 4-8, Gaussian 25 / low light, INT8 minus fp32: tiny-video -0.68 / -0.21 with it quantized, -0.44 /
# -0.13 float (-0.87 / -0.57 with the calibration of before); default-video -0.47 / -0.11, -0.34 / -0.11.
# And so does everything after the framewise network (fusion_nodes: the gate branch, the fusion with
# the previous output): ONNX Runtime ran that frame-sized elementwise work as QLinear ops between
# Q/DQ pairs, slower than in float. Float (2026-12-06, benchmarks/results/int8_val.md; 640x480, 2
# threads, in turns in one process): tiny-video INT8 15.96 -> 14.27 ms a frame (tiny INT8 9.82),
# default-video 26.80 -> 25.03 (default 20.86); INT8 minus fp32 unchanged or better: tiny-video
# -0.47 / -0.22 -> -0.47 / -0.21, default-video -0.34 / -0.11 -> -0.32 / -0.10.
# And what the head reads stays float (head_inputs): ONNX Runtime had quantized the concatenation of
# the frame and the noise map that the float head takes, re-rounding the uint8 frame onto a grid of
# another step. Float (2026-12-06, `python benchmarks/int8_val.py --int8-from OLD`; Gaussian 25 told
# / low light / very low light, INT8 minus fp32): tiny -0.44 / -0.22 / -0.19 -> -0.22 / -0.13 / -0.08,
# default -0.39 / -0.20 / -0.13 -> -0.37 / -0.15 / -0.11, tiny-video -0.47 / -0.21 -> -0.13 / -0.12,
# default-video -0.32 / -0.10 -> -0.34 / -0.07; and faster (640x480, 2 threads, in turns in one
# process, p50): tiny 10.0 -> 9.4 ms, tiny-video 14.8 -> 14.0, default 21.5 -> 21.5. Where `default`
# loses the rest was looked for by keeping one conv at a time float: none gains more than 0.05 dB
# (the last, dec.2's second); the loss is spread over the network. Rounded one activation at a time
# in the PyTorch simulation of this graph (edgedenoise.qat; the validation images, Gaussian 25), the
# output of the decoder's last upsampling conv (signed, wide-ranged, at the highest decoder resolution)
# costs most: `default` -0.10 dB of its -0.33 (weights alone -0.10), `tiny` -0.06 of -0.22. Kept float
# with its pixel-shuffle and skip addition it gave `default` -0.33 -> -0.23 and `tiny` -0.22 -> -0.15
# but took 11-14 % more time (640x480: 20.9 -> 23.3 ms, 9.2 -> 10.5): not kept. Clipping its range
# to 0.5-0.8 of the percentile's gained `tiny` 0.04 (simulated), not tried further.
CALIB_CAMERA_SHARE = 0.5
CALIB_TOLD = (1.0, 2.0)
CALIB_COUNT = 64
# Activation ranges clip the top and bottom 0.01 % of calibrated values. Chosen on the 8 held-out
# training images (default, camera protocol, calibrated on the other 424): 99.99 gained 0.09 dB at
# sigma 25 (and 0.14 at 15, -0.01 at 50) over 99.999; 99.95 and 99.9 lost at sigma 50.
CALIB_PERCENTILE = 99.99
TARGETS = ("onnxruntime", "tensorrt")
# TensorRT's graph: where its Q/DQ pairs go was chosen on 8 held-out training images (the last 8
# of CBSD432, calibrated on the other 424; sigma 25, camera; PSNR against the onnxruntime graph,
# default / tiny): ONNX Runtime's own placement made symmetric (every op, conv outputs too)
# -0.42 / -0.08 dB; Q/DQ on the conv inputs only -0.19 / -0.05; that with the tail conv in float
# -0.13 / +0.04; with the head and tail convs in float -0.09 / +0.09, kept: those boundary layers
# read the [0,1] frame and the noise map (a symmetric int8 range would leave half its levels
# unused) and write the residual.
TRT_EXTRA = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
             "OpTypesToExcludeOutputQuantization": ["Conv"]}


def int8_path(onnx_path: Path) -> Path:
    """model.onnx -> model.int8.onnx"""
    return onnx_path.with_name(onnx_path.stem + ".int8.onnx")


def trt_int8_path(onnx_path: Path) -> Path:
    """model.onnx -> model.trt.int8.onnx (the symmetric Q/DQ graph TensorRT builds from)"""
    return onnx_path.with_name(onnx_path.stem + ".trt.int8.onnx")


def qdq_problems(model) -> list[str]:
    """What keeps TensorRT from taking a Q/DQ graph (an onnx ModelProto): no Q/DQ node, or a zero
    point that is not int8 0 (TensorRT quantizes symmetrically, to int8: uint8 activations or an
    int32-quantized bias are refused by its parser). Empty when the graph is fine."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    consts = {o: n for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    problems = []
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        return ["no QuantizeLinear/DequantizeLinear nodes: not a Q/DQ graph"]
    for n in qdq:
        name = n.input[2] if len(n.input) > 2 else ""
        if not name:  # ONNX's default zero point is uint8 0
            problems.append(f"{n.op_type} {n.name}: no zero point (uint8 by default)")
            continue
        if name in inits:
            zp = numpy_helper.to_array(inits[name])
        elif name in consts:
            zp = numpy_helper.to_array(helper.get_attribute_value(consts[name].attribute[0]))
        else:
            problems.append(f"{n.op_type} {n.name}: zero point {name} is not a constant")
            continue
        if zp.dtype != np.int8 or zp.any():
            problems.append(f"{n.op_type} {n.name}: zero point {zp.dtype} {zp.ravel()[:4].tolist()} (need int8 0)")
    return problems


def camera_crops(count: int, camera_share: float = CALIB_CAMERA_SHARE) -> list[bool]:
    """Which of `count` calibration crops go through the camera simulation: crop k when
    floor((k + 1) x camera_share) > floor(k x camera_share), spread evenly over the set."""
    return [int((k + 1) * camera_share) > int(k * camera_share) for k in range(count)]


def calibration_batches(folder: str | Path, count: int = CALIB_COUNT, seed: int = 0,
                        recurrent_onnx: Path | None = None, camera_share: float = CALIB_CAMERA_SHARE) -> list[dict]:
    """`count` noisy crops of the images in `folder`, as ONNX feeds: those `camera_crops` names
    through the camera simulation (a random camera, told CALIB_TOLD x the noise's RMS, at least
    CALIB_SIGMA[0]), the others with camera-protocol Gaussian noise of levels spread evenly over
    CALIB_SIGMA (see there).

    For a recurrent model (`recurrent_onnx`, its float graph) each feed is a crop's second frame:
    the crop with new noise, and as `previous` the model's own output (rounded to uint8 levels) for
    the crop's first noisy frame, the state a stream carries."""
    session = None
    if recurrent_onnx is not None:
        import onnxruntime as ort

        session = ort.InferenceSession(str(recurrent_onnx), providers=["CPUExecutionProvider"])
    from . import camera
    from .data import read_image, scan_images
    from .noise import protocol_noisy

    images = scan_images(folder, min_size=CALIB_CROP, channels=3)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    cameras = camera_crops(count, camera_share)
    lo, hi = CALIB_SIGMA
    n = count - sum(cameras)  # the Gaussian crops' levels: one in each of n equal slices of CALIB_SIGMA
    levels = list(lo + (hi - lo) * (rng.permutation(n) + rng.uniform(size=n)) / max(n, 1))
    feeds = []
    for k in range(count):
        info = images[int(order[k % len(images)])]
        clean = read_image(info.path, 3)
        y = int(rng.integers(0, clean.shape[0] - CALIB_CROP + 1))
        x = int(rng.integers(0, clean.shape[1] - CALIB_CROP + 1))
        crop = clean[y:y + CALIB_CROP, x:x + CALIB_CROP]
        params = None
        if cameras[k]:  # through a random camera
            crop = np.ascontiguousarray(crop)
            params = camera.sample_params(rng)
            noisy, _, info = camera.simulate(crop, rng, params=params)
            sigma = max(float(info["noise_std"]) * float(rng.uniform(*CALIB_TOLD)), lo)
        else:
            sigma = float(levels.pop())
            noisy = protocol_noisy(crop, sigma, 10_000 + k, "camera")
        feed = {"noisy": noisy.transpose(2, 0, 1)[None].astype(np.float32) / 255.0,
                "sigma": np.array([sigma / 255.0], np.float32)}
        if session is not None:
            first = session.run(None, {**feed, "previous": feed["noisy"]})[0]
            if params is not None:  # the same camera, new noise
                second = camera.simulate(crop, rng, params=params)[0]
            else:
                second = protocol_noisy(crop, sigma, 20_000 + k, "camera")
            feed = {**feed, "noisy": second.transpose(2, 0, 1)[None].astype(np.float32) / 255.0,
                    "previous": np.round(np.clip(first, 0, 1) * 255).astype(np.float32) / 255.0}
        feeds.append(feed)
    return feeds


def unshuffle_convs(graph) -> list[str]:
    """Names of the Conv nodes that only rearrange pixels: the export writes the model's
    pixel-unshuffle as a Conv without a bias whose weights are the identity (model.unshuffle).
    Quantized, they would only add a rounding step; they stay float."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    names = []
    for n in graph.node:
        if n.op_type != "Conv" or len(n.input) != 2 or n.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        if w.ndim == 4 and w.shape[0] == w[0].size and np.array_equal(w.reshape(w.shape[0], -1), np.eye(w.shape[0])):
            names.append(n.name)
    return names


def fusion_nodes(graph) -> list[str]:
    """Names of the nodes that do not lead to the tail conv (the first conv in graph order that
    output_convs finds): what a recurrent model adds after its framewise network (the gate branch,
    the fusion of the previous output with the model's own estimate), and in any model the
    residual's subtraction and the clamp after the tail. Frame-sized elementwise work that stays
    float (CALIB_CAMERA_SHARE's comment)."""
    outputs = set(output_convs(graph))
    tail = next((n for n in graph.node if n.name in outputs), None)
    if tail is None:
        return []
    leads = _upstream(graph, [tail])  # the tail and everything it reads from
    return [n.name for n in graph.node if n.name not in leads]


def head_inputs(graph, head: str) -> list[str]:
    """Names of the nodes the head conv `head` reads from (the pixel-unshuffle, the noise map and
    their concatenation): the frame and the map as the head takes them. Quantized, the uint8 frame
    went to the head re-rounded onto a per-tensor grid of other steps than its own 1/255 (the
    percentile range), a rounding error the network never saw (CALIB_CAMERA_SHARE's comment)."""
    found = _upstream(graph, [n for n in graph.node if n.name == head]) - {head}
    return [n.name for n in graph.node if n.name in found]


def _upstream(graph, nodes) -> set[str]:
    """Names of `nodes` and of every node they read from, however far back."""
    producer = {o: n for n in graph.node for o in n.output}
    found, todo = set(), list(nodes)
    while todo:
        n = todo.pop()
        if n.name not in found:
            found.add(n.name)
            todo.extend(producer[i] for i in n.input if i in producer)
    return found


def output_convs(graph) -> list[str]:
    """Names of the Conv nodes whose output reaches a graph output through no other Conv: the tail
    (and a recurrent model's gate branch's last conv, which also writes what the output is made of)."""
    producer = {o: n for n in graph.node for o in n.output}
    found, seen = [], set()
    todo = [o.name for o in graph.output]
    while todo:
        n = producer.get(todo.pop())
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        if n.op_type == "Conv":
            found.append(n.name)
        else:
            todo.extend(n.input)
    return found


def quantize_model(model: str | Path, calib: str | Path, out: str | Path | None = None, count: int = CALIB_COUNT,
                   progress: bool = True, target: str = "onnxruntime") -> dict:
    """Write the INT8 (QDQ) variant of a model's ONNX export for `target` (onnxruntime or
    tensorrt, see the module docstring). Returns a summary dict."""
    if target not in TARGETS:
        raise ModelError(f"unknown quantization target {target!r}: {' or '.join(TARGETS)}")
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise ModelError(f"quantize needs onnxruntime and onnx ({e}): pip install -e .[runtime] onnx") from None

    files = resolve(model)
    if files.onnx is None:
        raise ModelError(f"model {model} has no .onnx export: run `edgedenoise export --model {model} --out X.onnx`")
    if files.channels != 3:
        raise ModelError("quantize calibrates colour models only (this model has 1 channel)")
    default = (int8_path if target == "onnxruntime" else trt_int8_path)(files.onnx)
    if out:
        out = Path(out)
    elif files.onnx.resolve().parent == MODELS_DIR.resolve():
        out = Path(default.name)  # never into the installed package: the working folder
    else:
        out = default  # beside the user's own model, where --precision int8 (and build) finds it
    guard(out, [files.onnx, files.weights], what="quantize output")
    if out.exists():  # a re-quantization is normal, but never silent: say what is replaced
        import sys

        print(f"quantize: {out} exists and will be replaced when the new one is written", file=sys.stderr)
    t0 = time.time()
    feeds = calibration_batches(calib, count, recurrent_onnx=files.onnx if files.recurrent else None)
    if not feeds:
        raise DataError(f"no calibration images in {calib}")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)
            self.bar = None
            if progress:
                from tqdm import tqdm

                self.bar = tqdm(total=len(feeds), unit="crop", desc="calibrate")

        def get_next(self):
            item = next(self.it, None)
            if self.bar is not None:
                self.bar.update(item is not None)
                if item is None:
                    self.bar.close()
            return item

    with tempfile.TemporaryDirectory() as tmp:
        pre, src = Path(tmp) / "pre.onnx", files.onnx
        proto = onnx.load(str(files.onnx))
        if fold_weight_casts(proto):  # float16-stored weights: the quantizer wants float32 initializers
            src = Path(tmp) / "float.onnx"
            onnx.save(proto, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        graph = onnx.load(str(pre)).graph
        layout = unshuffle_convs(graph)  # the pixel-unshuffle of the export: moves numbers, stays float
        convs = [n.name for n in graph.node if n.op_type == "Conv" and n.name not in layout]  # in graph order
        # head and tail float (CALIB_CAMERA_SHARE's comment); the tail: every conv that writes the output
        # (a recurrent model's gate branch ends in one too, and comes after the tail in graph order)
        floats = layout + [convs[0], *(c for c in output_convs(graph) if c not in layout)]
        floats += [n for n in fusion_nodes(graph) + head_inputs(graph, convs[0]) if n not in floats]
        if target == "onnxruntime":
            kw = dict(activation_type=QuantType.QUInt8, nodes_to_exclude=floats, extra_options={})
        else:
            kw = dict(activation_type=QuantType.QInt8, op_types_to_quantize=["Conv"], nodes_to_exclude=floats,
                      extra_options=dict(TRT_EXTRA))
        kw["extra_options"]["CalibPercentile"] = CALIB_PERCENTILE
        quantized = Path(tmp) / "int8.onnx"  # the output is only written, whole, at the end
        quantize_static(
            str(pre), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type=QuantType.QInt8,
            # percentile ranges: a few extreme activations do not stretch the 256 levels
            # (0.05 dB better than min/max ranges on a Kodak24 crop at sigma 25)
            calibrate_method=CalibrationMethod.Percentile, **kw,
        )
        m = onnx.load(str(quantized))
    # keep the float model's metadata (name, config, size_multiple), marked as int8
    props = {p.key: p.value for p in proto.metadata_props}
    props.pop("weights_storage", None)  # int8 now
    props["precision"] = "int8"
    calibration = (f"{len(feeds)} crops {CALIB_CROP}x{CALIB_CROP} of {Path(calib).name}, "
                   f"{1 - CALIB_CAMERA_SHARE:.0%} camera-protocol noise sigma {CALIB_SIGMA[0]:g}-{CALIB_SIGMA[1]:g} "
                   "(evenly spread), "
                   f"{CALIB_CAMERA_SHARE:.0%} random cameras told {CALIB_TOLD[0]:g}-{CALIB_TOLD[1]:g}x their RMS")
    if target == "onnxruntime":
        scheme = {"weights": "int8 per channel", "activations": "uint8 per tensor",
                  "float": "the frame and noise map on their way to the head (head_inputs), the head and tail "
                           "convolutions" + (", the gate branch and the fusion with the previous "
                                                               "output" if files.recurrent else "")}
    else:
        problems = qdq_problems(m)
        if problems:  # onnxruntime's options did not give what TensorRT takes
            raise ModelError(f"the TensorRT Q/DQ graph {out} is not symmetric int8: {'; '.join(problems[:3])}")
        scheme = {"for": "tensorrt", "weights": "int8 per channel, symmetric",
                  "activations": "int8 per tensor, symmetric (zero point 0)",
                  "placement": "inputs of the convolutions; head and tail convolutions"
                               + (" and the gate branch" if files.recurrent else "") + " in float"}
    props["quantization"] = json.dumps({"format": "QDQ", **scheme, "calibration": calibration,
                                        "method": f"percentile {CALIB_PERCENTILE:g}"})
    del m.metadata_props[:]
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    part = out.with_name(f".{out.name}.part")  # atomic: a reader or a kill never meets half a model
    try:
        onnx.save(m, str(part))
        part.replace(out)
    finally:
        part.unlink(missing_ok=True)
    return {"path": str(out), "bytes": out.stat().st_size, "seconds": round(time.time() - t0, 1),
            "calibration_crops": len(feeds), "source": str(files.onnx), "target": target}
