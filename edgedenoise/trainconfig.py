"""Settings of a training run (no torch here: the CLI builds its flags from this)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs/run"
    model: str = "small"
    depths: str = ""  # e.g. "2,2,4,4": the size's widths with these depths (with --init: grow a trained model)
    channels: int = 3
    steps: int = 10_000  # length of the run (the learning-rate schedule spans it)
    stop_at: int = 0  # stop early at this step with a checkpoint (train in slices); 0 = run to `steps`
    batch: int = 16
    patch: int = 64
    lr: float = 1e-3
    lr_min: float = 1e-5
    warmup: int = 500
    loss: str = "l2"  # l1 | l2 | charbonnier
    noise: str = "awgn"  # awgn | poisson-gaussian | camera
    sigma_min: float = 0.0
    sigma_max: float = 75.0
    sigma_power: float = 1.0  # > 1 skews AWGN sigma draws towards sigma_min (noise.AWGN)
    camera_fraction: float = 0.8  # share of patches clipped + rounded to uint8 like a camera delivers
    jpeg: bool = False
    camera_sim: float = 0.0  # share of patches through the camera simulation (camera.py) instead of `noise`
    map_jitter: float = 0.15  # camera-sim patches: the level told is the true RMS times exp(this * N(0,1))
    adv_weight: float = 0.0  # > 0 turns on the patch discriminator
    val_count: int = 8
    val_sigma: float = 25.0
    val_every: int = 1000
    ckpt_every: int = 1000
    seed: int = 0
    amp: str = "auto"  # auto | bf16 | fp16 | off
    workers: int = 1
    threads: int = 0  # torch intra-op threads, 0 = torch's default
    grad_clip: float = 1.0
    device: str = "auto"
    init: str = ""  # start from these weights (model name, run folder or .safetensors), fresh optimizer and schedule
    extra: dict = field(default_factory=dict)
