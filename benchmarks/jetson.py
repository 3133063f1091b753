#!/usr/bin/env python3
"""Projection to Jetson Orin: an ESTIMATE of frames per second, not a measurement.

    python benchmarks/jetson.py

For each model size and frame size, every convolution of the network is measured by running
the model with hooks (its MACs, the activations it reads and writes, its weights), then each
layer is given the time of its roofline bound on each device:

    t_layer = max( 2 * MACs / (peak FP16 tensor FLOP/s * e_c),  bytes / (memory bandwidth * e_m) )
    t_frame = sum of t_layer + (3 + 3) bytes per pixel / (bandwidth * e_m)   (uint8 frame in and out)
    fps     = 1 / t_frame

with activations and weights in fp16 (2 bytes), each layer reading its input and weights once
and writing its output once (no cache reuse between layers: frames are megabytes, L2 is 4 MB on
Orin), and pixel (un)shuffle and additions fused into the convolutions around them.
Two rows per case: the roofline bound (e_c = e_m = 1, unreachable) and a derated estimate with
e_c = 0.35 and e_m = 0.7. The derating is an assumption, written here so it can be argued with:
convolutions with 16-96 channels fill tensor cores poorly (0.35), and streaming kernels reach
about 70% of the memory bandwidth of LPDDR5. Replace them with measured efficiencies once an
Orin is on the desk (`edgedenoise bench` there).

Device figures (published, dense FP16 tensor TFLOPS / memory bandwidth): Orin Nano 8GB 10 /
68 GB/s, Orin NX 16GB 15 / 102 GB/s, AGX Orin 64GB 43 / 205 GB/s.

One measured GPU point checks the derating: the same formula for the NVIDIA H200 (989 / 4800)
against the triton backend's measured time there (fp16, CUDA graphs, uint8 in and out:
results/gpu_check_nvidia_h200_2026-12-04/latency_gpu.json). The ratio measured / estimated is
reported, and a third column divides each Jetson estimate by it: what the Jetson would do if the
kernels reached no larger a share of its roofline than they reach on the H200. That is a
pessimistic reading (a frame fills a small GPU better than a 132-SM one, and launch overheads
weigh less at Orin's lower speed), so the truth is expected between the two columns.

Writes benchmarks/results/jetson_projection.{json,md}.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import publish, stamp  # noqa: E402

DEVICES = {"Orin Nano 8GB": (10.0, 68.0), "Orin NX 16GB": (15.0, 102.0), "AGX Orin 64GB": (43.0, 205.0)}
DERATE = {"compute": 0.35, "memory": 0.7}
FRAMES = {"720p": (720, 1280), "1080p": (1088, 1920)}  # 1080 padded to the size multiple (16)
BYTES = 2  # fp16
H200 = (989.0, 4800.0)
MEASURED = Path(__file__).resolve().parent / "results" / "gpu_check_nvidia_h200_2026-12-04" / "latency_gpu.json"
MEASURED_CASE = "triton (CUDA graphs)"
RESOLUTION = {"720p": "1280x720", "1080p": "1920x1080"}


def measured_point() -> dict:
    """(model, frame) -> ms measured on the H200 (fp16, CUDA graphs), from the committed GPU check."""
    if not MEASURED.exists():
        return {}
    doc = json.loads(MEASURED.read_text())
    out = {}
    for r in doc["results"]:
        if r.get("status") == "ok" and r["case"] == MEASURED_CASE and r["precision"] == "fp16":
            for f, res in RESOLUTION.items():
                if r["resolution"] == res:
                    out[(r["model"], f)] = float(r["p50_ms"])
    return out


def layer_table(model_name: str, h: int, w: int) -> list[dict]:
    """MACs and bytes moved of every convolution for one HxW frame (measured with hooks)."""
    from edgedenoise.model import build_model, conv_trace
    from edgedenoise.modelfile import resolve

    net = build_model(resolve(model_name).config).eval()
    return [{"macs": r["macs"], "bytes": (r["in_numel"] + r["out_numel"] + r["weight_numel"]) * BYTES}
            for r in conv_trace(net, h, w)]


def project(layers: list[dict], pixels: int, tflops: float, gbs: float, ec: float, em: float) -> float:
    t = sum(max(2 * r["macs"] / (tflops * 1e12 * ec), r["bytes"] / (gbs * 1e9 * em)) for r in layers)
    t += 6 * pixels / (gbs * 1e9 * em)
    return 1.0 / t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,default")
    a = ap.parse_args()

    rows, checks = [], []
    measured = measured_point()
    for model in a.models.split(","):
        for fname, (h, w) in FRAMES.items():
            layers = layer_table(model, h, w)
            macs = sum(r["macs"] for r in layers)
            nbytes = sum(r["bytes"] for r in layers) + 6 * h * w
            ratio = None
            if (model, fname) in measured:
                est_ms = 1e3 / project(layers, h * w, *H200, DERATE["compute"], DERATE["memory"])
                ratio = measured[(model, fname)] / est_ms
                checks.append({"model": model, "frame": fname, "h200_estimate_ms": round(est_ms, 3),
                               "h200_measured_ms": measured[(model, fname)], "measured_over_estimate": round(ratio, 2)})
            for dev, (tf, bw) in DEVICES.items():
                bound = project(layers, h * w, tf, bw, 1.0, 1.0)
                est = project(layers, h * w, tf, bw, DERATE["compute"], DERATE["memory"])
                ai = 2 * macs / nbytes
                rows.append({"model": model, "frame": fname, "device": dev, "gmac_per_frame": round(macs / 1e9, 2),
                             "mbytes_per_frame": round(nbytes / 1e6, 1), "flop_per_byte": round(ai, 1),
                             "fps_roofline_bound": round(bound, 1), "fps_estimate": round(est, 1),
                             "fps_at_h200_efficiency": round(est / ratio, 1) if ratio and ratio > 1 else None})
    doc = {"stamp": stamp({"kind": "ESTIMATE (projection from counted MACs and bytes; not measured)"}),
           "devices": {k: {"fp16_tensor_tflops": v[0], "bandwidth_gb_s": v[1]} for k, v in DEVICES.items()},
           "derating": DERATE, "bytes_per_value": BYTES, "results": rows,
           "measured_check": {"device": "NVIDIA H200", "fp16_tensor_tflops": H200[0], "bandwidth_gb_s": H200[1],
                              "source": str(MEASURED.relative_to(Path(__file__).resolve().parent)), "rows": checks}}
    lines = ["**Estimate, not a measurement** (formula and assumptions in `benchmarks/jetson.py`).", "",
             "| model | frame | GMAC/frame | MB moved/frame | FLOP/byte | device | fps roofline bound | fps estimate "
             "| fps at the H200's measured efficiency |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cal = r["fps_at_h200_efficiency"] if r["fps_at_h200_efficiency"] is not None else "–"
        lines.append(f"| {r['model']} | {r['frame']} | {r['gmac_per_frame']} | {r['mbytes_per_frame']} | "
                     f"{r['flop_per_byte']} | {r['device']} | {r['fps_roofline_bound']} | {r['fps_estimate']} | "
                     f"{cal} |")
    if checks:
        lines += ["", "The measured point: the same formula for the NVIDIA H200 (989 TFLOP/s fp16, 4800 GB/s) "
                  "against the triton backend measured there (fp16, CUDA graphs, uint8 in and out; "
                  "results/gpu_check_nvidia_h200_2026-12-04/latency_gpu.md):", "",
                  "| model | frame | H200 estimate ms | H200 measured ms | measured / estimate |",
                  "|---|---|---|---|---|"]
        lines += [f"| {c['model']} | {c['frame']} | {c['h200_estimate_ms']} | {c['h200_measured_ms']} | "
                  f"{c['measured_over_estimate']} |" for c in checks]
        lines += ["", "The last column of the first table divides the estimate by that ratio: the Jetson's frame rate "
                  "if the kernels reached no larger a share of its roofline than they do on the H200 (pessimistic: "
                  "a frame fills a small GPU better). Only `default` was measured; `tiny` has no measured point."]
    lines += ["", f"Per layer: t = max(2·MACs / (TFLOPS·{DERATE['compute']}), bytes / (bandwidth·{DERATE['memory']})), "
              "summed over the layers, plus the uint8 frame in and out; fp16 activations and weights, each read "
              "once and written once. The bound column uses efficiency 1 for both."]
    md = "\n".join(lines)
    return publish("jetson_projection", doc, md)


if __name__ == "__main__":
    raise SystemExit(main())
