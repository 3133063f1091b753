#!/usr/bin/env python3
"""Denoising real video at its own resolution: quality, flicker and latency per frame, side by side
with OpenCV NLM in one run.

    python benchmarks/video.py                       # every video in $EDGEDENOISE_DATA/video

For each video (bikes.mp4: 640x272, 250 frames, camera footage; bigbuckbunny.mp4: 1280x720,
132 frames, animation), every decoded frame is the clean reference and gets camera-protocol
noise sigma 25 seeded by its index (BENCHMARK_PROTOCOL.md: noise for frame i from
default_rng(i), rounded and clipped to uint8). Each case then denoises every frame in order:

- `tiny` and `default` through the onnxruntime backend at fp32 and int8, told sigma 25;
- `default` fp32 with sigma estimated and smoothed over time, as `edgedenoise run` does by default
  on a file (`--sigma auto`, offline mode: in line, on a schedule in frames of the video's own
  timeline; the estimates' time counts);
- the anchor: OpenCV fastNlMeansDenoisingColored (quality.py's h for sigma 25, template 7, search 21).

Reported per case: latency per frame (uint8 BGR in, uint8 BGR out; p50/p90/p99/mean over all
frames after 5 untimed warm-up calls), PSNR and SSIM averaged over frames (BENCHMARK_PROTOCOL.md),
and tPSNR, a flicker measure: the PSNR of the frame-to-frame change of the output against that
of the clean video, 10 log10(255^2 / mean_t MSE((out_t - out_t-1), (clean_t - clean_t-1))),
so noise that changes from frame to frame, or a denoiser that wavers, lowers it. Ratios are
NLM's p50 over the case's p50. Writes results/video_cpu.{json,md} and one picture per video
(results/video_<name>.png: a crop of the middle frame, clean | noisy | NLM | default).

    python benchmarks/video.py --pictures-only       # only the pictures, in seconds

re-makes only the pictures: every frame is still decoded (the middle one is len // 2), but only
the middle frame gets its noise (seeded by its index, as in the full run) and is denoised, once by
each method shown; every method is a pure function of its frame, so the picture and its PSNR
labels are those the full run makes. video_cpu.{json,md} are left as they are.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from common import RESULTS, ROOT, publish, stamp

SIGMA = 25.0
WARMUP = 5


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video file, through the runtime's own source (its errors for a bad file)."""
    return read_video_fps(path)[0]


def read_video_fps(path: Path) -> tuple[list[np.ndarray], float | None]:
    """read_video's frames and the frame rate the file declares (None where it declares none), as
    `run`'s source reads them, from one opening of the file."""
    from edgedenoise.runtime.sources import open_source

    src = open_source(str(path))
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    src.close()
    return frames, src.fps


def score(out: list[np.ndarray], clean: list[np.ndarray]) -> dict:
    from edgedenoise.evaluate import psnr_u8, ssim_u8, tpsnr

    return {"psnr_db": round(float(np.mean([psnr_u8(o, c) for o, c in zip(out, clean)])), 2),
            "ssim": round(float(np.mean([ssim_u8(o, c) for o, c in zip(out, clean)])), 4),
            "tpsnr_db": round(tpsnr(out, clean), 2)}


def picture(name: str, clean: np.ndarray, panels: list[tuple[str, np.ndarray]], crop: int = 256) -> Path:
    """A central crop of one frame: clean | each panel, labelled with the whole frame's PSNR."""
    import cv2

    from edgedenoise.evaluate import comparison, psnr_u8

    h, w = clean.shape[:2]
    c = min(crop, h, w)
    y, x = (h - c) // 2, (w - c) // 2
    tiles = [("clean", clean)] + [(f"{label} {psnr_u8(img, clean):.2f} dB", img) for label, img in panels]
    pic = comparison([(label, img[y:y + c, x:x + c, ::-1]) for label, img in tiles])  # RGB in, BGR out
    path = RESULTS / f"video_{name}.png"
    cv2.imwrite(str(path), pic, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def shown_panels(noisy: np.ndarray, nlm_out: np.ndarray, default_out: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The panels of a video's picture after clean: the noisy frame, NLM, default fp32 told sigma 25."""
    return [("noisy", noisy), ("NLM", nlm_out), ("default", default_out)]


def pictures_only(data: str, videos: list[str]) -> int:
    """`--pictures-only`: each video's picture from its middle frame alone (see the module docstring)."""
    from edgedenoise.denoiser import Denoiser
    from edgedenoise.nlm import nlm_denoise, nlm_h
    from edgedenoise.noise import protocol_noisy

    den = Denoiser.load("default", backend="onnxruntime", precision="fp32")
    h_nlm = nlm_h(SIGMA)
    for video in videos:
        clean = read_video(Path(data) / "video" / video)
        mid = len(clean) // 2
        c = clean[mid]
        del clean
        noisy = protocol_noisy(c, SIGMA, mid, "camera")
        path = picture(Path(video).stem, c, shown_panels(noisy, nlm_denoise(noisy, h_nlm), den.denoise(noisy, SIGMA)))
        print(f"{video}: frame {mid}, picture {path}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("EDGEDENOISE_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--videos", default="bikes.mp4,bigbuckbunny.mp4")
    ap.add_argument("--pictures-only", action="store_true",
                    help="re-make only results/video_<name>.png from each video's middle frame (no timing, no json/md)")
    a = ap.parse_args()
    if a.pictures_only:
        return pictures_only(a.data, a.videos.split(","))

    from tqdm import tqdm

    from edgedenoise.denoiser import Denoiser
    from edgedenoise.nlm import nlm_denoise, nlm_h
    from edgedenoise.noise import protocol_noisy
    from edgedenoise.runtime.pipeline import SigmaTracker
    from edgedenoise.runtime.stats import summarize, time_calls

    dens = {(m, p): Denoiser.load(m, backend="onnxruntime", precision=p)
            for m in ("tiny", "default") for p in ("fp32", "int8")}
    h_nlm = nlm_h(SIGMA)
    rows, pictures = [], []
    bar = tqdm(total=len(a.videos.split(",")) * (len(dens) + 2), unit="case", desc="video")
    for video in a.videos.split(","):
        clean, fps = read_video_fps(Path(a.data) / "video" / video)
        noisy = [protocol_noisy(f, SIGMA, i, "camera") for i, f in enumerate(clean)]
        hh, ww = clean[0].shape[:2]
        tracker = SigmaTracker(None, fps=fps)  # offline `run`'s schedule
        cases = [(f"{m} {p}", "25", lambda f, d=d: d.denoise(f, SIGMA)) for (m, p), d in dens.items()]
        cases.append(("default fp32", "auto", lambda f, t=tracker: dens["default", "fp32"].denoise(f, t(f))))
        cases.append(("OpenCV NLM", "25", lambda f: nlm_denoise(f, h_nlm)))
        base = {"video": video, "resolution": f"{ww}x{hh}", "frames": len(clean)}
        rows.append({**base, "case": "noisy input", "sigma": "–", **score(noisy, clean)})
        mid = len(clean) // 2  # the frame the picture shows
        shown = {}
        for label, sig, fn in cases:
            tracker.reset()
            got = []  # the warm-up calls' outputs first, then one per frame
            times, _ = time_calls(lambda f, fn=fn, got=got: got.append(fn(f)), noisy, len(noisy), WARMUP)
            outs = got[WARMUP:]
            s = summarize(times)
            row = {**base, "case": label, "sigma": sig, **s, "fps": round(1e3 / s["mean_ms"], 2), **score(outs, clean)}
            rows.append(row)
            shown[label, sig] = outs[mid]
            bar.update()
            bar.write(f"video {video} {label} sigma {sig}: p50 {s['p50_ms']:.1f} ms, PSNR {row['psnr_db']:.2f}, "
                      f"tPSNR {row['tpsnr_db']:.2f}", file=sys.stderr)
        nlm = next(r for r in rows if r["video"] == video and r["case"] == "OpenCV NLM")
        for r in rows:
            if r["video"] == video and "p50_ms" in r:
                r["x_nlm"] = round(nlm["p50_ms"] / r["p50_ms"], 2)
        pictures.append(picture(Path(video).stem, clean[mid], shown_panels(noisy[mid], shown["OpenCV NLM", "25"],
                                                                           shown["default fp32", "25"])))
    bar.close()

    doc = {"stamp": stamp({"sigma": SIGMA, "noise": "camera protocol, seed = frame index", "warmup": WARMUP,
                           "nlm_h": h_nlm, "measure": "Denoiser.denoise / NLM: uint8 BGR frame in, uint8 out"}),
           "results": rows}
    lines = [("| video | resolution | case | sigma given | p50 ms | p90 ms | p99 ms | fps | PSNR dB | SSIM | "
              "tPSNR dB | speed vs NLM (p50) |"), "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = (f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['fps']:.1f}" if "p50_ms" in r
             else "– | – | – | –")
        lines.append(f"| {r['video']} | {r['resolution']} | {r['case']} | {r['sigma']} | {t} | {r['psnr_db']:.2f} | "
                     f"{r['ssim']:.4f} | {r['tpsnr_db']:.2f} | {str(r['x_nlm']) + 'x' if 'x_nlm' in r else '–'} |")
    lines += ["", (f"Every frame of each video, in order, with camera-protocol noise sigma {SIGMA:g} seeded by its "
              f"index; latency over all frames after {WARMUP} untimed warm-up calls; NLM h {h_nlm} (quality.py's h for "
              "sigma 25), template 7, search 21. `sigma given` auto: estimated on offline mode's schedule and "
              "smoothed, as `edgedenoise run` does by default on a file. tPSNR: PSNR of the frame-to-frame "
              "change against the clean video's (higher: less flicker). The decoded frames are the reference: "
              "they carry the source's own compression."), ""]
    lines += [f"![{p.stem}]({p.name})" for p in pictures]
    md = "\n".join(lines)
    return publish("video_cpu", doc, md, also=pictures)


if __name__ == "__main__":
    raise SystemExit(main())
