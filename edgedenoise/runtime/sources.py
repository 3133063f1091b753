"""Frame sources and the one URI grammar that names them.

    0, 1, ...                 camera index (V4L2 on Linux)
    v4l2:///dev/video0        a V4L2 device by path
    csi://0                   Jetson CSI camera through nvarguscamerasrc (needs OpenCV with GStreamer)
    gst:PIPELINE              any GStreamer pipeline ending in appsink
    rtsp://..., http(s)://... network streams (FFmpeg)
    file.mp4 | file://...     a video file (anything FFmpeg reads)
    folder/ | 'dir/*.png'     image folder or glob, frames in sorted order
    demo | demo:SIGMA         the bundled sample panned into a moving 640x480 stream with seeded
                              camera-protocol noise of a known sigma (default 25)

Every source hands out frames exactly as OpenCV delivers them (BGR, gray, BGRA, 16-bit);
the pipeline checks them. `live` sources (cameras, network, GStreamer) are reopened by the
pipeline when they drop; the others end the run when they end.
"""
from __future__ import annotations

import glob
import re
from pathlib import Path

import cv2
import numpy as np

from ..data import SAMPLE_IMAGE as SAMPLE
from ..errors import DataError
from ..frames import IMAGE_EXTS, read_frame

MAX_CAMERA_INDEX = 255  # V4L2 numbers its devices /dev/video0-255; a larger number is a typo
GRAMMAR = ("a camera index (0), v4l2:///dev/videoN, csi://N, gst:PIPELINE, a video file, "
           "an image folder or glob, rtsp:// or http(s):// URL, or demo")


# the password runs to the LAST @ of the authority (FFmpeg reads http://bob:pa@ss@host as password pa@ss)
_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)([^:/@\s]+):([^/\s]*)@")
_QUERY_SECRETS = re.compile(r"([?&;](?:pwd|pass|passwd|password|token|access_token|auth|key|apikey|api_key|secret|"
                            r"sig|signature)=)([^&#\s]*)", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide the password of any URL in `text` (rtsp://user:pass@host -> rtsp://user:***@host), and
    secrets in its query (?token=..., &password=...): sources are named in stats, logs, the status
    line and the viewer page."""
    return _QUERY_SECRETS.sub(r"\1***", _CREDENTIALS.sub(r"\1\2:***@", str(text)))


def _opencv_has(feature: str) -> bool:
    """Whether this OpenCV build lists `feature` (e.g. "GStreamer", "FFMPEG") as YES in its Video I/O."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith(f"{feature}:"):
            return "YES" in line
    return False


def has_gstreamer() -> bool:
    """True when this OpenCV build was compiled with GStreamer (system OpenCV on a Jetson is)."""
    return _opencv_has("GStreamer")


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """The nvarguscamerasrc pipeline for a Jetson CSI camera, delivering BGR to appsink."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
            f"framerate={fps}/1, format=NV12 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! "
            f"video/x-raw, format=BGR ! appsink drop=true max-buffers=1")


class Source:
    """A stream of frames. `read()` returns the next frame or None (end, or a lost live stream)."""

    name = "source"
    live = False  # reopened with backoff when it drops
    realtime = False  # the default mode: realtime for live streams and the demo, offline for files
    fps: float | None = None
    sigma: float | None = None  # the known noise level (demo only)
    # the frames are one video's (a camera, a stream, a file), so one noise level holds from frame to
    # frame; False for a folder of images, which may be unrelated pictures (offline mode then
    # estimates each, unless a temporal mode says they are frames of one video)
    sequence = True

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def reference(self) -> np.ndarray | None:
        """The clean frame behind the last frame read, where the source knows it (demo)."""
        return None

    def close(self) -> None:
        pass

    def reopen(self) -> None:
        self.close()
        self.open()

    def describe(self) -> str:
        return self.name

    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the frames to come, where the source knows it before reading one."""
        return None

    def inputs(self) -> list[Path]:
        """The files and folders this source reads (no output may be one of them)."""
        return []


class CaptureSource(Source):
    """Anything cv2.VideoCapture opens: cameras, files, network streams, GStreamer pipelines."""

    def __init__(self, target: str | int, api: int = cv2.CAP_ANY, kind: str = "file", name: str | None = None,
                 hint: str = ""):
        self.target, self.api, self.kind = target, api, kind
        self.name = redact(name or str(target))
        self.live = kind != "file"
        self.realtime = self.live
        self.hint = hint
        self.cap = None
        self.frames_read = 0
        self.frame_count = 0

    def open(self) -> None:
        params: list[int] = []
        if self.kind == "network":
            # without these an unreachable host can block for FFmpeg's default (tens of seconds)
            for prop in ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC"):
                if hasattr(cv2, prop):
                    params += [getattr(cv2, prop), 10_000]
        cap = cv2.VideoCapture(self.target, self.api, params) if params else cv2.VideoCapture(self.target, self.api)
        if not cap.isOpened():
            cap.release()
            raise DataError(self._open_error())
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # a deep driver buffer is latency; not every backend honours it
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.kind == "file" else 0
        self.cap = cap

    def inputs(self) -> list[Path]:
        return [Path(self.target)] if self.kind == "file" else []

    def frame_size(self) -> tuple[int, int] | None:
        if self.cap is None:
            return None
        w, h = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return (w, h) if w > 0 and h > 0 else None

    def _open_error(self) -> str:
        if self.kind == "file":
            size = Path(self.target).stat().st_size if Path(str(self.target)).exists() else 0
            return (f"cannot open video {self.target} ({size} bytes): it is truncated, corrupt or not a video "
                    f"this OpenCV build can decode")
        if self.kind == "network":
            return f"cannot open stream {self.name}: host unreachable, stream not found or refused {self.hint}".rstrip()
        return f"cannot open {self.name}{self.hint}"

    def read(self) -> np.ndarray | None:
        if self.cap is None:
            return None
        ok, frame = self.cap.read()
        if not ok or frame is None:
            return None
        self.frames_read += 1
        return frame

    def truncated(self) -> str | None:
        """After the end of a file: a note when it ended well before the frame count it claims."""
        if self.kind == "file" and self.frame_count > 0 and self.frames_read < 0.9 * self.frame_count - 1:
            return (f"video {self.name} is truncated or damaged: it ended after {self.frames_read} of the "
                    f"{self.frame_count} frames it declares (the frames before the damage were processed)")
        return None

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


FOLDER_FPS = 25.0  # the frame rate a folder of frames is taken to have (its timeline: stats, schedules)


class ImageSource(Source):
    """Still images in sorted order, read unchanged (gray, BGR, BGRA, 16-bit kept as they are)."""

    sequence = False

    def __init__(self, paths: list[Path], name: str, fps: float = FOLDER_FPS, folder: Path | None = None):
        self.paths, self.name, self.fps, self.folder = paths, name, fps, folder
        self.i = 0

    def inputs(self) -> list[Path]:
        return list(self.paths) + ([self.folder] if self.folder is not None else [])

    def open(self) -> None:
        self.i = 0

    def read(self) -> np.ndarray | None:
        if self.i >= len(self.paths):
            return None
        p = self.paths[self.i]
        self.i += 1
        return read_frame(p)


class DemoSource(Source):
    """The bundled sample panned over time: a moving 640x480 BGR stream with known noise.

    Frame i is a crop of the (upscaled) sample along a smooth Lissajous path, plus Gaussian
    noise of the given sigma, rounded and clipped to uint8 as a camera delivers it (the
    camera protocol of BENCHMARK_PROTOCOL.md), so `reference()` gives the clean frame for PSNR.

    The noise is made ahead: `open()` draws a bank of `BANK` seeded, pre-rounded noise fields a
    little larger than the frame, and frame i adds field i % BANK at an offset drawn from
    default_rng(i). Making fresh noise per frame cost 10-47 ms of CPU on the two cores the model
    runs on (more than the `tiny` model itself); adding a stored field costs under 1 ms. A
    pixel of a still scene still sees a different noise value in every frame (the offset moves
    the field), so the stream stays a fair test for denoisers that average over time.
    """

    realtime = True
    BANK = 8
    MARGIN = 32  # the offsets' range, in pixels, each way

    def __init__(self, sigma: float = 25.0, size: tuple[int, int] = (640, 480), fps: float = 25.0):
        self.sigma, self.size, self.fps = float(sigma), size, fps
        self.name = f"demo:{self.sigma:g}"
        self.base = None
        self.noise: list[np.ndarray] = []
        self.i = 0
        self._clean = None

    def open(self) -> None:
        img = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"the bundled sample {SAMPLE} is missing or unreadable: reinstall edgedenoise")
        w, h = self.size
        scale = 1.6 * max(w, h) / min(img.shape[:2])  # room to pan
        self.base = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        m = self.MARGIN
        self.noise = []
        for k in range(self.BANK):  # round(clip(clean + n)) == clip(clean + round(n)) for integer clean
            n = np.random.default_rng(1000 + k).standard_normal((h + m, w + m, 3), dtype=np.float32)
            self.noise.append(np.round(n * np.float32(self.sigma)).astype(np.int16))
        self.i = 0

    def read(self) -> np.ndarray | None:
        w, h = self.size
        bh, bw = self.base.shape[:2]
        t = self.i / self.fps
        x = int(np.rint((bw - w) / 2 * (1 + np.sin(2 * np.pi * t / 9.0))))
        y = int(np.rint((bh - h) / 2 * (1 + np.sin(2 * np.pi * t / 7.0 + 1.0))))
        self._clean = self.base[y:y + h, x:x + w]
        dy, dx = np.random.default_rng(self.i).integers(0, self.MARGIN + 1, 2)
        field = self.noise[self.i % self.BANK][dy:dy + h, dx:dx + w]
        noisy = np.add(self._clean, field, dtype=np.int16)
        np.clip(noisy, 0, 255, out=noisy)
        self.i += 1
        return noisy.astype(np.uint8)

    def reference(self) -> np.ndarray | None:
        return self._clean

    def frame_size(self) -> tuple[int, int] | None:
        return self.size


def _sorted_images(paths) -> list[Path]:
    return sorted(Path(p) for p in paths if Path(p).suffix.lower() in IMAGE_EXTS and Path(p).is_file())


def parse_source(spec: str) -> Source:
    """The Source a spec names (not yet opened). Raises DataError for what cannot be a source."""
    spec = str(spec).strip()
    if not spec:
        raise DataError(f"empty --source: give {GRAMMAR}")
    m = re.fullmatch(r"demo(?::(.*))?", spec)
    if m:
        try:
            sigma = float(m.group(1)) if m.group(1) is not None else 25.0
        except ValueError:
            sigma = -1.0
        if not 0 <= sigma <= 255:
            raise DataError(f"--source {spec}: demo takes a noise level 0-255 (demo:25), not {m.group(1)!r}")
        return DemoSource(sigma)
    if spec.isdigit():
        if int(spec) > MAX_CAMERA_INDEX:
            raise DataError(f"--source {spec}: a camera index is 0-{MAX_CAMERA_INDEX} (ls /dev/video*)")
        return CaptureSource(int(spec), cv2.CAP_ANY, "camera", f"camera {spec}",
                             hint=": is it connected and not used by another program? (ls /dev/video*)")
    if spec.startswith("v4l2://"):
        dev = spec[len("v4l2://"):]
        if not Path(dev).exists():
            raise DataError(f"camera device {dev} not found (ls /dev/video*)")
        return CaptureSource(dev, cv2.CAP_V4L2, "camera", f"camera {dev}",
                             hint=": is it a capture device and not used by another program? (v4l2-ctl --list-devices)")
    if spec.startswith("csi://"):
        sensor = spec[len("csi://"):] or "0"
        if not sensor.isdigit():
            raise DataError(f"bad CSI camera {spec!r}: use csi://0, csi://1, ...")
        pipe = csi_pipeline(int(sensor))
        return _gstreamer(pipe, f"CSI camera {sensor}")
    if spec.startswith("gst:"):
        pipe = spec[4:].strip()
        if "appsink" not in pipe:
            raise DataError("a gst: source pipeline must end in appsink (e.g. '... ! videoconvert ! appsink')")
        return _gstreamer(pipe, "GStreamer pipeline")
    if re.match(r"(rtsps?|https?|rtmp|udp|tcp)://", spec):
        return CaptureSource(spec, cv2.CAP_FFMPEG, "network", spec,
                             hint="(check the URL, that the camera or server is up, and try it in ffplay or VLC)")
    path = spec.removeprefix("file://")
    if any(c in path for c in "*?["):
        files = _sorted_images(glob.glob(path))
        if not files:
            raise DataError(f"no images match {path!r}")
        return ImageSource(files, path, folder=Path(path).parent)
    p = Path(path)
    if not p.exists():
        raise DataError(f"source not found: {path} (expected {GRAMMAR})")
    if p.is_dir():
        files = _sorted_images(p.iterdir())
        if not files:
            raise DataError(f"no images in folder {p} ({', '.join(sorted(IMAGE_EXTS))})")
        return ImageSource(files, str(p), folder=p)
    if p.suffix.lower() in IMAGE_EXTS:
        return ImageSource([p], str(p))
    return CaptureSource(str(p), cv2.CAP_FFMPEG if _has_ffmpeg() else cv2.CAP_ANY, "file", str(p))


def _gstreamer(pipe: str, what: str) -> CaptureSource:
    shown = redact(pipe)
    if not has_gstreamer():
        raise DataError(f"{what} needs OpenCV built with GStreamer (the system OpenCV of JetPack has it; "
                        f"pip's opencv-python does not). Pipeline: {shown}")
    test = shown.rsplit("!", 1)[0].strip() + " ! fakesink"
    return CaptureSource(pipe, cv2.CAP_GSTREAMER, "gstreamer", what,
                         hint=f" through GStreamer pipeline: {shown} (test it with: gst-launch-1.0 {test})")


def _has_ffmpeg() -> bool:
    return _opencv_has("FFMPEG")


def open_source(spec: str) -> Source:
    """Parse and open a source; every failure is a DataError with a one-line message."""
    src = parse_source(spec)
    src.open()
    return src


def bench_frames(w: int, h: int, sigma: float, n: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n distinct noisy frames (and their clean ones) of the bundled sample at WxH, camera protocol."""
    from ..noise import protocol_noisy

    img = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
    scale = max(w / img.shape[1], h / img.shape[0]) * 1.1
    big = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    clean, noisy = [], []
    for i in range(n):
        y = (big.shape[0] - h) * i // max(n - 1, 1)
        x = (big.shape[1] - w) * i // max(n - 1, 1)
        c = np.ascontiguousarray(big[y:y + h, x:x + w])
        clean.append(c)
        noisy.append(protocol_noisy(c, sigma, i, "camera"))
    return clean, noisy
