"""The `triton` backend: the whole network in the fused Triton kernels, frame in, frame out.

    uint8 BGR frame --ingest (unshuffle + map + head conv + ReLU)--> encoder/decoder convs
    (fused conv + bias + ReLU, NHWC) --egest (tail conv + shuffle + residual + clamp)--> uint8 BGR

A recurrent model with a gate branch (tiny-video, default-video: ModelConfig.gate, gate_in "sums")
runs the same network and ends in the gate instead of egest: the stream's last output, uint8 BGR as
the frame, goes in beside it (egest_gate: the tail and the branch's input; the branch's two convs;
fuse_egest: its gate logits and the fusion, uint8 out), so the state is never a float copy.

Weights are packed once at load time. Runs on a CUDA GPU; on a CPU only under
TRITON_INTERPRET=1 (for correctness tests: slow). Imported only when asked for.

CUDA graphs: the network is about 20 kernel launches per frame, and at small frames the
launch cost is a large share of the frame's time. On CUDA the first frame of each shape
is captured into a CUDA graph (static input and output buffers, the last few shapes kept),
and later frames of that shape replay it: one launch. The first replay of each shape is
checked against the eager run of the same frame; any failure to capture, or any
difference, logs one warning and leaves the backend eager (`graphs=False` asks for eager).
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict

import numpy as np

from ..errors import ModelError
from ..modelfile import ModelFiles
from .base import Backend, fused_gate, unfused_gate

log = logging.getLogger("edgedenoise")
MAX_GRAPHS = 4  # frame shapes whose CUDA graphs are kept (a stream has one; a resize makes two)


class TritonBackend(Backend):
    """The whole network in the fused Triton kernels on a CUDA GPU: uint8 BGR frames in and out."""

    name = "triton"
    frame_native = True
    on_gpu = True  # (under TRITON_INTERPRET=1 its kernels run on the CPU: a check, not a deployment)

    def __init__(self, files: ModelFiles, device: str | None = None, dtype: str = "fp32", graphs: bool = True):
        import torch

        from ..model import SIGMA_MAP_SCALE
        from ..modelfile import load_model

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ModelError("the triton backend needs a CUDA GPU (or TRITON_INTERPRET=1 for a slow CPU check)")
        try:
            import triton  # noqa: F401
        except ImportError:
            raise ModelError("the triton backend needs triton: pip install -e .[kernels]") from None
        if files.channels != 3:
            raise ModelError("the triton backend handles colour (3-channel) models only")
        self.torch = torch
        self.device = torch.device(device)
        if dtype not in ("fp32", "fp16"):
            raise ModelError(f"the triton backend computes in fp32 or fp16, not {dtype}")
        self.precision = dtype
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16}[dtype]
        net = load_model(files.weights or files.onnx).eval()
        if net.config.variant:
            raise ModelError(f"the triton backend runs the standard network, not {files.name} ({net.config.variant}): "
                             "use --backend torch or onnxruntime")
        cfg = net.config
        if cfg.recurrent and not fused_gate(cfg.to_dict()):
            raise ModelError(unfused_gate(files.name))
        self.cfg = net.config
        self.recurrent = cfg.recurrent
        self.map_scale = SIGMA_MAP_SCALE
        self.multiple = net.config.size_multiple

        def conv(m, act):
            return {"w": m.weight.detach().to(self.device), "b": m.bias.detach().float().to(self.device),
                    "k": tuple(m.kernel_size), "s": m.stride[0], "p": m.padding[0], "act": act}

        def level(seq):
            return [conv(m, "relu") for m in seq.body if isinstance(m, torch.nn.Conv2d)]

        from edgedenoise_kernels.conv import pack_weight

        self.head = conv(net.head[0], "relu")
        self.enc = [level(e) for e in net.enc]
        self.down = [conv(d[0], "relu") for d in net.down]
        self.up = [conv(u.conv, "none") for u in net.up]
        self.dec = [level(d) for d in net.dec]
        self.tail = conv(net.tail, "none")
        self.gate = [conv(net.gate[0], "relu"), conv(net.gate[2], "relu")] if self.recurrent else []
        for c in [self.head, *sum(self.enc, []), *self.down, *self.up, *sum(self.dec, []), self.tail, *self.gate]:
            c["wp"] = pack_weight(c["w"]).to(self.dtype)  # packed once, reused every frame
        if self.recurrent:
            from edgedenoise_kernels.boundary import pack_gate_logits

            last = conv(net.gate[4], "none")
            wp, last["b"] = pack_gate_logits(last["w"], last["b"])  # the 4 logits' columns, once per colour
            last["wp"] = wp.to(self.dtype)
            self.gate.append(last)
        self.graphs = graphs and self.device.type == "cuda"
        self._graphs: OrderedDict = OrderedDict()  # (N,H,W,C) -> (graph, static frame, map, out, previous)

    def _conv(self, x, c):
        from edgedenoise_kernels.conv import conv2d_nhwc

        return conv2d_nhwc(x, c["wp"], c["b"], c["k"], c["s"], c["p"], c["act"])

    def _shuffle(self, x):
        # NHWC pixel-shuffle(2): channel k = c*4 + dy*2 + dx -> pixel (2y+dy, 2x+dx), channel c
        n, h, w, c4 = x.shape
        c = c4 // 4
        return x.view(n, h, w, c, 2, 2).permute(0, 1, 4, 2, 5, 3).reshape(n, 2 * h, 2 * w, c)

    def _forward(self, fr, smap, prev=None):
        """uint8 NHWC frames on the device + per-frame map value (+ a recurrent model's last outputs,
        uint8 NHWC) -> uint8 NHWC frames on the device."""
        from edgedenoise_kernels.boundary import egest, egest_gate, fuse_egest, ingest

        h = ingest(fr, self.head["wp"], self.head["b"], smap, self.multiple)
        for c in self.enc[0]:
            h = self._conv(h, c)
        skips = []
        for down, enc in zip(self.down, self.enc[1:]):
            skips.append(h)
            h = self._conv(h, down)
            for c in enc:
                h = self._conv(h, c)
        for up, dec in zip(self.up, self.dec):
            h = self._shuffle(self._conv(h, up)) + skips.pop()
            for c in dec:
                h = self._conv(h.contiguous(), c)
        if not self.recurrent:
            return egest(h.contiguous(), self.tail["wp"], self.tail["b"], fr)
        noise, g = egest_gate(h.contiguous(), self.tail["wp"], self.tail["b"], fr, prev, smap)
        for c in self.gate[:2]:
            g = self._conv(g, c)
        return fuse_egest(g, self.gate[2]["wp"], self.gate[2]["b"], noise, fr, prev)

    def _capture(self, fr, smap, prev):
        """Capture the forward for this frame shape; returns the graph's entry or None (eager from now on).
        `prev`: a recurrent model's last outputs (None for a framewise model)."""
        torch = self.torch
        try:
            static_fr, static_map = fr.clone(), smap.clone()
            static_prev = None if prev is None else prev.clone()
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up off the capture: Triton compiles and loads here
                self._forward(static_fr, static_map, static_prev)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_fr, static_map, static_prev)
            graph.replay()
            eager = self._forward(fr, smap, prev)
            if not torch.equal(static_out, eager):
                diff = (static_out.int() - eager.int()).abs().max().item()
                raise RuntimeError(f"the graph's output differs from the eager run by up to {diff} levels")
        except Exception as e:  # noqa: BLE001  (any failure: say so once, keep working eagerly)
            log.warning("triton backend: CUDA graphs off (%s: %s); running eagerly", type(e).__name__, e)
            self.graphs = False
            self._graphs.clear()
            return None
        entry = (graph, static_fr, static_map, static_out, static_prev)
        self._graphs[tuple(fr.shape)] = entry
        while len(self._graphs) > MAX_GRAPHS:
            self._graphs.popitem(last=False)
        return entry

    def infer_frames(self, frames: np.ndarray, sigma: float, previous: np.ndarray | None = None) -> np.ndarray:
        """(N,H,W,3) or (H,W,3) uint8 BGR -> the same, denoised. sigma on the 0-255 scale. `previous`: a
        recurrent model's last outputs, laid out as `frames` (None: a scene's first frame, whose
        previous is the frame itself)."""
        torch = self.torch
        if previous is not None and not self.recurrent:
            raise ModelError("this model is not recurrent: it takes no previous frame")
        if previous is not None and (previous.shape != frames.shape or previous.dtype != np.uint8):
            raise ModelError(f"the previous frames {previous.shape} {previous.dtype} do not match the frames "
                             f"{frames.shape} uint8")
        single = frames.ndim == 3
        fr = torch.from_numpy(np.ascontiguousarray(frames[None] if single else frames)).to(self.device)
        prev = None
        if self.recurrent:
            prev = fr if previous is None else \
                torch.from_numpy(np.ascontiguousarray(previous[None] if single else previous)).to(self.device)
        with torch.inference_mode():
            smap = torch.full((fr.shape[0],), sigma / 255.0 * self.map_scale, device=self.device)
            entry = None
            if self.graphs:
                key = tuple(fr.shape)
                entry = self._graphs.get(key)
                if entry is not None:
                    self._graphs.move_to_end(key)
                    entry[1].copy_(fr)
                    entry[2].copy_(smap)
                    if prev is not None:
                        entry[4].copy_(prev)
                    entry[0].replay()
                else:
                    entry = self._capture(fr, smap, prev)  # its output is already this frame's, checked
            out = entry[3] if entry is not None else self._forward(fr, smap, prev)
            out = out.cpu().numpy()  # a device sync point (a copy: the graph's buffer is reused)
        return out[0] if single else out
