"""ONNX export: `edgedenoise export --model MODEL --out model.onnx`.

The graph follows ARCHITECTURE.md's contract: float input `noisy` (N,C,H,W; RGB or
gray in [0,1]), float input `sigma` (N,) in [0,1] units, float output `denoised`
(clamped to [0,1]); N, H and W dynamic, H and W multiples of the `size_multiple`
metadata property (callers pad and crop). Metadata also names the model, its
architecture config, its training data and the edgedenoise version.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .atomic import temp_beside
from .backends.base import fused_gate
from .errors import ModelError
from .modelfile import load_model, resolve
from .onnxweights import halve_weights
from .outputs import guard
from .version import __version__

OPSET = 17


class _IngestOp(torch.autograd.Function):
    """uint8 BGR frame -> features after the head conv + ReLU (NCHW). In the graph: one node
    edgedenoise::Ingest, the fused Triton ingest kernel's contract (kernels/boundary.py)."""

    @staticmethod
    def forward(ctx, frame, sigma, weight, bias, multiple: int, map_scale: float):
        from edgedenoise_kernels.boundary import ingest_reference

        return ingest_reference(frame, weight, bias, sigma * map_scale, multiple).permute(0, 3, 1, 2).contiguous()

    @staticmethod
    def symbolic(g, frame, sigma, weight, bias, multiple, map_scale):
        return g.op("edgedenoise::Ingest", frame, sigma, weight, bias, multiple_i=multiple, map_scale_f=map_scale)


class _EgestOp(torch.autograd.Function):
    """Features (NCHW) + the uint8 frame -> denoised uint8 BGR frame: tail conv, pixel-shuffle,
    residual, clamp, round, crop. In the graph: one node edgedenoise::Egest."""

    @staticmethod
    def forward(ctx, h, weight, bias, frame):
        from edgedenoise_kernels.boundary import egest_reference

        return egest_reference(h.permute(0, 2, 3, 1), weight, bias, frame).contiguous()

    @staticmethod
    def symbolic(g, h, weight, bias, frame):
        return g.op("edgedenoise::Egest", h, weight, bias, frame)


class _EgestGateOp(torch.autograd.Function):
    """A recurrent model's tail (features NCHW, uint8 frame and previous output, the scaled noise
    map) -> (the predicted noise (N, 12, Hh, Wh) fp32, the gate branch's input (N, 3, Hh, Wh) fp32).
    In the graph: one node edgedenoise::EgestGate with two outputs (kernels/boundary.py egest_gate)."""

    @staticmethod
    def forward(ctx, h, weight, bias, frame, previous, smap):
        from edgedenoise_kernels.boundary import egest_gate_reference

        noise, gin = egest_gate_reference(h.permute(0, 2, 3, 1), weight, bias, frame, previous, smap)
        return noise.permute(0, 3, 1, 2).contiguous(), gin.permute(0, 3, 1, 2).contiguous()

    @staticmethod
    def symbolic(g, h, weight, bias, frame, previous, smap):
        return g.op("edgedenoise::EgestGate", h, weight, bias, frame, previous, smap, outputs=2)


class _FuseEgestOp(torch.autograd.Function):
    """The gate branch's features (NCHW), its 1x1 conv to the gate logits, the noise, the frame and
    the previous output -> the fused uint8 BGR frame. In the graph: one node edgedenoise::FuseEgest
    (kernels/boundary.py fuse_egest)."""

    @staticmethod
    def forward(ctx, g, weight, bias, noise, frame, previous):
        from edgedenoise_kernels.boundary import fuse_egest_reference

        return fuse_egest_reference(g.permute(0, 2, 3, 1), weight, bias, noise.permute(0, 2, 3, 1), frame,
                                    previous).contiguous()

    @staticmethod
    def symbolic(g, gfeat, weight, bias, noise, frame, previous):
        return g.op("edgedenoise::FuseEgest", gfeat, weight, bias, noise, frame, previous)


class _FrameNative(nn.Module):
    """frame (N,H,W,3) uint8 BGR, sigma (N,) in [0,1] units -> denoised (N,H,W,3) uint8 BGR."""

    def __init__(self, net):
        super().__init__()
        from .model import SIGMA_MAP_SCALE

        self.net, self.scale = net, float(SIGMA_MAP_SCALE)

    def forward(self, frame, sigma):
        n = self.net
        h = _IngestOp.apply(frame, sigma, n.head[0].weight, n.head[0].bias, n.config.size_multiple, self.scale)
        return _EgestOp.apply(n.body(h), n.tail.weight, n.tail.bias, frame)


class _FrameNativeRecurrent(_FrameNative):
    """A recurrent model with a gate branch fed colour sums (tiny-video, default-video): frame,
    sigma and previous (N,H,W,3) uint8 BGR, the stream's last output (the frame itself on a
    scene's first frame) -> denoised. Ingest and the body as the framewise graph; EgestGate (the
    tail and the branch's input), the branch's two 3x3 convs as plain ONNX Conv + Relu, FuseEgest
    (its 1x1 conv and the fusion). The noise map reaches EgestGate scaled (a Mul in the graph)."""

    def forward(self, frame, sigma, previous):
        n = self.net
        h = _IngestOp.apply(frame, sigma, n.head[0].weight, n.head[0].bias, n.config.size_multiple, self.scale)
        noise, gin = _EgestGateOp.apply(n.body(h), n.tail.weight, n.tail.bias, frame, previous, sigma * self.scale)
        gfeat = n.gate[:4](gin)
        last = n.gate[4]
        return _FuseEgestOp.apply(gfeat, last.weight, last.bias, noise, frame, previous)


class _Exported(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, noisy, sigma):
        return self.net(noisy, sigma).clamp(0.0, 1.0)


class _ExportedRecurrent(_Exported):
    """A recurrent model: the third input `previous` (the last denoised frame, laid out as `noisy`)."""

    def forward(self, noisy, sigma, previous):
        return self.net(noisy, sigma, previous).clamp(0.0, 1.0)


def _export_to(net, files, tmp: Path, frame_native: bool, half_weights: bool, check: bool) -> bool:
    """The ONNX graph of `net`, with edgedenoise's metadata, written to `tmp` (export_onnx renames it);
    whether onnxslim simplified it."""
    import onnx

    m, c, recurrent = net.config.size_multiple, net.config.channels, net.config.recurrent
    s = torch.full((1,), 25 / 255)
    if frame_native:
        frame = torch.randint(0, 256, (1, 3 * m + 3, 4 * m + 5, 3), dtype=torch.uint8)
        image = {0: "N", 1: "H", 2: "W"}
        inputs, names, axes = (frame, s), ["frame", "sigma"], {"frame": image, "sigma": {0: "N"}, "denoised": image}
        if recurrent:
            inputs, names = (frame, s, torch.randint(0, 256, frame.shape, dtype=torch.uint8)), names + ["previous"]
            axes = {**axes, "previous": image}
        torch.onnx.export(
            (_FrameNativeRecurrent if recurrent else _FrameNative)(net).eval(), inputs, str(tmp), dynamo=False,
            opset_version=OPSET, input_names=names, output_names=["denoised"], dynamic_axes=axes,
            custom_opsets={"edgedenoise": 1}, do_constant_folding=True,
        )
    else:
        x = torch.rand(1, c, 4 * m, 4 * m)
        image = {0: "N", 2: "H", 3: "W"}
        inputs, names, axes = (x, s), ["noisy", "sigma"], {"noisy": image, "sigma": {0: "N"}, "denoised": image}
        if recurrent:
            inputs, names = (x, s, torch.rand(1, c, 4 * m, 4 * m)), names + ["previous"]
            axes = {**axes, "previous": image}
        torch.onnx.export(
            (_ExportedRecurrent if recurrent else _Exported)(net).eval(), inputs, str(tmp), dynamo=False,
            opset_version=OPSET, input_names=names, output_names=["denoised"], dynamic_axes=axes,
            do_constant_folding=True,
        )
    proto = onnx.load(str(tmp))
    if frame_native:  # the exporter cannot see through the custom ops: the output is HxWx3
        proto.graph.output[0].type.tensor_type.shape.dim[3].dim_value = 3
    slimmed = False
    try:
        import onnxslim

        if not frame_native:  # onnxslim cannot infer shapes through the custom ops
            proto = onnxslim.slim(proto)  # folds the exporter's shape arithmetic for the noise map
            # onnxslim 0.1.98 records wrong shapes for a DepthToSpace of 4 channels (a recurrent
            # model's gate: 3 channels, the residual's); ONNX's own inference below redoes them
            del proto.graph.value_info[:]
            slimmed = True
    except ImportError:
        pass
    if half_weights:
        try:
            halve_weights(proto)
        except ValueError as e:
            raise ModelError(f"cannot store the weights as float16: {e}; export without --half-weights") from None
    cfg = files.config
    meta = {
        "model_name": files.name,
        "config": json.dumps(cfg),
        "size_multiple": str(m),
        "channels": str(c),
        "training_data": str(cfg.get("extra", {}).get("trained_on", "unknown")),
        "edgedenoise_version": __version__,
        "sigma_units": "noise std in [0,1] units (sigma_255 / 255)",
        "variant": "frame-native" if frame_native else "float",
        "recurrent": "true" if recurrent else "false",
        "weights_storage": "float16" if half_weights else "float32",
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    proto.producer_name = "edgedenoise"
    if check:
        # the custom ops have no schema: the frame-native graph gets the structural check only
        onnx.checker.check_model(proto, full_check=not frame_native)
        if not frame_native:
            proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    onnx.save(proto, str(tmp))
    return slimmed


def export_onnx(model_spec: str | Path, out: str | Path, check: bool = True, frame_native: bool = False,
                half_weights: bool = False) -> dict:
    """Export a model to ONNX, check it, and verify ONNX Runtime against PyTorch.
    Returns a summary (path, size, seconds, max abs error).

    half_weights: store the convolution weights as float16 behind Casts to float32 (half the
    file; onnxweights.py). The weights are rounded to float16 before the export, so PyTorch,
    which the export is verified against, computes with the very values the file holds.

    frame_native: uint8 (N,H,W,3) BGR `frame` in, uint8 `denoised` out, any H and W, with the
    fused boundary kernels as custom ops edgedenoise::Ingest / edgedenoise::Egest (what
    TensorRT builds from, with the kernels as plugins); a recurrent model with a gate branch fed
    colour sums also takes uint8 `previous` (the stream's last output) and ends in
    edgedenoise::EgestGate, its gate convs and edgedenoise::FuseEgest instead of Egest. ONNX
    Runtime runs it only with those ops registered (tests/test_frame_native.py does, with
    onnxruntime-extensions)."""
    t0 = time.time()
    files = resolve(model_spec)
    guard(out, [files.onnx, files.weights], what="export output")  # before the model is even loaded
    net = load_model(model_spec)
    if half_weights:
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(p.half().float())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recurrent = net.config.recurrent
    if frame_native and net.config.channels != 3:
        raise ModelError("--frame-native exports colour (3-channel) models only")
    if frame_native and recurrent and not fused_gate(net.config.to_dict()):
        raise ModelError(f"--frame-native exports recurrent models with a gate branch fed colour sums (tiny-video, "
                         f"default-video), not {files.name}: export it without --frame-native")
    tmp = temp_beside(out)  # a new hidden file beside the output (O_EXCL), renamed over it when complete
    try:
        slimmed = _export_to(net, files, tmp, frame_native, half_weights, check)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    err = verify_onnx(net, out) if check and not frame_native else None
    return {"path": str(out), "bytes": out.stat().st_size, "seconds": time.time() - t0, "max_abs_err": err,
            "slimmed": slimmed, "half_weights": half_weights}


# Real-image checks: (batch, height, width) crops of the bundled sample picture; the odd
# size is padded by the caller (reflection) to the model's size multiple, as the runtime does.
VERIFY_SIZES = ((1, 64, 96), (2, 144, 176), (1, 75, 101))


def verify_onnx(net, path: Path, sizes=VERIFY_SIZES, tol: float = 1e-4) -> float:
    """Max abs difference between ONNX Runtime (CPU) and PyTorch on noisy crops of a real image."""
    import onnxruntime as ort

    from .data import SAMPLE_IMAGE, read_image
    from .model import pad_to_multiple
    from .noise import protocol_noisy

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    sample = read_image(SAMPLE_IMAGE, net.config.channels)
    worst = 0.0
    for i, (n, h, w) in enumerate(sizes):
        crops = [protocol_noisy(sample[40 * j: 40 * j + h, 30 * j: 30 * j + w], 25, i, "camera") for j in range(n)]
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
        x, _, _ = pad_to_multiple(x, net.config.size_multiple)
        s = torch.full((n,), 25 / 255.0)
        feed = {"noisy": x.numpy(), "sigma": s.numpy()}
        prev = None
        if net.config.recurrent:  # a previous frame unlike the current one: the state must reach the net
            prev = torch.flip(x, dims=[3]).contiguous()
            feed["previous"] = prev.numpy()
        got = sess.run(["denoised"], feed)[0]
        with torch.no_grad():
            ref = net(x, s, prev).clamp(0, 1).numpy()
        worst = max(worst, float(np.abs(got - ref).max()))
    if worst > tol:
        raise ModelError(f"ONNX export of {path} differs from PyTorch by {worst:.2e} (> {tol:g})")
    return worst
