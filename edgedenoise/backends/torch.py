"""The `torch` backend: the safetensors weights in PyTorch (torch is imported when it is built)."""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from ..modelfile import ModelFiles
from . import Backend


class TorchBackend(Backend):
    """The safetensors weights in PyTorch, on CUDA when there is one, else the CPU."""

    name = "torch"

    def __init__(self, files: ModelFiles, device: str | None = None, threads: int | None = None):
        import torch

        from ..modelfile import load_model

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_model(files.weights or files.onnx).to(self.device).eval()

    def infer(self, x: np.ndarray, sigma: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        torch = self.torch
        if previous is not None and not self.model.config.recurrent:
            raise ModelError("this model is not recurrent: it takes no previous frame")
        with torch.inference_mode():
            xt = torch.from_numpy(x).to(self.device)
            st = torch.from_numpy(sigma).to(self.device)
            pt = None if previous is None else torch.from_numpy(previous).to(self.device)
            return self.model(xt, st, pt).clamp_(0, 1).cpu().numpy()  # .cpu() is a device sync point
