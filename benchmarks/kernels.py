#!/usr/bin/env python3
"""Each fused Triton kernel against its PyTorch/cuDNN equivalent, per layer shape, on a GPU.

    python benchmarks/kernels.py              # needs CUDA, torch and triton
    python benchmarks/kernels.py --list       # the layer shapes only (no GPU needed)

Shapes: every convolution of every model size (tiny, small, base), as the network sees it for a
1280x720 and a 1920x1088 frame (the grid after the pixel-unshuffle), found by running the model
with hooks; duplicates measured once. For each shape, fp16 and fp32:
- `triton`: kernels/conv.py's fused NHWC conv + bias + ReLU (weights packed once, as the backend does);
- `cudnn`: torch conv2d + ReLU on a channels_last tensor with cudnn.benchmark on (fp32: TF32 off,
  so both sides do true fp32 arithmetic);
and the two boundary kernels (ingest, egest) against their unfused PyTorch references.

Each timing is `triton.testing.do_bench` (median of repeated launches, L2 flushed between them).
Achieved TFLOP/s (2 x MACs) and GB/s (input + output + weights, each moved once) are given as a
fraction of the device's peak from the PEAKS table (dense tensor FP16, FP32 without tensor
cores, memory bandwidth), so the distance to the hardware limit shows. Every case also checks
the kernel against the reference (max abs error) before it is timed.

The same run also measures the device's own ceilings (a device-to-device copy of 2 GiB, an
8192^3 fp16 matrix product through cuBLAS) and gives each kernel's rate as a fraction of those
too: the datasheet peaks are rarely reachable, the measured ones are.

    python benchmarks/kernels.py --models small --frames 1080p --dtypes fp16 --out DIR   # gpu_check.sh's step
    TRITON_INTERPRET=1 python benchmarks/kernels.py --smoke --out /tmp/k                  # CPU: the code path only

Writes benchmarks/results/kernels_<gpu>.{json,md,png} (or under --out).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys

from common import publish, stamp  # noqa: E402

# published dense peaks: (fp16 tensor TFLOP/s, fp32 non-tensor TFLOP/s, memory GB/s)
PEAKS = {
    "H100 80GB HBM3": (989.0, 67.0, 3350.0),  # SXM
    "H100 PCIe": (756.0, 51.0, 2000.0),
    "H200": (989.0, 67.0, 4800.0),
    "A100-SXM4-80GB": (312.0, 19.5, 2039.0),
    "Orin": (10.0, 2.5, 68.0),  # Orin Nano 8GB (the smallest; an NX/AGX row would replace it)
}
DEVICE = "cuda"  # the benchmark is for GPUs; a CPU run under TRITON_INTERPRET=1 (--smoke) only checks the code
FRAMES = {"720p": (720, 1280), "1080p": (1088, 1920)}
SMOKE_FRAME = {"smoke": (32, 48)}  # --smoke: one small frame, so the interpreter gets through every case


def layer_shapes(models=None, frames=None) -> list[dict]:
    """Distinct (cin, cout, k, stride, pad, H, W) of every conv of every model size and frame."""
    from edgedenoise.model import SIZES, build_model, conv_trace

    keys = ("cin", "cout", "k", "stride", "pad", "h", "w")
    out: dict[tuple, dict] = {}
    for size in models or SIZES:
        net = build_model(size).eval()
        for fname, (h, w) in (frames or FRAMES).items():
            convs = conv_trace(net, h, w)[1:-1]  # head and tail: measured as the fused ingest / egest kernels
            for r in convs:
                s = out.setdefault(tuple(r[k] for k in keys), {"models": [], "frame": fname, **{k: r[k] for k in keys}})
                if size not in s["models"]:
                    s["models"].append(size)
    return list(out.values())


def cpu_bench(fn, reps: int = 3) -> float:
    """Median milliseconds of a few calls: the --smoke stand-in for do_bench (which needs CUDA)."""
    from edgedenoise.runtime.stats import time_calls

    ts, _ = time_calls(lambda _: fn(), [None], reps, 1)
    return 1e3 * statistics.median(ts)


def measured_ceilings(do_bench) -> dict:
    """This device's reachable rates: copy bandwidth (bytes read + written) and a cuBLAS fp16 GEMM."""
    import torch

    a = torch.empty(2**30, dtype=torch.float16, device=DEVICE)  # 2 GiB, many times the L2
    b = torch.empty_like(a)
    ms = do_bench(lambda src=a, dst=b: dst.copy_(src))
    gbs = 2 * a.numel() * a.element_size() / ms / 1e6
    del a, b
    n = 8192
    x = torch.randn(n, n, device=DEVICE, dtype=torch.float16)
    y = torch.randn(n, n, device=DEVICE, dtype=torch.float16)
    tflops = 2 * n**3 / do_bench(lambda: x @ y) / 1e9
    return {"copy_gbs": round(gbs, 1), "fp16_gemm_tflops": round(tflops, 1),
            "how": "do_bench median: copy_ of 2 GiB fp16 (read + write counted); 8192^3 fp16 matmul, random data"}


def peaks(name: str):
    for k, v in PEAKS.items():
        if k in name:
            return v
    return None


def bench_conv(s: dict, dtype, do_bench) -> dict:
    import torch
    import torch.nn.functional as F
    from edgedenoise_kernels.conv import conv2d_nhwc, conv2d_nhwc_reference, pack_weight

    torch.manual_seed(0)
    x = torch.randn(1, s["h"], s["w"], s["cin"], device=DEVICE, dtype=dtype)
    wt = (torch.randn(s["cout"], s["cin"], s["k"], s["k"], device=DEVICE) / (s["cin"] * s["k"] ** 2) ** 0.5).to(dtype)
    b = torch.randn(s["cout"], device=DEVICE)
    wp = pack_weight(wt)
    kk = (s["k"], s["k"])
    tri = lambda: conv2d_nhwc(x, wp, b, kk, s["stride"], s["pad"], "relu")  # noqa: E731
    ref = conv2d_nhwc_reference(x, wt, b, s["stride"], s["pad"], "relu")
    err = (tri().float() - ref).abs().max().item()
    xc = x.permute(0, 3, 1, 2)  # an NCHW view of NHWC memory: channels_last
    bb = b.to(dtype)
    cud = lambda: F.relu(F.conv2d(xc, wt, bb, stride=s["stride"], padding=s["pad"]))  # noqa: E731
    t_tri, t_cud = do_bench(tri), do_bench(cud)
    ho, wo = ref.shape[1], ref.shape[2]
    macs = ho * wo * s["cout"] * s["cin"] * s["k"] ** 2
    nbytes = (x.numel() + ho * wo * s["cout"] + wt.numel()) * x.element_size()
    return {"triton_ms": t_tri, "cudnn_ms": t_cud, "max_abs_err": err, "gflop": 2 * macs / 1e9, "mbytes": nbytes / 1e6}


def bench_boundary(kind: str, size: str, hw, dtype, do_bench) -> dict:
    import torch
    from edgedenoise_kernels.boundary import egest, egest_reference, half_grid, ingest, ingest_reference
    from edgedenoise_kernels.conv import pack_weight

    from edgedenoise.model import build_model

    net = build_model(size).eval().to(DEVICE)
    mult = net.config.size_multiple
    h, w = hw
    frame = torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8, device=DEVICE)
    if kind == "ingest":
        conv = net.head[0]
        smap = torch.full((1,), 0.5, device=DEVICE)
        wp = pack_weight(conv.weight.detach()).to(dtype)
        fn = lambda: ingest(frame, wp, conv.bias.detach(), smap, mult)  # noqa: E731
        ref = lambda: ingest_reference(frame, conv.weight.detach(), conv.bias.detach(), smap, mult)  # noqa: E731
        err = (fn().float() - ref()).abs().max().item()
        macs = conv.weight.numel() * half_grid(h, w, mult)[0] * half_grid(h, w, mult)[1]
        nbytes = frame.numel() + fn().numel() * fn().element_size()
    else:
        conv = net.tail
        hh, wh = half_grid(h, w, mult)
        feat = torch.randn(1, hh, wh, conv.in_channels, device=DEVICE, dtype=dtype).relu()
        wp = pack_weight(conv.weight.detach()).to(dtype)
        fn = lambda: egest(feat, wp, conv.bias.detach(), frame)  # noqa: E731
        ref = lambda: egest_reference(feat, conv.weight.detach(), conv.bias.detach(), frame)  # noqa: E731
        err = (fn().int() - ref().int()).abs().max().item()
        macs = conv.weight.numel() * hh * wh
        nbytes = feat.numel() * feat.element_size() + 2 * frame.numel()
    return {"triton_ms": do_bench(fn), "torch_unfused_ms": do_bench(ref), "max_abs_err": err,
            "gflop": 2 * macs / 1e9, "mbytes": nbytes / 1e6}


def shape(r: dict) -> str:
    """A result row's layer, as the table and the plot name it."""
    if r["kernel"].startswith("conv"):
        return f"conv{r['k']}x{r['k']} s{r['stride']} {r['cin']}->{r['cout']} @ {r['h']}x{r['w']}"
    return f"{r['kernel']} ({','.join(r['models'])})"


def pct(r: dict, *keys) -> str:
    """' (12.3%, 45.6%)' for the fractions of r under keys that are there, '' if none."""
    got = [f"{100 * r[k]:.1f}%" for k in keys if k in r]
    return f" ({', '.join(got)})" if got else ""


def main() -> int:
    global DEVICE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the layer shapes and stop")
    ap.add_argument("--dtypes", default="fp16,fp32")
    ap.add_argument("--models", default="tiny,small,base", help="model sizes whose layers are measured")
    ap.add_argument("--frames", default="720p,1080p", help=f"frame sizes, of {', '.join(FRAMES)}")
    ap.add_argument("--out", default=None, help="folder for kernels_<gpu>.{json,md} (default benchmarks/results)")
    ap.add_argument("--smoke", action="store_true",
                    help="CPU check of the code under TRITON_INTERPRET=1: one small frame, no timing worth keeping")
    a = ap.parse_args()

    models = a.models.split(",")
    frames = SMOKE_FRAME if a.smoke else {f: FRAMES[f] for f in a.frames.split(",")}
    shapes = layer_shapes(models, frames)
    if a.list:
        for s in shapes:
            print(f"{s['frame']:>5} {','.join(s['models']):<16} conv{s['k']}x{s['k']} s{s['stride']} "
                  f"{s['cin']:>3}->{s['cout']:<3} @ {s['h']}x{s['w']}")
        print(f"{len(shapes)} distinct shapes")
        return 0
    import torch

    if a.smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            print("benchmarks/kernels.py --smoke: set TRITON_INTERPRET=1 (the kernels run in the interpreter)",
                  file=sys.stderr)
            return 2
        DEVICE, do_bench, gpu, ceil = "cpu", cpu_bench, "cpu-interpreter", None
    elif not torch.cuda.is_available():
        print("benchmarks/kernels.py: needs a CUDA GPU (run with --list to see the shapes, --smoke to check the code)",
              file=sys.stderr)
        return 2
    else:
        from triton.testing import do_bench

        gpu = torch.cuda.get_device_name()
        ceil = measured_ceilings(do_bench)
        print(f"kernels: measured ceilings {ceil['copy_gbs']:.0f} GB/s copy, {ceil['fp16_gemm_tflops']:.0f} TFLOP/s "
              "fp16 GEMM", file=sys.stderr)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    pk = peaks(gpu)
    dtypes = {"fp16": torch.float16, "fp32": torch.float32}
    rows = []
    for dn in a.dtypes.split(","):
        dt = dtypes[dn]
        peak_flops = (pk[0] if dn == "fp16" else pk[1]) if pk else None
        for s in shapes:
            r = bench_conv(s, dt, do_bench)
            rows.append({"kernel": "conv+bias+relu", "dtype": dn, **{k: s[k] for k in s}, **r})
            print(f"kernels {dn} conv{s['k']} {s['cin']}->{s['cout']} @ {s['h']}x{s['w']}: triton "
                  f"{r['triton_ms']:.3f} ms, cudnn {r['cudnn_ms']:.3f} ms, max err {r['max_abs_err']:.2g}",
                  file=sys.stderr)
        for kind in ("ingest", "egest"):
            for size in models:
                for fname, hw in frames.items():
                    r = bench_boundary(kind, size, hw, dt, do_bench)
                    rows.append({"kernel": kind, "dtype": dn, "models": [size], "frame": fname, **r})
                    print(f"kernels {dn} {kind} {size} {fname}: triton {r['triton_ms']:.3f} ms, unfused "
                          f"{r['torch_unfused_ms']:.3f} ms, max err {r['max_abs_err']:.2g}", file=sys.stderr)
        for r in rows:
            if r["dtype"] == dn:
                t = r["triton_ms"] / 1e3
                r["triton_tflops"] = r["gflop"] / 1e3 / t
                r["triton_gbs"] = r["mbytes"] / 1e3 / t
                if pk:
                    r["frac_peak_flops"] = r["triton_tflops"] / peak_flops
                    r["frac_peak_bw"] = r["triton_gbs"] / pk[2]
                if ceil:
                    r["frac_measured_bw"] = r["triton_gbs"] / ceil["copy_gbs"]
                    if dn == "fp16":
                        r["frac_measured_flops"] = r["triton_tflops"] / ceil["fp16_gemm_tflops"]
    doc = {"stamp": stamp({"gpu": gpu, "peaks": pk, "measured_ceilings": ceil,
                           "timer": "triton.testing.do_bench (median)" if not a.smoke else "smoke: CPU interpreter"}),
           "results": rows}
    lines = ["| kernel | dtype | frame | models | shape | triton ms | PyTorch ms | speed-up | TFLOP/s (% peak, "
             "% measured) | GB/s (% peak, % measured) | max abs err |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref_ms = r.get("cudnn_ms", r.get("torch_unfused_ms"))
        lines.append(f"| {r['kernel']} | {r['dtype']} | {r['frame']} | {','.join(r['models'])} | {shape(r)} | "
                     f"{r['triton_ms']:.3f} | {ref_ms:.3f} | {ref_ms / r['triton_ms']:.2f}x | "
                     f"{r['triton_tflops']:.1f}{pct(r, 'frac_peak_flops', 'frac_measured_flops')} | "
                     f"{r['triton_gbs']:.0f}{pct(r, 'frac_peak_bw', 'frac_measured_bw')} | {r['max_abs_err']:.2g} |")
    lines.append("")
    lines.append("PyTorch: cuDNN conv + ReLU on channels_last (conv layers); the unfused reference ops (ingest, "
                 "egest). Peaks: " + (f"{pk[0]} / {pk[1]} TFLOP/s fp16 tensor / fp32, {pk[2]} GB/s" if pk else
                                      "unknown for this GPU (add it to PEAKS)") + "." +
                 (f" Measured in this run: {ceil['copy_gbs']:.0f} GB/s copy, {ceil['fp16_gemm_tflops']:.0f} TFLOP/s "
                  "fp16 GEMM." if ceil else ""))
    tag = re.sub(r"[^a-z0-9]+", "_", gpu.lower()).strip("_")
    return publish(f"kernels_{tag}", doc, "\n".join(lines), a.out, also=lambda j: [plot(doc, j.with_suffix(".png"))])


def plot(doc: dict, png):
    """Milliseconds per layer, Triton beside PyTorch (cuDNN / unfused), one panel per dtype and frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = doc["results"]
    panels = list(dict.fromkeys((r["dtype"], r["frame"]) for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(9 * len(panels), 1.8 + 0.32 * max(
        sum(1 for r in rows if (r["dtype"], r["frame"]) == p) for p in panels)), squeeze=False)
    for ax, (dn, fr) in zip(axes[0], panels):
        sel = [r for r in rows if (r["dtype"], r["frame"]) == (dn, fr)]
        y = np.arange(len(sel))
        ref = [r.get("cudnn_ms", r.get("torch_unfused_ms")) for r in sel]
        ax.barh(y - 0.2, [r["triton_ms"] for r in sel], 0.4, label="Triton (fused)", color="tab:blue")
        ax.barh(y + 0.2, ref, 0.4, label="PyTorch: cuDNN conv+ReLU / unfused reference", color="tab:gray")
        for yi, r, rf in zip(y, sel, ref):
            ax.annotate(f"{rf / r['triton_ms']:.2f}x", (max(r["triton_ms"], rf), yi), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=8)
        ax.set_yticks(y, [shape(r) for r in sel], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ms = ref + [r["triton_ms"] for r in sel]
        ax.set_xlim(min(ms) / 2, max(ms) * 4)  # room for the ratio labels
        ax.set_xlabel("ms per layer (lower is better); label: PyTorch ms / Triton ms")
        ax.set_title(f"{dn}, {fr}", fontsize=10)
        ax.grid(axis="x", alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.09 - 1.0 / (len(sel) + 4)), ncol=2)
    st = doc["stamp"]
    fig.suptitle(f"fused Triton kernels per layer: {st['gpu']}, {st['date'][:10]}"
                 + ("\nSMOKE: CPU interpreter, not a measurement" if "smoke" in st["timer"] else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


if __name__ == "__main__":
    raise SystemExit(main())
