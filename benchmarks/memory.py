#!/usr/bin/env python3
"""What keeping freed memory (edgedenoise/memory.py) saves per frame: the same stream with glibc's
malloc as the system sets it and as `Denoiser` sets it.

    python benchmarks/memory.py            # ~4 minutes on 2 cores

Writes benchmarks/results/memory_cpu.{json,md}. Each case runs in a fresh process (malloc's
settings hold for a whole process): `VideoDenoiser` on ONNX Runtime (its default threads) over the
demo source's first 110 frames (640x480, the bundled picture panned, camera-protocol sigma 25),
told sigma 25; the first 10 frames are not timed. Per case: the median of the frames' times
(p50, ms), the minor page faults per frame (the kernel mapping and zeroing a fresh 4 KB page) and
the peak resident memory. The two settings run in turns, --rounds times (the machine's speed
drifts); the table gives the median of the rounds' p50s and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from common import ROOT, publish, stamp  # noqa: E402  (common puts the checkout on sys.path)

CASES = [("tiny", "fp32", "off"), ("tiny", "fp32", "blend"), ("tiny", "int8", "off"), ("tiny", "int8", "blend"),
         ("default", "fp32", "off"), ("default", "int8", "off"), ("tiny-video", "fp32", "model")]
SETTINGS = ("system", "kept")  # EDGEDENOISE_MALLOC=system, and the default
FRAMES, WARM, SIGMA = 110, 10, 25.0


def child(model: str, precision: str, temporal: str) -> dict:
    from edgedenoise.memory import keep_freed_memory
    from edgedenoise.runtime.sources import DemoSource
    from edgedenoise.runtime.stats import summarize
    from edgedenoise.temporal import VideoDenoiser

    demo = DemoSource(SIGMA)
    demo.open()
    frames = [demo.read() for _ in range(FRAMES)]
    vd = VideoDenoiser.load(model, backend="onnxruntime", precision=precision, temporal=temporal)
    times, faults = [], 0
    for i, f in enumerate(frames):
        if i == WARM:
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        vd.denoise(f, SIGMA)
        if i >= WARM:
            times.append(time.perf_counter() - t)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {**summarize(times), "faults_per_frame": (usage.ru_minflt - faults) / (FRAMES - WARM),
            "peak_rss_mb": usage.ru_maxrss / 1024, "kept": keep_freed_memory()}


def run_case(case: tuple, setting: str) -> dict:
    env = dict(os.environ)
    env.pop("EDGEDENOISE_MALLOC", None)
    if setting == "system":
        env["EDGEDENOISE_MALLOC"] = "system"
    out = subprocess.run([sys.executable, __file__, "--child", *case], env=env, capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"memory.py: the case {case} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(results: dict) -> str:
    lines = ["### Per frame at 640x480, malloc as the system sets it vs freed memory kept (`Denoiser`'s default)", "",
             "| model | precision | temporal | p50 ms, system | p50 ms, kept | ratio "
             "| page faults a frame, system / kept | peak RSS MB, system / kept |",
             "|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        s, k = r["system"], r["kept"]
        ps, pk = np.median([x["p50_ms"] for x in s]), np.median([x["p50_ms"] for x in k])
        fs, fk = np.median([x["faults_per_frame"] for x in s]), np.median([x["faults_per_frame"] for x in k])
        ms, mk = max(x["peak_rss_mb"] for x in s), max(x["peak_rss_mb"] for x in k)
        model, prec, temporal = key.split()
        lines.append(f"| {model} | {prec} | {temporal} | {ps:.2f} | {pk:.2f} | {pk / ps:.2f} "
                     f"| {fs:.0f} / {fk:.0f} | {ms:.0f} / {mk:.0f} |")
    lines += ["", "p50: the median over the rounds of each run's median frame time (VideoDenoiser.denoise, "
              "ONNX Runtime's default threads); ratio: kept / system. Each run a fresh process."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=3, metavar=("MODEL", "PRECISION", "TEMPORAL"), help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each case per setting, in turns (default 3)")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return 0
    results: dict = {}
    total, done, t0 = a.rounds * len(CASES) * len(SETTINGS), 0, time.time()
    for _ in range(a.rounds):
        for case in CASES:
            for setting in SETTINGS:
                r = run_case(case, setting)
                results.setdefault(" ".join(case), {s: [] for s in SETTINGS})[setting].append(r)
                done += 1
                rate = (time.time() - t0) / done
                print(f"[{done}/{total}] {' '.join(case)} {setting}: p50 {r['p50_ms']:.2f} ms, "
                      f"{r['faults_per_frame']:.0f} faults a frame (ETA {rate * (total - done):.0f} s)", flush=True)
    for key, r in results.items():
        if not all(x["kept"] for x in r["kept"]):
            print(f"memory.py: malloc's thresholds could not be raised here ({key}): the columns are alike")
    doc = {"stamp": stamp({"frames": FRAMES, "warm_up": WARM, "sigma": SIGMA, "rounds": a.rounds}), "results": results}
    return publish("memory_cpu", doc, report(results), a.out)


if __name__ == "__main__":
    raise SystemExit(main())
