"""Run statistics: per-stage latency (p50/p90/p99/mean), fps, drops, a live status line, JSON.

Stages follow the frame: `capture` (source read), `preprocess` (frame check, noise level,
and the Denoiser's own conversion to the backend's input and padding), `inference` (the backend
call, device transfers included; with `--tile` every tile's whole `denoise` call and the blending),
`postprocess` (the Denoiser's cropping and conversion back), `temporal` (the temporal blend,
`run --temporal blend`), `output` (sink write), and `total`
(from the end of capture to the end of output, queue waits included: the latency a viewer sees).

Samples are kept in bounded deques, so a run of any length uses constant memory; the
percentiles describe the most recent `window` frames.
"""
from __future__ import annotations

import json
import platform
import threading
import time
from collections import deque
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

import numpy as np

from ..atomic import write_atomic

STAGES = ("capture", "preprocess", "inference", "postprocess", "temporal", "output", "total")


def summarize(samples_s) -> dict:
    """p50/p90/p99/mean/max in milliseconds of a sequence of durations in seconds."""
    a = np.asarray(list(samples_s), np.float64) * 1e3
    if a.size == 0:
        return {"count": 0}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"count": int(a.size), "p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3),
            "p99_ms": round(float(p99), 3), "mean_ms": round(float(a.mean()), 3), "max_ms": round(float(a.max()), 3)}


def time_calls(fn, frames: list, count: int, warmup: int) -> tuple[list[float], np.ndarray]:
    """Seconds of each of `count` calls fn(frame) (frames taken in turn) after `warmup` untimed
    ones, and the last output."""
    out = None
    for i in range(warmup):
        out = fn(frames[i % len(frames)])
    times = []
    for i in range(count):
        f = frames[i % len(frames)]
        t0 = time.perf_counter()
        out = fn(f)
        times.append(time.perf_counter() - t0)
    return times, out


def stamp(command: str | None = None) -> dict:
    """What every results file starts with: date, the command that made it, machine, versions."""
    import sys

    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command or " ".join([program(sys.argv[0] if sys.argv else ""), *sys.argv[1:]]),
            "machine": machine_info(), "versions": versions()}


def program(argv0: str) -> str:
    """How the running program was started, for a stamp's command: `edgedenoise` for the CLI (its
    console script, `python -m edgedenoise.cli` or an empty argv), `python PATH` for a script (a tool
    or benchmark that stamps through here, its path as given), else the executable's name."""
    import os

    name = os.path.basename(argv0)
    if not argv0 or name in ("edgedenoise", "cli.py", "__main__.py", "-c"):
        return "edgedenoise"
    return f"python {argv0}" if name.endswith(".py") else name


def machine_info() -> dict:
    """CPU model and cores, GPU (if nvidia-smi answers), OS and Python; imports no torch."""
    import os
    import shutil
    import subprocess

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    if shutil.which("nvidia-smi"):
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=10, check=False)
            gpu = r.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "gpu": gpu,
            "os": platform.platform(), "python": platform.python_version()}


def versions() -> dict:
    """Installed versions of the libraries that matter, read from package metadata (no imports)."""
    from importlib import metadata

    import cv2

    from ..version import __version__

    out = {"edgedenoise": __version__, "opencv": cv2.__version__, "numpy": np.__version__}
    for name, dist in (("onnxruntime", "onnxruntime"), ("onnxruntime-gpu", "onnxruntime-gpu"), ("torch", "torch"),
                       ("triton", "triton"), ("tensorrt", "tensorrt")):
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


class RunStats:
    """Thread-safe counters and latency samples of one run."""

    def __init__(self, window: int = 10_000):
        self._lock = threading.Lock()
        self.stages = {s: deque(maxlen=window) for s in STAGES}
        self.frames_in = 0  # frames captured
        self.frames_out = 0  # frames written by the sink
        self.dropped_capture = 0  # realtime: replaced by a newer frame before inference took them
        self.dropped_output = 0  # realtime: replaced by a newer result before the sink took them
        self.reconnects = 0
        self.temporal_resets = 0  # temporal state dropped: scene cuts, size changes, reconnects
        self.model_switches = 0  # realtime with model and precision on auto: steps down or up (autoselect.Ladder)
        self.resolutions: list[list[int]] = []  # every distinct WxH seen, in order
        self.queue_peak = {"input": 0, "output": 0}
        self.sigma = deque(maxlen=window)
        self.psnr_noisy = deque(maxlen=window)
        self.psnr_denoised = deque(maxlen=window)
        self.events: list[str] = []  # warnings worth keeping in the JSON (reconnects, resizes)
        self.t_start = time.perf_counter()
        self.t_end: float | None = None
        self.info: dict = {}

    # -- recording (called from the pipeline threads)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stages[stage].append(seconds)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def queue_size(self, which: str, size: int) -> None:
        with self._lock:
            self.queue_peak[which] = max(self.queue_peak[which], size)

    def resolution(self, w: int, h: int) -> bool:
        """Record a frame size; True when it differs from the previous one."""
        with self._lock:
            if self.resolutions and self.resolutions[-1] == [w, h]:
                return False
            self.resolutions.append([w, h])
            return len(self.resolutions) > 1

    def event(self, text: str) -> None:
        with self._lock:
            self.events.append(text)

    def quality(self, sigma: float, psnr_noisy: float | None = None, psnr_denoised: float | None = None) -> None:
        with self._lock:
            self.sigma.append(sigma)
            if psnr_noisy is not None:
                self.psnr_noisy.append(psnr_noisy)
                self.psnr_denoised.append(psnr_denoised)

    def finish(self) -> None:
        self.t_end = time.perf_counter()

    # -- reporting

    @property
    def elapsed(self) -> float:
        return (self.t_end or time.perf_counter()) - self.t_start

    @property
    def dropped(self) -> int:
        return self.dropped_capture + self.dropped_output

    @property
    def fps(self) -> float:
        el = self.elapsed
        return self.frames_out / el if el > 0 else 0.0

    def recent_ms(self, stage: str, n: int = 30) -> float:
        """Median of the last `n` samples of a stage, in ms (0 before the first); reads only those n."""
        with self._lock:
            last = list(islice(reversed(self.stages[stage]), n))
        return float(np.median(last)) * 1e3 if last else 0.0

    def status_line(self) -> str:
        with self._lock:
            sig = self.sigma[-1] if self.sigma else None
            pd = self.psnr_denoised[-1] if self.psnr_denoised else None
        s = (f"frames {self.frames_out}/{self.frames_in} in {self.elapsed:5.1f} s | {self.fps:5.1f} fps | "
             f"latency {self.recent_ms('total'):6.1f} ms (inference {self.recent_ms('inference'):.1f}) "
             f"| dropped {self.dropped}")
        if self.info.get("model_now"):
            s += f" | model {self.info['model_now']} ({self.model_switches} switches)"
        if self.info.get("temporal", "off") != "off":
            s += f" | temporal {self.info['temporal']} (resets {self.temporal_resets})"
        if sig is not None:
            s += f" | sigma {sig:.1f}"
        if pd is not None:
            s += f" | PSNR {pd:.2f} dB"
        return s

    def summary(self) -> dict:
        el = self.elapsed
        with self._lock:
            out = {
                **self.info,
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "dropped": self.dropped_capture + self.dropped_output,
                "dropped_capture": self.dropped_capture,
                "dropped_output": self.dropped_output,
                "reconnects": self.reconnects,
                "temporal_resets": self.temporal_resets,
                "model_switches": self.model_switches,
                "seconds": round(el, 3),
                "fps": round(self.frames_out / el, 3) if el > 0 else 0.0,
                "resolutions": [f"{w}x{h}" for w, h in self.resolutions],
                "queue_peak": dict(self.queue_peak),
                "stages": {s: summarize(v) for s, v in self.stages.items()},
                "events": list(self.events),
            }
            if self.sigma:
                out["sigma_mean"] = round(float(np.mean(self.sigma)), 3)
            if self.psnr_noisy:
                out["psnr_noisy_db"] = round(float(np.mean(self.psnr_noisy)), 3)
                out["psnr_denoised_db"] = round(float(np.mean(self.psnr_denoised)), 3)
        return out

    def table(self) -> str:
        """The per-stage latency table printed at the end of a run."""
        s = self.summary()
        lines = [f"{'stage':<12} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'mean ms':>9}"]
        for name, v in s["stages"].items():
            if v.get("count"):
                lines.append(f"{name:<12} {v['p50_ms']:9.2f} {v['p90_ms']:9.2f} {v['p99_ms']:9.2f} {v['mean_ms']:9.2f}")
        tail = (f"frames in {s['frames_in']}, out {s['frames_out']}, dropped {s['dropped']} "
                f"({s['dropped_capture']} before inference, {s['dropped_output']} before output), "
                f"{s['fps']:.2f} fps over {s['seconds']:.1f} s")
        if s.get("temporal", "off") != "off":
            own = " (on a thread of its own)" if s.get("blend_thread") else ""
            tail += f"; temporal {s['temporal']}{own}, state reset {s['temporal_resets']} times"
        if "psnr_noisy_db" in s:
            tail += f"; PSNR {s['psnr_noisy_db']:.2f} dB noisy -> {s['psnr_denoised_db']:.2f} dB denoised"
        return "\n".join(lines + [tail])

    def write_json(self, path: str | Path, extra: dict | None = None) -> Path:
        doc = {**self.summary(), **(extra or {}),
               **{k: v for k, v in stamp().items() if k != "command"}}  # the command is in self.info
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, json.dumps(doc, indent=2).encode(), what="stats file")  # never half a file
