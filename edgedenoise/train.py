"""Training: `edgedenoise train --data DIR --model small --steps N --out RUN_DIR`.

One process, or several under `torchrun` (DistributedDataParallel; gloo on CPU, nccl on
CUDA). Every batch is a pure function of (seed, step) (see data.py), so resuming from a
checkpoint and splitting a batch across ranks both reproduce the single-process run.

The run folder holds: config.json (this run's settings), model.safetensors + model.json
(the latest weights, loadable as a model), checkpoint.pt (weights, optimizer, scheduler,
step and RNG states; torch.load(weights_only=True)-safe), metrics.csv and curves.png.

With --video the model is recurrent (model.make_recurrent of --init, if given) and trains on
synthetic clips (videodata.py) of --frames frames, back-propagating through its own outputs
(Unroll); validation adds clips made from the validation images (ClipValSet), and the run
folder video_baselines.json: the clip scores of the weights it started from, framewise, with
the recursive blend, and recurrent.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data as D
from .atomic import write_atomic
from .errors import DataError, ModelError
from .model import SIZES, ModelConfig, build_model, grow_from, make_recurrent, pad_to_multiple
from .modelfile import save_model
from .noise import for_clip, protocol_noisy, quantize, training_noise
from .trainconfig import TrainConfig, resume_changes

log = logging.getLogger("edgedenoise")


# ---------------------------------------------------------------- batches


class Batches(torch.utils.data.IterableDataset):
    """(noisy, clean, sigma) for steps start..steps-1, this rank's slice of each global batch:
    patches (N,C,P,P) with sigma (N,), or with --video clips (N,T,C,P,P) with sigma (N,T)."""

    def __init__(self, sampler, cfg: TrainConfig, start: int, lo: int, hi: int):
        self.sampler, self.cfg, self.start, self.lo, self.hi = sampler, cfg, start, lo, hi
        self.noise = training_noise(cfg.noise, sigma_range=(cfg.sigma_min, cfg.sigma_max), jpeg=cfg.jpeg,
                                    sigma_power=cfg.sigma_power, camera_sim=cfg.camera_sim,
                                    map_jitter=cfg.map_jitter, camera_level=cfg.camera_level,
                                    camera_optics=cfg.camera_optics, camera_optics_from=cfg.camera_optics_from)

    def __iter__(self):
        # With --workers N each loader process makes every N-th step (worker k: start + k, start + k + N,
        # ...); the DataLoader takes one batch from each worker in turn, so steps arrive in order and
        # every batch is the one --workers 0 makes (it is seeded by its step, not by its worker).
        info = torch.utils.data.get_worker_info()
        first, stride = (0, 1) if info is None else (info.id, info.num_workers)
        make = make_clip_batch if self.cfg.video else make_batch
        for step in range(self.start + first, self.cfg.steps, stride):
            yield make(self.sampler, self.noise, self.cfg, step, self.lo, self.hi)


def make_batch(sampler, noise, cfg: TrainConfig, step: int, lo: int, hi: int):
    """(noisy, target, sigma) of this rank's slice of step's batch. The target is the clean patch,
    or for camera-simulated patches the pipeline's own noise-free output (noise.CameraSim)."""
    clean = sampler.patches(step, lo, hi)
    noisy = np.empty_like(clean)
    sigma = np.empty(hi - lo, np.float32)
    for j, i in enumerate(range(lo, hi)):
        rng = np.random.default_rng([cfg.seed, step, i, 2])
        noisy[j], s, clean[j] = noise.sample(clean[j], rng)
        if rng.random() < cfg.camera_fraction:
            noisy[j] = quantize(noisy[j])
        sigma[j] = s / 255.0
    return torch.from_numpy(noisy), torch.from_numpy(clean), torch.from_numpy(sigma)


def make_clip_batch(sampler, noise, cfg: TrainConfig, step: int, lo: int, hi: int):
    """(noisy, target, sigma) of this rank's clips of step's batch, (N,T,C,P,P), (N,T,C,P,P), (N,T).
    Clip i's noise settings (its sigma or camera, and whether it is rounded to uint8) are drawn once
    from default_rng([seed, step, i, 2]) and shared by its frames (noise.for_clip); frame t's noise is
    new, from default_rng([seed, step, i, 2, t])."""
    clean = sampler.clips(step, lo, hi)
    n, frames = clean.shape[:2]
    motion = clip_motions(clean) if cfg.video_align else None
    noisy = np.empty_like(clean)
    sigma = np.empty((n, frames), np.float32)
    for j, i in enumerate(range(lo, hi)):
        rng = np.random.default_rng([cfg.seed, step, i, 2])
        clip_noise = for_clip(noise, rng)
        rounded = rng.random() < cfg.camera_fraction
        for t in range(frames):
            frame_rng = np.random.default_rng([cfg.seed, step, i, 2, t])
            noisy[j, t], s, clean[j, t] = clip_noise.sample(clean[j, t], frame_rng)
            if rounded:
                noisy[j, t] = quantize(noisy[j, t])
            sigma[j, t] = s / 255.0
    batch = torch.from_numpy(noisy), torch.from_numpy(clean), torch.from_numpy(sigma)
    return batch if motion is None else (*batch, torch.from_numpy(motion))


def clip_motions(clean: np.ndarray) -> np.ndarray:
    """(N,T,2,3) float32: for each clip of (N,T,C,P,P) clean frames in [0, 1], the camera motion from
    frame t-1 to frame t (dst = a @ src, pixels) as the runtime would follow it (temporal.CameraMotion,
    on the gray frames: the refined shift where it explains the change), the identity where none does
    (a still clip, a cut, moving objects on a still background) and for frame 0."""
    from .temporal import CameraMotion

    n, frames = clean.shape[:2]
    out = np.zeros((n, frames, 2, 3), np.float32)
    out[:, :, 0, 0] = out[:, :, 1, 1] = 1.0
    gray = clean.mean(axis=2) * np.float32(255.0)
    cam = CameraMotion()  # holds no state between calls but its window and grid, made once for the batch
    for j in range(n):
        for t in range(1, frames):
            a = cam.patch_motion(gray[j, t - 1], gray[j, t])
            if a is not None:
                out[j, t] = a
    return out


def align_previous(prev: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """`prev` (N,C,H,W) moved by `motion` (N,2,3, pixels, dst = a @ src): bicubic, borders replicated,
    differentiable (grid_sample), as RecurrentState moves the last output at run time; clips whose
    motion is the identity pass unchanged (exactly)."""
    n, _, h, w = prev.shape
    m = torch.zeros((n, 3, 3), dtype=torch.float64, device=prev.device)
    m[:, :2] = motion.to(torch.float64)
    m[:, 2, 2] = 1.0
    norm = torch.tensor([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]],
                        dtype=torch.float64, device=prev.device)
    # affine_grid maps each output pixel (normalised) to where it samples the input: a^-1, in normalised units
    theta = (norm @ torch.linalg.inv(m) @ torch.linalg.inv(norm))[:, :2].to(torch.float32)
    grid = F.affine_grid(theta, list(prev.shape), align_corners=False)  # float32 even under autocast
    moved = F.grid_sample(prev.float(), grid, mode="bicubic", padding_mode="border",
                          align_corners=False).to(prev.dtype)
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=motion.device)
    still = (motion == eye).flatten(1).all(1).view(n, 1, 1, 1)
    return torch.where(still, prev, moved)


class Unroll(nn.Module):
    """A recurrent model run over clips (N,T,C,H,W) frame by frame, each frame given the last output
    as `previous` (the first frame none: the model then takes the frame itself, as at run time),
    moved with the camera first when `motion` (N,T,2,3; clip_motions) is given (--video-align), as
    RecurrentState moves it at run time.
    The output passed on is clamped and rounded to uint8 levels as the runtime keeps it (the rounding
    with a straight-through gradient), and gradients flow back through it over the whole clip:
    truncated back-propagation through time, so the model learns to use its own outputs.
    Returns the outputs (N,T,C,H,W), not clamped. One module, so that DistributedDataParallel
    sees one forward per step."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, noisy: torch.Tensor, sigma: torch.Tensor, motion: torch.Tensor | None = None) -> torch.Tensor:
        outs, prev = [], None
        for t in range(noisy.shape[1]):
            x = noisy[:, t]
            if x.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            if prev is not None and motion is not None:
                prev = align_previous(prev, motion[:, t])
            out = self.model(x, sigma[:, t], prev)
            outs.append(out)
            kept = out.float().clamp(0, 1)
            prev = (kept + ((kept * 255).round() / 255 - kept).detach()).to(out.dtype)
        return torch.stack(outs, 1)


# ---------------------------------------------------------------- losses, discriminator


def reconstruction_loss(kind: str, out: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    if kind == "l2":
        return F.mse_loss(out, clean)
    if kind == "l1":
        return F.l1_loss(out, clean)
    if kind == "charbonnier":
        return torch.sqrt((out - clean) ** 2 + 1e-6).mean()
    raise ValueError(f"unknown loss {kind!r}: choose l1, l2 or charbonnier")


class PatchDiscriminator(nn.Module):
    """PatchGAN critic (Isola et al., 2017): one real/fake score per ~34x34 receptive field."""

    def __init__(self, channels: int = 3, width: int = 32):
        super().__init__()
        layers, c = [], channels
        for w in (width, width * 2, width * 4):
            layers += [nn.Conv2d(c, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c = w
        layers += [nn.Conv2d(c, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


# ---------------------------------------------------------------- helpers


def lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        floor = cfg.lr_min / cfg.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


@torch.no_grad()
def denoise_tensor(model, noisy: torch.Tensor, sigma: torch.Tensor, previous: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Full-image inference for NCHW float in [0,1]: pad to the size multiple, run, crop, clamp.
    `previous`: a recurrent model's last output (laid out as `noisy`), or None."""
    m = model.config.size_multiple
    x, h, w = pad_to_multiple(noisy, m)
    if previous is not None:
        previous = pad_to_multiple(previous, m)[0]
    return model(x, sigma, previous)[..., :h, :w].clamp(0, 1)


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))


class ValSet:
    """Whole validation images with fixed noise: BENCHMARK_PROTOCOL.md's camera protocol at
    `sigma`, and with `camera_sim` the same images through the camera simulation as well (image
    i's camera drawn from seed i, as training draws them; the model told the level training tells:
    the true RMS level, or with `camera_level` "estimate" blind mode's estimate of the whole image)."""

    def __init__(self, images: list[D.ImageInfo], channels: int, sigma: float, camera_sim: bool = False,
                 camera_level: str = "true"):
        from .estimate import estimate_sigma
        from .noise import camera_sim_validation

        t = lambda a: torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 0))).float()[None] / 255.0
        self.items, self.camera_items = [], []
        for i, info in enumerate(images):
            clean = D.read_image(info.path, channels)
            noisy = protocol_noisy(clean, sigma, i, "camera")
            self.items.append((t(noisy), t(clean), sigma / 255.0))
            if camera_sim:
                cn, ref, level = camera_sim_validation(clean, i)
                if camera_level == "estimate":
                    level = estimate_sigma(cn)
                self.camera_items.append((t(cn), t(ref), level / 255.0))
        self.sigma = sigma

    @staticmethod
    def _score(model, device, items) -> tuple[float, float]:
        ps, ls = [], []
        for noisy, clean, level in items:
            out = denoise_tensor(model, noisy.to(device), torch.tensor([level], device=device)).cpu()
            ls.append(F.mse_loss(out, clean).item())
            q = (out * 255).round() / 255
            ps.append(psnr(F.mse_loss(q, clean).item()))
        return float(np.mean(ps)), float(np.mean(ls))

    @torch.no_grad()
    def evaluate(self, model, device) -> tuple[float, float, float | None]:
        """Mean PSNR (after uint8 rounding, as the protocol scores) and mean MSE loss of the
        Gaussian set, and the camera-simulation set's mean PSNR (None without it)."""
        model.eval()
        p, loss = self._score(model, device, self.items)
        cam = self._score(model, device, self.camera_items)[0] if self.camera_items else None
        model.train()
        return p, loss, cam


class ClipValSet:
    """Validation clips for --video: from each validation image (the centre crop all of them share,
    at most 272 px square), a still, a pan, a moving-objects and a cut clip (clips.make_clip, 8 frames
    of up to 224 x 224), with the camera protocol's noise at `sigma` drawn anew for every frame
    (clips.noisy_clip). A model runs over each clip as the runtime runs it (temporal.RecurrentState):
    the first frame without a previous output, then each with its last output rounded to uint8,
    and none again after a detected cut."""

    KINDS = ("still", "pan", "objects", "cut")

    def __init__(self, images: list[D.ImageInfo], channels: int, sigma: float, frames: int = 8, side: int = 224):
        from .clips import make_clip, noisy_clip

        margin = 24
        imgs = [D.read_image(info.path, channels) for info in images]
        s = min([side + 2 * margin] + [min(im.shape[:2]) for im in imgs])
        crops = []
        for im in imgs:
            y, x = (im.shape[0] - s) // 2, (im.shape[1] - s) // 2
            crop = im[y:y + s, x:x + s]
            crops.append(crop[:, :, 0] if crop.shape[2] == 1 else crop)
        self.clips = []  # (kind, noisy frames, clean frames), uint8 HxW or HxWx3
        for i, crop in enumerate(crops):
            for k, kind in enumerate(self.KINDS):
                clean = make_clip(crop, kind, frames, seed=i, margin=margin, second=crops[(i + 1) % len(crops)])
                self.clips.append((kind, noisy_clip(clean, sigma, seed=100 * i + k), clean))
        self.sigma = sigma

    @staticmethod
    def _tensor(a: np.ndarray, device) -> torch.Tensor:
        a = a.reshape(a.shape[0], a.shape[1], -1)
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 0))).float()[None].to(device) / 255.0

    @torch.no_grad()
    def evaluate(self, model, device, temporal: str = "model") -> dict[str, float]:
        """Mean PSNR (after uint8 rounding) over all frames, per kind and in all ("all").
        temporal: "model" (the last output as previous), "off" (each frame alone: a recurrent model
        is given no previous) or "blend" (each frame alone, then temporal.RecursiveBlend)."""
        from .temporal import RecurrentState, RecursiveBlend

        was_training = model.training
        model.eval()
        sig = torch.tensor([self.sigma / 255.0], device=device)
        scores: dict[str, list[float]] = {}
        for kind, noisy, clean in self.clips:
            state, blend = RecurrentState(), RecursiveBlend()
            for x, c in zip(noisy, clean):
                p = state.previous(x, self.sigma) if temporal == "model" else None  # None at a cut, as at run time
                prev = None if p is None else self._tensor(p, device)
                out = denoise_tensor(model, self._tensor(x, device), sig, prev)
                u8 = (out * 255).round()[0].permute(1, 2, 0).to(torch.uint8).cpu().numpy()
                u8 = u8[:, :, 0] if c.ndim == 2 else u8
                state.update(u8)
                if temporal == "blend":
                    u8 = blend(u8, self.sigma)
                mse = float(np.mean((u8.astype(np.float64) - c.astype(np.float64)) ** 2)) / 255.0 ** 2
                scores.setdefault(kind, []).append(psnr(mse))
        model.train(was_training)
        res = {k: float(np.mean(v)) for k, v in scores.items()}
        res["all"] = float(np.mean([p for v in scores.values() for p in v]))
        return res


def upgrade_metrics(csv_path: Path, fields: tuple[str, ...]) -> None:
    """A resumed run's metrics.csv written by an older version (fewer columns) rewritten with `fields` as
    its header, the old rows' missing columns empty, so that the rows appended now line up."""
    with open(csv_path, newline="") as f:
        old = list(csv.reader(f))
    if not old or tuple(old[0]) == tuple(fields) or not set(old[0]) <= set(fields):
        return
    rows = [dict(zip(old[0], r)) for r in old[1:]]
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        w.writerows([[r.get(k, "") for k in fields] for r in rows])
    os.replace(tmp, csv_path)


def plot_curves(csv_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(csv_path)))
    if not rows:
        return
    step = [int(r["step"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(step, [float(r["loss"]) for r in rows], lw=0.8, label="train loss (window mean)")
    a.set_yscale("log"), a.set_xlabel("step"), a.set_ylabel("loss"), a.grid(alpha=0.3), a.legend()
    b.plot(step, [float(r["train_psnr"]) for r in rows], lw=0.8, label="train PSNR (patches)")
    vs = [(int(r["step"]), float(r["val_psnr"])) for r in rows if r["val_psnr"]]
    if vs:
        b.plot(*zip(*vs), "o-", label="validation PSNR (camera protocol)")
    cs = [(int(r["step"]), float(r["val_camera_psnr"])) for r in rows if r.get("val_camera_psnr")]
    if cs:
        b.plot(*zip(*cs), "s-", label="validation PSNR (camera simulation, level told)")
    vv = [(int(r["step"]), float(r["val_video_psnr"])) for r in rows if r.get("val_video_psnr")]
    if vv:
        b.plot(*zip(*vv), "^-", label="validation PSNR (clips, recurrent)")
    b.set_xlabel("step"), b.set_ylabel("PSNR (dB)"), b.grid(alpha=0.3), b.legend()
    fig.suptitle(png_path.parent.name)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path: Path, step, model, opt, sched, disc=None, dopt=None, cfg=None) -> None:
    ck = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": _rng_state(),
        "model_config": json.dumps(model.config.to_dict()),
        "train_config": json.dumps(asdict(cfg)) if cfg else "{}",
    }
    if disc is not None:
        ck["disc"], ck["disc_optimizer"] = disc.state_dict(), dopt.state_dict()
    tmp = path.with_suffix(".tmp")
    torch.save(ck, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or not a checkpoint (pickle is refused)
        first = str(e).splitlines()[0][:200]
        raise ModelError(f"cannot load checkpoint {path}: {e.__class__.__name__}: {first}") from None


# ---------------------------------------------------------------- the loop


def init_weights(model: nn.Module, spec: str, mcfg: ModelConfig) -> None:
    """Load trained weights into a fresh model (fine-tuning). A model of the same widths with
    deeper levels grows from them (model.grow_from); other shapes are refused."""
    from .modelfile import load_model

    src = load_model(spec)
    if mcfg.recurrent and not src.config.recurrent:
        src = make_recurrent(src, mcfg.gate, mcfg.gate_in)  # the video model starts as the framewise one
        log.info("%s made recurrent: it computes what %s computes until trained", spec, spec)
    elif src.config.recurrent and not mcfg.recurrent:
        raise ModelError(f"--init {spec} is a recurrent (video) model: train it with --video")
    elif src.config.recurrent and (src.config.gate, src.config.gate_in) != (mcfg.gate, mcfg.gate_in):
        raise ModelError(f"--init {spec} has gate {src.config.gate} ({src.config.gate_in}), not --gate {mcfg.gate} "
                         f"({mcfg.gate_in}): give the same --gate and --gate-in, or start from its framewise model")
    got = src.config
    if list(got.widths) != list(mcfg.widths) or got.channels != mcfg.channels:
        raise ModelError(f"--init {spec} has widths {list(got.widths)} depths {list(got.depths)} "
                         f"channels {got.channels}, not those of model {mcfg.name}: pick the matching --model")
    if list(got.depths) != list(mcfg.depths):
        try:  # a deeper model of the same widths grows from the trained one
            grow_from(model, src)
        except ValueError as e:
            raise ModelError(f"--init {spec}: {e}") from None
        log.info("grew %s (depths %s) to depths %s: added convolutions start as the identity",
                 spec, list(got.depths), list(mcfg.depths))
        return
    model.load_state_dict(src.state_dict())


# ---------------------------------------------------------------- the run, step by step


@dataclass(frozen=True)
class RunContext:
    """Where this process stands: how many processes, its rank, its device, the run folder."""

    world: int
    rank: int
    device: torch.device
    out: Path

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs, validates and writes the run folder."""
        return self.rank == 0

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint.pt"


@dataclass
class Nets:
    """What training updates: the model, its optimizer and learning-rate schedule, and with
    --adv-weight > 0 the patch discriminator and its optimizer (else both None)."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    disc: PatchDiscriminator | None = None
    dopt: torch.optim.Optimizer | None = None
    teacher: nn.Module | None = None  # --qat: the float model the run started from, whose outputs it learns
    act_terms: list | None = None  # --act-limit: this step's penalty terms, one per activation point (hooks add them)


def setup_run(cfg: TrainConfig) -> RunContext:
    """Read torchrun's WORLD_SIZE / RANK / LOCAL_RANK, pick the device (--device, or cuda:LOCAL_RANK
    when CUDA is there, else cpu), join the process group when there are several processes (nccl on
    CUDA, gloo on CPU), set torch's thread count (--threads), check that the batch splits evenly
    over the processes, and on rank 0 make the run folder."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if cfg.device == "auto":
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    if world > 1:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.batch % world:
        raise DataError(f"batch {cfg.batch} does not split evenly over {world} processes")
    run = RunContext(world, rank, device, Path(cfg.out))
    if run.main:
        run.out.mkdir(parents=True, exist_ok=True)
    return run


def model_config(cfg: TrainConfig) -> ModelConfig:
    """The network to train: the --model size's config with --channels, and --depths in place of
    the size's depths when given; refuses an unknown size, bad depths, and a --patch that is not a
    multiple of the model's size multiple."""
    mcfg = ModelConfig.from_dict(SIZES[cfg.model].to_dict()) if cfg.model in SIZES else None
    if mcfg is None:
        raise ModelError(f"unknown model size {cfg.model!r}; choose one of {', '.join(SIZES)}")
    mcfg.channels = cfg.channels
    if cfg.depths:  # ModelConfig checks the count against the widths
        try:
            mcfg = ModelConfig.from_dict({**mcfg.to_dict(), "depths": [int(v) for v in str(cfg.depths).split(",")]})
        except ValueError as e:
            raise ModelError(f"--depths {cfg.depths!r}: give one integer per level, e.g. 2,2,4,4 ({e})") from None
    mcfg.recurrent = cfg.video
    mcfg.gate = cfg.gate if cfg.video else 0
    mcfg.gate_in = cfg.gate_in if mcfg.gate else "parts"
    if cfg.patch % mcfg.size_multiple:
        raise DataError(f"patch {cfg.patch} must be a multiple of {mcfg.size_multiple} for model {cfg.model}")
    return mcfg


def load_images(cfg: TrainConfig) -> tuple[list[D.ImageInfo], list[D.ImageInfo]]:
    """The usable images of --data (at least --patch on each side), split into (training, validation)."""
    images = D.scan_images(cfg.data, min_size=cfg.patch, channels=cfg.channels)
    return D.split(images, cfg.val_count)


def build_nets(cfg: TrainConfig, mcfg: ModelConfig, run: RunContext, n_train: int, n_val: int) -> Nets:
    """Seed torch with --seed, build the model on the device (rank 0 logs it with the image counts),
    then its Adam optimizer and warmup + cosine schedule, and with --adv-weight > 0 the
    discriminator and its optimizer. In that order: it fixes the initial weights of a seeded run."""
    torch.manual_seed(cfg.seed)
    model = build_model(mcfg).to(run.device)
    if cfg.fusion_only:
        # only the fusion weights learn (fusion_parts): a parameter with none of them needs no gradient,
        # so back-propagation does not go where only such parameters are (with a gate branch: anywhere
        # but the branch and its path through earlier frames' outputs); keep_framewise masks the rest
        fusion = {id(p) for p, _ in fusion_parts(model)}
        for p in model.parameters():
            p.requires_grad_(id(p) in fusion)
    if run.main:
        log.info("model %s: %d images for training, %d for validation", cfg.model, n_train, n_val)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    nets = Nets(model, opt, sched)
    if cfg.adv_weight > 0:
        nets.disc = PatchDiscriminator(cfg.channels).to(run.device)
        nets.dopt = torch.optim.Adam(nets.disc.parameters(), lr=cfg.lr * 0.5, betas=(0.5, 0.999))
    return nets


def resume_or_init(cfg: TrainConfig, mcfg: ModelConfig, nets: Nets, run: RunContext) -> int:
    """Resume from the run folder's checkpoint.pt when there is one (weights, optimizers, schedule,
    torch RNG state; a checkpoint of another model is refused), else with --init load trained
    weights into the fresh model (fine-tuning, growing deeper depths; new optimizer and schedule).
    Rank 0 then writes config.json. Returns the step to start from."""
    start = 0
    ck_path = run.checkpoint
    if ck_path.exists():
        ck = load_checkpoint(ck_path)
        saved = json.loads(ck.get("model_config", "{}"))
        if saved.get("widths") != list(mcfg.widths) or saved.get("depths") != list(mcfg.depths):
            raise ModelError(
                f"checkpoint {ck_path} is for widths {saved.get('widths')} depths {saved.get('depths')}, "
                f"not model {cfg.model}: use another --out or the same --model"
            )
        was = ModelConfig.from_dict(saved)  # its gate and gate_in, with the defaults of files before them
        if (was.gate, was.gate_in) != (mcfg.gate, mcfg.gate_in) and mcfg.recurrent:
            raise ModelError(f"checkpoint {ck_path} has gate {was.gate} ({was.gate_in}), not --gate {mcfg.gate} "
                             f"({mcfg.gate_in}): use another --out or the same --gate and --gate-in")
        if bool(saved.get("recurrent")) != mcfg.recurrent:
            kind = "a recurrent (--video)" if saved.get("recurrent") else "a framewise"
            raise ModelError(f"checkpoint {ck_path} is of {kind} model: use another --out, or "
                             f"{'add' if saved.get('recurrent') else 'drop'} --video")
        record = run.out / "config.json"
        if record.exists():  # the same run goes on: the same settings (trainconfig.RESUME_FREE aside)
            changed = resume_changes(json.loads(record.read_text()), json.loads(json.dumps(asdict(cfg))))
            if changed:
                raise DataError(f"{run.out} was started with other settings ({'; '.join(changed)}): resume it with "
                                f"those, or start a new run (another --out; --init {run.out} fine-tunes from it)")
        nets.model.load_state_dict(ck["model"])
        nets.opt.load_state_dict(ck["optimizer"])
        nets.sched.load_state_dict(ck["scheduler"])
        if nets.disc is not None and "disc" in ck:
            nets.disc.load_state_dict(ck["disc"])
            nets.dopt.load_state_dict(ck["disc_optimizer"])
        _set_rng_state(ck["rng"])
        start = int(ck["step"])
        if run.main:
            log.info("resuming %s at step %d", run.out, start)
    elif cfg.init:
        init_weights(nets.model, cfg.init, mcfg)
        if run.main:
            log.info("starting from the weights of %s (fine-tuning: new optimizer and schedule)", cfg.init)
    if run.main:
        (run.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return start


def init_copy(cfg: TrainConfig, mcfg: ModelConfig, run: RunContext) -> nn.Module:
    """A model holding the --init weights, apart from the one training updates: what --qat and
    --act-limit calibrate their INT8 ranges on (the same ranges when a run resumes)."""
    start = build_model(mcfg).to(run.device)
    init_weights(start, cfg.init, mcfg)
    return start


def quantization_aware(cfg: TrainConfig, mcfg: ModelConfig, nets: Nets, run: RunContext) -> None:
    """--qat: INT8's rounding simulated in the model from here on (qat.py), its activation ranges
    calibrated on the --init weights (a resumed run gets the same ranges) over --data's crops, as
    `edgedenoise quantize` calibrates. The loss is taken against the --init model's own float output
    (the teacher), not the clean patch: the rounding's error is a few % of the denoising error, and
    against the clean patch its gradient drowned in the denoising error's (`tiny`, 2000 steps at
    2e-5: the simulated INT8 on the validation images moved -0.03 to +0.00 dB at Gaussian 25, -0.04 to
    +0.03 on camera noise). Validation scores the simulated INT8 model against the clean images."""
    from .qat import attach

    start = init_copy(cfg, mcfg, run)
    attach(nets.model, start, cfg.data, cfg.qat_for)
    nets.teacher = start.eval().requires_grad_(False)
    if run.device.type == "cpu":
        nets.teacher.to(memory_format=torch.channels_last)
    if cfg.qat_for == "tensorrt":
        what = ("weights for the TensorRT Q/DQ file (.trt.int8.onnx): int8 weights per channel and symmetric int8 "
                "activations at the quantized convolutions' inputs simulated while fine-tuning (edgedenoise.qat)")
    else:
        what = ("weights for the INT8 file: int8 weights per channel and uint8 activations simulated while "
                "fine-tuning (edgedenoise.qat)")
    cfg.extra.setdefault("qat", what)
    if run.main:
        log.info("quantization-aware: %s's INT8 rounding (%s graph) simulated, validation scores it", cfg.init,
                 cfg.qat_for)


def activation_limits(cfg: TrainConfig, mcfg: ModelConfig, nets: Nets, run: RunContext) -> None:
    """--act-limit W: W x the sum over the INT8 graph's activation points (qat.activation_points) of
    mean(relu(|x| - b)^2) / b^2 is added to the loss, b the bound of the point's INT8 range as `quantize`
    calibrates it on the --init weights (noise levels 5-60; the same ranges when a run resumes). The
    float model learns to keep its activations inside the ranges its INT8 file will have, where
    `default`'s decoder answered told levels under about 3 with activations 3-10x their size: the
    INT8's floor at low noise is mostly that clipping (docs/int8-notes.md; a first test, Gaussian noise
    only, kept the float Gaussian 2 figure and lifted the simulated INT8 there 1.8 dB at weight 0.033)."""
    from .qat import _on, activation_points, calibrate

    ranges = calibrate(init_copy(cfg, mcfg, run), cfg.data)
    nets.act_terms = []

    def term(t: torch.Tensor, b: float) -> None:
        if torch.is_grad_enabled():  # training steps only: validation adds nothing
            nets.act_terms.append(torch.mean(torch.relu(t.float().abs() - b) ** 2) / (b * b))

    for name, module, where in activation_points(nets.model):
        b = max(-ranges[name][0], ranges[name][1])
        if b > 0:
            _on(module, where, lambda t, b=b: term(t, b))
    cfg.extra.setdefault("act_limit", f"weight {cfg.act_limit:g} on activations beyond {cfg.init}'s INT8 ranges")
    if run.main:
        log.info("activation limits: %g x the excess over %s's INT8 ranges added to the loss", cfg.act_limit,
                 cfg.init)


def wrap_for_devices(nets: Nets, run: RunContext, video: bool = False) -> tuple[nn.Module, nn.Module | None]:
    """Channels-last weights on CPU; with --video the model unrolled over clips (Unroll); under
    several processes, DistributedDataParallel wrappers of the model and discriminator. Returns
    (model, discriminator) to call in the training step (the bare modules when there is one process)."""
    if run.device.type == "cpu":
        nets.model.to(memory_format=torch.channels_last)
    ddp_model, ddp_disc = (Unroll(nets.model) if video else nets.model), nets.disc
    if run.distributed:
        ids = [run.device.index] if run.device.type == "cuda" else None
        ddp_model = nn.parallel.DistributedDataParallel(ddp_model, device_ids=ids)
        if nets.disc is not None:
            ddp_disc = nn.parallel.DistributedDataParallel(nets.disc, device_ids=ids)
    return ddp_model, ddp_disc


def mixed_precision(cfg: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """--amp resolved for the device (auto: bf16 where CUDA supports it, else fp16; off on CPU):
    the autocast dtype (None = full precision) and the gradient scaler (active for fp16 only)."""
    amp = cfg.amp
    if amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "off"
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    return amp_dtype, torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def make_loader(cfg: TrainConfig, run: RunContext, train_imgs: list[D.ImageInfo], start: int):
    """Batches for steps start..steps-1, this rank's slice of each (--workers loader processes)."""
    per_rank = cfg.batch // run.world
    if cfg.video:
        from .videodata import ClipSampler

        sampler = ClipSampler(train_imgs, cfg.patch, cfg.frames, cfg.channels, cfg.seed)
    else:
        sampler = D.PatchSampler(train_imgs, cfg.patch, cfg.channels, cfg.seed)
    ds = Batches(sampler, cfg, start, run.rank * per_rank, (run.rank + 1) * per_rank)
    return torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=cfg.workers, persistent_workers=False,
        prefetch_factor=4 if cfg.workers else None,
    )


def fusion_parts(model) -> list[tuple[torch.Tensor, tuple]]:
    """A recurrent model's fusion weights as (parameter, index): the head's columns for the previous
    output's two inputs and the tail's rows for the gate (model.make_recurrent adds them, at zero),
    or with a gate branch (ModelConfig.gate) all of its weights."""
    if model.config.gate:
        return [(p, (slice(None),)) for p in model.gate.parameters()]
    k = model.config.channels * model.config.unshuffle ** 2
    head, tail = model.head[0].weight, model.tail
    parts = [(head, (slice(None), slice(head.shape[1] - 2 * k, None))), (tail.weight, (slice(k, None),))]
    if tail.bias is not None:
        parts.append((tail.bias, (slice(k, None),)))
    return parts


class Trainer:
    """The training loop of one process: train_step() on each batch, the running means for the
    progress bar and metrics.csv, and at the validation / checkpoint steps (rank 0) validation,
    a metrics row, checkpoint.pt + model.safetensors, and curves.png."""

    # data_wait: the share of the wall time since the last row that the loop waited for its next batch (the
    # loader: with --workers 0 all of making it, else what the workers did not have ready); near 0 the model's
    # steps set the pace, above a few percent the data does (more --workers, or cheaper noise)
    FIELDS = ("step", "loss", "train_psnr", "lr", "val_psnr", "val_loss", "d_loss", "steps_per_s", "elapsed_s",
              "data_wait", "val_camera_psnr", "val_video_psnr")

    def __init__(self, cfg: TrainConfig, run: RunContext, nets: Nets, start: int,
                 train_imgs: list[D.ImageInfo], val_imgs: list[D.ImageInfo]):
        self.cfg, self.run, self.nets, self.start = cfg, run, nets, start
        self.ddp_model, self.ddp_disc = wrap_for_devices(nets, run, cfg.video)
        self.amp_dtype, self.scaler = mixed_precision(cfg, run.device)
        self.loader = make_loader(cfg, run, train_imgs, start)
        with_cam = cfg.camera_sim > 0 or cfg.noise == "camera-sim"
        self.valset = (ValSet(val_imgs, cfg.channels, cfg.val_sigma, camera_sim=with_cam,
                              camera_level=cfg.camera_level)
                       if (run.main and val_imgs) else None)
        self.clipset = (ClipValSet(val_imgs, cfg.channels, cfg.val_sigma)
                        if (run.main and val_imgs and cfg.video) else None)
        if self.clipset is not None:
            self.video_baselines()
        self.csv_path = run.out / "metrics.csv"
        if run.main and (start == 0 or not self.csv_path.exists()):  # a resumed run appends
            with open(self.csv_path, "w", newline="") as f:
                csv.writer(f).writerow(self.FIELDS)
        elif run.main:
            upgrade_metrics(self.csv_path, self.FIELDS)
        self.window, self.wmse, self.dl = [], [], []  # since the last metrics row: loss, MSE, d_loss
        self.last_val = self.last_video = None
        self.bar = None
        self.t0 = 0.0
        self.waited = 0.0  # seconds waited for batches since the last metrics row (data_wait)
        self.t_row = 0.0  # when the last metrics row was written (time.time())
        self.recent: deque[tuple[float, float]] = deque(maxlen=50)  # the bar's last steps: (seconds, waited)

    def video_baselines(self) -> None:
        """With --video, what the recurrent model is to beat on the validation clips, measured once
        with the weights the run starts from (at step 0 the framewise model it was made from):
        each frame alone, and each frame alone then the recursive blend. Kept in the run folder as
        video_baselines.json (a resumed run reads it) and logged."""
        path = self.run.out / "video_baselines.json"
        if path.exists():
            base = json.loads(path.read_text())
        else:
            base = {"step": self.start, "sigma": self.cfg.val_sigma}
            for mode in ("off", "blend", "model"):
                base[mode] = self.clipset.evaluate(self.nets.model, self.run.device, temporal=mode)
            write_atomic(path, (json.dumps(base, indent=2) + "\n").encode(), what="video baselines")
        log.info("validation clips at step %d, sigma %g: framewise %.2f dB, framewise + blend %.2f dB, "
                 "recurrent %.2f dB", base["step"], base["sigma"], base["off"]["all"], base["blend"]["all"],
                 base["model"]["all"])

    def run_loop(self, progress: bool = True) -> int:
        """Train from the start step to --steps (or --stop-at); returns the step reached."""
        cfg, run = self.cfg, self.run
        if run.main and progress:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.steps, initial=self.start, unit="step", dynamic_ncols=True,
                            desc=f"train {cfg.model}")
        self.t0 = self.t_row = time.time()
        step = self.start
        self.nets.model.train()
        batches = iter(self.loader)
        while True:
            t = time.perf_counter()
            batch = next(batches, None)  # noisy, clean, sigma (and with --video-align each clip's motion)
            if batch is None:
                break
            waited = time.perf_counter() - t
            self.waited += waited
            loss, mse, d_loss = self.train_step(*batch)  # (floats: the step has finished on the device)
            self.recent.append((time.perf_counter() - t, waited))
            step += 1
            self.record(step, loss, mse, d_loss)
            stopping = step == cfg.stop_at
            self.validate_and_checkpoint(step, stopping)
            if stopping:
                break
        if self.bar is not None:
            self.bar.close()
        return step

    def train_step(self, noisy: torch.Tensor, clean: torch.Tensor, sigma: torch.Tensor,
                   motion: torch.Tensor | None = None):
        """One optimizer step on a batch: forward (autocast per --amp), reconstruction loss (plus
        --adv-weight times the hinge generator loss), backward, gradient clipping, the optimizer
        and schedule steps, then the discriminator's step. Returns (loss, MSE of the clamped
        output, discriminator loss or None) as floats."""
        cfg, device, nets = self.cfg, self.run.device, self.nets
        noisy = noisy.to(device, non_blocking=True)
        clean = clean.to(device, non_blocking=True)
        sigma = sigma.to(device, non_blocking=True)
        if device.type == "cpu" and noisy.dim() == 4:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        if nets.act_terms is not None:
            nets.act_terms.clear()
        with torch.autocast(device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out_img = self.ddp_model(noisy, sigma) if motion is None else \
                self.ddp_model(noisy, sigma, motion.to(device, non_blocking=True))
            if nets.teacher is not None:  # --qat: the float model's output is the target
                with torch.no_grad():
                    clean = nets.teacher(noisy, sigma).float()
        out_img = out_img.float()
        if out_img.dim() == 5:  # --video: every frame of every clip counts alike
            out_img, clean = out_img.flatten(0, 1), clean.flatten(0, 1)
        loss = reconstruction_loss(cfg.loss, out_img, clean)
        if nets.disc is not None:
            # generator step: fool the critic (hinge loss), on top of the reconstruction loss
            g_adv = -nets.disc(out_img).mean()
            total = loss + cfg.adv_weight * g_adv
        else:
            total = loss
        if nets.act_terms:  # --act-limit
            total = total + cfg.act_limit * torch.stack(nets.act_terms).sum()
        nets.opt.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if cfg.fusion_only:
            self.keep_framewise()
        if cfg.grad_clip:
            self.scaler.unscale_(nets.opt)
            torch.nn.utils.clip_grad_norm_(nets.model.parameters(), cfg.grad_clip)
        fusion = self.fusion_weights()
        before = [w.detach().clone() for w in fusion]
        self.scaler.step(nets.opt)
        self.scaler.update()
        with torch.no_grad():  # the fusion weights take --fusion-lr times the step Adam gave them
            for w, b in zip(fusion, before):
                w.add_((w - b) * (cfg.fusion_lr - 1.0))
        nets.sched.step()
        d_value = None
        if nets.disc is not None:
            d_loss = F.relu(1 - self.ddp_disc(clean)).mean() + F.relu(1 + self.ddp_disc(out_img.detach())).mean()
            nets.dopt.zero_grad(set_to_none=True)
            d_loss.backward()
            nets.dopt.step()
            d_value = d_loss.item()
        return loss.item(), F.mse_loss(out_img.detach().clamp(0, 1), clean).item(), d_value

    def keep_framewise(self) -> None:
        """--fusion-only: gradients only for a recurrent model's fusion weights (`fusion_parts`); every
        other weight gets none, so Adam leaves it exactly as --init gave it, and a scene's first frame
        (whose fusion inputs are 0) stays exactly the framewise model's output."""
        parts = {id(p): idx for p, idx in fusion_parts(self.nets.model)}
        for p in self.nets.model.parameters():
            if p.grad is None:
                continue
            if id(p) not in parts:
                p.grad = None
                continue
            keep = p.grad[parts[id(p)]].clone()
            p.grad.zero_()
            p.grad[parts[id(p)]] = keep

    def fusion_weights(self) -> list[torch.Tensor]:
        """A recurrent model's fusion weights (views of `fusion_parts`), when --fusion-lr asks for a
        larger step there; else none. They start at zero (the framewise model, model.make_recurrent)
        and have the most to learn, while the framewise weights must move little: Adam's step does not
        grow with the gradient, so a larger step for them is the way to learn the fusion fast without
        unlearning the denoiser."""
        model = self.nets.model
        if not (self.cfg.video and self.cfg.fusion_lr != 1.0 and model.config.recurrent):
            return []
        return [p[idx] for p, idx in fusion_parts(model)]

    def record(self, step: int, loss: float, mse: float, d_loss: float | None) -> None:
        """Add a step's losses to the running window; advance the progress bar (its loss, PSNR
        and last validation PSNR every 10 steps)."""
        if d_loss is not None:
            self.dl.append(d_loss)
        self.window.append(loss)
        self.wmse.append(mse)
        if self.bar is not None:
            self.bar.update(1)
            if step % 10 == 0:
                self.bar.set_postfix(loss=f"{np.mean(self.window[-50:]):.2e}",
                                     psnr=f"{psnr(np.mean(self.wmse[-50:])):.2f}",
                                     val="-" if self.last_val is None else f"{self.last_val:.2f}",
                                     data=f"{self.data_share(self.recent):.0%}")

    @staticmethod
    def data_share(recent) -> float:
        """The share of the recent steps' time spent waiting for their batches."""
        total = sum(t for t, _ in recent)
        return sum(w for _, w in recent) / total if total > 0 else 0.0

    def validate_and_checkpoint(self, step: int, stopping: bool) -> None:
        """At every --val-every / --ckpt-every step, the last step and a --stop-at stop, rank 0
        validates (at validation steps), appends a metrics row (and starts a new window),
        writes checkpoint.pt and the model (at checkpoint steps) and redraws curves.png."""
        cfg, run, nets = self.cfg, self.run, self.nets
        do_val = step % cfg.val_every == 0 or step == cfg.steps
        do_ck = step % cfg.ckpt_every == 0 or step == cfg.steps or stopping
        if not (run.main and (do_val or do_ck)):
            return
        val_psnr = val_loss = val_cam = val_video = ""
        if do_val and self.valset is not None:
            self.last_val, vl, cam = self.valset.evaluate(nets.model, run.device)
            val_psnr, val_loss = f"{self.last_val:.4f}", f"{vl:.6g}"
            val_cam = "" if cam is None else f"{cam:.4f}"
        if do_val and self.clipset is not None:
            clips = self.clipset.evaluate(nets.model, run.device)
            self.last_video = clips["all"]
            val_video = f"{clips['all']:.4f}"
            log.info("step %d: validation clips %s", step, ", ".join(f"{k} {v:.2f}" for k, v in clips.items()))
        now = time.time()
        el = now - self.t0
        wait = self.waited / max(now - self.t_row, 1e-9)
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f).writerow([
                step, f"{np.mean(self.window):.6g}", f"{psnr(np.mean(self.wmse)):.4f}",
                f"{nets.sched.get_last_lr()[0]:.3g}", val_psnr, val_loss,
                f"{np.mean(self.dl):.4g}" if self.dl else "", f"{(step - self.start) / el:.3f}", f"{el:.1f}",
                f"{min(wait, 1.0):.3f}", val_cam, val_video,
            ])
        self.window, self.wmse, self.dl = [], [], []
        # a row's validation counts in its own time, the saving below in the next row's
        self.waited, self.t_row = 0.0, time.time()
        if do_ck:
            save_checkpoint(run.checkpoint, step, nets.model, nets.opt, nets.sched, nets.disc, nets.dopt, cfg)
            save_model(nets.model, run.out / "model", extra={"trained_on": str(cfg.data), "steps": step, **cfg.extra})
            if cfg.keep_every and step % cfg.keep_every == 0:  # the run folder holds only the latest otherwise
                keep = run.out / "keep" / f"step_{step}"
                keep.mkdir(parents=True, exist_ok=True)
                save_model(nets.model, keep / "model", extra={"trained_on": str(cfg.data), "steps": step, **cfg.extra})
        try:
            plot_curves(self.csv_path, run.out / "curves.png")
        except Exception as e:  # a plot must never stop a training run
            log.warning("could not draw curves.png: %s", e)


def leave_process_group(run: RunContext) -> None:
    """Under several processes: wait for every rank, then leave the process group."""
    if run.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train (or resume) a run. Returns a summary dict (final step, val PSNR, run folder)."""
    cfg.check()
    run = setup_run(cfg)
    mcfg = model_config(cfg)
    train_imgs, val_imgs = load_images(cfg)
    nets = build_nets(cfg, mcfg, run, len(train_imgs), len(val_imgs))
    start = resume_or_init(cfg, mcfg, nets, run)
    if cfg.qat:
        quantization_aware(cfg, mcfg, nets, run)
    if cfg.act_limit:
        activation_limits(cfg, mcfg, nets, run)
    trainer = Trainer(cfg, run, nets, start, train_imgs, val_imgs)
    step = trainer.run_loop(progress)
    leave_process_group(run)
    return {"run": str(run.out), "step": step, "val_psnr": trainer.last_val, "val_video_psnr": trainer.last_video}
