"""Where denoised frames go.

    display                      a window: noisy | denoised side by side, fps and latency drawn on it
    out.mp4 | out.avi | out.mkv  a video file (mp4v, MJPG, mp4v; --lossless: FFV1 in .mkv or .avi)
    folder/                      PNG frames (lossless; gray, BGRA and 16-bit kept)
    null                         nothing (for measuring)
    http://127.0.0.1:PORT        an MJPEG viewer page for headless devices (port 0: any free port)

A sink's `write()` runs on the pipeline's output thread; a slow sink delays only that
thread (realtime mode then drops frames before it, offline mode slows capture down).
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np

from ..errors import DataError
from ..frames import draw_label, to_bgr8, write_image
from ..outputs import check_writable, refuse_used_folder, temp_beside

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}
GRAMMAR = "display, null, a folder, a .mp4/.avi/.mkv file, or http://127.0.0.1:PORT"


@dataclass
class Result:
    """One processed frame on its way to the sink."""

    index: int
    noisy: np.ndarray
    denoised: np.ndarray
    sigma: float
    t_captured: float  # time.perf_counter() when capture finished
    temporal: str = "off"  # the temporal mode that made `denoised` (run --temporal)
    half: bool = False  # denoised at half resolution (the realtime ladder's last rung)


def compose(res: Result, status: str = "", max_width: int = 0) -> np.ndarray:
    """noisy | denoised side by side, labelled, with a status text (fps, latency) at the bottom."""
    a, b = to_bgr8(res.noisy), to_bgr8(res.denoised)
    sep = np.full((a.shape[0], 4, 3), 255, np.uint8)
    pic = np.concatenate([a, sep, b], axis=1)
    if max_width and pic.shape[1] > max_width:
        # hidden cost: JPEG-encoding two 1080p frames per frame is slower than resizing first
        f = max_width / pic.shape[1]
        pic = cv2.resize(pic, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    w = pic.shape[1]
    label = (f"denoised{' at half resolution' if res.half else ''} (sigma {res.sigma:.1f}"
             + (f", temporal {res.temporal})" if res.temporal != "off" else ")"))
    for text, org in (("noisy", (8, 22)), (label, (w // 2 + 8, 22)),
                      (status, (8, pic.shape[0] - 10))):
        draw_label(pic, text, org, 0.55)
    return pic


class Sink:
    """Receives results in order; `close()` must leave whatever it wrote complete and readable."""

    name = "sink"
    wants_stop = False  # set by an interactive sink (window closed, 'q' pressed)
    stats = None  # the run's RunStats, given by the pipeline, for sinks that draw fps/latency
    compare = False  # file sinks: store noisy | denoised side by side (`run --compare`) instead of the output

    def open(self, stats=None) -> None:
        self.stats = stats

    def write(self, res: Result) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def info(self) -> dict:
        return {"sink": self.name}

    def output(self) -> Path | None:
        """The file or folder this sink writes, if any (guarded against the inputs, and locked)."""
        return getattr(self, "path", None)

    def _status(self) -> str:
        if self.stats is None:
            return ""
        s = self.stats
        return f"{s.fps:.1f} fps | latency {s.recent_ms('total'):.0f} ms | dropped {s.dropped}"


class NullSink(Sink):
    name = "null"

    def write(self, res: Result) -> None:
        pass


class FolderSink(Sink):
    """PNG frames named by frame index (realtime mode skips the indices it dropped)."""

    def __init__(self, path: Path):
        self.path = path
        self.name = str(path)
        self.count = 0

    def open(self, stats=None) -> None:
        super().open(stats)
        refuse_used_folder(self.path, what="sink")
        check_writable(self.path, folder=True, what="sink")

    def write(self, res: Result) -> None:
        # write_image keeps 8 and 16 bits and stores float frames at 16 (frames.fit_depth), whole or not at all
        write_image(self.path / f"{res.index:06d}.png", compose(res) if self.compare else res.denoised)
        self.count += 1

    def info(self) -> dict:
        return {"sink": self.name, "files": self.count}


class VideoSink(Sink):
    """A video file via cv2.VideoWriter, opened at the first frame (its size is the video's).

    Frames are written as 8-bit BGR; a later frame of another size is scaled to the first
    one's (a video has one size) and the run's events say so. Odd sizes are padded to even.

    The video keeps the stream's timing: where realtime mode dropped frames (a gap in the
    frame indices), the last written frame is written again in their place (`frames_held`),
    so a second of video is a second of the stream, as the viewer saw it.

    The video is written to a hidden file beside the output (atomic.temp_beside) and renamed
    over it at `close()`: until then an earlier file of that name stays whole, and a run that is
    killed leaves it so (and a hidden `.<stem>.*.part<ext>` file). An interrupted run still closes
    the sink: its video holds the frames done, and the run's stats say it was interrupted.
    """

    def __init__(self, path: Path, fps: float = 25.0, lossless: bool = False):
        ext = path.suffix.lower()
        if lossless and ext not in (".mkv", ".avi"):
            raise DataError(f"lossless video is FFV1 in .mkv or .avi, not {ext}: use e.g. {path.with_suffix('.mkv')}")
        self.path, self.fps, self.lossless = path, fps, lossless
        self.codec = "FFV1" if lossless else VIDEO_CODECS[ext]
        self.name = str(path)
        self.writer = None
        self.part: Path | None = None  # the hidden file being written, renamed over `path` at close
        self.size = None
        self.count = 0
        self.resized = 0
        self.held = 0
        self._last: tuple[int, np.ndarray] | None = None  # index and image of the last frame written

    def open(self, stats=None) -> None:
        super().open(stats)
        check_writable(self.path, what="sink")  # the real cause (permissions, ...) before the codec is blamed
        # open a throw-away writer now, so a missing codec fails before the run starts
        probe = self.path.with_name(f".{self.path.stem}.probe{self.path.suffix}")
        w = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*self.codec), self.fps, (64, 64))
        ok = w.isOpened()
        w.release()
        probe.unlink(missing_ok=True)
        if not ok:
            what = "lossless FFV1" if self.lossless else self.codec
            raise DataError(f"this OpenCV build cannot write {what} video to {self.path.suffix} "
                            f"(see cv2.getBuildInformation(), Video I/O); write PNG frames to a folder instead")

    def write(self, res: Result) -> None:
        img = compose(res) if self.compare else to_bgr8(res.denoised)
        h, w = img.shape[:2]
        if self.writer is None:
            # OpenCV's FFmpeg writer stores even sizes only (it would cut an odd row/column off):
            # repeat the last row/column instead, so no pixel is lost
            self.size = (w + w % 2, h + h % 2)
            if self.size != (w, h) and self.stats is not None:
                self.stats.event(f"video sizes are even: {w}x{h} frames are stored as {self.size[0]}x{self.size[1]} "
                                 f"(last row/column repeated); write to a folder for exact sizes")
            try:
                self.part = temp_beside(self.path)
            except OSError as e:
                raise DataError(f"cannot write the sink {self.path}: {e.strerror or e}") from None
            self.writer = cv2.VideoWriter(str(self.part), cv2.VideoWriter_fourcc(*self.codec), self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                self.part.unlink(missing_ok=True)
                raise DataError(f"cannot open {self.path} for writing ({self.codec}, {w}x{h})")
        if (w + w % 2, h + h % 2) == self.size and (w, h) != self.size:
            img = cv2.copyMakeBorder(img, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        elif (w, h) != self.size:
            if self.resized == 0 and self.stats is not None:
                self.stats.event(f"frame {res.index} is {w}x{h}: scaled to the video's {self.size[0]}x{self.size[1]}")
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
            self.resized += 1
        if self._last is not None:
            for _ in range(res.index - self._last[0] - 1):  # dropped frames: hold the last one
                self.writer.write(self._last[1])
                self.held += 1
        self.writer.write(img)
        self._last = (res.index, img)
        self.count += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()  # writes the container's index: without it an .mp4 does not play
            self.writer = None
            part, self.part = self.part, None
            try:
                problem = self._unplayable(part)
                if problem:  # OpenCV's writer does not report failed writes: a full disk shows here
                    raise DataError(f"the video written to {self.path} is {problem} ({self.count + self.held} "
                                    f"frames given): is the disk full? {self.path} is left as it was")
                os.replace(part, self.path)
            except OSError as e:
                raise DataError(f"cannot write the sink {self.path}: {e.strerror or e}") from None
            finally:
                part.unlink(missing_ok=True)
            if self.held and self.stats is not None:
                self.stats.event(f"{self.path.name}: the last frame was held in place of {self.held} dropped "
                                 f"frames, so the video plays at the stream's rate")

    def _unplayable(self, part: Path) -> str:
        """'' when `part` opens as a video of the frames written; else what is wrong with it."""
        if part.stat().st_size == 0:
            return "empty"
        cap = cv2.VideoCapture(str(part))
        try:
            if not cap.isOpened():
                return "not playable"
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            cap.release()
        want = self.count + self.held
        if n > 0 and abs(n - want) > 1:  # some containers do not say (0); a codec may hold one frame back
            return f"short: {n} frames"
        return ""

    def info(self) -> dict:
        return {"sink": self.name, "codec": self.codec, "frames_written": self.count, "frames_held": self.held,
                "frames_resized": self.resized}


class DisplaySink(Sink):
    """An OpenCV window; 'q' or Esc (or closing it) stops the run."""

    name = "display"
    window = "edgedenoise: noisy | denoised"

    @staticmethod
    def check() -> None:
        """DataError where Linux has no display to open a window on (checked when the sink is named, before
        any model is loaded or timed, and again at open)."""
        import os

        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise DataError("no display here (DISPLAY is not set): use --sink http://127.0.0.1:8080 to watch "
                            "in a browser, or write to a file")

    def open(self, stats=None) -> None:
        super().open(stats)
        self.check()
        try:
            cv2.namedWindow(self.window, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise DataError("this OpenCV build has no GUI (opencv-python-headless?): use --sink "
                            "http://127.0.0.1:8080 to watch in a browser, or install opencv-python") from None

    def write(self, res: Result) -> None:
        cv2.imshow(self.window, compose(res, self._status()))
        key = cv2.waitKey(1) & 0xFF  # also runs the GUI event loop
        if key in (ord("q"), 27) or cv2.getWindowProperty(self.window, cv2.WND_PROP_VISIBLE) < 1:
            self.wants_stop = True

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.window)
        except cv2.error:
            pass


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>edgedenoise viewer</title>
<style>body{background:#111;color:#ddd;font-family:monospace;margin:12px} img{max-width:100%}</style></head>
<body><h3>edgedenoise: noisy | denoised</h3>
<img id="view" src="/stream.mjpg" alt="waiting for frames...">
<pre id="stats"></pre>
<script>
async function poll() {
  try { const r = await fetch("/stats.json"); const s = await r.json();
        document.getElementById("stats").textContent =
          `frames ${s.frames_out}/${s.frames_in}  ${s.fps} fps  dropped ${s.dropped}`; } catch (e) {}
  setTimeout(poll, 1000);
}
poll();
</script></body></html>
"""


class HttpSink(Sink):
    """An MJPEG viewer: `/` (page), `/stream.mjpg`, `/frame.jpg` (latest), `/stats.json`.

    `write()` only encodes the latest composite and wakes the client threads; a slow or
    stalled browser never holds up the pipeline (it just sees fewer frames).
    """

    def __init__(self, url: str, quality: int = 80, max_width: int = 1280):
        u = urlparse(url)
        self.host = u.hostname or "127.0.0.1"
        try:
            self.port = u.port if u.port is not None else 8080
        except ValueError:
            raise DataError(f"bad port in {url!r}: use http://127.0.0.1:8080") from None
        self.quality, self.max_width = quality, max_width
        self.name = url
        self.url = url
        self.server = None
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.seq = 0
        self.closing = False
        self.served = 0  # multipart frames sent, all clients together
        self.clients: list[str] = []  # user agents of stream clients

    def open(self, stats=None) -> None:
        super().open(stats)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # no per-request lines on the console
                pass

            def do_GET(self):
                try:
                    self._get()
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    return  # the browser went away
                except Exception:  # noqa: BLE001 - a request never prints a traceback on the run's console
                    try:
                        self._send(400, "text/plain", b"bad request\n")
                    except OSError:
                        pass

            def _get(self):
                allowed = sink.host_allowed(self.headers.get("Host", ""))
                if allowed is None:
                    self._send(400, "text/plain", b"bad request: malformed Host header\n")
                    return
                if not allowed:
                    # DNS rebinding: a web page of another site, resolved to this address, may not read frames
                    self._send(403, "text/plain", b"forbidden: unknown Host\n")
                    return
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", PAGE.encode())
                elif path == "/frame.jpg":
                    with sink.cond:
                        jpg = sink.jpeg
                    if jpg is None:
                        self._send(503, "text/plain", b"no frame yet\n")
                    else:
                        self._send(200, "image/jpeg", jpg)
                elif path == "/stats.json":
                    body = json.dumps(sink.stats.summary() if sink.stats else {}).encode()
                    self._send(200, "application/json", body)
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code, ctype, body):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                with sink.cond:
                    sink.clients.append(self.headers.get("User-Agent", ""))
                seen = -1
                try:
                    while True:
                        with sink.cond:
                            sink.cond.wait_for(lambda s=seen: sink.seq != s or sink.closing, timeout=1.0)
                            if sink.closing:
                                return
                            if sink.seq == seen or sink.jpeg is None:
                                continue
                            seen, jpg = sink.seq, sink.jpeg
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                        self.wfile.flush()
                        with sink.cond:
                            sink.served += 1
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    return  # the browser went away

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a broken request: dropped, never a traceback
                pass

        try:
            self.server = Server((self.host, self.port), Handler)
        except OSError as e:
            raise DataError(f"cannot serve the viewer on {self.host}:{self.port}: {e.strerror}") from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{self.host}:{self.port}/"
        threading.Thread(target=self.server.serve_forever, name="http-viewer", daemon=True).start()
        exposed = "" if self.host in ("127.0.0.1", "localhost", "::1") else " (reachable from other machines)"
        print(f"viewer: {self.url}{exposed}", file=sys.stderr, flush=True)

    def host_allowed(self, header: str) -> bool | None:
        """Whether a request's Host header names the address this viewer is bound to: the bound
        host itself, or for localhost/any-address bindings a loopback name or an IP address. A
        name that some other site's DNS points here (DNS rebinding) is refused. None: the header
        is not a host[:port] at all (answered 400)."""
        m = re.fullmatch(r"(\[[0-9a-f:.%a-z]*\]|[a-z0-9._~%-]*)(?::(\d{1,5}))?", header.strip().lower())
        if not m:
            return None
        if m.group(2) is not None and int(m.group(2)) != self.port:
            return False
        name = m.group(1).strip("[]")
        if name == self.host.lower():
            return True
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            ip = None
        if self.host in ("0.0.0.0", "::", ""):  # bound to every interface: any address of this machine
            return ip is not None or name in ("localhost", socket.gethostname().lower())
        loopback = self.host in ("127.0.0.1", "localhost", "::1")
        return loopback and (name == "localhost" or (ip is not None and ip.is_loopback))

    def write(self, res: Result) -> None:
        pic = compose(res, self._status(), self.max_width)
        ok, buf = cv2.imencode(".jpg", pic, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self.cond:
                self.jpeg, self.seq = buf.tobytes(), self.seq + 1
                self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def info(self) -> dict:
        return {"sink": self.url, "frames_served": self.served, "stream_clients": len(self.clients)}


def parse_sink(spec: str, fps: float | None = None, lossless: bool = False, compare: bool = False) -> Sink:
    """The Sink a spec names (not yet opened). Raises DataError for what cannot be a sink.
    compare: a video or folder sink stores noisy | denoised side by side (display and http always do)."""
    sink = _parse_sink(spec, fps, lossless)
    if compare and not isinstance(sink, (VideoSink, FolderSink)):
        raise DataError(f"--compare is for a video file or a folder sink, not {sink.name} (the display and http "
                        "sinks always show noisy | denoised)")
    sink.compare = compare
    return sink


def _parse_sink(spec: str, fps: float | None, lossless: bool) -> Sink:
    spec = str(spec).strip()
    if spec in ("null", "null://", "none"):
        return NullSink()
    if spec in ("display", "display://0", "display://"):
        DisplaySink.check()
        return DisplaySink()
    if spec.startswith("http://"):
        return HttpSink(spec)
    if "://" in spec and not spec.startswith("file://"):
        raise DataError(f"unknown sink {spec!r}: use {GRAMMAR}")
    p = Path(spec.removeprefix("file://"))
    ext = p.suffix.lower()
    if ext in VIDEO_CODECS:
        return VideoSink(p, fps or 25.0, lossless)
    if lossless and not p.is_dir() and ext:
        raise DataError(f"--lossless needs a .mkv/.avi video or a folder of PNG frames, not {p}")
    if p.exists() and not p.is_dir():
        raise DataError(f"sink {p} is an existing file: use {GRAMMAR}")
    if ext and not p.is_dir():
        raise DataError(f"cannot write a stream to {p}: use {GRAMMAR}")
    return FolderSink(p)


def open_sink(spec: str, fps: float | None = None, lossless: bool = False, stats=None, compare: bool = False) -> Sink:
    sink = parse_sink(spec, fps, lossless, compare)
    sink.open(stats)
    return sink

