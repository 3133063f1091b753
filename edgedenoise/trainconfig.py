"""Settings of a training run (no torch here: the CLI builds its flags from this)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import DataError

# what a recurrent model's gate branch may be fed (ModelConfig.gate_in, train --gate-in); here, torch-free,
# so that a training run's values are checked before torch is imported
GATE_INPUTS = ("parts", "sums")
# what a camera-simulated training image tells the model (noise.CameraSim.told; torch-free, as above)
CAMERA_LEVELS = ("true", "estimate")
# the INT8 graphs a --qat run can simulate (quantize.TARGETS; torch-free and import-free, as above)
QAT_TARGETS = ("onnxruntime", "tensorrt")


def size_multiple(config: dict) -> int:
    """What a model's input H and W must be multiples of: the pixel-unshuffle factor times 2 per
    downsampling level (the one formula; model.ModelConfig and modelfile.ModelFiles both ask it,
    from here: torch-free, and neither of them, so that they do not import each other)."""
    return int(config.get("unshuffle", 2)) * 2 ** (len(config["widths"]) - 1)


# What a resumed run may set otherwise than it started with: how long it runs (--steps has been raised to
# lengthen a run), where its files are, how often it is validated and saved, and how fast it goes. Any other
# setting would make one run of two trainings, recorded in config.json as the second alone.
RESUME_FREE = ("data", "out", "steps", "stop_at", "workers", "threads", "device", "amp", "val_every", "ckpt_every",
               "keep_every")


def resume_changes(saved: dict, now: dict) -> list[str]:
    """The settings of `now` (a TrainConfig's asdict) that differ from the run folder's config.json
    (`saved`) outside RESUME_FREE, as "name old -> new"; settings the file predates are not compared."""
    return [f"{k.replace('_', '-')} {saved[k]!r} -> {v!r}" for k, v in now.items()
            if k in saved and k not in RESUME_FREE and saved[k] != v]


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
    camera_level: str = "true"  # camera-sim patches tell: true (the RMS, jittered) or estimate (blind mode's)
    # camera-sim patches: each camera's lens blur (px, Gaussian sigma) drawn from [camera_optics_from x this, this];
    # 0: none. The validation split's camera images stay without it (the figures ship decisions compare)
    camera_optics: float = 0.0
    camera_optics_from: float = 0.5  # 0: from no blur at all (sharp cameras and soft ones), 1: always this blur
    adv_weight: float = 0.0  # > 0 turns on the patch discriminator
    val_count: int = 8
    val_sigma: float = 25.0
    val_every: int = 1000
    ckpt_every: int = 1000
    keep_every: int = 0  # > 0: also keep the weights of every such checkpoint step in RUN/keep/step_N
    seed: int = 0
    amp: str = "auto"  # auto | bf16 | fp16 | off
    workers: int = 1
    threads: int = 0  # torch intra-op threads, 0 = torch's default
    grad_clip: float = 1.0
    device: str = "auto"
    video: bool = False  # train a recurrent (video) model on synthetic clips (videodata.py)
    frames: int = 6  # --video: frames per clip, the span of back-propagation through time
    fusion_lr: float = 10.0  # --video: a recurrent model's weights for its previous output step this many times faster
    fusion_only: bool = False  # --video: train only those weights; the framewise ones stay as --init gave them
    gate: int = 0  # --video: the gate from a branch of this width (ModelConfig.gate); 0: from the tail
    gate_in: str = "sums"  # --gate: what the branch sees of the difference: sums (per pixel, colours summed) or parts
    video_align: bool = False  # --video: the last output moved with the camera before the model sees it, as at run time
    init: str = ""  # start from these weights (model name, run folder or .safetensors), fresh optimizer and schedule
    qat: bool = False  # quantization-aware fine-tune of --init for its INT8 file (qat.py): INT8's rounding simulated
    qat_for: str = "onnxruntime"  # --qat: the INT8 graph simulated: onnxruntime (.int8.onnx), tensorrt (.trt.int8.onnx)
    act_limit: float = 0.0  # > 0: weight of a penalty on activations beyond --init's INT8 ranges (activation_limits)
    extra: dict = field(default_factory=dict)

    def check(self) -> TrainConfig:
        """DataError (one line) for a value no run can use; returns self. The one place training
        values are checked, before any image is read or anything is written."""
        def bad(flag: str, value, want: str) -> DataError:
            return DataError(f"--{flag.replace('_', '-')} {value!r}: {want}")

        for name in ("steps", "batch", "patch", "val_count", "val_every", "ckpt_every"):
            v = getattr(self, name)
            low = 0 if name == "val_count" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise bad(name, v, f"must be a whole number >= {low}")
        if self.gate and not self.video:
            raise bad("gate", self.gate, "needs --video (a recurrent model's gate branch)")
        if self.camera_level not in CAMERA_LEVELS:
            raise bad("camera_level", self.camera_level, f"{' or '.join(CAMERA_LEVELS)} (the level a camera-simulated "
                                                         f"image tells the model)")
        if self.gate_in not in GATE_INPUTS:
            raise bad("gate_in", self.gate_in, f"{' or '.join(GATE_INPUTS)} (what a gate branch sees)")
        if self.video_align and not self.video:
            raise bad("video_align", True, "needs --video (a recurrent model's last output)")
        if self.fusion_only and not self.video:
            raise bad("fusion_only", True, "needs --video (a recurrent model's fusion weights)")
        if self.camera_optics and not (self.camera_sim > 0 or self.noise == "camera-sim"):
            raise bad("camera_optics", self.camera_optics, "blurs the camera simulation's scenes: it needs "
                                                           "--camera-sim > 0 (or --noise camera-sim)")
        if self.qat and not self.init:
            raise bad("qat", True, "fine-tunes trained weights for INT8: give them with --init")
        if self.qat_for not in QAT_TARGETS:
            raise bad("qat_for", self.qat_for, f"{' or '.join(QAT_TARGETS)} (the INT8 graph --qat simulates)")
        if self.qat_for != "onnxruntime" and not self.qat:
            raise bad("qat_for", self.qat_for, "is for a --qat run")
        if self.act_limit and (not self.init or self.qat or self.video):
            raise bad("act_limit", self.act_limit, "fine-tunes trained weights (--init) of a framewise model, "
                                                   "without --qat (the ranges are --init's INT8 ranges)")
        if self.qat and (self.video or self.adv_weight):
            raise bad("qat", True, "fine-tunes a framewise model on the reconstruction loss (no --video, "
                                   "no --adv-weight)")
        if self.video and (not isinstance(self.frames, int) or self.frames < 2):
            raise bad("frames", self.frames, "a clip needs at least 2 frames (the model learns from its last output)")
        for name in ("stop_at", "warmup", "threads", "seed", "workers", "keep_every", "gate"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise bad(name, v, "must be a whole number >= 0")
        for name in ("lr", "lr_min", "grad_clip", "sigma_power", "map_jitter", "adv_weight", "val_sigma",
                     "fusion_lr", "act_limit", "camera_optics"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise bad(name, v, "must be a finite number >= 0")
        for name in ("camera_fraction", "camera_sim", "camera_optics_from"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v <= 1):
                raise bad(name, v, "is a share: a number from 0 to 1")
        if not (math.isfinite(self.sigma_min) and math.isfinite(self.sigma_max)
                and 0 <= self.sigma_min <= self.sigma_max <= 255):
            raise DataError(f"--sigma-range {self.sigma_min:g},{self.sigma_max:g}: give LO,HI with 0 <= LO <= HI "
                            f"<= 255")
        if self.data and self.out:  # the run folder's curves.png would be a training image of the next run
            from .outputs import refuse_inputs

            refuse_inputs(self.out, [self.data], what="--out run folder")
        return self
