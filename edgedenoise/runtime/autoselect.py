"""`--model auto` / `--precision auto`: the best model that keeps up with the source here.

In realtime mode a model slower than the source does not make a better video: it drops
frames (the demo kept 37 of 150 frames with `default` fp32 on two idle cores). So `auto`
times the candidates on a noisy frame of the source's size, best quality first, and keeps
the first whose median time fits the frame budget: `BUDGET_SHARE` of the source's frame
period, the rest being left to capture, the noise estimate and the sink, which share the
same cores. In offline mode every frame is processed whatever it costs, so `auto` takes the
best quality. A model or precision the user names is taken as named; only what is left on
`auto` is chosen. What was chosen, and why, is returned as one line.

With the temporal blend (`run --temporal blend`, the default for streams) its cost runs on the
same thread as the model, so it is timed once, on a frame whose camera moved (the dearer case),
and added to every candidate's time.
"""
from __future__ import annotations

import time

import numpy as np

# shipped models and precisions, best quality first (benchmarks/results/quality.md, CBSD68 sigma 25,
# camera protocol: default fp32 30.48, default int8 30.04, tiny fp32 29.18 dB; tiny int8 below it)
CANDIDATES = [("default", "fp32"), ("default", "int8"), ("tiny", "fp32"), ("tiny", "int8")]
BUDGET_SHARE = 0.6
DEFAULT_FPS = 30.0  # a live source that does not say its rate
TIMED_CALLS = 3


def candidates(model: str, precision: str, backend: str) -> list[tuple[str, str]]:
    """(model, precision) pairs `auto` may pick from; one pair when nothing is left on auto."""
    if model != "auto":  # a named model: as named, fp32 unless a precision is named too
        return [(model, "fp32" if precision == "auto" else precision)]
    if precision != "auto":
        return [(m, precision) for m in dict.fromkeys(m for m, _ in CANDIDATES)]
    int8_ok = backend in ("auto", "onnxruntime")  # INT8 runs on ONNX Runtime here
    return [(m, p) for m, p in CANDIDATES if p == "fp32" or int8_ok]


def _time(den, frame: np.ndarray) -> float:
    den.denoise(frame, 25.0)  # warm-up: first-call allocations
    times = []
    for _ in range(TIMED_CALLS):
        t = time.perf_counter()
        den.denoise(frame, 25.0)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def blend_cost(frame: np.ndarray) -> float:
    """Median seconds of the temporal blend on `frame`'s size, the camera moving by 2 px a frame."""
    from ..temporal import RecursiveBlend

    blend = RecursiveBlend()
    moved = [np.roll(frame, (k % 3 - 1) * 2, axis=1) for k in range(TIMED_CALLS + 2)]
    blend(frame, 25.0)
    blend(moved[0], 25.0)  # first-call allocations
    times = []
    for f in moved[1:TIMED_CALLS + 1]:
        t = time.perf_counter()
        blend(f, 25.0)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def choose(model: str, precision: str, backend: str, threads: int | None, mode: str,
           size: tuple[int, int] | None, fps: float | None, temporal: str = "off"):
    """(Denoiser, reason). `size` is the source's (width, height), None if unknown (640x480).
    `temporal` blend: the blend's cost counts in the budget (see the module docstring)."""
    from ..denoiser import Denoiser

    pairs = candidates(model, precision, backend)
    if len(pairs) == 1 or mode == "offline":
        m, p = pairs[0]
        den = Denoiser.load(m, backend=backend, threads=threads, precision=p)
        why = ("as asked" if len(pairs) == 1 else
               "offline mode processes every frame, so the best quality")
        return den, f"{m} {p}: {why}"
    from .sources import bench_frames

    w, h = size or (640, 480)
    fps = fps or DEFAULT_FPS
    budget = BUDGET_SHARE / fps
    _, noisy = bench_frames(w, h, 25.0, n=1)
    extra = blend_cost(noisy[0]) if temporal == "blend" else 0.0
    tried, fastest = [], None
    if extra:
        tried.append(f"temporal blend {extra * 1e3:.1f} ms, added to each")
    for m, p in pairs:
        den = Denoiser.load(m, backend=backend, threads=threads, precision=p)
        t = _time(den, noisy[0]) + extra
        tried.append(f"{m} {p} {t * 1e3:.0f} ms")
        if t <= budget:
            return den, (f"{m} {p}: the best that keeps up with {fps:g} fps at {w}x{h} here "
                         f"(measured {', '.join(tried)}; budget {budget * 1e3:.0f} ms = "
                         f"{BUDGET_SHARE:.0%} of the frame period)")
        if fastest is None or t < fastest[0]:
            fastest = (t, den, m, p)
    t, den, m, p = fastest
    return den, (f"{m} {p}: none keeps up with {fps:g} fps at {w}x{h} here, so the fastest "
                 f"(measured {', '.join(tried)}; budget {budget * 1e3:.0f} ms); expect dropped frames")
