#!/usr/bin/env python3
"""Launch settings of the fused Triton convolution, per layer, on a GPU: which tile and how many warps
and pipeline stages make each of `default`'s layers fastest, against the setting the backend uses.

    python benchmarks/kernel_sweep.py --out DIR                  # a CUDA GPU: about 2 minutes (compiles)
    TRITON_INTERPRET=1 python benchmarks/kernel_sweep.py --smoke --out /tmp/s   # a CPU: the code path only

Why: on the first H200 (../shared/gpu-results/2026-12-04-h200) the fused conv ran at 3-30 % of the
measured fp16 GEMM rate and at half cuDNN's speed where the frame is largest (conv3x3 24->24 at
544x960), all with one launch setting (BLOCK_M 64 output pixels, 4 warps, Triton's default stages;
kernels/conv.py). This measures each layer shape of the chosen models at the chosen frame sizes
(benchmarks/kernels.layer_shapes) under every setting in CONFIGS, checks each output against the
PyTorch reference (a setting whose error is above twice the default's, plus 1e-3, is marked and
never chosen), and reports per shape the default's time, the best setting and its time, cuDNN's
time, and for each model the sum over its layers (each layer counted as often as the model runs it):
what per-layer settings would save. Nothing here changes the backend: kernels/blocks.py's rule is
changed from these figures, in a session that has them.

Timing: `triton.testing.do_bench` (median, L2 flushed); fp16 (`--dtypes` for fp32 too). `--budget-s`
stops starting shapes once the time is spent (those left are listed as not measured).
Writes kernel_sweep_<gpu>.{json,md} (results/ unless --out).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

from common import publish, stamp  # noqa: E402

# benchmarks/kernels.py by its path: `import kernels` finds the checkout's kernels/ package (common puts
# the checkout first on sys.path)
_spec = importlib.util.spec_from_file_location("bench_kernels", Path(__file__).with_name("kernels.py"))
_bk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bk)
FRAMES, SMOKE_FRAME, cpu_bench, layer_shapes = _bk.FRAMES, _bk.SMOKE_FRAME, _bk.cpu_bench, _bk.layer_shapes

# (BLOCK_M, num_warps): the tile of output pixels and the warps that compute it; then pipeline stages
TILES = ((32, 2), (64, 2), (64, 4), (128, 4), (128, 8), (256, 8))
STAGES = (2, 3, 4)
CONFIGS = [(bm, nw, ns) for bm, nw in TILES for ns in STAGES]
DEFAULT = (64, 4, None)  # kernels/conv.py's conv2d_nhwc defaults, what the triton backend launches
SMOKE_CONFIGS = [(32, 2, 2)]  # the interpreter ignores warps and stages: one setting beside the default


def label(cfg) -> str:
    """'M64 w4 s3': BLOCK_M 64, 4 warps, 3 stages (no s: Triton's default stages)."""
    bm, nw, ns = cfg
    return f"M{bm} w{nw}" + ("" if ns is None else f" s{ns}")


def layer_counts(model: str, hw) -> Counter:
    """How often `model` runs each conv shape on an hw frame (head and tail left out, as layer_shapes)."""
    from edgedenoise.model import build_model, conv_trace

    keys = ("cin", "cout", "k", "stride", "pad", "h", "w")
    return Counter(tuple(r[k] for k in keys) for r in conv_trace(build_model(model).eval(), *hw)[1:-1])


def sweep_shape(s: dict, dtype, configs, do_bench, device: str) -> dict:
    import torch
    import torch.nn.functional as F
    from edgedenoise_kernels.conv import conv2d_nhwc, conv2d_nhwc_reference, pack_weight

    torch.manual_seed(0)
    x = torch.randn(1, s["h"], s["w"], s["cin"], device=device, dtype=dtype)
    wt = (torch.randn(s["cout"], s["cin"], s["k"], s["k"], device=device) / (s["cin"] * s["k"] ** 2) ** 0.5).to(dtype)
    b = torch.randn(s["cout"], device=device)
    wp = pack_weight(wt)
    ref = conv2d_nhwc_reference(x, wt, b, s["stride"], s["pad"], "relu")
    kk = (s["k"], s["k"])
    out = {}
    for cfg in [DEFAULT, *configs]:
        bm, nw, ns = cfg
        fn = lambda bm=bm, nw=nw, ns=ns: conv2d_nhwc(x, wp, b, kk, s["stride"], s["pad"], "relu", block_m=bm,  # noqa: E731
                                                     num_warps=nw, num_stages=ns)
        try:
            err = (fn().float() - ref).abs().max().item()
            out[label(cfg)] = {"ms": do_bench(fn), "max_abs_err": err}
        except Exception as e:  # noqa: BLE001 - a setting the compiler refuses (too much shared memory) is a result
            out[label(cfg)] = {"ms": None, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
    xc = x.permute(0, 3, 1, 2)
    bb = b.to(dtype)
    cudnn = do_bench(lambda: F.relu(F.conv2d(xc, wt, bb, stride=s["stride"], padding=s["pad"])))
    base = out[label(DEFAULT)]
    ok = {k: v for k, v in out.items() if v["ms"] is not None and v["max_abs_err"] <= 2 * base["max_abs_err"] + 1e-3}
    best = min(ok, key=lambda k: ok[k]["ms"])
    return {"configs": out, "default_ms": base["ms"], "best": best, "best_ms": ok[best]["ms"], "cudnn_ms": cudnn}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="small", help="model sizes whose layers are swept (default small)")
    ap.add_argument("--frames", default="1080p,720p", help=f"frame sizes, of {', '.join(FRAMES)}")
    ap.add_argument("--dtypes", default="fp16")
    ap.add_argument("--budget-s", type=float, default=240.0, help="start no shape after this many seconds")
    ap.add_argument("--out", default=None, help="folder for kernel_sweep_<gpu>.{json,md} (default benchmarks/results)")
    ap.add_argument("--smoke", action="store_true", help="CPU, TRITON_INTERPRET=1: one small frame, one setting")
    a = ap.parse_args()
    import torch

    models = a.models.split(",")
    frames = SMOKE_FRAME if a.smoke else {f: FRAMES[f] for f in a.frames.split(",")}
    if a.smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            print("benchmarks/kernel_sweep.py --smoke: set TRITON_INTERPRET=1", file=sys.stderr)
            return 2
        device, do_bench, gpu, configs = "cpu", cpu_bench, "cpu-interpreter", SMOKE_CONFIGS
    elif not torch.cuda.is_available():
        print("benchmarks/kernel_sweep.py: needs a CUDA GPU (--smoke checks the code on a CPU)", file=sys.stderr)
        return 2
    else:
        from triton.testing import do_bench

        device, gpu, configs = "cuda", torch.cuda.get_device_name(), CONFIGS
        torch.backends.cudnn.benchmark = True
    dtypes = {"fp16": torch.float16, "fp32": torch.float32}
    shapes = layer_shapes(models, frames)
    t0, rows, skipped = time.time(), [], []
    for dn in a.dtypes.split(","):
        for s in shapes:
            name = f"{dn} conv{s['k']}x{s['k']} s{s['stride']} {s['cin']}->{s['cout']} @ {s['h']}x{s['w']}"
            if time.time() - t0 > a.budget_s:
                skipped.append(name)
                continue
            r = sweep_shape(s, dtypes[dn], configs, do_bench, device)
            rows.append({"dtype": dn, **s, **r})
            print(f"sweep {name}: default {r['default_ms']:.3f} ms, best {r['best']} {r['best_ms']:.3f} ms, "
                  f"cudnn {r['cudnn_ms']:.3f} ms ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    keys = ("cin", "cout", "k", "stride", "pad", "h", "w")
    totals = []
    for dn in a.dtypes.split(","):
        by = {tuple(r[k] for k in keys): r for r in rows if r["dtype"] == dn}
        for m in models:
            for fname, hw in frames.items():
                counts = layer_counts(m, hw)
                if not set(counts) <= set(by):
                    continue  # a shape of it went unmeasured (budget)
                tot = {k: sum(n * by[sh][k] for sh, n in counts.items()) for k in ("default_ms", "best_ms", "cudnn_ms")}
                totals.append({"dtype": dn, "model": m, "frame": fname, "layers": sum(counts.values()), **tot})
    doc = {"stamp": stamp({"gpu": gpu, "configs": [label(c) for c in [DEFAULT, *configs]],
                           "timer": "triton.testing.do_bench (median)" if not a.smoke else "smoke: CPU interpreter"}),
           "results": rows, "totals": totals, "not_measured": skipped}
    lines = ["| dtype | layer | default (M64 w4) ms | best setting | best ms | speed-up | cuDNN ms |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        layer = f"conv{r['k']}x{r['k']} s{r['stride']} {r['cin']}->{r['cout']} @ {r['h']}x{r['w']}"
        lines.append(f"| {r['dtype']} | {layer} | {r['default_ms']:.4f} | {r['best']} | {r['best_ms']:.4f} | "
                     f"{r['default_ms'] / r['best_ms']:.2f}x | {r['cudnn_ms']:.4f} |")
    lines += ["", "Per model, the convolutions between head and tail summed (each as often as the model runs it):", "",
              "| dtype | model | frame | layers | default ms | best per layer ms | cuDNN ms |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {t['dtype']} | {t['model']} | {t['frame']} | {t['layers']} | {t['default_ms']:.3f} | "
              f"{t['best_ms']:.3f} | {t['cudnn_ms']:.3f} |" for t in totals]
    if skipped:
        lines += ["", f"Not measured (--budget-s {a.budget_s:g} spent): " + "; ".join(skipped)]
    tag = re.sub(r"[^a-z0-9]+", "_", gpu.lower()).strip("_")
    return publish(f"kernel_sweep_{tag}", doc, "\n".join(lines), a.out)


if __name__ == "__main__":
    raise SystemExit(main())
