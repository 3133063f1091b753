#!/usr/bin/env python3
"""The temporal blend on a thread of its own against the blend in line, in realtime streams.

    python benchmarks/blend_stage.py                  # tiny fp32 at 640x480 and 1280x720 (~3 minutes)
    python benchmarks/blend_stage.py --model default --precision int8 --seconds 8
    python benchmarks/blend_stage.py --backend triton --offer 1000 --sizes 1280x720,1920x1080 \
        --out $OUT/blend_stage_gpu                    # a lent GPU: where the blend's own thread should pay

Each case is the pipeline `edgedenoise run` builds (runtime.Pipeline, realtime mode, ONNX Runtime on
the CPU unless --backend says otherwise, sigma told 25, a null sink) fed the built-in demo's first
FRAMES frames (its pan, Gaussian sigma 25, made before) in a loop, played faster than the model keeps
up with (SIZES: the rate offered per frame size), so that the stream runs at what the pipeline can
take and drops the rest: its throughput (frames out per second) is the figure. Three cases, in turns
(RUNS rounds, median reported, so that the machine's drift moves them alike): the model alone
(`--temporal off`, the anchor), the blend in line (on the inference thread:
`Pipeline(blend_thread=False)`) and the blend on its own thread (`Pipeline(blend_thread=True)`). The
blend's cost is each blending case's time per frame over the model alone's.

Writes benchmarks/results/blend_stage_cpu.{json,md}.
"""
from __future__ import annotations

import argparse

import numpy as np
from common import publish, stamp  # noqa: E402  (common puts the checkout on sys.path)

from edgedenoise.runtime.sources import Source

SIZES = {(640, 480): 120.0, (1280, 720): 40.0}  # frame size: the rate offered, above what tiny keeps up with
FRAMES = 60
RUNS = 3
CASES = {"model alone": ("off", None), "blend in line": ("blend", False), "blend on its own thread": ("blend", True)}


class Played(Source):
    """The demo's first frames, made once, played in a loop at `fps` (the demo itself makes each frame's
    noise as it goes, which at these rates would take a core of its own)."""

    name, live, realtime = "demo frames", False, True

    def __init__(self, frames: list, fps: float):
        self.frames, self.fps, self.i = frames, fps, 0

    def read(self):
        self.i += 1
        return self.frames[(self.i - 1) % len(self.frames)]


def one(den, frames: list, fps: float, seconds: float, temporal: str, thread) -> dict:
    from edgedenoise.runtime.pipeline import Pipeline
    from edgedenoise.runtime.sinks import open_sink

    pipe = Pipeline(Played(frames, fps), open_sink("null"), den, mode="realtime", sigma=25.0,
                    max_frames=int(fps * seconds), status=False, temporal=temporal, blend_thread=thread)
    st = pipe.run()
    s = st.summary()
    stages = s["stages"]
    return {"fps": s["fps"], "frames_in": s["frames_in"], "frames_out": s["frames_out"],
            "inference_ms": stages["inference"]["p50_ms"],
            "temporal_ms": stages.get("temporal", {}).get("p50_ms", 0.0)}


def main() -> int:
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--backend", default="onnxruntime",
                    help="onnxruntime (default, the CPU), or triton / torch / tensorrt on a GPU machine")
    ap.add_argument("--seconds", type=float, default=6.0, help="stream length per run (default 6)")
    ap.add_argument("--offer", type=float, default=0.0,
                    help="frames a second offered at every size (default: SIZES' rates, for tiny on a 2-core CPU; "
                         "a GPU needs far more, e.g. 1000)")
    ap.add_argument("--sizes", default="", help="frame sizes WxH,... (default 640x480,1280x720)")
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--out", default="blend_stage_cpu")
    a = ap.parse_args()

    from edgedenoise.denoiser import Denoiser

    sizes = dict(SIZES)
    if a.sizes:
        sizes = {tuple(int(v) for v in wh.lower().split("x")): 0.0 for wh in a.sizes.split(",")}
    sizes = {wh: a.offer or f for wh, f in sizes.items()}
    if not all(sizes.values()):
        ap.error("--sizes other than the default ones need --offer FPS")
    den = Denoiser.load(a.model, backend=a.backend, precision=a.precision)
    doc = {"stamp": stamp(), "model": f"{a.model} {a.precision}, {den.backend_name}",
           "fps_offered": {f"{w}x{h}": f for (w, h), f in sizes.items()}, "seconds": a.seconds,
           "runs": a.runs, "results": {}}
    bar = tqdm(total=len(sizes) * a.runs * len(CASES), unit="run")
    from edgedenoise.runtime.sources import DemoSource

    for (w, h), fps in sizes.items():
        demo = DemoSource(25.0, size=(w, h))
        demo.open()
        frames = [demo.read() for _ in range(FRAMES)]
        den.warm_up(w, h)
        rows = {name: [] for name in CASES}
        for _ in range(a.runs):
            for name, (temporal, thread) in CASES.items():
                rows[name].append(one(den, frames, fps, a.seconds, temporal, thread))
                bar.update(1)
        doc["results"][f"{w}x{h}"] = {name: {"runs": r, "fps": float(np.median([x["fps"] for x in r])),
                                             "temporal_ms": float(np.median([x["temporal_ms"] for x in r]))}
                                      for name, r in rows.items()}
    bar.close()
    return publish(a.out, doc, markdown(doc))


def markdown(doc: dict) -> str:
    out = [f"### {doc['model']}, realtime, the demo's pan played faster than it keeps up with "
           f"({doc['seconds']:g} s a run, median of {doc['runs']} runs in turns)", "",
           "| frame size (offered fps) | case | frames out per second | ms a frame | over the model alone "
           "| blend p50, ms |",
           "|---|---|---|---|---|---|"]
    for size, by in doc["results"].items():
        base = 1e3 / by["model alone"]["fps"]
        size = f"{size} ({doc['fps_offered'][size]:g})"
        for name, r in by.items():
            ms = 1e3 / r["fps"]
            over = "" if name == "model alone" else f"+{ms - base:.2f} ms ({100 * (ms / base - 1):+.0f} %)"
            out.append(f"| {size} | {name} | {r['fps']:.1f} | {ms:.2f} | {over} | "
                       f"{r['temporal_ms']:.2f} |" if name != "model alone" else
                       f"| {size} | {name} | {r['fps']:.1f} | {ms:.2f} | | |")
    out += ["", "Frames out per second: the stream's throughput (frames in at the offered rate, the rest dropped); "
            "ms a frame its inverse. The blend's p50 is its own time per frame, on whichever thread ran it "
            "(longer on its own thread while the model takes the cores)."]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
