#!/usr/bin/env python3
"""What the shipped INT8 graphs are worth on this CPU: quality and time against fp32, with ONNX Runtime's
fused INT8 kernels and with the same graph run unfused (its Q/DQ pairs as float operations: what the
INT8 arithmetic itself costs, without the kernels' products).

    python benchmarks/int8_cpu.py [--models tiny,default]      # a minute or two on 2 cores

On an x86 CPU without VNNI (AVX2 only) ONNX Runtime multiplies u8 x s8 pairs with a 16-bit sum that
saturates, so the fused kernels lose more than the INT8 arithmetic does (backends/choice.py x86_vnni;
the README's INT8 note). Quality: the first 6 Kodak24 images, a 256x256 crop each, camera-protocol
noise at sigma 25 seeded by the image's index, each model told 25; time: median of 15 calls on a
640x480 frame after 3 warm-up calls, ONNX Runtime's default threads.

Writes benchmarks/results/int8_cpu.{json,md}.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from common import publish, stamp  # noqa: E402  (common puts the checkout on sys.path)

LEVELS = {"fp32": "all", "int8, fused kernels": "all", "int8, unfused (Q/DQ as float)": "basic"}


def session(path, level: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                   "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def feeds(sess, x: np.ndarray, sigma: float) -> dict:
    shape = [d if isinstance(d, int) else 1 for d in next(i for i in sess.get_inputs() if i.name == "sigma").shape]
    return {"noisy": x, "sigma": np.full(shape, sigma / 255.0, np.float32)}


def psnr_of(sess, crops) -> float:
    from edgedenoise.frames import psnr_u8

    out = []
    for noisy, clean in crops:
        x = np.ascontiguousarray(noisy.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
        y = sess.run(None, feeds(sess, x, 25.0))[0][0].transpose(1, 2, 0)
        out.append(psnr_u8(np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8), clean))
    return float(np.mean(out))


def ms_of(sess) -> float:
    x = np.random.default_rng(0).random((1, 3, 480, 640), dtype=np.float32)
    f = feeds(sess, x, 25.0)
    for _ in range(3):
        sess.run(None, f)
    times = []
    for _ in range(15):
        t = time.perf_counter()
        sess.run(None, f)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,default")
    a = ap.parse_args()

    from edgedenoise.backends.choice import x86_vnni
    from edgedenoise.data import default_data_root, list_images, read_image
    from edgedenoise.modelfile import resolve
    from edgedenoise.noise import protocol_noisy

    crops = []
    for i, f in enumerate(list_images(default_data_root() / "test" / "Kodak24")[:6]):
        clean = read_image(f, 3)[:256, :256]
        crops.append((protocol_noisy(clean, 25.0, i, "camera"), clean))
    vnni = x86_vnni()
    results = {}
    for m in a.models.split(","):
        files = resolve(m)
        rows = {}
        for label, level in LEVELS.items():
            sess = session(files.onnx if label == "fp32" else files.onnx_int8, level)
            rows[label] = {"psnr": psnr_of(sess, crops), "ms": ms_of(sess)}
        results[files.name] = rows

    cpu = {None: "not x86 (or flags unreadable)", True: "x86 with VNNI", False: "x86 without VNNI (AVX2 only)"}[vnni]
    lines = [f"CPU: {cpu}. PSNR dB: 6 Kodak24 crops of 256x256, sigma 25 (camera protocol), told 25; "
             "ms: median per 640x480 frame, ONNX Runtime.", "",
             "| model | graph | PSNR | vs fp32 | ms | vs fp32 |", "|---|---|---|---|---|---|"]
    for name, rows in results.items():
        base = rows["fp32"]
        for label, r in rows.items():
            lines.append(f"| {name} | {label} | {r['psnr']:.2f} | {r['psnr'] - base['psnr']:+.2f} | {r['ms']:.1f} | "
                         f"{r['ms'] / base['ms']:.2f}x |")
    md = "\n".join(lines)
    return publish("int8_cpu", {"stamp": stamp({"vnni": vnni}), "results": results}, md)


if __name__ == "__main__":
    raise SystemExit(main())
