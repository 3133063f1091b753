"""The streaming pipeline: capture, inference and output on three threads joined by bounded queues.

    capture thread ──► input queue ──► inference thread ──► output queue ──► output thread (sink)

- `realtime`: each queue keeps only the newest item(s); a newer frame replaces one that was
  not taken yet, and the replaced frame is counted as dropped. Capture never waits, so a slow
  sink or a slow model costs frames, never latency or memory. Files and the demo are read at
  their own frame rate in this mode, like a camera.
- `offline`: the queues block when full (back-pressure), every frame is processed, and
  frames out == frames in, in order: both are checked, and a violation is an error.

The first SIGINT/SIGTERM (or `stop()`) stops capture and lets the frames already queued
finish; the sink is closed either way, so a video file is finalised. A second one aborts.
Live sources that drop are reopened with exponential backoff.
"""
from __future__ import annotations

import collections
import signal
import sys
import threading
import time

import numpy as np

from ..errors import DataError, EdgeDenoiseError
from ..estimate import estimate_sigma
from ..evaluate import psnr_u8, to_u8
from .sinks import Result, Sink
from .sources import Source
from .stats import RunStats
from .tiling import tiled

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
    """Noise level per frame: fixed, or estimated and smoothed over time (exponential average)."""

    def __init__(self, fixed: float | None, smoothing: float = 0.8, crop: int = 256):
        self.fixed, self.smoothing, self.crop = fixed, smoothing, crop
        self.value: float | None = None

    def reset(self) -> None:
        self.value = None

    def __call__(self, img: np.ndarray) -> float:
        if self.fixed is not None:
            return self.fixed
        # noise is (near) stationary, so a central crop is enough: ~15 ms instead of ~80 ms at 640x480
        h, w = img.shape[:2]
        c = self.crop
        y, x = max(0, (h - c) // 2), max(0, (w - c) // 2)
        patch = img[y:y + c, x:x + c]
        est = estimate_sigma(patch[:, :, :3] if patch.ndim == 3 else patch)
        self.value = est if self.value is None else self.smoothing * self.value + (1 - self.smoothing) * est
        return self.value


def _to_float(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float32) * np.float32(1 / 255)
    if img.dtype == np.uint16:
        return img.astype(np.float32) * np.float32(1 / 65535)
    return img


def _from_float(out: np.ndarray, dtype) -> np.ndarray:
    if dtype == np.uint8:
        return to_u8(out)
    if dtype == np.uint16:
        return np.round(np.clip(out, 0, 1) * 65535).astype(np.uint16)
    return out.astype(dtype)


class Pipeline:
    """One run: `Pipeline(source, sink, denoiser, ...).run()` returns its RunStats.

    `denoiser` is anything with `denoise(frame, sigma) -> frame` (a `Denoiser`).
    `tile` = (height, width) caps the size given to the denoiser (an engine's profile);
    larger frames are tiled with `overlap` and blended.
    """

    def __init__(self, source: Source, sink: Sink, denoiser, mode: str = "offline", sigma: float | None = None,
                 max_frames: int | None = None, tile: tuple[int, int] | None = None, overlap: int = 32,
                 reconnect: int = 10, status: bool = True, stats: RunStats | None = None, queue_size: int = 4):
        if mode not in ("realtime", "offline"):
            raise DataError(f"mode must be realtime or offline, not {mode!r}")
        self.source, self.sink, self.den = source, sink, denoiser
        self.mode, self.max_frames, self.tile, self.overlap = mode, max_frames, tile, overlap
        self.reconnect, self.show_status = reconnect, status
        self.sigma = SigmaTracker(sigma)
        self.stats = stats or RunStats()
        if sink.stats is None:
            sink.stats = self.stats  # for sinks that draw fps and latency
        self.stopping = threading.Event()  # graceful: stop capturing, finish what is queued
        self.abort = threading.Event()  # now: an error, or a second signal
        realtime = mode == "realtime"
        self.q_in = BoundedQueue(1 if realtime else queue_size, realtime, self.abort)
        self.q_out = BoundedQueue(2 if realtime else queue_size, realtime, self.abort)
        self.errors: list[BaseException] = []
        self.late_error: DataError | None = None  # e.g. a truncated file: raised after a clean finish
        self.stopped_by: str | None = None

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

    # -- the three threads

    def _capture(self) -> None:
        st, src = self.stats, self.source
        pace = self.mode == "realtime" and not src.live and src.fps
        t_next = time.perf_counter()
        index = 0
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
                img = src.read()
                t1 = time.perf_counter()
                if img is None:
                    if src.live and self._reopen():
                        continue
                    note = getattr(src, "truncated", lambda: None)()
                    if note:  # reported once the frames before the damage are written out
                        st.event(note)
                        self.late_error = DataError(note)
                    break
                st.add("capture", t1 - t0)
                ref = src.reference()
                ok, dropped = self.q_in.put((index, img, ref, t1))
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
        """Reopen a live source that dropped: backoff 0.5, 1, 2, 4, 8, 8... s; False when stopped."""
        src, st = self.source, self.stats
        for attempt in range(self.reconnect):
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
            return True
        raise DataError(f"lost {src.describe()} and could not reopen it after {self.reconnect} tries")

    def _infer(self) -> None:
        st, den = self.stats, self.den
        src_name = self.source.describe()
        try:
            while True:
                item = self.q_in.get()
                if item is END:
                    break
                index, img, ref, t_cap = item
                t0 = time.perf_counter()
                check_frame(img, index, src_name)
                h, w = img.shape[:2]
                if st.resolution(w, h):
                    st.event(f"frame {index}: resolution changed to {w}x{h}")
                    self.sigma.reset()  # a new scene or camera mode: start the average again
                sigma = self.sigma(img)
                t1 = time.perf_counter()
                if self.tile:  # tiles are blended in float: one float32 copy of the frame
                    y = tiled(_to_float(img), lambda t: den.denoise(t, sigma), self.tile, self.overlap)
                    out = _from_float(y, img.dtype)
                else:  # the Denoiser takes the frame as it is: uint8 stays uint8 up to the backend
                    out = den.denoise(img, sigma)
                t3 = time.perf_counter()
                pre, net, _ = (0.0, t3 - t1, 0.0) if self.tile else getattr(den, "last_timing", (0.0, t3 - t1, 0.0))
                t1, t2 = t1 + pre, t1 + pre + net  # the Denoiser's call split into its own stages
                st.add("preprocess", t1 - t0)
                st.add("inference", t2 - t1)
                st.add("postprocess", t3 - t2)
                if ref is not None:  # the demo knows its clean frames: report the quality as it runs
                    st.quality(sigma, psnr_u8(img, ref), psnr_u8(out, ref))
                else:
                    st.quality(sigma)
                ok, dropped = self.q_out.put(Result(index, img, out, sigma, t_cap))
                if not ok:
                    break
                st.count("dropped_output", dropped)
                st.queue_size("output", len(self.q_out))
        except BaseException as e:  # noqa: BLE001
            self._fail(e)
        finally:
            self.q_out.put(END)

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

    def run(self) -> RunStats:
        st = self.stats
        st.info.update(mode=self.mode, source=self.source.describe(), sink=self.sink.name)
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            def on_signal(signum, frame):
                self.stop(signal.Signals(signum).name)

            for s in (signal.SIGINT, signal.SIGTERM):
                handlers[s] = signal.signal(s, on_signal)
        threads = [threading.Thread(target=f, name=f"edgedenoise-{f.__name__.strip('_')}", daemon=True)
                   for f in (self._capture, self._infer, self._output)]
        tty = sys.stderr.isatty()
        t_status = time.perf_counter()
        try:
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
            for s, h in handlers.items():
                signal.signal(s, h)
            try:
                self.sink.close()  # finalises video files even when interrupted
            finally:
                self.source.close()
                st.finish()
                if self.show_status and tty:
                    print(file=sys.stderr)
        st.info.update(interrupted=self.stopped_by is not None and self.stopped_by != "sink",
                       stopped_by=self.stopped_by, **self.sink.info())
        if self.errors:
            raise self.errors[0]
        if self.mode == "offline" and not self.abort.is_set() and st.frames_out != st.frames_in:
            raise PipelineError(f"offline mode: {st.frames_in} frames in but {st.frames_out} out")
        if self.late_error is not None:
            raise self.late_error
        return st
