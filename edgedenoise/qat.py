"""Quantization-aware fine-tuning (`edgedenoise train --qat`): weights for the INT8 graph.

`edgedenoise quantize` rounds a trained model onto INT8 after the fact (ONNX Runtime static
quantization, quantize.py): weights per output channel in int8 (symmetric), every activation between
the head and the tail per tensor in uint8 over a calibrated range. The rounding is an error the
network never saw in training, and at high PSNR it shows (`default` loses about 0.35 dB to fp32 at
Gaussian 25; no single layer kept float gains more than 0.05 dB: the loss is spread). Here the same
rounding is simulated in PyTorch while the model fine-tunes ("fake quantization", gradients passed
straight through the rounding), so that the weights learn to work under it. The fine-tuned weights
are only for the INT8 file: `tools/ship_model.py RUN --name M --int8-only` quantizes them as
`quantize` always does (its own calibration) and ships `M.int8.onnx` alone; the float model stays.
The target is the float model's own output (train.quantization_aware). Measured on `tiny` (README,
"INT8"): the rounding's error against fp32 fell, the validation images moved 0.03-0.04 dB at most;
not shipped.

What is simulated, as quantize.py's ONNX Runtime graph has it: the weights of every convolution but
the head's and the tail's (`quantized_convs`; a model's pixel-unshuffle is no convolution here), and
the outputs of the head, of every ReLU after them, of each upsampling convolution and of each skip
addition (the decoder levels' inputs) (`activation_points`). Activation ranges are calibrated once,
on the weights the fine-tune starts from (`--init`) and the crops `quantize` calibrates on
(quantize.calibration_batches), as ONNX Runtime's percentile method sets them (`calibrate`).
Computed from the --init weights every time, they are the same when a run resumes.

`--qat-for tensorrt` simulates the other INT8 graph instead, the symmetric Q/DQ graph `edgedenoise
build --precision int8` gives TensorRT (`quantize --for tensorrt`): the same weights' rounding, but
activations in int8 with zero point 0 (scale = the calibrated |x| bound / 127, so a ReLU's output
keeps half the levels it has in uint8) and only where a quantized convolution reads them (an
upsampling conv's output and the last ReLU, which feeds the float tail, stay float there). Its
weights ship as `<name>.trt.int8.onnx`, which `build` takes from beside the float model, so a Jetson
builds the INT8 engine without calibration images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .quantize import CALIB_COUNT, CALIB_PERCENTILE, TARGETS, calibration_batches

WEIGHT_LEVELS = 127  # int8, symmetric: [-127, 127] x scale (ONNX Runtime's per-channel weights)
ACT_LEVELS = 255  # uint8 activations
SYM_LEVELS = 127  # int8 symmetric activations (TensorRT's Q/DQ graph): [-127, 127] x (bound / 127)
HIST_BINS = 2048  # ONNX Runtime's percentile calibration: bins of its histogram of |x|


def quantized_convs(model: nn.Module) -> list[nn.Conv2d]:
    """The convolutions ONNX Runtime runs in INT8: all between the head and the tail (encoder,
    downsampling, upsampling, decoder); the head, tail and a gate branch stay float."""
    return [m for part in (model.enc, model.down, model.up, model.dec) for m in part.modules()
            if isinstance(m, nn.Conv2d)]


def activation_points(model: nn.Module, target: str = "onnxruntime") -> list[tuple[str, nn.Module, str]]:
    """(name, module, "output" or "input") for every activation the INT8 graph of `target` quantizes.
    onnxruntime: the head's ReLU, every ReLU between head and tail, each upsampling convolution's
    output, and each decoder level's input (the skip addition; the upsampled map where a model has no
    skips). tensorrt: those of them a quantized convolution reads (`_conv_inputs`). In both graphs the
    rounded tensor is what every reader gets, a skip connection included."""
    if target not in TARGETS:
        raise ValueError(f"unknown INT8 target {target!r}: {' or '.join(TARGETS)}")
    points = [("head", model.head[1], "output")]
    for prefix, part in (("down", model.down), ("enc", model.enc), ("dec", model.dec)):
        for name, m in part.named_modules():
            if isinstance(m, nn.ReLU):
                points.append((f"{prefix}.{name}", m, "output"))
    points += [(f"up.{i}.conv", up.conv, "output") for i, up in enumerate(model.up)]
    points += [(f"dec.{i}:in", dec, "input") for i, dec in enumerate(model.dec)]
    if target == "tensorrt":
        read = _conv_inputs(model, points)
        points = [p for p in points if p[0] in read]
    return points


@torch.no_grad()
def _conv_inputs(model: nn.Module, points: list[tuple[str, nn.Module, str]]) -> set[str]:
    """The names of `points` whose tensor a quantized convolution reads (where TensorRT's Q/DQ graph
    quantizes, quantize.py): found by one pass over a small blank frame, matching tensors by storage.
    An upsampling conv's output (read by a pixel shuffle) and the last ReLU (read by the float tail)
    are not among them."""
    seen: dict[str, torch.Tensor] = {}  # the tensors themselves: kept alive, no storage is reused in the pass
    hooks = [_on(m, where, lambda t, name=name: seen.__setitem__(name, t)) for name, m, where in points]
    read: list[torch.Tensor] = []
    hooks += [c.register_forward_pre_hook(lambda _m, args: read.append(args[0])) for c in quantized_convs(model)]
    was = model.training
    model.eval()
    p = next(model.parameters())
    m = model.size_multiple
    try:
        model(torch.zeros(1, model.config.channels, m, m, device=p.device, dtype=p.dtype),
              torch.full((1,), 0.1, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    ptrs = {t.data_ptr() for t in read}
    return {name for name, t in seen.items() if t.data_ptr() in ptrs}


def _on(module: nn.Module, where: str, fn):
    """A hook calling fn(tensor) on `module`'s output ("output") or first input ("input"); what fn
    returns replaces that tensor (None: it stays)."""
    if where == "output":
        return module.register_forward_hook(lambda _m, _i, out: fn(out))

    def pre(_m, args):
        new = fn(args[0])
        return None if new is None else (new, *args[1:])
    return module.register_forward_pre_hook(pre)


def fake_quant(x: torch.Tensor, lo: float, hi: float, levels: int = ACT_LEVELS) -> torch.Tensor:
    """x rounded onto `levels` + 1 steps over [lo, hi] (lo <= 0 <= hi, zero exact, as a uint8 zero
    point gives), values outside clipped; the gradient passes straight through inside the range
    and is zero outside (where the rounding clips)."""
    scale = (hi - lo) / levels
    if scale <= 0:
        return x
    zero = round(-lo / scale)
    clipped = x.clamp((0 - zero) * scale, (levels - zero) * scale)
    q = (torch.round(clipped / scale) + zero).clamp(0, levels)
    return clipped + ((q - zero) * scale - clipped).detach()


def fake_quant_symmetric(x: torch.Tensor, bound: float) -> torch.Tensor:
    """x rounded as int8 with zero point 0 and scale bound / SYM_LEVELS (ONNX Runtime's symmetric
    activations: levels -127..127 over [-bound, bound]; QuantizeLinear saturates at -128), values
    outside clipped; the gradient passes straight through inside and is zero outside."""
    if bound <= 0:
        return x
    scale = bound / SYM_LEVELS
    clipped = x.clamp(-128 * scale, SYM_LEVELS * scale)
    return clipped + (torch.round(clipped / scale) * scale - clipped).detach()


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """A conv weight rounded as int8 per output channel, symmetric (scale = max |w| / 127)."""
    scale = w.detach().abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-12) / WEIGHT_LEVELS
    return w + (torch.round(w / scale) * scale - w).detach()


class _Histogram:
    """The histogram of |x| ONNX Runtime's percentile calibration keeps for a tensor, batch by batch:
    HIST_BINS bins over the first batch's range, more bins of the same width as larger values come."""

    def __init__(self):
        self.hist = self.edges = None
        self.lo, self.hi = np.inf, -np.inf

    def add(self, x: np.ndarray) -> None:
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        a = np.abs(x)
        if self.hist is None:
            self.hist, edges = np.histogram(a, bins=HIST_BINS)
            self.edges = edges.astype(np.float32)
            return
        edges, top = self.edges, float(a.max())
        if top > edges[-1]:
            width = edges[1] - edges[0]
            edges = np.hstack((edges, np.arange(edges[-1] + width, top + width, width)))
        hist, edges = np.histogram(a, bins=edges)
        hist[:len(self.hist)] += self.hist
        self.hist, self.edges = hist, edges.astype(np.float32)

    def range(self, percentile: float) -> tuple[float, float]:
        """[max(-t, min), min(t, max)] with t the bin edge where the share `percentile` of |x| is
        reached, widened to hold 0 (a uint8 zero point)."""
        cdf = np.cumsum(self.hist / self.hist.sum())
        t = float(self.edges[min(int(np.searchsorted(cdf, percentile / 100.0)), len(self.edges) - 1)])
        return min(max(-t, self.lo), 0.0), max(min(t, self.hi), 0.0)


@torch.no_grad()
def calibrate(model: nn.Module, data: str | Path, count: int = CALIB_COUNT, seed: int = 0,
              target: str = "onnxruntime") -> dict[str, tuple]:
    """{point name: (lo, hi)} over the calibration crops of `data`, each crop a batch, as ONNX
    Runtime's percentile calibration sets them (`quantize`: CALIB_PERCENTILE of |x|, the tensor's own
    minimum and maximum where they are nearer zero; on `tiny` it gave the ranges of the shipped INT8
    file to within 1e-6). tensorrt: the points of that graph, each range made symmetric (-b, b), b
    the larger of |lo| and |hi|, as ONNX Runtime's symmetric scale takes it."""
    points = activation_points(model, target)
    seen = {name: _Histogram() for name, _, _ in points}
    hooks = [_on(m, where, lambda t, name=name: seen[name].add(t.detach().float().cpu().numpy().ravel()))
             for name, m, where in points]
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for feed in calibration_batches(data, count, seed=seed):
            model(torch.from_numpy(feed["noisy"]).to(device), torch.from_numpy(feed["sigma"]).to(device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    ranges = {name: h.range(CALIB_PERCENTILE) for name, h in seen.items()}
    if target == "tensorrt":
        ranges = {name: (-max(-lo, hi), max(-lo, hi)) for name, (lo, hi) in ranges.items()}
    return ranges


class FakeQuant:
    """The INT8 rounding of `target`'s graph attached to a model (weights and activations, `ranges`
    from `calibrate` for the same target); `remove()` takes it off. The model's parameters and state
    dict are untouched: what is saved is plain float weights."""

    def __init__(self, model: nn.Module, ranges: dict[str, tuple], target: str = "onnxruntime"):
        self.model, self.ranges, self.target = model, dict(ranges), target
        self._hooks, self._convs = [], []
        for name, m, where in activation_points(model, target):
            lo, hi = self.ranges[name]
            if target == "tensorrt":
                fn = (lambda t, b=hi: fake_quant_symmetric(t, b))
            else:
                fn = (lambda t, lo=lo, hi=hi: fake_quant(t, lo, hi))
            self._hooks.append(_on(m, where, fn))
        for conv in quantized_convs(model):
            conv.forward = (lambda x, c=conv: c._conv_forward(x, fake_quant_weight(c.weight), c.bias))
            self._convs.append(conv)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        for conv in self._convs:
            del conv.forward  # the class's forward again
        self._hooks, self._convs = [], []


def attach(model: nn.Module, start: nn.Module, data: str | Path, target: str = "onnxruntime") -> FakeQuant:
    """Fake quantization of `target`'s INT8 graph on `model`, its activation ranges calibrated on
    `start` (the weights the fine-tune began from: the same ranges when a run resumes) over the
    calibration crops of `data`."""
    return FakeQuant(model, calibrate(start, data, target=target), target)
