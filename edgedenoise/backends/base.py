"""The backend contract's base class (the package docstring, backends/__init__.py, writes the
contract down). Here, not in the package: the backend modules import it, and the package imports
them."""
from __future__ import annotations

import numpy as np

from ..errors import ModelError


def fused_gate(config: dict) -> bool:
    """Whether the triton backend's kernels compute this recurrent model's fusion: a gate branch fed
    colour sums at pixel-shuffle 2 (tiny-video, default-video); other recurrent variants run on
    onnxruntime or torch."""
    return bool(config.get("gate")) and config.get("gate_in", "parts") == "sums" and config.get("unshuffle", 2) == 2


def unfused_gate(name: str) -> str:
    """What the triton backend says of a recurrent model `name` whose fusion it does not compute (fused_gate)."""
    return (f"the triton backend runs recurrent models with a gate branch fed colour sums (tiny-video, "
            f"default-video), not {name}: use onnxruntime or torch")


class Backend:
    """The contract of the package docstring; subclasses set `name` and `frame_native` and implement one call."""

    name = "backend"
    frame_native = False
    precision = "fp32"
    size_multiple = 1
    on_gpu = False  # whether it computes on a GPU (tensorrt, triton; torch on CUDA; an ORT GPU provider)

    def infer(self, x: np.ndarray, sigma: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        """x (N,C,H,W) float32 in [0,1], sigma (N,) in [0,1] units; `previous` (laid out as x) only
        for a recurrent model, which every backend that runs one requires."""
        raise ModelError(f"the {self.name} backend takes uint8 BGR frames: call infer_frames")

    def infer_frames(self, frames: np.ndarray, sigma: float, previous: np.ndarray | None = None) -> np.ndarray:
        raise ModelError(f"the {self.name} backend takes float NCHW input: call infer")

    def close(self) -> None:
        pass
