#!/usr/bin/env python3
"""What the blind noise estimate costs per frame, idle and with a core held by another process.

    python benchmarks/estimate_cost.py            # ~1 minute

Writes benchmarks/results/estimate_cost.{json,md}. Frames: the bundled sample resized to 640x480
and 1280x720 with camera-protocol noise sigma 25 (seed 0). Cases, each timed over --calls calls
after one warm-up, median and p90 in ms:
- now, whole frame: `estimate.estimate_sigma` (what `Denoiser.denoise(frame)` and `denoise` do);
- now, run's crop: the same on the central 256x256 crop `run`'s worker thread estimates;
- before, whole frame: the estimate shipped until December 2026 (fine scale, every patch) with
  NumPy's BLAS on its default threads, as it ran then (`estimate._white_sigma(..., weak_texture=False)`
  without the one-thread limit).
"Busy" runs the same while another process spins on one core (what a second program, or the
video decoder, does to a 2-core device); NumPy's BLAS threads wait on each other there.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np
from common import publish, stamp  # noqa: E402  (common puts the checkout on sys.path)


def spin(stop) -> None:
    while not stop.is_set():
        pass


def timed(fn, frame, calls: int) -> dict:
    fn(frame)
    ts = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(frame)
        ts.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": float(np.median(ts)), "p90_ms": float(np.percentile(ts, 90)), "max_ms": float(max(ts))}


def main() -> int:
    import cv2

    from edgedenoise import estimate as E
    from edgedenoise.data import SAMPLE_IMAGE, read_image
    from edgedenoise.noise import protocol_noisy

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20)
    a = ap.parse_args()

    def before(frame):
        return E._white_sigma(*E._planes(frame), weak_texture=False)

    def crop(frame):
        h, w = frame.shape[:2]
        y, x = (h - 256) // 2, (w - 256) // 2
        return E.estimate_sigma(frame[y:y + 256, x:x + 256])

    cases = {"now, whole frame": E.estimate_sigma, "now, run's 256x256 crop": crop, "before, whole frame": before}
    sample = read_image(SAMPLE_IMAGE, 3)[:, :, ::-1]
    doc = {"stamp": stamp(), "calls": a.calls, "results": {}}
    for w, h in ((640, 480), (1280, 720)):
        frame = protocol_noisy(np.ascontiguousarray(cv2.resize(sample, (w, h), interpolation=cv2.INTER_AREA)), 25, 0,
                               "camera")
        for load in ("idle", "busy"):
            stop, proc = mp.Event(), None
            if load == "busy":
                proc = mp.Process(target=spin, args=(stop,), daemon=True)
                proc.start()
                time.sleep(0.5)
            try:
                for name, fn in cases.items():
                    r = timed(fn, frame, a.calls)
                    doc["results"][f"{w}x{h} {load} {name}"] = r
                    print(f"{w}x{h} {load:4s} {name:26s} median {r['median_ms']:7.1f} ms  p90 {r['p90_ms']:7.1f}"
                          f"  max {r['max_ms']:7.1f}", flush=True)
            finally:
                stop.set()
                if proc is not None:
                    proc.join()
    md = ["### Blind noise estimate: ms per call (median / p90 / max)\n", "| frame, load | case | median | p90 | max |",
          "|---|---|---|---|---|"]
    for k, r in doc["results"].items():
        size, load, name = k.split(" ", 2)
        md.append(f"| {size}, {load} | {name} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['max_ms']:.1f} |")
    md.append("")
    md.append("Busy: another process spinning on one core. Frames: the bundled sample, camera protocol sigma 25.")
    return publish("estimate_cost", doc, "\n".join(md))


if __name__ == "__main__":
    raise SystemExit(main())
