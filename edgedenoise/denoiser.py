"""`Denoiser`: one call, a frame in and a frame out, on any backend.

    from edgedenoise import Denoiser
    d = Denoiser.load("default")            # shipped model, ONNX Runtime on the CPU
    out = d.denoise(frame, sigma=None)      # uint8 BGR (or gray) numpy frame, any size

Frames are what OpenCV delivers: HxW or HxWx1 (gray), HxWx3 (BGR), HxWx4 (BGRA; alpha
passes through untouched); uint8, uint16 or float32 in [0,1]. The output has the input's
shape and dtype. `sigma` is the noise std on the 0-255 scale; None estimates it from the
frame. Frames are padded (reflect) to the model's size multiple and cropped back.

This module imports neither torch nor triton: the `onnxruntime` backend is the runtime
default, and `torch` is imported only when that backend is asked for.
"""
from __future__ import annotations

from pathlib import Path

import time

import numpy as np

from .data import to_channels
from .errors import DataError, ModelError
from .estimate import estimate_sigma
from .modelfile import ModelFiles, resolve


GRAY_SIGMA_GAIN = 3 ** 0.5
# The largest frame one call takes: the network's float activations need about 100 bytes per
# pixel (a 10000x10000 frame took 9.7 GB), so 4096x4096 is about 1.6 GB. Larger frames go
# through tiles (`run --tile`, `denoise --tile`, runtime.tiling.tiled), whose memory is bounded
# by the tile.
MAX_PIXELS = 4096 * 4096


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, files: ModelFiles, threads: int | None = None, providers: list[str] | None = None,
                 precision: str = "fp32"):
        import onnxruntime as ort

        if files.onnx is None:
            raise ModelError(f"model {files.name} has no .onnx export: run `edgedenoise export --model ... --out X.onnx`")
        path = files.onnx
        if precision == "int8":
            if files.onnx_int8 is None:
                raise ModelError(f"model {files.name} has no INT8 variant: run `edgedenoise quantize --model "
                                 f"{files.onnx} --calib DIR` (DIR: clean training images)")
            path = files.onnx_int8
        elif precision != "fp32":
            raise ModelError(f"precision {precision!r} is not one ONNX Runtime runs here: choose fp32 or int8")
        self.precision = precision
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = threads
        # No busy-waiting between ops: on a 2-core machine the spinning pool threads fight the
        # capture and output threads (and each other); measured at 640x480 with `default`, p50 was
        # 80 or 103 ms from one run to the next with spinning, a steady 82-87 ms without.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            msg = str(e).splitlines()[0][:200]
            raise ModelError(f"cannot load ONNX model {path}: {msg} (corrupt or truncated? re-export it)") from None

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        return self.session.run(["denoised"], {"noisy": x, "sigma": sigma})[0]


class TorchBackend:
    name = "torch"

    def __init__(self, files: ModelFiles, device: str | None = None, threads: int | None = None):
        import torch

        from .modelfile import load_model

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_model(files.weights or files.onnx).to(self.device).eval()

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            xt = torch.from_numpy(x).to(self.device)
            st = torch.from_numpy(sigma).to(self.device)
            return self.model(xt, st).clamp_(0, 1).cpu().numpy()  # .cpu() is a device sync point


def _pick_backend(backend: str, files: ModelFiles, precision: str = "fp32") -> str:
    """`auto`: ONNX Runtime when the model has an ONNX export and onnxruntime imports (always for
    int8, which only ONNX Runtime runs here), else torch."""
    if backend != "auto":
        return backend
    if precision == "int8":
        return "onnxruntime"
    if files.onnx is not None:
        try:
            import onnxruntime  # noqa: F401

            return "onnxruntime"
        except ImportError:
            pass
    if files.weights is not None:
        return "torch"
    return "onnxruntime"


class Denoiser:
    def __init__(self, files: ModelFiles, backend: str = "auto", threads: int | None = None, device: str | None = None,
                 engine_path: Path | None = None, precision: str = "fp32"):
        self.files = files
        self.engine_path = engine_path
        self.precision = precision
        self.backend_name = _pick_backend(backend, files, precision)
        if precision != "fp32" and self.backend_name != "onnxruntime":
            raise ModelError(f"precision {precision} runs on the onnxruntime backend here (TensorRT engines carry "
                             "their own precision: edgedenoise build --precision)")
        if self.backend_name == "onnxruntime":
            self.backend = OnnxBackend(files, threads, precision=precision)
        elif self.backend_name == "torch":
            self.backend = TorchBackend(files, device, threads)
        elif self.backend_name == "tensorrt":
            from .engine import TensorRTBackend

            self.backend = TensorRTBackend(self.engine_path)
        elif self.backend_name == "triton":
            from .triton_backend import TritonBackend

            self.backend = TritonBackend(files, device)
        else:
            raise ModelError(f"unknown backend {backend!r}: choose auto, onnxruntime, torch, triton or tensorrt")
        self.multiple = files.size_multiple
        self.channels = files.channels
        self.max_pixels = MAX_PIXELS
        # seconds of the last denoise() call: (pre-process, inference, post-process)
        self.last_timing: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def load(cls, model: str | Path = "default", backend: str = "auto", threads: int | None = None,
             device: str | None = None, precision: str = "fp32") -> "Denoiser":
        """precision: fp32, or int8 (ONNX Runtime with the model's `.int8.onnx` from `edgedenoise quantize`)."""
        if str(model).endswith(".engine"):
            # a TensorRT engine: its sidecar names the ONNX model it was built from
            from .engine import read_sidecar

            meta = read_sidecar(Path(model))
            return cls(resolve(meta["onnx"]), "tensorrt", threads, device, engine_path=Path(model))
        if backend == "tensorrt":
            raise ModelError("the tensorrt backend needs an engine: --model MODEL.engine (edgedenoise build makes one)")
        return cls(resolve(model), backend, threads, device, precision=precision)

    @property
    def name(self) -> str:
        return self.files.name

    def denoise(self, frame: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """Denoise one frame (see the module docstring for what frames may be)."""
        t_start = time.perf_counter()
        self._t_infer = (t_start, t_start)
        out = self._denoise(frame, sigma)
        t_in, t_out = self._t_infer
        self.last_timing = (t_in - t_start, t_out - t_in, time.perf_counter() - t_out)
        return out

    def _denoise(self, frame: np.ndarray, sigma: float | None) -> np.ndarray:
        if not isinstance(frame, np.ndarray):
            raise DataError(f"frame must be a numpy array, not {type(frame).__name__}")
        if frame.ndim not in (2, 3) or frame.size == 0:
            raise DataError(f"frame has shape {frame.shape}: expected HxW or HxWxC")
        h, w = frame.shape[:2]
        if h * w > self.max_pixels:
            raise DataError(f"frame {w}x{h} ({h * w / 1e6:.0f} MP) is larger than one call takes "
                            f"({self.max_pixels / 1e6:.1f} MP, about {self.max_pixels * 100 / 1e9:.1f} GB of memory): "
                            f"denoise it in tiles, e.g. --tile 1024x1024")
        dtype = frame.dtype
        if dtype == np.uint8:
            scale = 255.0
        elif dtype == np.uint16:
            scale = 65535.0
        elif dtype in (np.float32, np.float64):
            scale = 1.0
        else:
            raise DataError(f"frame pixel type {dtype} is not supported (uint8, uint16 or float in [0,1])")
        alpha = frame[:, :, 3:4] if frame.ndim == 3 and frame.shape[2] == 4 else None
        in_ch = 1 if frame.ndim == 2 else frame.shape[2]
        if in_ch not in (1, 3, 4):
            raise DataError(f"frame has {in_ch} channels: expected 1 (gray), 3 (BGR) or 4 (BGRA)")
        gray_in = in_ch == 1
        if sigma is None:
            sigma = estimate_sigma(frame[:, :, :3] if frame.ndim == 3 else frame)
        sigma = float(sigma)
        if not 0.0 <= sigma <= 255.0:
            raise DataError(f"sigma {sigma} is outside 0-255 (it is the noise std on the 0-255 scale)")

        img = frame[:, :, :3] if alpha is not None else frame
        if gray_in and self.channels == 3:
            # A gray frame replicated to three channels carries the same noise in each, which a
            # colour model (trained on independent channel noise) reads as structure. Telling it
            # sqrt(3) x sigma restores the noise energy it expects: measured on Set12 at sigma 25,
            # +7 to +10 dB against +4.5 dB with sigma as is.
            sigma *= GRAY_SIGMA_GAIN
        if getattr(self.backend, "frame_native", False):
            return self._run_frame_native(frame, img, alpha, sigma)
        if self.channels == 3 and dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
            import cv2

            # one pass: BGR->RGB, HWC->CHW, uint8->float32 / 255 (numpy needs ~3x longer)
            x = cv2.dnn.blobFromImage(img, scalefactor=1.0 / 255.0, swapRB=True)
        else:
            if self.channels == 3:
                bgr = to_channels(img, 3)  # gray is replicated
                x = bgr[:, :, ::-1].transpose(2, 0, 1)[None]  # (1,3,H,W) RGB
            else:
                # a grayscale model denoises every channel of a colour frame as its own image
                planes = img if img.ndim == 3 else img[:, :, None]
                x = planes.transpose(2, 0, 1)[:, None]  # (C,1,H,W)
            x = x.astype(np.float32) * np.float32(1.0 / scale)
        y = self._run(x, sigma)
        if self.channels == 3:
            out = y[0].transpose(1, 2, 0)[:, :, ::-1]  # back to BGR HWC
            if gray_in:
                out = out.mean(axis=2)  # the three channels of a gray frame stay (nearly) equal
                out = out[:, :, None] if frame.ndim == 3 else out
        else:
            out = y[:, 0].transpose(1, 2, 0)
            if frame.ndim == 2:
                out = out[:, :, 0]
        if dtype == np.uint8 or dtype == np.uint16:
            out = np.clip(np.round(out * scale), 0, scale).astype(dtype)
        else:
            out = out.astype(dtype)
        if alpha is not None:
            out = np.concatenate([out, alpha], axis=2)
        return np.ascontiguousarray(out)

    def _run_frame_native(self, frame, img, alpha, sigma):
        """Backends that take uint8 BGR frames directly (the fused boundary kernels)."""
        if frame.dtype != np.uint8:
            raise DataError(f"the {self.backend_name} backend takes 8-bit frames; {frame.dtype} needs onnxruntime or torch")
        m = self.multiple
        h, w = img.shape[:2]
        if (-h) % m >= h or (-w) % m >= w:
            raise DataError(f"frame {w}x{h} is too small for the {self.backend_name} backend (pads by reflection)")
        bgr = np.ascontiguousarray(to_channels(img, 3))
        t0 = time.perf_counter()
        out = self.backend.denoise_frames(bgr, sigma)
        self._t_infer = (t0, time.perf_counter())
        if img.ndim == 2 or img.shape[2] == 1:
            out = np.round(out.mean(axis=2)).astype(np.uint8).reshape(img.shape)
        if alpha is not None:
            out = np.concatenate([out, alpha], axis=2)
        return out

    def _run(self, x: np.ndarray, sigma: float) -> np.ndarray:
        n, c, h, w = x.shape
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if h > ph and w > pw else "edge"
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)
        s = np.full((n,), sigma / 255.0, np.float32)
        x = np.ascontiguousarray(x)
        t0 = time.perf_counter()
        y = self.backend(x, s)
        self._t_infer = (t0, time.perf_counter())
        return y[:, :, :h, :w]
