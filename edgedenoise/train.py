"""Training: `edgedenoise train --data DIR --model small --steps N --out RUN_DIR`.

One process, or several under `torchrun` (DistributedDataParallel; gloo on CPU, nccl on
CUDA). Every batch is a pure function of (seed, step) (see data.py), so resuming from a
checkpoint and splitting a batch across ranks both reproduce the single-process run.

The run folder holds: config.json (this run's settings), model.safetensors + model.json
(the latest weights, loadable as a model), checkpoint.pt (weights, optimizer, scheduler,
step and RNG states; torch.load(weights_only=True)-safe), metrics.csv and curves.png.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data as D
from .errors import DataError, ModelError
from .model import ModelConfig, SIZES, build_model, grow_from
from .modelfile import save_model
from .noise import make_noise, protocol_noisy, quantize
from .trainconfig import TrainConfig

log = logging.getLogger("edgedenoise")


# ---------------------------------------------------------------- batches


class Batches(torch.utils.data.IterableDataset):
    """(noisy, clean, sigma) for steps start..steps-1, this rank's slice of each global batch."""

    def __init__(self, sampler: D.PatchSampler, cfg: TrainConfig, start: int, lo: int, hi: int):
        self.sampler, self.cfg, self.start, self.lo, self.hi = sampler, cfg, start, lo, hi
        self.noise = make_noise(cfg.noise, sigma_range=(cfg.sigma_min, cfg.sigma_max), jpeg=cfg.jpeg,
                                sigma_power=cfg.sigma_power)

    def __iter__(self):
        for step in range(self.start, self.cfg.steps):
            yield make_batch(self.sampler, self.noise, self.cfg, step, self.lo, self.hi)


def make_batch(sampler, noise, cfg: TrainConfig, step: int, lo: int, hi: int):
    clean = sampler.patches(step, lo, hi)
    noisy = np.empty_like(clean)
    sigma = np.empty(hi - lo, np.float32)
    for j, i in enumerate(range(lo, hi)):
        rng = np.random.default_rng([cfg.seed, step, i, 2])
        noisy[j], s = noise.apply(clean[j], rng)
        if rng.random() < cfg.camera_fraction:
            noisy[j] = quantize(noisy[j])
        sigma[j] = s / 255.0
    return torch.from_numpy(noisy), torch.from_numpy(clean), torch.from_numpy(sigma)


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


def pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return x, h, w


@torch.no_grad()
def denoise_tensor(model, noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Full-image inference for NCHW float in [0,1]: pad to the size multiple, run, crop, clamp."""
    x, h, w = pad_to_multiple(noisy, model.config.size_multiple)
    return model(x, sigma)[..., :h, :w].clamp(0, 1)


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))


class ValSet:
    """Whole validation images with fixed noise (BENCHMARK_PROTOCOL.md's camera protocol)."""

    def __init__(self, images: list[D.ImageInfo], channels: int, sigma: float):
        self.items = []
        for i, info in enumerate(images):
            clean = D.read_image(info.path, channels)
            noisy = protocol_noisy(clean, sigma, i, "camera")
            t = lambda a: torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 0))).float()[None] / 255.0
            self.items.append((t(noisy), t(clean)))
        self.sigma = sigma

    @torch.no_grad()
    def evaluate(self, model, device) -> tuple[float, float]:
        """Mean PSNR (after uint8 rounding, as the protocol scores) and mean MSE loss."""
        model.eval()
        ps, ls = [], []
        s = torch.tensor([self.sigma / 255.0], device=device)
        for noisy, clean in self.items:
            out = denoise_tensor(model, noisy.to(device), s).cpu()
            ls.append(F.mse_loss(out, clean).item())
            q = (out * 255).round() / 255
            ps.append(psnr(F.mse_loss(q, clean).item()))
        model.train()
        return float(np.mean(ps)), float(np.mean(ls))


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
        raise ModelError(f"cannot load checkpoint {path}: {e.__class__.__name__}: {str(e).splitlines()[0][:200]}") from None


# ---------------------------------------------------------------- the loop


def init_weights(model: nn.Module, spec: str, mcfg: ModelConfig) -> None:
    """Load trained weights into a fresh model (fine-tuning). A model of the same widths with
    deeper levels grows from them (model.grow_from); other shapes are refused."""
    from .modelfile import load_model

    src = load_model(spec)
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


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train (or resume) a run. Returns a summary dict (final step, val PSNR, run folder)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world > 1
    if cfg.device == "auto":
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    if distributed:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.batch % world:
        raise DataError(f"batch {cfg.batch} does not split evenly over {world} processes")
    main = rank == 0
    out = Path(cfg.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)

    mcfg = ModelConfig.from_dict(SIZES[cfg.model].to_dict()) if cfg.model in SIZES else None
    if mcfg is None:
        raise ModelError(f"unknown model size {cfg.model!r}; choose one of {', '.join(SIZES)}")
    mcfg.channels = cfg.channels
    if cfg.depths:  # ModelConfig checks the count against the widths
        try:
            mcfg = ModelConfig.from_dict({**mcfg.to_dict(), "depths": [int(v) for v in str(cfg.depths).split(",")]})
        except ValueError as e:
            raise ModelError(f"--depths {cfg.depths!r}: give one integer per level, e.g. 2,2,4,4 ({e})") from None
    if cfg.patch % mcfg.size_multiple:
        raise DataError(f"patch {cfg.patch} must be a multiple of {mcfg.size_multiple} for model {cfg.model}")

    images = D.scan_images(cfg.data, min_size=cfg.patch, channels=cfg.channels)
    train_imgs, val_imgs = D.split(images, cfg.val_count)
    torch.manual_seed(cfg.seed)
    model = build_model(mcfg).to(device)
    if main:
        log.info("model %s: %d images for training, %d for validation", cfg.model, len(train_imgs), len(val_imgs))

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    disc = dopt = None
    if cfg.adv_weight > 0:
        disc = PatchDiscriminator(cfg.channels).to(device)
        dopt = torch.optim.Adam(disc.parameters(), lr=cfg.lr * 0.5, betas=(0.5, 0.999))

    start = 0
    ck_path = out / "checkpoint.pt"
    if ck_path.exists():
        ck = load_checkpoint(ck_path)
        saved = json.loads(ck.get("model_config", "{}"))
        if saved.get("widths") != list(mcfg.widths) or saved.get("depths") != list(mcfg.depths):
            raise ModelError(
                f"checkpoint {ck_path} is for widths {saved.get('widths')} depths {saved.get('depths')}, "
                f"not model {cfg.model}: use another --out or the same --model"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        if disc is not None and "disc" in ck:
            disc.load_state_dict(ck["disc"])
            dopt.load_state_dict(ck["disc_optimizer"])
        _set_rng_state(ck["rng"])
        start = int(ck["step"])
        if main:
            log.info("resuming %s at step %d", out, start)
    elif cfg.init:
        init_weights(model, cfg.init, mcfg)
        if main:
            log.info("starting from the weights of %s (fine-tuning: new optimizer and schedule)", cfg.init)
    if main:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    ddp_model, ddp_disc = model, disc
    if distributed:
        ids = [device.index] if device.type == "cuda" else None
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if disc is not None:
            ddp_disc = nn.parallel.DistributedDataParallel(disc, device_ids=ids)

    amp = cfg.amp
    if amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "off"
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    per_rank = cfg.batch // world
    sampler = D.PatchSampler(train_imgs, cfg.patch, cfg.channels, cfg.seed)
    ds = Batches(sampler, cfg, start, rank * per_rank, (rank + 1) * per_rank)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=cfg.workers, persistent_workers=False,
        prefetch_factor=4 if cfg.workers else None,
    )
    valset = ValSet(val_imgs, cfg.channels, cfg.val_sigma) if (main and val_imgs) else None

    csv_path = out / "metrics.csv"
    fields = ["step", "loss", "train_psnr", "lr", "val_psnr", "val_loss", "d_loss", "steps_per_s", "elapsed_s"]
    if main and (start == 0 or not csv_path.exists()):
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerow(fields)

    bar = None
    if main and progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, unit="step", dynamic_ncols=True, desc=f"train {cfg.model}")
    t0, window, wmse, dl = time.time(), [], [], []
    last_val = None
    step = start
    model.train()
    for noisy, clean, sigma in loader:
        noisy = noisy.to(device, non_blocking=True)
        clean = clean.to(device, non_blocking=True)
        sigma = sigma.to(device, non_blocking=True)
        if device.type == "cpu":
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out_img = ddp_model(noisy, sigma)
        out_img = out_img.float()
        loss = reconstruction_loss(cfg.loss, out_img, clean)
        if disc is not None:
            # generator step: fool the critic (hinge loss), on top of the reconstruction loss
            g_adv = -disc(out_img).mean()
            total = loss + cfg.adv_weight * g_adv
        else:
            total = loss
        opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if cfg.grad_clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        sched.step()
        if disc is not None:
            d_loss = F.relu(1 - ddp_disc(clean)).mean() + F.relu(1 + ddp_disc(out_img.detach())).mean()
            dopt.zero_grad(set_to_none=True)
            d_loss.backward()
            dopt.step()
            dl.append(d_loss.item())
        step += 1
        window.append(loss.item())
        wmse.append(F.mse_loss(out_img.detach().clamp(0, 1), clean).item())
        if bar is not None:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(window[-50:]):.2e}", psnr=f"{psnr(np.mean(wmse[-50:])):.2f}",
                                val="-" if last_val is None else f"{last_val:.2f}")
        stopping = step == cfg.stop_at
        do_val = step % cfg.val_every == 0 or step == cfg.steps
        do_ck = step % cfg.ckpt_every == 0 or step == cfg.steps or stopping
        if main and (do_val or do_ck):
            val_psnr = val_loss = ""
            if do_val and valset is not None:
                last_val, vl = valset.evaluate(model, device)
                val_psnr, val_loss = f"{last_val:.4f}", f"{vl:.6g}"
            el = time.time() - t0
            with open(csv_path, "a", newline="") as f:
                csv.writer(f).writerow([
                    step, f"{np.mean(window):.6g}", f"{psnr(np.mean(wmse)):.4f}", f"{sched.get_last_lr()[0]:.3g}",
                    val_psnr, val_loss, f"{np.mean(dl):.4g}" if dl else "", f"{(step - start) / el:.3f}", f"{el:.1f}",
                ])
            window, wmse, dl = [], [], []
            if do_ck:
                save_checkpoint(ck_path, step, model, opt, sched, disc, dopt, cfg)
                save_model(model, out / "model", extra={"trained_on": str(cfg.data), "steps": step, **cfg.extra})
            try:
                plot_curves(csv_path, out / "curves.png")
            except Exception as e:  # a plot must never stop a training run
                log.warning("could not draw curves.png: %s", e)
        if stopping:
            break
    if bar is not None:
        bar.close()
    if distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {"run": str(out), "step": step, "val_psnr": last_val}
