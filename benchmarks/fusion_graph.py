"""What the CPU rewrite of a recurrent model's fusion saves (edgedenoise/backends/ortgraph.py, issue 29).

For `tiny-video` and `default-video`, fp32 and INT8, at 640x480 with ONNX Runtime on the CPU: the
framewise model (`tiny`, `default`: the anchor, as the issue's target "at most 20 % more time per frame
than framewise" is put), the recurrent graph with only its pixel-shuffles rewritten (as before
2026-12-07) and with its fusion rewritten too (the default). The three take turns, `--rounds` times
`--frames` frames each, in one process, so that the machine's drift moves them alike; p50 of each
case over all its frames, the time over the framewise model's as the median over rounds of each
round's ratio of p50s (these shared cores drift by 2-3x within minutes: a ratio taken within one round
moves far less than the times), and the largest difference between the two recurrent graphs' outputs.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from common import publish, stamp

from edgedenoise.backends.ortgraph import cpu_graph
from edgedenoise.modelfile import resolve


def session(graph: bytes, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the onnxruntime backend runs
    so.log_severity_level = 3
    return ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny-video,default-video")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="folder for the results (default benchmarks/results)")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.split("x"))
    rng = np.random.default_rng(0)
    noisy = rng.random((1, 3, h, w), dtype=np.float32)
    previous = np.clip(noisy + rng.normal(0, 0.03, noisy.shape), 0, 1).astype(np.float32)
    sigma = np.full((1,), 25 / 255, np.float32)
    rows = []
    for name in a.models.split(","):
        files = resolve(name)
        framewise = name.removesuffix("-video")  # tiny-video: tiny plus its gate (ARCHITECTURE.md)
        base = resolve(framewise)
        for precision in a.precisions.split(","):
            pick = (lambda f: f.onnx) if precision == "fp32" else (lambda f: f.onnx_int8)
            before = cpu_graph(pick(files), fusion=False)[0]
            after, _, what = cpu_graph(pick(files))
            cases = {"framewise": (session(cpu_graph(pick(base))[0], a.threads), {"noisy": noisy, "sigma": sigma}),
                     "recurrent, shuffles only": (session(before, a.threads),
                                                  {"noisy": noisy, "sigma": sigma, "previous": previous}),
                     "recurrent, fusion rewritten": (session(after, a.threads),
                                                     {"noisy": noisy, "sigma": sigma, "previous": previous})}
            outs = {k: s.run(None, f)[0] for k, (s, f) in cases.items()}  # also the warm-up
            times: dict = {k: [] for k in cases}
            ratios: dict = {k: [] for k in cases if k != "framewise"}
            t_start = time.time()
            for r in range(a.rounds):
                this = {}
                for k, (s, f) in cases.items():
                    t = []
                    for _ in range(a.frames):
                        t0 = time.perf_counter()
                        s.run(None, f)
                        t.append(1000 * (time.perf_counter() - t0))
                    times[k] += t
                    this[k] = np.median(t)
                for k in ratios:
                    ratios[k].append(this[k] / this["framewise"] - 1)
                done = r + 1
                eta = (time.time() - t_start) / done * (a.rounds - done)
                print(f"\r{name} {precision}: round {done}/{a.rounds}, ETA {eta:.0f} s", end="", file=sys.stderr)
            print(file=sys.stderr)
            p50 = {k: float(np.median(v)) for k, v in times.items()}
            diff = float(np.abs(outs["recurrent, shuffles only"] - outs["recurrent, fusion rewritten"]).max())
            rows.append({"model": name, "framewise": framewise, "precision": precision, "p50_ms": p50,
                         "over_framewise": {k: float(np.median(v)) for k, v in ratios.items()},
                         "over_framewise_quartiles": {k: [float(q) for q in np.percentile(v, [25, 75])]
                                                      for k, v in ratios.items()},
                         "max_abs_diff": diff, "rewrites": list(what)})
    md = [f"{a.size}, ONNX Runtime on the CPU, {a.threads} threads, {a.rounds} rounds of {a.frames} frames per case "
          "in turns; p50 ms per frame (float in and out, the graph alone), and the time over the framewise model's "
          "(the median of the rounds' ratios).",
          "", "| model | precision | framewise | recurrent, shuffles only | recurrent, fusion rewritten | saved | "
          "largest output difference |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        p, o = r["p50_ms"], r["over_framewise"]
        md.append(f"| `{r['model']}` (over `{r['framewise']}`) | {r['precision']} | {p['framewise']:.2f} | "
                  f"{p['recurrent, shuffles only']:.2f} ({100 * o['recurrent, shuffles only']:+.0f} %) | "
                  f"{p['recurrent, fusion rewritten']:.2f} ({100 * o['recurrent, fusion rewritten']:+.0f} %) | "
                  f"{p['recurrent, shuffles only'] - p['recurrent, fusion rewritten']:.2f} ms | "
                  f"{r['max_abs_diff']:.1e} |")
    if rows:
        md += ["", "Rewrites (each computing what it replaces): " + "; ".join(rows[0]["rewrites"]) + "."]
    return publish("fusion_graph_cpu", {"stamp": stamp({"threads": a.threads}), "rows": rows}, "\n".join(md),
                   out=a.out)


if __name__ == "__main__":
    sys.exit(main())
