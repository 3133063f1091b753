"""ONNX export: `edgedenoise export --model MODEL --out model.onnx`.

The graph follows ARCHITECTURE.md's contract: float input `noisy` (N,C,H,W; RGB or
gray in [0,1]), float input `sigma` (N,) in [0,1] units, float output `denoised`
(clamped to [0,1]); N, H and W dynamic, H and W multiples of the `size_multiple`
metadata property (callers pad and crop). Metadata also names the model, its
architecture config, its training data and the edgedenoise version.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from . import __version__
from .errors import ModelError
from .modelfile import load_model, resolve

OPSET = 17


class _Exported(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, noisy, sigma):
        return self.net(noisy, sigma).clamp(0.0, 1.0)


def export_onnx(model_spec: str | Path, out: str | Path, check: bool = True) -> dict:
    """Export a model to ONNX, check it, and verify ONNX Runtime against PyTorch.
    Returns a summary (path, size, seconds, max abs error)."""
    import onnx

    t0 = time.time()
    files = resolve(model_spec)
    net = load_model(model_spec)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    m = net.config.size_multiple
    c = net.config.channels
    x = torch.rand(1, c, 4 * m, 4 * m)
    s = torch.full((1,), 25 / 255)
    wrapper = _Exported(net).eval()
    tmp = out.with_suffix(".onnx.tmp")
    torch.onnx.export(
        wrapper, (x, s), str(tmp), dynamo=False, opset_version=OPSET,
        input_names=["noisy", "sigma"], output_names=["denoised"],
        dynamic_axes={"noisy": {0: "N", 2: "H", 3: "W"}, "sigma": {0: "N"}, "denoised": {0: "N", 2: "H", 3: "W"}},
        do_constant_folding=True,
    )
    proto = onnx.load(str(tmp))
    slimmed = False
    try:
        import onnxslim

        proto = onnxslim.slim(proto)  # folds the exporter's shape arithmetic for the noise map
        slimmed = True
    except ImportError:
        pass
    cfg = files.config
    meta = {
        "model_name": files.name,
        "config": json.dumps(cfg),
        "size_multiple": str(m),
        "channels": str(c),
        "training_data": str(cfg.get("extra", {}).get("trained_on", "unknown")),
        "edgedenoise_version": __version__,
        "sigma_units": "noise std in [0,1] units (sigma_255 / 255)",
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    proto.producer_name = "edgedenoise"
    if check:
        onnx.checker.check_model(proto, full_check=True)
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    err = verify_onnx(net, out) if check else None
    return {"path": str(out), "bytes": out.stat().st_size, "seconds": time.time() - t0, "max_abs_err": err,
            "slimmed": slimmed}


# Real-image checks: (batch, height, width) crops of the bundled sample picture; the odd
# size is padded by the caller (reflection) to the model's size multiple, as the runtime does.
VERIFY_SIZES = ((1, 64, 96), (2, 144, 176), (1, 75, 101))


def verify_onnx(net, path: Path, sizes=VERIFY_SIZES, tol: float = 1e-4) -> float:
    """Max abs difference between ONNX Runtime (CPU) and PyTorch on noisy crops of a real image."""
    import onnxruntime as ort

    from .data import read_image
    from .noise import protocol_noisy
    from .train import pad_to_multiple

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    sample = read_image(Path(__file__).resolve().parent / "samples" / "astronaut.jpg", net.config.channels)
    worst = 0.0
    for i, (n, h, w) in enumerate(sizes):
        crops = [protocol_noisy(sample[40 * j: 40 * j + h, 30 * j: 30 * j + w], 25, i, "camera") for j in range(n)]
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
        x, _, _ = pad_to_multiple(x, net.config.size_multiple)
        s = torch.full((n,), 25 / 255.0)
        got = sess.run(["denoised"], {"noisy": x.numpy(), "sigma": s.numpy()})[0]
        with torch.no_grad():
            ref = net(x, s).clamp(0, 1).numpy()
        worst = max(worst, float(np.abs(got - ref).max()))
    if worst > tol:
        raise ModelError(f"ONNX export of {path} differs from PyTorch by {worst:.2e} (> {tol:g})")
    return worst
