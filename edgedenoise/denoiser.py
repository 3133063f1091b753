"""`Denoiser`: one call, a frame in and a frame out, on any backend.

    from edgedenoise import Denoiser
    d = Denoiser.load("default")            # shipped model, ONNX Runtime on the CPU
    out = d.denoise(frame, sigma=None)      # uint8 BGR (or gray) numpy frame, any size

Frames are what OpenCV delivers: HxW or HxWx1 (gray), HxWx3 (BGR), HxWx4 (BGRA; alpha
passes through untouched); uint8, uint16 or float32 in [0,1]. The output has the input's
shape and dtype. `sigma` is the noise std on the 0-255 scale; None estimates it from the
frame (`Denoiser.estimate`: the level to tell the model, a camera's correlated noise included,
scaled by the model's own blind gain where its JSON has one). `sigma_scale` (default 1)
multiplies the level told to the model, given or estimated: above 1 denoises more, below 1
keeps more detail (and noise). Frames are padded (reflect) to the model's size multiple and
cropped back.

This module imports neither torch nor triton: the backends (edgedenoise/backends/, one
contract for all) import their libraries only when one is built; the `onnxruntime` backend is
the runtime default.

Making a Denoiser keeps freed memory in the process for the next frame (memory.py: glibc's malloc
thresholds raised once per process; EDGEDENOISE_MALLOC=system declines): a stream's arrays then
reuse the last frame's pages instead of mapping fresh ones each frame.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import DataError, ModelError
from .estimate import estimate_sigma
from .frames import saturate, to_channels
from .memory import keep_freed_memory
from .modelfile import ModelFiles, resolve

GRAY_SIGMA_GAIN = 3 ** 0.5
# The largest frame one call takes: the network's float activations need about 100 bytes per
# pixel (a 10000x10000 frame took 9.7 GB), so 4096x4096 is about 1.6 GB. Larger frames go
# through tiles (`run --tile`, `denoise --tile`, tiling.tiled), whose memory is bounded
# by the tile.
MAX_PIXELS = 4096 * 4096


def check_sigma_scale(k: float) -> float:
    k = float(k)
    if not 0.0 < k <= 10.0:
        raise DataError(f"sigma scale {k:g} is outside (0, 10]: it multiplies the noise level told to the model")
    return k


class Timing(NamedTuple):
    """Seconds of one `denoise` call, by stage."""

    preprocess: float  # checks, conversion to the backend's input, padding
    inference: float  # the backend call (synchronous: device transfers and sync included)
    postprocess: float  # cropping, conversion back to the frame's type and layout

    @property
    def total(self) -> float:
        return self.preprocess + self.inference + self.postprocess


U8_LEVELS = (np.arange(256, dtype=np.float32) * np.float32(1.0 / 255.0)).reshape(1, 256)  # uint8 -> [0, 1]


def planar_to_bgr(y: np.ndarray, dtype) -> np.ndarray:
    """A colour model's output (3, H, W), RGB float in [0, 1], as a contiguous HxWx3 BGR frame of
    `dtype` (uint8 or uint16), rounded half to even and clipped: what np.clip(np.round(rgb * scale),
    0, scale) of the transposed output gives, bit for bit (4 million values, the ties and their
    float32 neighbours included, 2026-12-07), in two OpenCV passes (one scale-and-saturate into
    integer planes, one interleave) instead of five full-frame NumPy ones: 0.96 -> 0.10 ms a
    640x480 frame, about a tenth of `tiny`'s time on two cores."""
    import cv2

    y = np.asarray(y, np.float32)  # (a backend's half-precision output, should one give it)
    c, h, w = y.shape
    planes = saturate(y.reshape(c * h, w), dtype, float(np.iinfo(dtype).max))
    return cv2.merge([planes[2 * h:], planes[h:2 * h], planes[:h]])


class Denoiser:
    """A model on a backend, denoising frames as OpenCV delivers them (see the module docstring).

    Make one with `Denoiser.load(model, backend, precision)`; call `denoise(frame, sigma)`, or
    `denoise_timed(frame, sigma)` for the output and its `Timing`. A Denoiser keeps no state
    between calls (its backend only caches), so one may serve several threads where its
    backend allows (ONNX Runtime sessions do).

    Attributes: `name` (the model), `backend_name`, `precision`, `why` (what picked the backend),
    `multiple` (H and W are padded to multiples of it), `channels` (of the model: 3 colour, 1
    gray), `max_pixels` (the largest frame one call takes; larger ones need tiles),
    `sigma_scale` (multiplies every level told to the model; settable), `warmed` (the sizes
    `warm_up` ran at).
    """

    def __init__(self, files: ModelFiles, backend: str = "auto", threads: int | None = None, device: str | None = None,
                 engine_path: Path | None = None, precision: str = "fp32", sigma_scale: float = 1.0):
        from . import backends

        keep_freed_memory()  # a frame's arrays reuse the last frame's memory (memory.py)
        self.files = files
        choice = backends.pick(backend, files, precision) if engine_path is None else None
        self.engine_path = engine_path or choice.engine
        self.precision = choice.precision if choice else precision
        self.backend_name = choice.backend if choice else "tensorrt"
        self.why = choice.why if choice else f"tensorrt: the engine {engine_path} as asked"
        if self.backend_name == "onnxruntime" and self.precision == "int8":
            from .backends.choice import int8_saturates_here

            if int8_saturates_here():
                self.why += ("; note: this x86 CPU has no VNNI, where INT8 saturates: no faster than fp32 and "
                             "0.3-1.7 dB further below it (edgedenoise doctor)")
        self.backend = backends.create(self.backend_name, files, threads, device, self.precision, self.engine_path)
        if getattr(self.backend, "rewritten", 0):  # backends/ortgraph.py: timings depend on it, so it is said
            n = self.backend.rewritten
            what = ("pixel-shuffles run as transposed convolutions" if n > 1 else
                    "pixel-shuffle runs as a transposed convolution")
            kind = "float " if self.precision == "int8" else ""  # an INT8 graph's uint8 ones stay (ortgraph.py)
            self.why += (f"; its {n} {kind}{what} (ONNX Runtime's DepthToSpace is slow on CPUs; "
                         "EDGEDENOISE_ORT_GRAPH=file: as in the file)")
        self.fusion_note = ""  # a recurrent model's fusion as ortgraph.py rewrote it (said where the variant is taken)
        if getattr(self.backend, "rewritten_fusion", ()):
            done = ", ".join(self.backend.rewritten_fusion)
            self.fusion_note = f"its recurrent fusion as the CPU runs it fastest ({done})"
            self.why += f"; {self.fusion_note}"
        if self.backend_name == "tensorrt":
            self.precision = getattr(self.backend, "precision", self.precision)
        self.warmed: set = set()  # (height, width) sizes warm_up ran at
        self.multiple = self.backend.size_multiple
        self.channels = files.channels
        self.recurrent = files.recurrent  # takes the previous denoised frame too (VideoDenoiser keeps it)
        self.max_pixels = MAX_PIXELS
        self.sigma_scale = check_sigma_scale(sigma_scale)
        self.blind_gain = files.blind_gain  # how blind mode scales a camera's correlated noise for this model

    @classmethod
    def load(cls, model: str | Path = "default", backend: str = "auto", threads: int | None = None,
             device: str | None = None, precision: str = "fp32", sigma_scale: float = 1.0) -> Denoiser:
        """model: a shipped name (`default`, `tiny`, ...), a run folder, a `.safetensors`/`.onnx` file, or a
        TensorRT `.engine` (its sidecar names its ONNX model). backend: auto (a TensorRT engine built for the
        model on this machine, else triton on a CUDA GPU, else torch on the GPU, else ONNX Runtime on the
        CPU: backends/choice.py; `why` says what was picked and why), onnxruntime, torch, triton (CUDA) or
        tensorrt (an engine beside the model or in $EDGEDENOISE_ENGINES). precision: fp32; int8 (ONNX
        Runtime with the model's `.int8.onnx` from `edgedenoise quantize`, or an int8 engine); fp16 (triton,
        torch on CUDA, an engine); auto (fp16 on a GPU, fp32 on the CPU). sigma_scale: multiplies the level
        told to the model (see the module docstring)."""
        if str(model).endswith(".engine"):
            from .trt.sidecar import read_sidecar  # not .engine: it imports the builder, which imports this module

            meta = read_sidecar(Path(model))
            return cls(resolve(meta["onnx"]), "tensorrt", threads, device, engine_path=Path(model),
                       sigma_scale=sigma_scale)
        files = resolve(model)
        if files.variant == "int8":  # the INT8 file itself was named: it is what runs
            precision = "int8" if precision in ("fp32", "auto") else precision
        elif files.variant:
            what = "TensorRT Q/DQ" if files.variant == "trt.int8" else "frame-native"
            raise ModelError(f"{model} is the {what} graph, for edgedenoise build; load the model itself "
                             f"({files.onnx or files.weights or 'its .onnx'})")
        return cls(files, backend, threads, device, precision=precision, sigma_scale=sigma_scale)

    def close(self) -> None:
        self.backend.close()

    @property
    def name(self) -> str:
        return self.files.name

    def estimate(self, frame: np.ndarray) -> float:
        """Blind mode's noise level for `frame` (0-255, before `sigma_scale`): estimate.estimate_sigma with
        this model's blind gain. Single-threaded, safe to call from another thread."""
        return estimate_sigma(frame, self.blind_gain)

    def told(self, sigma: float) -> float:
        """The level the model is told for noise level `sigma` (0-255): sigma x sigma_scale, at most 255."""
        return min(float(sigma) * self.sigma_scale, 255.0)

    def denoise(self, frame: np.ndarray, sigma: float | None = None, previous: np.ndarray | None = None) -> np.ndarray:
        """Denoise one frame (see the module docstring for what frames may be). `previous`: for a
        recurrent model only, the last denoised frame of the stream (the frame's shape and dtype);
        None starts a scene (the model is given the frame itself)."""
        return self.denoise_timed(frame, sigma, previous)[0]

    def warm_up(self, width: int, height: int, calls: int = 2) -> float:
        """Run the backend on a noisy frame of this size `calls` times, so that what a first call
        does (allocations, a Triton kernel's compilation, a CUDA graph's capture) is done before a
        stream's first frame is timed or dropped. Returns the seconds it took; 0 for a size warmed
        before."""
        key = (int(height), int(width))
        if key in self.warmed:
            return 0.0
        t = time.perf_counter()
        shape = key + ((3,) if self.channels == 3 else ())
        frame = np.clip(128 + np.random.default_rng(0).normal(0, 25, shape), 0, 255).astype(np.uint8)
        for _ in range(calls):
            self.denoise(frame, 25.0)
        self.warmed.add(key)
        return time.perf_counter() - t

    def denoise_timed(self, frame: np.ndarray, sigma: float | None = None,
                      previous: np.ndarray | None = None) -> tuple[np.ndarray, Timing]:
        """`denoise`, and the seconds its stages took."""
        t0 = time.perf_counter()
        out, (t1, t2) = self._denoise(frame, sigma, previous)
        t3 = time.perf_counter()
        return out, Timing(t1 - t0, t2 - t1, t3 - t2)

    def _check_previous(self, frame: np.ndarray, previous: np.ndarray | None) -> None:
        if previous is None:
            return
        if not self.recurrent:
            raise DataError(f"model {self.name} denoises frame by frame: it takes no previous frame")
        if not isinstance(previous, np.ndarray) or previous.shape != frame.shape or previous.dtype != frame.dtype:
            what = f"{previous.shape} {previous.dtype}" if isinstance(previous, np.ndarray) else type(previous).__name__
            raise DataError(f"the previous frame ({what}) does not match the frame ({frame.shape} {frame.dtype}): "
                            f"a recurrent model's state is the last output of the same stream")

    def _denoise(self, frame: np.ndarray, sigma: float | None,
                 previous: np.ndarray | None = None) -> tuple[np.ndarray, tuple[float, float]]:
        """The output and when the backend call began and ended."""
        if not isinstance(frame, np.ndarray):
            raise DataError(f"frame must be a numpy array, not {type(frame).__name__}")
        if frame.ndim not in (2, 3) or frame.size == 0:
            raise DataError(f"frame has shape {frame.shape}: expected HxW or HxWxC")
        h, w = frame.shape[:2]
        if h * w > self.max_pixels:
            raise DataError(f"frame {w}x{h} ({h * w / 1e6:.0f} MP) is larger than one call takes "
                            f"({self.max_pixels / 1e6:.1f} MP, about {self.max_pixels * 100 / 1e9:.1f} GB of memory): "
                            f"denoise it in tiles, e.g. --tile 1024x1024")
        self._check_previous(frame, previous)
        dtype = frame.dtype
        if dtype == np.uint8:
            scale = 255.0
        elif dtype == np.uint16:
            scale = 65535.0
        elif dtype in (np.float32, np.float64):
            scale = 1.0
            # one NaN spreads through the convolutions over a thousand output pixels (and through the
            # estimate to the whole frame): refused, not passed on
            if not np.isfinite(frame).all():
                bad = int(frame.size - np.count_nonzero(np.isfinite(frame)))
                raise DataError(f"frame has {bad} NaN or infinite value{'s' * (bad > 1)}: a float frame must be "
                                f"finite (in [0,1])")
        else:
            raise DataError(f"frame pixel type {dtype} is not supported (uint8, uint16 or float in [0,1])")
        alpha = frame[:, :, 3:4] if frame.ndim == 3 and frame.shape[2] == 4 else None
        in_ch = 1 if frame.ndim == 2 else frame.shape[2]
        if in_ch not in (1, 3, 4):
            raise DataError(f"frame has {in_ch} channels: expected 1 (gray), 3 (BGR) or 4 (BGRA)")
        gray_in = in_ch == 1
        if sigma is None:
            sigma = self.estimate(frame)
        try:
            sigma = float(sigma)
        except (TypeError, ValueError):
            raise DataError(f"sigma {sigma!r} is not a number (the noise std on the 0-255 scale)") from None
        if not 0.0 <= sigma <= 255.0:
            raise DataError(f"sigma {sigma} is outside 0-255 (it is the noise std on the 0-255 scale)")
        sigma = self.told(sigma)

        img = frame[:, :, :3] if alpha is not None else frame
        if previous is not None and alpha is not None:
            previous = previous[:, :, :3]  # laid out as img
        if gray_in and self.channels == 3:
            # A gray frame replicated to three channels carries the same noise in each, which a
            # colour model (trained on independent channel noise) reads as structure. Telling it
            # sqrt(3) x sigma restores the noise energy it expects: measured on Set12 at sigma 25,
            # +7 to +10 dB against +4.5 dB with sigma as is.
            sigma *= GRAY_SIGMA_GAIN
        if self.backend.frame_native:
            return self._run_frame_native(frame, img, alpha, sigma, previous)
        x = self._to_input(img, scale)
        p = None
        if previous is not None:
            p = self._to_input(previous, scale)
        elif self.recurrent:
            p = x  # a scene's first frame: the model is given the frame itself
        y, times = self._run(x, sigma, p)
        integer = dtype == np.uint8 or dtype == np.uint16
        if self.channels == 3 and not gray_in and integer:
            out = planar_to_bgr(y[0], dtype)  # (the common case: back to BGR HWC in two OpenCV passes)
        else:
            if self.channels == 3:
                out = y[0].transpose(1, 2, 0)[:, :, ::-1]  # back to BGR HWC
                if gray_in:
                    out = out.mean(axis=2)  # the three channels of a gray frame stay (nearly) equal
                    out = out[:, :, None] if frame.ndim == 3 else out
            else:
                out = y[:, 0].transpose(1, 2, 0)
                if frame.ndim == 2:
                    out = out[:, :, 0]
            out = saturate(out, dtype, scale) if integer else out.astype(dtype)
        if alpha is not None:
            out = np.concatenate([out, alpha], axis=2)
        return np.ascontiguousarray(out), times

    def _to_input(self, img: np.ndarray, scale: float) -> np.ndarray:
        """A frame (without alpha) as the backend's float32 (N,C,H,W) input in [0,1]."""
        if self.channels == 3 and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
            import cv2

            # BGR->RGB and HWC->CHW on the bytes (split, stacked as R, G, B planes), then uint8 ->
            # float32 / 255 by a table: the same numbers as cv2.dnn.blobFromImage (scalefactor
            # 1/255, swapRB) in under half its time (0.40 -> 0.18 ms at 640x480; NumPy ~3x longer)
            h, w = img.shape[:2]
            b, g, r = cv2.split(img)
            return cv2.LUT(cv2.vconcat([r, g, b]), U8_LEVELS).reshape(1, 3, h, w)
        if self.channels == 3:
            bgr = to_channels(img, 3)  # gray is replicated
            x = bgr[:, :, ::-1].transpose(2, 0, 1)[None]  # (1,3,H,W) RGB
        else:
            # a grayscale model denoises every channel of a colour frame as its own image
            planes = img if img.ndim == 3 else img[:, :, None]
            x = planes.transpose(2, 0, 1)[:, None]  # (C,1,H,W)
        return x.astype(np.float32) * np.float32(1.0 / scale)

    def _run_frame_native(self, frame, img, alpha, sigma, previous=None):
        """Backends that take uint8 BGR frames directly (the fused boundary kernels); `previous`: a
        recurrent model's last output, laid out as `img` (None: a scene's first frame)."""
        if frame.dtype != np.uint8:
            raise DataError(f"the {self.backend_name} backend takes 8-bit frames; {frame.dtype} needs onnxruntime "
                            "or torch")
        m = self.multiple
        h, w = img.shape[:2]
        if (-h) % m >= h or (-w) % m >= w:
            raise DataError(f"frame {w}x{h} is too small for the {self.backend_name} backend (pads by reflection)")
        bgr = np.ascontiguousarray(to_channels(img, 3))
        state = () if previous is None else (np.ascontiguousarray(to_channels(previous, 3)),)
        t0 = time.perf_counter()
        out = self.backend.infer_frames(bgr, sigma, *state)
        times = (t0, time.perf_counter())
        if img.ndim == 2 or img.shape[2] == 1:
            out = np.round(out.mean(axis=2)).astype(np.uint8).reshape(img.shape)
        if alpha is not None:
            out = np.concatenate([out, alpha], axis=2)
        return out, times

    def _run(self, x: np.ndarray, sigma: float,
             previous: np.ndarray | None = None) -> tuple[np.ndarray, tuple[float, float]]:
        n, c, h, w = x.shape
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if h > ph and w > pw else "edge"
            pad = ((0, 0), (0, 0), (0, ph), (0, pw))
            same = previous is x  # a scene's first frame is its own previous frame: padded once
            x = np.pad(x, pad, mode=mode)
            previous = x if same else None if previous is None else np.pad(previous, pad, mode=mode)
        s = np.full((n,), sigma / 255.0, np.float32)
        x = np.ascontiguousarray(x)
        t0 = time.perf_counter()
        if previous is None:
            y = self.backend.infer(x, s)
        else:
            y = self.backend.infer(x, s, np.ascontiguousarray(previous))
        return y[:, :, :h, :w], (t0, time.perf_counter())
