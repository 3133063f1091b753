"""The streaming pipeline: capture, inference and output on three threads joined by bounded queues
(a fourth for the temporal blend where the model runs on a GPU, below).

    capture thread ──► input queue ──► inference thread ──► output queue ──► output thread (sink)

- `realtime`: each queue keeps only the newest item(s); a newer frame replaces one that was
  not taken yet, and the replaced frame is counted as dropped. Capture never waits, so a slow
  sink or a slow model costs frames, never latency or memory. Files and the demo are read at
  their own frame rate in this mode, like a camera.
- `offline`: the queues block when full (back-pressure), every frame is processed, and
  frames out == frames in, in order: both are checked, and a violation is an error.

In realtime mode with the temporal blend and the model on a GPU, the blend is a stage of its own
between inference and output (a fourth thread), so that it runs on the CPU while the GPU denoises the
next frame: the stream then keeps up while each of the two does, not only while their sum does (the
blend takes 11-17 ms of CPU a 1080p frame on a 2-core EPYC). Where the model runs on the CPU the two
share its cores, and there the blend stays in line: on two cores its own thread was slower, by 0.9 ms
a 640x480 frame and 1.0 at 1280x720 (`python benchmarks/blend_stage.py`: tiny fp32, the demo's pan,
three rounds in turns, 2026-12-07; a shorter run before it: 0.7 faster and 1.9 slower). Offline mode
always blends in line: a cut the blend finds re-measures the noise level from the very next frame, so
the outputs do not depend on the threads' timing.

The first SIGINT/SIGTERM (or `stop()`) stops capture and lets the frames already queued
finish; the sink is closed either way, so a video file is finalised. A second one aborts.
Live sources that drop are reopened with exponential backoff.
"""
from __future__ import annotations

import collections
import math
import signal
import sys
import threading
import time

import numpy as np

from ..errors import DataError, EdgeDenoiseError
from ..estimate import CORRELATED_GAIN, estimate_parts, gain_terms
from ..frames import psnr_u8
from ..temporal import TemporalStep, blends_apart, told
from .autoselect import rung_name
from .sinks import Result, Sink
from .sources import Source
from .stats import RunStats

END = object()  # end-of-stream marker passed down the queues


class PipelineError(EdgeDenoiseError):
    """The pipeline broke one of its own guarantees (frames lost or reordered in offline mode)."""


class BoundedQueue:
    """A queue of at most `maxsize` items; when full, `put` either drops the oldest item
    (`drop_oldest`, realtime) or waits for room (offline)."""

    def __init__(self, maxsize: int, drop_oldest: bool, abort: threading.Event):
        self.items: collections.deque = collections.deque()
        self.maxsize, self.drop_oldest, self.abort = maxsize, drop_oldest, abort
        self.cond = threading.Condition()

    def put(self, item) -> tuple[bool, int]:
        """Returns (put, number of items dropped to make room). False only when aborted."""
        dropped = 0
        with self.cond:
            while len(self.items) >= self.maxsize and item is not END:  # END always fits
                if self.drop_oldest:
                    self.items.popleft()
                    dropped += 1
                elif not self.cond.wait(timeout=0.2) and self.abort.is_set():
                    return False, dropped
            self.items.append(item)
            self.cond.notify_all()
            return True, dropped

    def get(self):
        """Next item; END when aborted."""
        with self.cond:
            while not self.items:
                if self.abort.is_set():
                    return END
                self.cond.wait(timeout=0.2)
            item = self.items.popleft()
            self.cond.notify_all()
            return item

    def __len__(self) -> int:
        return len(self.items)


def check_frame(img, index: int, source: str) -> None:
    """Refuse, with a clear message, frames the denoiser cannot take."""
    if not isinstance(img, np.ndarray) or img.size == 0:
        raise DataError(f"frame {index} from {source} is empty")
    if img.dtype not in (np.uint8, np.uint16, np.float32):
        raise DataError(f"frame {index} from {source} has pixel type {img.dtype}: only uint8, uint16 and float32 "
                        f"frames are handled")
    ch = 1 if img.ndim == 2 else img.shape[2] if img.ndim == 3 else -1
    if ch not in (1, 3, 4):
        raise DataError(f"frame {index} from {source} has shape {img.shape}: expected gray (HxW), BGR (HxWx3) "
                        f"or BGRA (HxWx4)")


class SigmaTracker:
    """Noise level per frame: fixed, or estimated and smoothed over time (exponential average).

    `background=False` (offline mode): the estimate runs in line, before the frame it reads is
    denoised, so a run is reproducible. Given `fps`, the frame rate of the stream's own timeline,
    it follows realtime mode's schedule in frames of that timeline (every `every` seconds of video
    while the level settles, every `every_steady` after): a deterministic schedule, and a video
    file no longer pays an estimate per frame (43 ms for the crop on two cores, three times `tiny`'s
    own time at 640x480). `edgedenoise run --model tiny --sink null` offline, 2026-12-06, 2-core
    VNNI machine: bikes.mp4 13.5 -> 35.9 fps; the demo's first 150 frames 14.3 -> 38.8 fps with
    the same output (37.09 dB, the level 24.5 on average, both ways). Without `fps` every frame is
    estimated.
    `background=True` (realtime mode): the first frame after a start or a
    reset is estimated at once; after that a worker thread re-estimates a copy of the newest
    frame's central crop every `every` seconds and the frames in between use the current
    value, so the estimate (22-43 ms for the crop on two cores) is off the frame's critical path.
    It re-estimates every `every` seconds while the level settles (the first `SETTLE` estimates
    after a start or reset, and again after one that moved the level by more than `MOVED`), else
    every `every_steady` seconds: a camera's noise changes with its gain, not from frame to frame,
    and four estimates a second would hold a sixth of one core of a two-core device for nothing.

    What it smooths are the estimate's two terms (estimate.gain_terms), not a level: the level is
    made from them with the blind gain of the model running now (`gain`, called at each read), so
    a model switch on the ladder (tiny 1.4, default 2.0) takes effect at once and exactly.
    """

    SETTLE = 8  # fast estimates after a start, a reset or a change of level
    MOVED = 0.15  # an estimate this far (relative) from the smoothed level: it is settling again

    def __init__(self, fixed: float | None, smoothing: float = 0.8, crop: int = 256, background: bool = False,
                 every: float = 0.25, gain=None, every_steady: float = 1.0, clock=time.perf_counter,
                 fps: float | None = None):
        self.fixed, self.crop, self.background, self.every = fixed, crop, background, every
        self.fps = None if background or not fps or fps <= 0 else float(fps)
        self._since = 0  # offline with fps: frames since the last one estimated
        self.every_steady, self.clock = max(every, every_steady), clock
        self._settle = self.SETTLE  # fast estimates still to come
        self.gain = gain or (lambda: CORRELATED_GAIN)  # () -> the running model's blind gain
        # fewer, wider-spaced estimates (in the background, or on a schedule): weigh each one more
        self.smoothing = 0.5 if background or self.fps else smoothing
        self._terms: tuple[float, float] | None = None
        self._fresh = False  # new_scene: the next estimate replaces the terms
        self.estimates = 0
        self._lock = threading.Lock()
        self._busy = False
        self._generation = 0  # a reset invalidates an estimate still running
        self._t_last = 0.0
        self._thread: threading.Thread | None = None

    @property
    def value(self) -> float | None:
        """The smoothed level for the running model's gain (0-255); None before the first estimate."""
        t = self._terms
        return None if t is None else t[0] + self.gain() * t[1]

    def reset(self) -> None:
        with self._lock:
            self._terms = None
            self._generation += 1
            self._settle = self.SETTLE

    def new_scene(self) -> None:
        """A scene cut: the next frame's estimate replaces the level instead of joining its average
        (the new scene may be lit, or filmed, otherwise), and the estimates come fast again; until
        it arrives the old level stands, so realtime mode waits on no estimate (`reset`, for a new
        frame size, estimates the next frame in line)."""
        with self._lock:
            if self._terms is None:
                return
            self._fresh = True
            self._generation += 1  # an estimate of the old scene still running is dropped
            self._settle = self.SETTLE
            self._t_last = -math.inf
            self._since = 1 << 30  # offline on a schedule: the next frame is estimated

    def _patch(self, img: np.ndarray) -> np.ndarray:
        # noise is (near) stationary, so a central crop is enough: a quarter of the whole 640x480 frame's cost
        h, w = img.shape[:2]
        c = self.crop
        y, x = max(0, (h - c) // 2), max(0, (w - c) // 2)
        return img[y:y + c, x:x + c]

    def _update(self, terms: tuple[float, float], generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return
            k, old = self.smoothing, None if self._fresh else self._terms
            self._fresh = False
            self._terms = terms if old is None else (k * old[0] + (1 - k) * terms[0], k * old[1] + (1 - k) * terms[1])
            self.estimates += 1
            if old is not None:
                g = self.gain()
                before, now = old[0] + g * old[1], terms[0] + g * terms[1]
                if abs(now - before) > self.MOVED * max(before, 1.0):
                    self._settle = self.SETTLE
            self._settle = max(0, self._settle - 1)

    @staticmethod
    def _estimate(patch: np.ndarray) -> tuple[float, float]:
        return gain_terms(estimate_parts(patch))  # single-threaded (estimate.py)

    def _work(self, patch: np.ndarray, generation: int) -> None:
        try:
            self._update(self._estimate(patch), generation)
        finally:
            with self._lock:
                self._busy = False

    def __call__(self, img: np.ndarray) -> float:
        if self.fixed is not None:
            return self.fixed
        with self._lock:
            value, generation = self.value, self._generation
        if value is None or not self.background:
            if value is not None and self.fps:  # offline, on the schedule in frames of the stream's timeline
                self._since += 1
                seconds = self.every if self._settle else self.every_steady
                if self._since < max(1, round(seconds * self.fps)):
                    return value
            self._since = 0
            self._update(self._estimate(self._patch(img)), generation)
            with self._lock:
                self._t_last = self.clock()
                return self.value
        now = self.clock()
        with self._lock:
            start = not self._busy and now - self._t_last >= (self.every if self._settle else self.every_steady)
            if start:
                self._busy, self._t_last = True, now
        if start:
            patch = np.array(self._patch(img))  # a copy: the frame moves on down the pipeline
            self._thread = threading.Thread(target=self._work, args=(patch, generation), name="edgedenoise-sigma",
                                            daemon=True)
            self._thread.start()
        return value

    def wait(self, timeout: float | None = None) -> None:
        """Until the background estimate now running (if any) has updated the value."""
        t = self._thread
        if t is not None:
            t.join(timeout)


class Signals:
    """SIGINT/SIGTERM routed to a callback for as long as a run and its finalisation last.

    `with Signals() as sig:` installs the handlers (main thread only); each signal is recorded
    in `received` and passed to `on_signal(name)` (the pipeline's `stop`: the first stops capture,
    the second aborts). Later signals change nothing, so any number of them while the sink is
    closed and the stats are written still leaves a playable video and complete stats.
    `ending` (the command line's run, which exits once interrupted): after a signal, the handlers
    are not restored at exit but left ignoring SIGINT and SIGTERM, so that the rest of a burst of
    them cannot kill the process while it exits with 128 + the first (a SIGTERM repeated every 50
    ms for 0.3 s killed `run` during the interpreter's shutdown, after its outputs were finalised:
    exit -15, not 143).
    """

    def __init__(self, ending: bool = False):
        self.received: list[signal.Signals] = []
        self.on_signal = None
        self.ending = ending
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        self.received.append(signal.Signals(signum))
        if self.on_signal is not None:
            self.on_signal(signal.Signals(signum).name)

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, signal.SIG_IGN if self.ending and self.received else h)
        self._old = {}


class Pipeline:
    """One run: `Pipeline(source, sink, denoiser, ...).run()` returns its RunStats.

    `denoiser` is anything with `denoise(frame, sigma) -> frame` (a `Denoiser`).
    `tile` = (height, width) caps the size given to the denoiser (an engine's profile);
    larger frames are tiled with `overlap` and blended.
    `temporal`: `off` (each frame alone), `blend` (temporal.RecursiveBlend on the denoised frames)
    or `model` (a recurrent model given its last output, temporal.RecurrentState); one full-frame
    state also when tiled (sliced per tile), dropped at a cut, a size change and a reconnect.
    `ladder` (autoselect.Ladder, realtime mode): after every frame it is told the frame's
    processing time and may hand over another model to keep up (an event, counted in
    `model_switches`; the status line shows the model in use). `blend_thread`: the blend on a
    thread of its own (realtime with the blend only; None: where the model runs on a GPU, the
    module docstring); the ladder is then told the slower stage's time.
    """

    def __init__(self, source: Source, sink: Sink, denoiser, mode: str = "offline", sigma: float | None = None,
                 max_frames: int | None = None, tile: tuple[int, int] | None = None, overlap: int = 32,
                 reconnect: int = 10, status: bool = True, stats: RunStats | None = None, queue_size: int = 4,
                 temporal: str = "off", ladder=None, blend_thread: bool | None = None):
        if mode not in ("realtime", "offline"):
            raise DataError(f"mode must be realtime or offline, not {mode!r}")
        if temporal not in ("off", "blend", "model"):
            raise DataError(f"the pipeline's temporal mode is off, blend or model, not {temporal!r}")
        if temporal == "model" and not getattr(denoiser, "recurrent", False):
            raise DataError(f"--temporal model needs a recurrent model; {getattr(denoiser, 'name', 'this one')} "
                            f"denoises frame by frame")
        self.temporal = TemporalStep(temporal)  # its blend is off while the ladder is on its rung without it
        self.source, self.sink, self.den = source, sink, denoiser
        self.ladder = ladder if mode == "realtime" else None
        if self.ladder is not None:  # it may start on its rung without the blend (nothing to restart yet)
            self.temporal.set_blend(getattr(self.ladder, "blend", True))
        self.mode, self.max_frames, self.tile, self.overlap = mode, max_frames, tile, overlap
        self.reconnect, self.show_status = reconnect, status
        # the model's blind gain: through self.den, which the ladder may change
        # offline, the estimate's schedule runs in frames of one video's timeline; a folder of images
        # that no temporal mode calls frames of one video may hold unrelated pictures: each is estimated
        one_video = getattr(source, "sequence", True) or temporal != "off"
        self.sigma = SigmaTracker(sigma, background=mode == "realtime",
                                  fps=getattr(source, "fps", None) if one_video else None,
                                  gain=lambda: getattr(self.den, "blind_gain", CORRELATED_GAIN))
        self.stats = stats or RunStats()
        self.stats.info["temporal"] = temporal
        if sink.stats is None:
            sink.stats = self.stats  # for sinks that draw fps and latency
        self.stopping = threading.Event()  # graceful: stop capturing, finish what is queued
        self.abort = threading.Event()  # now: an error, or a second signal
        realtime = mode == "realtime"
        self.q_in = BoundedQueue(1 if realtime else queue_size, realtime, self.abort)
        self.q_out = BoundedQueue(2 if realtime else queue_size, realtime, self.abort)
        # realtime with the blend and the model on a GPU: the blend on a thread of its own (the module
        # docstring), fed the newest frame; `blend_thread` True or False decides instead (True: realtime only)
        if blend_thread and not (realtime and temporal == "blend"):
            raise DataError("the blend runs on a thread of its own in realtime mode with --temporal blend only")
        apart = blends_apart(denoiser) if blend_thread is None else blend_thread
        self.pipelined = realtime and temporal == "blend" and apart
        if temporal == "blend":
            self.stats.info["blend_thread"] = self.pipelined
        self.q_blend = BoundedQueue(1, True, self.abort) if self.pipelined else None
        self._blend_s = 0.0  # the blend stage's last frame time (its thread writes, the ladder reads)
        # pipelined: restarts of the blend the inference thread has asked for (a reconnect, the blend switched
        # on again), a number each frame carries, so that a frame dropped between the two stages loses none
        self._restarts = 0
        self.errors: list[BaseException] = []
        self.late_error: DataError | None = None  # e.g. a truncated file: raised after a clean finish
        self.stopped_by: str | None = None
        self._dry = 0  # reopens since the last frame that came (a source that opens but sends nothing)

    # -- control

    def stop(self, reason: str = "stop") -> None:
        """Graceful stop (from any thread); a second call aborts."""
        if self.stopping.is_set():
            self.abort.set()
        self.stopped_by = self.stopped_by or reason
        self.stopping.set()

    def _fail(self, e: BaseException) -> None:
        self.errors.append(e)
        self.stopping.set()
        self.abort.set()

    def _warm_up(self) -> None:
        """Before the clock: the denoiser runs on a frame of the stream's size (a tile's when tiled),
        so that no frame is timed or dropped for a kernel compilation or a first call's allocations.
        The stats say how long it took, or why it could not be done."""
        warm = getattr(self.den, "warm_up", None)
        size = self.source.frame_size()
        if warm is None or size is None:
            self.stats.info["warm_up"] = "not done: " + ("the denoiser has none" if warm is None else
                                                         "the frame size is unknown before the first frame")
            return
        w, h = size
        if self.tile:
            h, w = min(h, self.tile[0]), min(w, self.tile[1])
        if w * h > getattr(self.den, "max_pixels", w * h):
            self.stats.info["warm_up"] = "not done: the frame is too large for one call"  # the first frame says why
            return
        secs = warm(w, h)
        self.stats.info["warm_up"] = f"{w}x{h}, {secs * 1e3:.0f} ms" + (" (warm from model choice)" if not secs else "")

    # -- the three threads

    def _capture(self) -> None:
        st, src = self.stats, self.source
        pace = self.mode == "realtime" and not src.live and src.fps
        t_next = time.perf_counter()
        index = 0
        stream = 0  # +1 at every reconnect: frames of another stream than the last one's start a new state
        try:
            while not self.stopping.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    break
                if pace:  # a file or the demo played at its own rate, as a camera would deliver it
                    t_next += 1.0 / src.fps
                    delay = t_next - time.perf_counter()
                    if delay > 0 and self.stopping.wait(delay):
                        break
                t0 = time.perf_counter()
                try:
                    img = src.read()
                except DataError as e:
                    if src.live:
                        raise
                    # a corrupt image in a folder: the frames before it are written, then the error
                    st.event(str(e))
                    self.late_error = e
                    break
                t1 = time.perf_counter()
                if img is None:
                    if src.live and self._reopen():
                        stream += 1
                        continue
                    note = getattr(src, "truncated", lambda: None)()
                    if note:  # reported once the frames before the damage are written out
                        st.event(note)
                        self.late_error = DataError(note)
                    break
                st.add("capture", t1 - t0)
                self._dry = 0  # a frame came: the next drop gets the whole backoff again
                ref = src.reference()
                ok, dropped = self.q_in.put((index, img, ref, t1, stream))
                if not ok:
                    break
                st.count("frames_in")
                st.count("dropped_capture", dropped)
                st.queue_size("input", len(self.q_in))
                index += 1
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self._fail(e)
        finally:
            self.q_in.put(END)

    def _reopen(self) -> bool:
        """Reopen a live source that dropped: backoff 0.5, 1, 2, 4, 8, 8... s; False when stopped.
        A source that reopens but delivers no frame does not start the count again: its tries go on
        from where the last reopen left them, so it ends within `reconnect` tries in all."""
        src, st = self.source, self.stats
        for attempt in range(self._dry, self.reconnect):
            delay = min(0.5 * 2**attempt, 8.0)
            print(f"edgedenoise: {src.describe()} dropped; reopening in {delay:g} s "
                  f"(try {attempt + 1}/{self.reconnect})", file=sys.stderr)
            if self.stopping.wait(delay):
                return False
            try:
                src.reopen()
            except DataError:
                continue
            st.count("reconnects")
            st.event(f"reopened {src.describe()} after {attempt + 1} tries")
            self._dry = attempt + 1
            return True
        if self._dry:
            raise DataError(f"{src.describe()} opens but delivers no frame ({self.reconnect} tries): is the stream or "
                            f"camera sending anything?")
        raise DataError(f"lost {src.describe()} and could not reopen it after {self.reconnect} tries")

    def _infer(self) -> None:
        st = self.stats
        src_name = self.source.describe()
        seen_stream = 0
        try:
            while True:
                item = self.q_in.get()
                if item is END:
                    break
                index, img, ref, t_cap, stream = item
                den = self.den  # per frame: the ladder may have handed over another model
                # a reconnect: compared by stream number, so realtime mode dropping its first frame loses nothing
                fresh, seen_stream = stream != seen_stream, stream
                t0 = time.perf_counter()
                check_frame(img, index, src_name)
                h, w = img.shape[:2]
                if st.resolution(w, h):
                    st.event(f"frame {index}: resolution changed to {w}x{h}")
                    self.sigma.reset()  # a new scene or camera mode: start the average again
                sigma = self.sigma(img)
                before = self.temporal.resets
                restart = fresh and self.temporal.mode != "off"
                if restart:
                    if self.pipelined:  # the blend stage drops it, in the frames' order
                        self._restarts += 1
                    else:
                        self.temporal.reset()
                    st.event(f"frame {index}: temporal state dropped after a reconnect")
                t1 = time.perf_counter()
                out, (pre, net, _), blend_s = self.temporal(den, img, sigma, self.tile, self.overlap,
                                                            blend=not self.pipelined)
                t4 = time.perf_counter()
                got = self.temporal.running  # what this frame got (the ladder may switch the blend below)
                if not self.pipelined:
                    self._counted_resets(self.temporal.resets - before)
                t1, t2 = t1 + pre, t1 + pre + net  # the Denoiser's call split into its own stages
                t3 = t4 - blend_s
                st.add("preprocess", t1 - t0)
                st.add("inference", t2 - t1)
                st.add("postprocess", t3 - t2)
                if got == "blend" and not self.pipelined:
                    st.add("temporal", t4 - t3)
                if self.ladder is not None:
                    # pipelined, the stream keeps up while the slower of the two stages does (where they
                    # share the cores, each one's time grows by what the other takes of them)
                    self._adapt(index, max(t3 - t0, self._blend_s if got == "blend" else 0.0)
                                if self.pipelined else t4 - t0)
                # the label says what this frame got: no blend on the ladder's rung without it
                half = getattr(den, "halves", None)  # the ladder's half-resolution rung
                res = Result(index, img, out, sigma, t_cap, got, bool(half is not None and half(img.shape)))
                if self.pipelined:
                    ok, dropped = self.q_blend.put((res, ref, told(den, sigma), self._restarts))
                    if not ok:
                        break
                    st.count("dropped_output", dropped)
                    continue
                if not self._deliver(res, ref):
                    break
        except BaseException as e:  # noqa: BLE001
            self._fail(e)
        finally:
            (self.q_blend if self.pipelined else self.q_out).put(END)

    def _counted_resets(self, n: int) -> None:
        """Temporal states dropped (cuts only counted: a stream may have thousands); a cut or a reconnect
        has the noise level measured afresh."""
        self.stats.count("temporal_resets", n)
        if n:
            self.sigma.new_scene()

    def _deliver(self, res: Result, ref: np.ndarray | None) -> bool:
        """A finished frame: its quality in the stats, then into the output queue (realtime: an older frame
        not yet taken is dropped, counted). False when aborted."""
        if ref is not None:  # the demo knows its clean frames: report the quality as it runs
            self.stats.quality(res.sigma, psnr_u8(res.noisy, ref), psnr_u8(res.denoised, ref))
        else:
            self.stats.quality(res.sigma)
        ok, dropped = self.q_out.put(res)
        if ok:
            self.stats.count("dropped_output", dropped)
            self.stats.queue_size("output", len(self.q_out))
        return ok

    def _blend_stage(self) -> None:
        """Realtime with the blend: the blend on the denoised frames, in order, on its own thread. It starts
        afresh where the inference thread asked it to (a reconnect; switched on again when the ladder left
        its rung without it), as TemporalStep does in line."""
        st, blend = self.stats, self.temporal.blend
        restarts = 0  # the inference thread's restarts done here
        try:
            while True:
                item = self.q_blend.get()
                if item is END:
                    break
                res, ref, told, asked = item
                before = blend.resets
                if asked != restarts:
                    blend.reset()
                    restarts = asked
                if res.temporal == "blend":
                    t = time.perf_counter()
                    res.denoised = blend(res.denoised, told)
                    self._blend_s = time.perf_counter() - t
                    st.add("temporal", self._blend_s)
                self._counted_resets(blend.resets - before)
                if not self._deliver(res, ref):
                    break
        except BaseException as e:  # noqa: BLE001
            self._fail(e)
        finally:
            self.q_out.put(END)

    def _adapt(self, index: int, seconds: float) -> None:
        """Tell the ladder this frame's time; take the model it hands over, if any."""
        den = self.ladder.observe(seconds)
        if den is None:
            return
        self.den = den
        was = self.temporal.blend_on
        self.temporal.set_blend(getattr(self.ladder, "blend", True), restart=not self.pipelined)
        if self.pipelined and self.temporal.blend_on and not was:  # on again: the blend stage starts afresh
            self._restarts += 1
        self.stats.count("model_switches")
        self.stats.event(f"frame {index}: model {self.ladder.last}")
        self.stats.info.update(model_now=rung_name(self.ladder.current))

    def _output(self) -> None:
        st, sink = self.stats, self.sink
        expected = 0
        try:
            while True:
                res = self.q_out.get()
                if res is END:
                    break
                if self.mode == "offline" and res.index != expected:
                    raise PipelineError(f"offline mode: frame {res.index} reached the sink where frame {expected} "
                                        f"was due (frames lost or reordered)")
                expected = res.index + 1
                t0 = time.perf_counter()
                sink.write(res)
                t1 = time.perf_counter()
                st.add("output", t1 - t0)
                st.add("total", t1 - res.t_captured)
                st.count("frames_out")
                if sink.wants_stop:
                    self.stop("sink")
        except BaseException as e:  # noqa: BLE001
            self._fail(e)

    # -- main

    def run(self, signals: Signals | None = None) -> RunStats:
        """Run to the end of the stream (or a stop). SIGINT/SIGTERM stop it gracefully: through
        `signals` when given (the caller keeps them handled while it finalises more), else
        through handlers installed for the run and its finalisation."""
        st = self.stats
        st.info.update(mode=self.mode, source=self.source.describe(), sink=self.sink.name)
        own = signals is None
        signals = Signals() if own else signals
        signals.on_signal = self.stop
        if own:
            signals.__enter__()
        stages = (self._capture, self._infer, *((self._blend_stage,) if self.pipelined else ()), self._output)
        threads = [threading.Thread(target=f, name=f"edgedenoise-{f.__name__.strip('_')}", daemon=True)
                   for f in stages]
        tty = sys.stderr.isatty()
        try:
            self._warm_up()  # a signal meanwhile stops the stream before its first frame
            st.t_start = time.perf_counter()  # fps counts the stream, not the set-up before it
            t_status = st.t_start
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                threads[-1].join(timeout=0.25)  # short waits: signal handlers run between them
                if self.show_status and time.perf_counter() - t_status >= (1.0 if tty else 5.0):
                    t_status = time.perf_counter()
                    print(("\r" if tty else "") + st.status_line(), end="" if tty else "\n",
                          file=sys.stderr, flush=True)
                if self.abort.is_set():
                    for t in threads:
                        t.join(timeout=5.0)  # a thread stuck in a driver call is left behind (daemon)
                    break
        finally:
            try:
                self.sink.close()  # finalises video files even when interrupted
            finally:
                self.source.close()
                st.finish()
                if own:
                    signals.__exit__(None, None, None)
                if self.show_status and tty:
                    print(file=sys.stderr)
        st.info.update(interrupted=self.stopped_by is not None and self.stopped_by != "sink",
                       stopped_by=self.stopped_by, **self.sink.info())
        if self.sigma.fixed is None:  # how often the blind estimate ran (its schedule: SigmaTracker)
            st.info["sigma_estimates"] = self.sigma.estimates
        if self.errors:
            raise self.errors[0]
        if self.mode == "offline" and not self.abort.is_set() and st.frames_out != st.frames_in:
            raise PipelineError(f"offline mode: {st.frames_in} frames in but {st.frames_out} out")
        if self.late_error is not None:
            raise self.late_error
        return st
