"""The edgedenoise denoising autoencoder: a small U-Net that predicts the noise.

Shape of the network (all sizes share it, only widths and depths change):

    frame x (N,C,H,W in [0,1]) ──pixel-unshuffle(2)──► (N,4C,H/2,W/2) ┐
    sigma (N,) ─────────────── noise-level map ─────► (N,1,H/2,W/2)  ┴─concat─► head conv3x3
    encoder:  per level, `depth` x (conv3x3 + ReLU), then a strided 2x2 conv down
    decoder:  conv1x1 to 4x channels + pixel-shuffle(2) up (a transposed 2x2 conv
              written with ops every ONNX/TensorRT path handles the same way),
              additive skip, `depth` x (conv3x3 + ReLU)
    tail:     conv3x3 to 4C + pixel-shuffle(2) = predicted noise n;  output x - n

It follows the residual-learning idea of DnCNN (Zhang et al., 2017) with the
noise-level map input of FFDNet (Zhang et al., 2018), so one model serves every
sigma in 0-75, and the multi-scale encoder-decoder of DRUNet, cut down to edge
budgets. Only Conv, ReLU, DepthToSpace/SpaceToDepth, Add and Concat appear in
the exported graph.

Only torch is imported here: the runtime never imports this module.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .trainconfig import GATE_INPUTS, size_multiple

# The noise-level map carries sigma (in [0,1] units) times this factor, so that
# the map is of order one over the 0-75 (0-255 scale) range the models serve.
SIGMA_MAP_SCALE = 255.0 / 50.0


def unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """pixel-unshuffle(r): (N,C,H,W) -> (N,C*r*r,H/r,W/r). In an ONNX export it is written as a Conv
    of stride r whose weights are one-hot (the identity, reshaped): the same numbers, one op. Torch
    exports pixel_unshuffle as Reshape, a 6-D Transpose and Reshape, and ONNX Runtime's Transpose
    took 4.4 ms of `tiny`'s 45 per 640x480 frame on two cores, the Conv 0.8 (x86, 2026-12-05)."""
    if not torch.onnx.is_in_onnx_export():
        return F.pixel_unshuffle(x, r)
    import warnings

    with warnings.catch_warnings():  # the channel count and the weights are constants of the graph, as meant
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        c = int(x.shape[1])
        w = torch.from_numpy(np.eye(c * r * r, dtype=np.float32).reshape(c * r * r, c, r, r))
    return F.conv2d(x, w.to(x.dtype), stride=r)


def conv3x3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


class Level(nn.Module):
    """`depth` times conv3x3 + ReLU at one resolution."""

    def __init__(self, cin: int, width: int, depth: int, bias: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [conv3x3(cin if i == 0 else width, width, bias), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Up(nn.Module):
    """x2 upsampling: conv1x1 to 4*cout channels, then pixel-shuffle (== ConvTranspose 2x2/2)."""

    def __init__(self, cin: int, cout: int, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, 4 * cout, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


class DenoiseUNet(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c, w, d = config.channels, config.widths, config.depths
        r, b = config.unshuffle, config.bias
        # bias=False also drops the noise-level map: a constant input channel is a bias in disguise;
        # a recurrent model also takes the previous denoised frame's difference from the frame,
        # unshuffled like the frame, as its positive and negative parts (the difference and its
        # magnitude, where it moved, are each one layer away; non-negative like the other inputs, so
        # one INT8 range fits them all: a signed difference cost INT8 3 dB). Both are 0 on a scene's
        # first frame (previous = the frame), so with the framewise weights kept (train --fusion-only)
        # that frame is exactly the framewise model's. With a gate branch (config.gate > 0) the
        # framewise network takes no previous output at all: the branch alone decides, per pixel,
        # from where the previous output and the model's own estimate differ
        fused_in = config.recurrent and not config.gate
        cin = c * r * r + int(b) + (2 * c * r * r if fused_in else 0)
        self.head = nn.Sequential(conv3x3(cin, w[0], b), nn.ReLU(inplace=True))
        self.enc = nn.ModuleList([Level(w[0], w[0], max(d[0] - 1, 0), b)])
        self.down = nn.ModuleList()
        for i in range(1, len(w)):
            self.down.append(nn.Sequential(nn.Conv2d(w[i - 1], w[i], 2, stride=2, bias=b), nn.ReLU(inplace=True)))
            self.enc.append(Level(w[i], w[i], d[i], b))
        self.up = nn.ModuleList([Up(w[i], w[i - 1], b) for i in range(len(w) - 1, 0, -1)])
        self.dec = nn.ModuleList([Level(w[i - 1], w[i - 1], d[i - 1], b) for i in range(len(w) - 1, 0, -1)])
        # a recurrent model's tail also gives a fusion gate per full-resolution pixel (r * r channels,
        # pixel-shuffled like the residual): how much of the previous output to keep (forward)
        self.tail = conv3x3(w[0], c * r * r + (r * r if fused_in else 0), b)
        # Start as the identity (predicted noise 0): training then only has to learn the
        # noise, not first undo a random output, and early steps already improve on the input.
        nn.init.zeros_(self.tail.weight)
        if b:
            # a non-residual model (config.residual False) starts as mid-grey everywhere instead
            nn.init.constant_(self.tail.bias, 0.0 if config.residual else 0.5)
        if config.gate:
            # the gate branch, at half resolution: the previous output's parts above and below the
            # model's own estimate (unshuffled) and the noise-level map -> r*r gate logits per
            # half-resolution pixel, pixel-shuffled; its last layer starts at zero (gate 0: framewise)
            # (gate_in "parts": their colour channels unshuffled, 2*c*r*r inputs; "sums": summed over
            # the colours, then over each r x r block, 2 inputs: about half "parts"' time in ONNX Runtime)
            gw = config.gate
            gin = 2 * c * r * r if config.gate_in == "parts" else 2
            self.gate = nn.Sequential(conv3x3(gin + int(b), gw, b), nn.ReLU(inplace=True),
                                      conv3x3(gw, gw, b), nn.ReLU(inplace=True), nn.Conv2d(gw, r * r, 1, bias=b))
            nn.init.zeros_(self.gate[-1].weight)
            if b:
                nn.init.zeros_(self.gate[-1].bias)

    @property
    def size_multiple(self) -> int:
        return self.config.size_multiple

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N,C,H,W) float in [0,1], H and W multiples of `size_multiple`.
        sigma: noise std in [0,1] units, shape (N,), (N,1,1,1) or a per-pixel map (N,1,H,W);
        a bias-free model (config.bias False) is blind and ignores it.
        previous: a recurrent model's last denoised frame, laid out as x (None: x itself, as for
        the first frame of a scene, ARCHITECTURE.md); a framewise model takes none.
        Returns the denoised (N,C,H,W), not clamped.

        A recurrent model returns its own estimate (x - the predicted noise, as a framewise model)
        moved towards `previous` by a gate g in [0, 1] per pixel that it predicts too:
        out = own + g (previous - own). The gate starts at 0 (make_recurrent), the framewise
        model; training learns where the previous output can be trusted (a still scene) and where
        not (motion, a cut), a recursive average the network steers pixel by pixel (as the
        fusion of EMVD, Maggioni et al., CVPR 2021). Where `previous` equals x in every channel
        (the first frame of a scene, whose previous is the frame itself) the gate is 0: that frame
        is the model's own estimate, and the gate never learns to pull towards a noisy frame."""
        r, cfg = self.config.unshuffle, self.config
        h = unshuffle(x, r)
        parts = [h]
        if cfg.bias:
            n, _, hh, ww = h.shape
            sigma = sigma.to(h.dtype)
            if sigma.dim() == 4 and sigma.shape[-1] != 1:
                smap = F.avg_pool2d(sigma, r)
            else:
                smap = sigma.reshape(n, 1, 1, 1).expand(n, 1, hh, ww)
            parts.append(smap * SIGMA_MAP_SCALE)
        if cfg.recurrent and not cfg.gate:  # the previous output's parts above and below the frame: 0 on a first frame
            d = unshuffle(x if previous is None else previous.to(h.dtype), r) - h
            parts += [F.relu(d), F.relu(-d)]
        elif previous is not None and not cfg.recurrent:
            raise ValueError(f"model {cfg.name} is not recurrent: it takes no previous frame")
        h = self.head(torch.cat(parts, dim=1) if len(parts) > 1 else h)
        t = self.tail(self.body(h))
        if cfg.recurrent:
            prev = x if previous is None else previous.to(x.dtype)
            if cfg.gate:
                own = x - F.pixel_shuffle(t, r)
                e = prev - own
                if cfg.gate_in == "parts":
                    e = unshuffle(e, r)
                    g_in = [F.relu(e), F.relu(-e)]
                else:
                    s2 = torch.cat([F.relu(e).sum(1, keepdim=True), F.relu(-e).sum(1, keepdim=True)], dim=1)
                    g_in = [F.avg_pool2d(s2, r)]
                g_in += [parts[1]] if cfg.bias else []
                gate = F.pixel_shuffle(self.gate(torch.cat(g_in, dim=1)), r).clamp(0.0, 1.0)
            else:
                res, gate = torch.split(t, [cfg.channels * r * r, r * r], dim=1)
                own = x - F.pixel_shuffle(res, r)
                gate = F.pixel_shuffle(gate, r).clamp(0.0, 1.0)
            # the first frame of a scene (previous is the frame itself): no fusion, the framewise result
            known = (torch.amax((prev - x).abs(), dim=1, keepdim=True) > 0).to(gate.dtype)
            return own + gate * known * (prev - own)
        if not cfg.residual:  # the image itself from the decoder, not the noise to subtract
            return F.pixel_shuffle(t, r)
        return x - F.pixel_shuffle(t, r)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        """Encoder-decoder between the head (after its ReLU) and the tail conv, at half resolution."""
        skips = []
        h = self.enc[0](h)
        for down, enc in zip(self.down, self.enc[1:]):
            skips.append(h)
            h = enc(down(h))
        for up, dec in zip(self.up, self.dec):
            h = dec(up(h) + skips.pop()) if self.config.skips else dec(up(h))
        return h


@dataclass
class ModelConfig:
    """Architecture of one model size. Serialised as JSON beside the weights."""

    name: str = "small"
    widths: tuple[int, ...] = (24, 48, 96)
    depths: tuple[int, ...] = (2, 2, 2)
    channels: int = 3  # 3 = colour (RGB), 1 = grayscale
    unshuffle: int = 2
    extra: dict = field(default_factory=dict)  # free-form notes (training data, version, ...)
    # Opt-in variants for `edgedenoise explain` (written to JSON only when off, so the shipped
    # models' configs and state dicts are unchanged):
    # bias=False: no additive constant anywhere (no conv biases, no noise-level map input), a blind
    #   bias-free network (Mohan et al., ICLR 2020): f(a x) = a f(x) for a >= 0, so y = J(x) x exactly.
    # skips=False: the encoder-decoder without its skip connections (a pure bottleneck autoencoder).
    # residual=False: the tail gives the image itself (output = decoder(code)), not the noise that the
    #   model subtracts from its input; with skips=False the classic denoising autoencoder.
    bias: bool = True
    skips: bool = True
    residual: bool = True
    # recurrent=True: a video model that also takes the previous denoised frame (`previous`,
    #   ARCHITECTURE.md's recurrent contract); written to JSON only when on. `make_recurrent` turns
    #   a framewise model into one that computes the same until it is trained.
    recurrent: bool = False
    # gate=W (recurrent only): the fusion gate comes from a small branch of width W of its own, fed
    #   with where the previous output differs from the model's own estimate; the framewise network
    #   stays exactly the framewise model's (make_recurrent(src, gate=W)). 0: the gate from the tail.
    gate: int = 0
    # gate_in (with a gate branch): what the branch sees of previous - own at half resolution: "parts",
    #   its positive and negative parts per colour, unshuffled (2*c*r*r channels; the first
    #   tiny-video), or "sums", each part summed over the colours and averaged over r x r blocks (2).
    gate_in: str = "parts"

    def __post_init__(self):
        self.widths = tuple(int(v) for v in self.widths)
        self.depths = tuple(int(v) for v in self.depths)
        if len(self.widths) != len(self.depths) or not self.widths:
            raise ValueError("model config: widths and depths must have the same, non-zero length")
        if self.channels not in (1, 3):
            raise ValueError(f"model config: channels must be 1 or 3, not {self.channels}")
        if self.recurrent and not self.residual:
            raise ValueError("model config: a recurrent model is residual (its gate mixes the previous frame in)")
        self.gate = int(self.gate)
        if self.gate < 0 or (self.gate and not self.recurrent):
            raise ValueError(f"model config: gate {self.gate}: a gate branch's width, for a recurrent model only")
        if self.gate_in not in GATE_INPUTS:
            raise ValueError(f"model config: gate_in {self.gate_in!r}: one of {', '.join(GATE_INPUTS)}")

    @property
    def variant(self) -> str | None:
        """What an explain variant changes in the standard network (None for the standard one)."""
        off = [k for k in ("bias", "skips", "residual") if not getattr(self, k)]
        return ", ".join(f"no {k}" for k in off) or None

    @property
    def size_multiple(self) -> int:
        return size_multiple({"unshuffle": self.unshuffle, "widths": self.widths})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["depths"] = list(self.widths), list(self.depths)
        for k in ("bias", "skips", "residual"):
            if d[k]:
                del d[k]
        if not d["recurrent"]:
            del d["recurrent"]
        if not d["gate"]:
            del d["gate"], d["gate_in"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {k: d[k] for k in ("name", "widths", "depths", "channels", "unshuffle", "extra", "bias", "skips",
                                   "residual", "recurrent", "gate", "gate_in") if k in d}
        return cls(**known)


# The model family. MAC budgets per pixel: nano <= 2.5k, tiny <= 10k, small <= 30k, base <= 100k
# (tests/test_cli.py measures them by running the model). nano is the realtime ladder's last rung
# for slow CPUs: ONNX Runtime runs it in 21 ms per 640x480 frame on two x86 cores against tiny's 31
# (2026-12-05; far above its MACs' share: the layout ops and narrow convolutions cost alike). Its
# first level keeps 16 channels: at 8, fewer than the 12 unshuffled input values, it hardly learnt
# (validation 24.1 dB at sigma 25 after 10 k steps); at 16 it learns as tiny does (25.2 against
# 25.4 dB after 1.5 k steps).
SIZES: dict[str, ModelConfig] = {
    "nano": ModelConfig("nano", widths=(16, 16, 32), depths=(1, 1, 2)),
    "tiny": ModelConfig("tiny", widths=(16, 32, 64), depths=(1, 2, 2)),
    "small": ModelConfig("small", widths=(24, 48, 96, 192), depths=(2, 2, 4, 4)),
    "base": ModelConfig("base", widths=(48, 96, 192, 384), depths=(2, 2, 2, 2)),
}
MAC_BUDGETS = {"nano": 2_500, "tiny": 10_000, "small": 30_000, "base": 100_000}


def build_model(size_or_config: str | ModelConfig | dict, channels: int | None = None) -> DenoiseUNet:
    if isinstance(size_or_config, str):
        if size_or_config not in SIZES:
            raise ValueError(f"unknown model size {size_or_config!r}; choose one of {', '.join(SIZES)}")
        cfg = ModelConfig.from_dict(SIZES[size_or_config].to_dict())
    elif isinstance(size_or_config, dict):
        cfg = ModelConfig.from_dict(size_or_config)
    else:
        cfg = size_or_config
    if channels is not None:
        cfg.channels = channels
    return DenoiseUNet(cfg)


@torch.no_grad()
def make_recurrent(src: DenoiseUNet, gate: int = 0, gate_in: str = "parts") -> DenoiseUNet:
    """The recurrent variant of a framewise model: the same weights, head weights of zero for the
    added `previous` channels and tail weights of zero for the gate (0: the model's own estimate
    alone), so that it computes exactly what `src` computes until it is trained (issue "Learned
    temporal denoising": training then learns only the fusion). gate=W: the gate from a branch of
    width W instead (ModelConfig.gate, fed as gate_in says), whose last layer starts at zero; the
    rest is `src` as is."""
    if src.config.recurrent:
        raise ValueError(f"model {src.config.name} is recurrent already")
    cfg = ModelConfig.from_dict({**src.config.to_dict(), "recurrent": True, "gate": gate, "gate_in": gate_in})
    dst = DenoiseUNet(cfg)
    theirs = src.state_dict()
    for name, t in dst.state_dict().items():
        if name not in theirs:  # the gate branch: as initialised
            continue
        if t.shape == theirs[name].shape:
            t.copy_(theirs[name])
        elif name == "head.0.weight":
            t.zero_()
            t[:, :theirs[name].shape[1]] = theirs[name]
        elif name in ("tail.weight", "tail.bias"):
            t.zero_()
            t[:theirs[name].shape[0]] = theirs[name]
        else:
            raise ValueError(f"make_recurrent: {name} is {tuple(t.shape)}, not {tuple(theirs[name].shape)}")
    return dst


@torch.no_grad()
def grow_from(dst: DenoiseUNet, src: DenoiseUNet) -> None:
    """Load `src` into `dst`, the same network with more convolutions in some levels.

    The extra convolutions sit at the end of their level, after a ReLU, so their input is
    >= 0; each starts as the identity (centre tap 1 on its own channel, bias 0), and
    identity + ReLU passes such an input through unchanged: `dst` computes exactly what
    `src` computes, and fine-tuning starts from the trained network with more capacity
    (Net2DeeperNet, Chen et al., 2016)."""
    a, b = src.config, dst.config
    if (list(a.widths) != list(b.widths) or a.channels != b.channels or a.unshuffle != b.unshuffle
            or any(db < da for da, db in zip(a.depths, b.depths))):
        raise ValueError(f"cannot grow widths {list(a.widths)} depths {list(a.depths)} into widths "
                         f"{list(b.widths)} depths {list(b.depths)}: same widths, no level shallower")
    # An encoder level's input comes out of a ReLU (head or down); a decoder level's is
    # up + skip, which can be negative: one of depth 0 has no ReLU to append after.
    if any(len(d.body) > len(s.body) == 0 for s, d in zip(src.dec, dst.dec)):
        raise ValueError("cannot grow a decoder level of depth 0: its input can be negative, "
                         "so an identity conv there would not be exact")
    theirs = src.state_dict()
    with torch.no_grad():
        for name, t in dst.state_dict().items():
            if name in theirs:
                t.copy_(theirs[name])
            elif name.endswith(".weight"):  # an added conv3x3: the identity
                t.zero_()
                t[torch.arange(t.shape[0]), torch.arange(t.shape[0]), 1, 1] = 1.0
            else:
                t.zero_()


def conv_trace(model: nn.Module, height: int = 256, width: int = 256) -> list[dict]:
    """Every convolution of one forward pass on a (1, C, height, width) input, in execution
    order, found by running the model with hooks: its shape, MACs and tensor sizes."""
    rows = []

    def hook(mod: nn.Conv2d, inp, out):
        kh, kw = mod.kernel_size
        rows.append({"cin": mod.in_channels, "cout": mod.out_channels, "k": kh, "stride": mod.stride[0],
                     "pad": mod.padding[0], "h": inp[0].shape[2], "w": inp[0].shape[3],
                     "ho": out.shape[2], "wo": out.shape[3],
                     "macs": out.numel() * (mod.in_channels // mod.groups) * kh * kw,
                     "in_numel": inp[0].numel(), "out_numel": out.numel(), "weight_numel": mod.weight.numel()})

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        model(torch.zeros(1, model.config.channels, height, width), torch.zeros(1))
    finally:
        for h in handles:
            h.remove()
    return rows


def count_macs(model: nn.Module, height: int = 256, width: int = 256) -> tuple[int, float]:
    """Multiply-accumulates of one forward pass, counted by running the model with
    hooks on every convolution. Returns (total MACs, MACs per input pixel)."""
    total = sum(r["macs"] for r in conv_trace(model, height, width))
    return total, total / (height * width)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, int, int]:
    """Pad an (..., H, W) image tensor at the bottom and right to multiples of m (a model's
    size_multiple): by reflection, or by replication where the image is too small to reflect.
    Returns (padded tensor, H, W) so that the caller can crop the output back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return x, h, w
