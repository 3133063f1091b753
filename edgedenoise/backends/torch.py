"""The `torch` backend: the safetensors weights in PyTorch (torch is imported when it is built)."""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from ..modelfile import ModelFiles
from .base import Backend


class TorchBackend(Backend):
    """The safetensors weights in PyTorch, on CUDA when there is one, else the CPU. fp16 (CUDA
    only): weights and activations in half precision, channels_last (cuDNN's fast layout for it);
    input and output stay float32 at the contract."""

    name = "torch"

    def __init__(self, files: ModelFiles, device: str | None = None, threads: int | None = None,
                 dtype: str = "fp32"):
        import torch

        from ..modelfile import load_model

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.on_gpu = self.device.type == "cuda"
        if dtype not in ("fp32", "fp16"):
            raise ModelError(f"the torch backend computes in fp32 or fp16 (CUDA), not {dtype}")
        if dtype == "fp16" and self.device.type != "cuda":
            raise ModelError("fp16 on the torch backend needs a CUDA GPU (this one runs on the CPU): use fp32, "
                             "or int8 on onnxruntime")
        self.precision = dtype
        self.dtype = torch.float16 if dtype == "fp16" else torch.float32
        self.layout = torch.channels_last if dtype == "fp16" else torch.contiguous_format
        model = load_model(files.weights or files.onnx).to(self.device).eval()
        self.model = model.to(dtype=self.dtype, memory_format=self.layout)

    def _tensor(self, a: np.ndarray):
        t = self.torch.from_numpy(a).to(self.device).to(self.dtype)
        return t.contiguous(memory_format=self.layout) if t.dim() == 4 else t

    def infer(self, x: np.ndarray, sigma: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        torch = self.torch
        if previous is not None and not self.model.config.recurrent:
            raise ModelError("this model is not recurrent: it takes no previous frame")
        with torch.inference_mode():
            xt, st = self._tensor(x), self._tensor(sigma)
            pt = None if previous is None else self._tensor(previous)
            out = self.model(xt, st, pt).clamp_(0, 1)
            return out.float().contiguous().cpu().numpy()  # .cpu() is a device sync point
