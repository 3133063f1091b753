#!/usr/bin/env python3
"""What the compiler makes of the fused Triton kernels, per layer shape, with no GPU: the width of
their global loads and stores, whether the operand gathers became asynchronous copies (software
pipelining: loads of the next tap overlap the MMAs of this one), registers, spills, shared memory.

    python benchmarks/kernel_codegen.py                          # small and tiny at 1080p, sm_90 and sm_87: ~1 min
    python benchmarks/kernel_codegen.py --models small --targets sm_90 --out /tmp/cg

Why: on the first H200 (../shared/gpu-results/2026-12-04-h200) the 24-channel conv3x3 of `small`
at 544x960 took 3.3x the time of its 48-channel conv3x3 at 272x480, the same MACs. Compiled as the
JIT compiles them (pointers 16-byte aligned; a run-time integer that is a multiple of 16 marked so,
as Triton specialises it; constexpr parameters compiled in), the PTX tells such things apart before
a GPU is at hand. These are static counts (instructions in the code, not executed ones) and say
nothing of time: benchmarks/kernels.py and kernel_sweep.py time the kernels on a GPU.

Each kernel is compiled with `triton.compile(..., target=GPUTarget("cuda", cc, 32))` (the launch
settings of the triton backend: BLOCK_M 64, 4 warps, Triton's default stages); its cubin's registers
and local memory (spills) are read by the cuobjdump that Triton ships. Writes kernel_codegen.{json,md} (results/
unless --out).
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import publish, stamp  # noqa: E402

# benchmarks/kernels.py by its path (`import kernels` is the checkout's kernels/ package), as kernel_sweep.py
_spec = importlib.util.spec_from_file_location("bench_kernels", Path(__file__).with_name("kernels.py"))
_bk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bk)

FRAMES = {"1080p": (1080, 1920), "720p": (720, 1280)}  # the frames ingest and egest see (the network: padded to 16)
BLOCK_M, NUM_WARPS = 64, 4  # what kernels/conv.py and kernels/boundary.py launch

# global loads and stores: (vector length, bits of one element); asynchronous copies: their size in bytes
_LD = re.compile(r"\bld\.global(?:\.[a-z0-9:]+)*?\.(?:v(\d)\.)?[bfsu](\d+)\b")
_ST = re.compile(r"\bst\.global(?:\.[a-z0-9:]+)*?\.(?:v(\d)\.)?[bfsu](\d+)\b")
_CPASYNC = re.compile(r"\bcp\.async\.c[ag]\.shared(?:::cta)?\.global[^\[]*"
                      r"\[[^\]]+\],\s*\[[^\]]+\],\s*(0x[0-9a-f]+|\d+)")


def histogram(sizes) -> dict:
    """{bytes per instruction: how many such instructions}, static."""
    return dict(sorted(Counter(sizes).items()))


def access_sizes(pattern: re.Pattern, ptx: str) -> list[int]:
    """Bytes moved by each global load or store instruction `pattern` (_LD, _ST) finds."""
    return [int(v or 1) * int(bits) // 8 for v, bits in pattern.findall(ptx)]


def resource_usage(cubin: bytes) -> dict:
    """Registers and local memory (spills) per thread of the compiled kernel, by the cuobjdump Triton
    ships (None where it is absent)."""
    import triton

    exe = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not exe.exists():
        return {"registers": None, "local_bytes": None}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "k.cubin"
        path.write_bytes(cubin)
        p = subprocess.run([str(exe), "-res-usage", str(path)], capture_output=True, text=True)
    regs, local = re.search(r"REG:(\d+)", p.stdout), re.search(r"LOCAL:(\d+)", p.stdout)
    return {"registers": int(regs.group(1)) if regs else None, "local_bytes": int(local.group(1)) if local else None}


def compile_as_jit(fn, args: dict, cc: int) -> dict:
    """Compile `fn` with the values in `args` as Triton's JIT would specialise a call with them, for sm_cc:
    pointers (values given as dtype strings '*fp16') aligned to 16 bytes, integers that are multiples of
    16 marked so, constexpr parameters compiled in."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig, consts, attrs = {}, {}, {}
    for i, p in enumerate(fn.params):
        v = args[p.name]
        if p.is_constexpr:
            sig[p.name], consts[p.name] = "constexpr", v
        elif isinstance(v, str):
            sig[p.name] = v
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[p.name] = "i32"
            if v % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    k = triton.compile(ASTSource(fn, sig, consts, attrs), target=GPUTarget("cuda", cc, 32),
                       options={"num_warps": NUM_WARPS})
    ptx = k.asm["ptx"]
    return {
        "loads": histogram(access_sizes(_LD, ptx)), "stores": histogram(access_sizes(_ST, ptx)),
        "async_copies": histogram(int(n, 0) for n in _CPASYNC.findall(ptx)),
        "wgmma": len(re.findall(r"\bwgmma\.mma_async", ptx)), "mma_sync": len(re.findall(r"\bmma\.sync", ptx)),
        "shared_bytes": int(k.metadata.shared), **resource_usage(k.asm["cubin"]),
    }


def conv_args(s: dict, dtype: str) -> dict:
    from kernels.blocks import conv_blocks
    from kernels.conv import out_size

    bn, bk = conv_blocks(s["cin"], s["cout"])
    ho, wo = out_size(s["h"], s["w"], (s["k"], s["k"]), s["stride"], s["pad"])
    p = f"*{dtype}"
    return {"x_ptr": p, "wp_ptr": p, "b_ptr": "*fp32", "res_ptr": p, "out_ptr": p, "N": 1, "H": s["h"], "W": s["w"],
            "CI": s["cin"], "HO": ho, "WO": wo, "CO": s["cout"], "KH": s["k"], "KW": s["k"], "STRIDE": s["stride"],
            "PAD": s["pad"], "ACT": 1, "HAS_RES": False, "BLOCK_M": BLOCK_M, "BLOCK_N": bn, "BLOCK_K": bk,
            "IEEE": dtype == "fp32"}


def boundary_args(kind: str, width: int, multiple: int, hw: tuple[int, int], dtype: str) -> dict:
    from kernels.blocks import conv_blocks, half_grid

    h, w = hw
    hh, wh = half_grid(h, w, multiple)  # the frame padded to the model's size multiple, as the launchers do
    p = f"*{dtype}"
    common = {"N": 1, "H": h, "W": w, "HH": hh, "WH": wh, "BLOCK_M": BLOCK_M, "IEEE": dtype == "fp32"}
    if kind == "ingest":
        return {"frame_ptr": "*u8", "wp_ptr": p, "b_ptr": "*fp32", "smap_ptr": "*fp32", "out_ptr": p, **common,
                "CO": width, "CIN": 13, "BLOCK_N": conv_blocks(13, width)[0], "BLOCK_K": 16}
    return {"h_ptr": p, "wp_ptr": p, "b_ptr": "*fp32", "frame_ptr": "*u8", "out_ptr": "*u8", **common, "CI": width,
            "BLOCK_K": conv_blocks(width, 12)[1]}


def fmt(d: dict) -> str:
    return " ".join(f"{n}x{b}B" for b, n in d.items()) or "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="small,tiny", help="model sizes whose layer shapes to compile")
    ap.add_argument("--frame", default="1080p", choices=list(FRAMES))
    ap.add_argument("--targets", default="sm_90,sm_87", help="NVIDIA targets (H200: sm_90, Jetson Orin: sm_87)")
    ap.add_argument("--dtype", default="fp16", choices=["fp16", "fp32"])
    ap.add_argument("--out", default=None, help="folder for kernel_codegen.{json,md} (default benchmarks/results)")
    a = ap.parse_args()

    import triton  # noqa: F401  (the compiler; fails here, in one line, where it is missing)
    layer_shapes = _bk.layer_shapes
    from edgedenoise.model import SIZES
    from kernels.aot import parse_targets
    from kernels.boundary_kernels import egest_conv_kernel, ingest_conv_kernel
    from kernels.conv_kernels import conv2d_nhwc_kernel

    models = a.models.split(",")
    bad = [m for m in models if m not in SIZES]
    if bad:
        print(f"benchmarks/kernel_codegen.py: unknown model size {bad[0]!r}; choose from {', '.join(SIZES)}",
              file=sys.stderr)
        return 2
    try:
        targets = parse_targets(a.targets)
    except ValueError as e:
        print(f"benchmarks/kernel_codegen.py: {e}", file=sys.stderr)
        return 2
    hw = FRAMES[a.frame]
    jobs = []
    for s in layer_shapes(models, {a.frame: _bk.FRAMES[a.frame]}):
        name = f"conv{s['k']}x{s['k']} s{s['stride']} {s['cin']}->{s['cout']} @ {s['h']}x{s['w']}"
        jobs.append((name, s["models"], conv2d_nhwc_kernel, conv_args(s, a.dtype)))
    boundary = {(SIZES[m].widths[0], SIZES[m].size_multiple) for m in models}
    for width, multiple in sorted(boundary):
        users = [m for m in models if (SIZES[m].widths[0], SIZES[m].size_multiple) == (width, multiple)]
        for kind, fn in (("ingest", ingest_conv_kernel), ("egest", egest_conv_kernel)):
            jobs.append((f"{kind} (width {width})", users, fn, boundary_args(kind, width, multiple, hw, a.dtype)))
    rows, t0 = [], time.time()
    for i, (name, users, fn, args) in enumerate(jobs):
        for cc in targets:
            r = compile_as_jit(fn, args, cc)
            rows.append({"kernel": name, "models": users, "target": f"sm_{cc}", **r})
        done = i + 1
        rate = done / (time.time() - t0)
        print(f"codegen {done}/{len(jobs)} {name}: {rate:.2f} shapes/s, ETA {(len(jobs) - done) / rate:.0f} s",
              file=sys.stderr, flush=True)
    doc = {"stamp": stamp({"targets": [f"sm_{c}" for c in targets], "dtype": a.dtype, "frame": a.frame,
                           "launch": f"BLOCK_M {BLOCK_M}, {NUM_WARPS} warps, Triton's default stages"}),
           "results": rows}
    lines = [f"{a.dtype}, {a.frame} frame; static instruction counts by bytes per instruction (1xB: scalar). "
             "async copies: operand gathers made asynchronous (cp.async: the software pipeline overlaps them "
             "with the MMAs).", "",
             "| kernel | models | target | global loads | async copies | global stores | wgmma / mma.sync | "
             "registers | local bytes (spills) | shared bytes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kernel']} | {', '.join(r['models'])} | {r['target']} | {fmt(r['loads'])} | "
                     f"{fmt(r['async_copies'])} | {fmt(r['stores'])} | {r['wgmma']} / {r['mma_sync']} | "
                     f"{r['registers']} | {r['local_bytes']} | {r['shared_bytes']} |")
    return publish("kernel_codegen", doc, "\n".join(lines), a.out)


if __name__ == "__main__":
    raise SystemExit(main())
