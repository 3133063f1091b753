"""`--model auto` / `--precision auto`: the best model that keeps up with the source here.

In realtime mode a model slower than the source does not make a better video: it drops
frames (the demo kept 37 of 150 frames with `default` fp32 on two idle cores). So `auto`
times the candidates on a noisy frame of the source's size, best quality first, and keeps
the first whose median time fits the frame budget: `BUDGET_SHARE` of the source's frame
period, the rest being left to capture, the noise estimate and the sink, which share the
same cores. In offline mode every frame is processed whatever it costs, so `auto` takes the
best quality. A model or precision the user names is taken as named; only what is left on
`auto` is chosen. What was chosen, and why, is returned as one line.

With the temporal blend (`run --temporal blend`, the default for streams) it is timed once, on a
frame whose camera moved (the dearer case). A model on the CPU is blended after on the same thread,
so the blend's time is added to its time; a model on a GPU has the blend on a thread of its own, on
the CPU while the GPU works (temporal.blends_apart), so the slower of the two is its frame's time.

A choice made once does not hold when the machine gets busier (another process takes a core) or
the scene dearer: in realtime mode with both model and precision on auto, `Ladder` keeps the
candidates as rungs and watches each frame's processing time while the stream runs. When the
median of a window of frames passes `Ladder.DOWN` of the frame period it steps down to the next
cheaper rung; when the next better rung would fit in `BUDGET_SHARE` of the period (predicted from
the window's median times the ratio of the two rungs' times, all measured at the start under the
same conditions, so that the prediction holds however busy the machine is) it steps back up, but only after
`Ladder.HOLD` frames since the last step down (doubled after each step up that had to be taken
back), so that it does not flap. Every switch is an event in the run's stats.

Below the cheapest model the rungs are: that model without the blend (a blending stream), then the
same at half resolution (`HalfResolution`, about a quarter of its time, 1.4-3 dB less): the stream
never starts there, the ladder steps down to it only when even the cheapest model's frames take
longer than the frame period (`DOWN_TO_HALF`: a slow CPU with a core taken by another process) and
back up as soon as full resolution would take `UP_FROM_HALF` of the period.
"""
from __future__ import annotations

import time

import numpy as np

# The shipped framewise models `auto` chooses among. Ranked, best first, by their quality on camera
# noise (ModelFiles.camera_psnr: blind, the validation split through random simulated cameras, written
# when a model is shipped), since cameras are what `run` streams: on 2026-12-07 tiny 25.66 dB, default
# 25.50, nano 25.22. Gaussian noise ranks them otherwise (CBSD68 sigma 25, camera protocol: default
# 30.38, tiny 29.87), but the camera simulation's test sets (benchmarks/results/camera_noise.md, blind:
# tiny ahead by 0.12-0.66 dB, even its INT8 ahead of default fp32), the real noise of RNI15 (tiny
# leaves 4.59 / 1.24 of luma / chroma noise in flat areas, default 4.65 / 1.30) and even the demo's
# picture with its Gaussian noise (tiny fp32 + blend 36.93 dB, default int8 + blend 36.36) put tiny
# first. The ranking follows the shipped weights: a `default` trained further on camera noise that
# scores above tiny is ranked first again.
MODELS = ("default", "tiny", "nano")  # (the order where no figure says otherwise)
# An INT8 file ranks this far below its model's fp32 (on camera noise INT8 cost at most 0.08 dB,
# benchmarks/results/camera_noise.md; 0.19 on Gaussian CBSD68 sigma 25 for default)
INT8_LOSS = 0.1
BUDGET_SHARE = 0.6
# A candidate is kept only if it takes at most this share of the time of every better one timed before
# it: one no faster only loses quality. INT8 on an x86 CPU without VNNI (AVX2 only) is such a case:
# tiny int8 42 ms against fp32 44 ms per 640x480 frame, and 0.3 dB further from fp32 than the int8
# arithmetic itself costs, ONNX Runtime's u8 x s8 products saturating there (2026-12-05).
CHEAPER = 0.9
DEFAULT_FPS = 30.0  # a live source that does not say its rate
TIMED_CALLS = 3


def on_gpu(backend: str) -> bool:
    """Whether `backend` (auto or a name) runs the shipped models on a GPU here (backends/choice.py)."""
    from ..backends.choice import choose
    from ..modelfile import resolve

    return choose(backend, resolve("default"), "auto").precision == "fp16"


def candidates(model: str, precision: str, backend: str, gpu: bool | None = None,
               int8_fits: bool | None = None) -> list[tuple[str, str]]:
    """(model, precision) pairs `auto` may pick from, best first (MODELS, ranked); one pair when
    nothing is left on auto (its precision `auto` is resolved with the backend: fp16 on a GPU, fp32
    on the CPU). On a GPU (`gpu`, probed when None) the shipped models in fp16; on the CPU also in
    int8, unless INT8 saturates on this CPU (`int8_fits` False; probed when None: an x86 CPU without VNNI, where
    ONNX Runtime's INT8 is no faster and loses up to 4 dB: nano int8 29.7 against 33.6 dB in the
    main job). A timing alone cannot be trusted to leave it out there: one run in five of the main
    job with a core taken measured nano int8 10 % faster than fp32 and ran it."""
    if model != "auto":
        return [(model, precision)]
    pairs = ranked({m: camera_psnr(m) for m in MODELS})
    models = list(dict.fromkeys(m for m, _ in pairs))
    if precision != "auto":
        return [(m, precision) for m in models]
    if gpu if gpu is not None else on_gpu(backend):
        return [(m, "fp16") for m in models]
    if int8_fits is None:
        from ..backends.choice import int8_saturates_here

        int8_fits = not int8_saturates_here()
    int8_ok = backend in ("auto", "onnxruntime") and int8_fits  # INT8 runs on ONNX Runtime here
    return [(m, p) for m, p in pairs if p == "fp32" or int8_ok]


def camera_psnr(model: str) -> float | None:
    """A shipped model's camera-noise figure (ModelFiles.camera_psnr), None where it has none."""
    from ..modelfile import resolve

    return resolve(model).camera_psnr


def best_model() -> tuple[str, str]:
    """The shipped model `--model auto` takes where every frame is denoised whatever it costs (`denoise`;
    `run --mode offline` ranks the same way): the first of the ranking on camera noise, and why in words."""
    scores = {m: camera_psnr(m) for m in MODELS}
    best = ranked(scores)[0][0]
    known = sorted(((v, m) for m, v in scores.items() if v is not None), reverse=True)
    if not known:
        return best, "the first of the shipped models (none carries a camera-noise figure)"
    return best, ("the best shipped model on camera noise (blind PSNR on the validation split through random "
                  "simulated cameras: " + ", ".join(f"{m} {v:.2f} dB" for v, m in known) + ")")


def ranked(scores: dict[str, float | None]) -> list[tuple[str, str]]:
    """(model, precision) pairs, fp32 and int8 of each model in `scores`, best first: by the model's
    figure, an INT8 file INT8_LOSS dB below its fp32 (a tie keeps fp32, then `scores`' order, first);
    models without a figure after those with one, in `scores`' order."""
    known = {m: v for m, v in scores.items() if v is not None}
    order = list(scores)
    pairs = [(m, p, v - (INT8_LOSS if p == "int8" else 0.0)) for m, v in known.items() for p in ("fp32", "int8")]
    pairs.sort(key=lambda t: (-t[2], t[1] != "fp32", order.index(t[0])))
    return [(m, p) for m, p, _ in pairs] + [(m, p) for m in order if m not in known for p in ("fp32", "int8")]


def _time(den, frame: np.ndarray) -> float:
    den.warm_up(frame.shape[1], frame.shape[0])  # first-call allocations, kernel compilation
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


NO_BLEND = "without the blend"  # the third item of the rung below the cheapest model when the stream blends
HALF = "at half resolution"  # the last item of the ladder's last rung (HalfResolution)
# The step up from the half-resolution rung: taken when the rung above would take at most this share
# of the frame period (not BUDGET_SHARE): the half-resolution frames lose 1.4-3 dB, so full resolution
# is tried again as soon as it would likely keep up; HOLD and its doubling keep it from flapping.
UP_FROM_HALF = 0.8
# The step down onto it: only when the window's median passes the whole frame period (not Ladder.DOWN),
# i.e. frames are surely being dropped. At DOWN (90 %) an idle run of the main job on the 2-core AMD
# EPYC without VNNI stepped down at frame 20 (a median of 36 ms: nano's first frames, beside the
# noise estimate's start-up rate) and lost 1.4 dB for the rest of the run. With it, 2 idle runs of 10 still
# stepped down (medians of 40-41 ms: there nano at full resolution only just keeps up).
DOWN_TO_HALF = 1.0


def rung_name(rung: tuple) -> str:
    """'tiny int8', 'tiny int8 without the blend' for the rung below the cheapest model, and
    '... at half resolution' for the last rung."""
    return " ".join(rung)


class HalfResolution:
    """A Denoiser run on the frame at half resolution (2x2 means) and scaled back (bicubic): the
    realtime ladder's last rung, for a machine on which even the cheapest model drops frames (on the
    2-core AMD EPYC without VNNI with one core taken, `nano` fp32 kept 74-78 % of the demo's frames).
    It costs about a quarter of the model's time and loses detail: in the main job (the demo stream,
    sigma 25) `nano` gave 32.0 dB against 33.4 at full resolution (noisy 20.9); on the 8 validation images
    of CBSD432 (more fine texture) 25.5 against 28.7 (noisy 20.5) at sigma 25, and on their camera
    simulation 23.8 against 24.7 (noisy 23.5). The model is told half the level, as 2x2 means halve
    white noise (on those images 0.5 x did best of 0.5-0.85 x at Gaussian sigma 15, 25, 50 and on the
    camera simulation). Everything else (name, precision, blind gain, close) is the model's."""

    SIGMA = 0.5
    MIN_SIDE = 32  # frames smaller than this (either side) are denoised at full resolution

    def __init__(self, den):
        self.den = den

    def halves(self, shape: tuple) -> bool:
        """Whether a frame of this shape (rows, columns, ...) is denoised at half resolution (not
        when it is too small; the pipeline asks, to caption the frame)."""
        return min(shape[:2]) >= 2 * self.MIN_SIDE

    def __getattr__(self, name):
        return getattr(self.den, name)

    def warm_up(self, width: int, height: int, calls: int = 2) -> float:
        if not self.halves((height, width)):
            return self.den.warm_up(width, height, calls)
        return self.den.warm_up(width // 2, height // 2, calls)

    def denoise(self, frame: np.ndarray, sigma: float | None = None) -> np.ndarray:
        return self.denoise_timed(frame, sigma)[0]

    def denoise_timed(self, frame: np.ndarray, sigma: float | None = None):
        import cv2

        from ..denoiser import Timing

        h, w = frame.shape[:2]
        if not self.halves(frame.shape):
            return self.den.denoise_timed(frame, sigma)
        t0 = time.perf_counter()
        small = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA).reshape(
            (h // 2, w // 2) + frame.shape[2:])
        t1 = time.perf_counter()
        out, timing = self.den.denoise_timed(small, None if sigma is None else sigma * self.SIGMA)
        t2 = time.perf_counter()
        full = cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC).reshape(frame.shape)
        t3 = time.perf_counter()
        return full, Timing(timing.preprocess + t1 - t0, timing.inference, timing.postprocess + t3 - t2)


class Ladder:
    """The candidates of `auto` as rungs, best quality first, and the rung in use (see the module
    docstring). `observe(seconds)` after each frame returns a new Denoiser when it is time to
    switch (and `last` says why), else None. Pure bookkeeping on the times it is given: the
    caller measures them."""

    WINDOW = 15  # frames per decision (a median: a first call's allocations or one slow frame do not count)
    DOWN = 0.9  # step down when the window's median passes this share of the frame period
    HOLD = 150  # frames after a step down before a step up is tried

    def __init__(self, rungs: list[tuple[str, str]], index: int, times: dict, dens: dict, fps: float, load):
        self.rungs, self.index, self.fps = list(rungs), index, fps
        self.times = dict(times)  # (model, precision) -> seconds measured at the start, all alike
        self.dens = dict(dens)  # (model, precision) -> a loaded Denoiser
        self.load = load  # (model, precision) -> Denoiser, for a rung not loaded yet
        self.window: list[float] = []
        self.hold = 0
        self.hold_after_down = self.HOLD
        self.last_up_at: int | None = None  # frame count of the last step up, to see one taken back
        self.frames = 0
        self.switches = 0
        self.last = ""

    @property
    def current(self) -> tuple:
        """(model, precision), or (model, precision, NO_BLEND) on the rung that also drops the blend."""
        return self.rungs[self.index]

    @property
    def blend(self) -> bool:
        """Whether the current rung keeps the temporal blend (every rung but a NO_BLEND one)."""
        return NO_BLEND not in self.current

    @property
    def half(self) -> bool:
        """Whether the current rung denoises at half resolution (HalfResolution)."""
        return HALF in self.current

    def observe(self, seconds: float):
        """One frame's processing time (capture excluded); the Denoiser to switch to, or None."""
        self.frames += 1
        self.hold = max(0, self.hold - 1)
        self.window.append(seconds)
        if len(self.window) < self.WINDOW:
            return None
        self.window = self.window[-self.WINDOW:]
        med = float(np.median(self.window))
        period = 1.0 / self.fps
        below = self.rungs[self.index + 1] if self.index + 1 < len(self.rungs) else None
        down = DOWN_TO_HALF if below is not None and HALF in below else self.DOWN
        if below is not None and med > down * period:
            if self.last_up_at is not None and self.frames - self.last_up_at <= 2 * self.WINDOW:
                self.hold_after_down *= 2  # the step up was taken back at once: wait longer next time
            return self._switch(self.index + 1, f"median {med * 1e3:.0f} ms over {self.WINDOW} frames > "
                                                f"{down:.0%} of the {period * 1e3:.0f} ms frame period")
        if self.index > 0 and self.hold == 0:
            better, now = self.rungs[self.index - 1], self.current
            if better in self.times and self.times.get(now):
                predicted = med * self.times[better] / self.times[now]
                share = UP_FROM_HALF if self.half else BUDGET_SHARE
                if predicted <= share * period:
                    return self._switch(self.index - 1, f"{rung_name(better)} would take about "
                                                        f"{predicted * 1e3:.0f} ms here now, within {share:.0%}"
                                                        f" of the {period * 1e3:.0f} ms frame period")
        return None

    def _switch(self, index: int, why: str):
        up = index < self.index
        old = self.current
        self.index = index
        rung = self.current
        key = rung[:2]  # the rungs without the blend or at half resolution run the model of the rung above
        if key not in self.dens:
            self.dens[key] = self.load(*key)
        self.window = []
        self.switches += 1
        if up:
            self.last_up_at = self.frames
        else:
            self.hold = self.hold_after_down
        self.last = f"{'up' if up else 'down'} from {rung_name(old)} to {rung_name(rung)}: {why}"
        return HalfResolution(self.dens[key]) if self.half else self.dens[key]


def choose(model: str, precision: str, backend: str, threads: int | None, mode: str,
           size: tuple[int, int] | None, fps: float | None, temporal: str = "off", ladder: bool = False):
    """(Denoiser, reason), and with `ladder` (realtime mode, model and precision both on auto) a
    third item: the Ladder that keeps adapting the choice while the stream runs (else None).
    `size` is the source's (width, height), None if unknown (640x480).
    `temporal` blend: the blend's cost counts in the budget (see the module docstring)."""
    from ..denoiser import Denoiser
    from ..temporal import blends_apart

    pairs = candidates(model, precision, backend)
    if len(pairs) == 1 or mode == "offline":
        m, p = pairs[0]
        den = Denoiser.load(m, backend=backend, threads=threads, precision=p)
        why = ("as asked" if len(pairs) == 1 else
               "offline mode processes every frame, so the best on camera noise")
        return (den, f"{m} {den.precision}: {why}; {den.why}") + ((None,) if ladder else ())
    from .sources import bench_frames

    w, h = size or (640, 480)
    fps = fps or DEFAULT_FPS
    budget = BUDGET_SHARE / fps
    _, noisy = bench_frames(w, h, 25.0, n=1)
    extra = blend_cost(noisy[0]) if temporal == "blend" else 0.0
    tried, fastest, times, dens = [], None, {}, {}
    alone = {}  # each rung's model time without the blend
    if extra:
        tried.append(f"temporal blend {extra * 1e3:.1f} ms, added to each on the CPU, beside each on a GPU")
    if all(p == "fp32" for _, p in pairs) and len(candidates(model, precision, backend, gpu=False, int8_fits=True)) \
            > len(pairs):
        tried.append("INT8 not tried: it saturates on this CPU (no VNNI; edgedenoise doctor)")

    def load(m, p):
        return Denoiser.load(m, backend=backend, threads=threads, precision=p)

    def result(den, m, p, why, bottom=False):
        if not ladder:
            return den, why
        rungs = list(kept)
        if extra:  # below the cheapest model: the same model without the blend, timed without it
            rungs.append((*kept[-1], NO_BLEND))
            times[rungs[-1]] = alone[kept[-1]]
        # bottom: nothing fits, so the stream starts on the cheapest rung at full resolution (without
        # the blend where there is one) instead of dropping frames until the ladder steps down; it
        # steps up from there when the rung above would fit
        index = len(rungs) - 1 if bottom else kept.index((m, p))
        # last: that rung at half resolution, only stepped down to when its frames are late
        rungs.append((*rungs[-1], HALF))
        times[rungs[-1]] = _time(HalfResolution(dens[kept[-1]]), noisy[0])
        return den, why, Ladder(rungs, index, times, dens, fps, load)

    chosen, kept = None, []
    for m, p in pairs:  # best first; with a ladder every rung is timed, for the ratios it steps up by
        den = load(m, p)
        t0 = _time(den, noisy[0])
        t = max(t0, extra) if blends_apart(den) else t0 + extra  # (the module docstring)
        tried.append(f"{m} {p} {t * 1e3:.0f} ms")
        if fastest is not None and t > CHEAPER * fastest[0]:  # fastest: of the candidates kept so far
            tried[-1] += " (no faster than a better one: left out)"
            den.close()
            continue
        kept.append((m, p))
        times[(m, p)], dens[(m, p)], alone[(m, p)] = t, den, t0
        if t <= budget and chosen is None:
            chosen = (den, m, p)
            if not ladder:
                break
        if fastest is None or t < fastest[0]:
            fastest = (t, den, m, p)
    if chosen is not None:
        den, m, p = chosen
        return result(den, m, p, f"{m} {p}: the best on camera noise that keeps up with {fps:g} fps at {w}x{h} here "
                                 f"(measured {', '.join(tried)}; budget {budget * 1e3:.0f} ms = "
                                 f"{BUDGET_SHARE:.0%} of the frame period); {den.why}")
    t, den, m, p = fastest
    # with the blend and a ladder, the stream starts on the fastest (kept last) without the blend
    bottom = bool(ladder and extra)
    if bottom:
        name, fits, pick = f"{m} {p} {NO_BLEND}", " with the blend", "the fastest without it"
        drops = "it may drop frames"
    else:
        name, fits, pick, drops = f"{m} {p}", "", "the fastest", "expect dropped frames"
    return result(den, m, p, f"{name}: none keeps up with {fps:g} fps at {w}x{h} here{fits}, so {pick} (measured "
                             f"{', '.join(tried)}; budget {budget * 1e3:.0f} ms); {drops}; {den.why}", bottom=bottom)
