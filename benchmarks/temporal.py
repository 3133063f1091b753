#!/usr/bin/env python3
"""Temporal denoising measured: each model frame by frame against the same model + the recursive blend
(`run --temporal blend`), beside OpenCV NLM and its multi-frame variant, on clips with known motion.

    python benchmarks/temporal.py               # ~12 min on two cores
    python benchmarks/temporal.py --report-only # re-write the Markdown from the JSON

Clips (BENCHMARK_PROTOCOL.md, "Video"; sigma 25, camera protocol, independent noise per frame):

- synthetic, from the test sets (tools/make_clips.py writes the same clips to disk to look at):
  for each motion of `edgedenoise.clips` (still, pan, zoom, shake, moving objects, drift), two Kodak24 and
  two CBSD68 images (different images per motion, evenly spaced through the sorted sets), 12 frames;
  two `cut` clips (one per set, 16 frames, the scene changes at frame 8). Noise: clips.noisy_clip,
  seeded by the clip's number.
- the shared videos: the first 40 frames of bikes.mp4 (640x272, camera footage) and
  bigbuckbunny.mp4 (1280x720, animation), noise for frame t from default_rng(t) (RGB order);
- a splice: bikes.mp4 frames 0-19, then bigbuckbunny.mp4 frames 0-19 (scaled and cropped to
  640x272): a scene cut at frame 20.

Methods: `tiny` and `default`, fp32 and int8 (ONNX Runtime, told sigma 25), frame by frame and with
the blend on their outputs (a state per clip, from nothing at frame 0: causal); the shipped recurrent
models (`--recurrent`, default: every shipped model that is recurrent), fp32 and int8, each given its
last output as the runtime gives it (VideoDenoiser, temporal "model": a state per clip, dropped at a
detected cut); OpenCV
fastNlMeansDenoisingColored (quality.py's h for sigma 25, template 7, search 21) and
fastNlMeansDenoisingColoredMulti (the same h, temporal window 5: two frames of look-ahead; at a
clip's ends the window shrinks to the frames there are; not run on bigbuckbunny, where one frame
takes seconds). ffmpeg's hqdn3d and fftdnoiz are the protocol's other anchors, each the best of a
strength grid per clip (chosen with the clean clip: an oracle that favours the anchor), run in
yuv444p with FFV1 in and out: by the `ffmpeg` on the PATH, else imageio-ffmpeg's static build
(`pip install -e .[bench]`), else recorded as not run.

Reported: PSNR and SSIM over all frames and over frames 5.., tPSNR (flicker), per clip kind and
overall; the blend's time per 640x480 frame against `tiny`'s, on the built-in demo stream (a pan;
also each frame right after a `tiny` pass, as a stream runs it) and on a still camera, and each
recurrent model's against its framewise model's (the cases in turns, ten frames at a time:
blend_cost); `results/temporal_cut.png` (PSNR per frame across the cuts);
`results/temporal_frames.png` (a crop of three frames, framewise against blend).
Writes results/temporal_cpu.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from common import RESULTS, ROOT, find_ffmpeg, publish, stamp
from video import read_video  # benchmarks/ is on the path: the script's own folder

from edgedenoise.evaluate import tpsnr

SIGMA = 25.0
FRAMES = 12
CUT_FRAMES = 16
VIDEO_FRAMES = 40
MOTIONS = ("still", "pan", "zoom", "shake", "objects", "drift")
# strength grids (BENCHMARK_PROTOCOL.md: the best setting should not sit on a grid's edge; fftdnoiz's
# sigma stops at 100). fftdnoiz is given one frame before and one after (its temporal maximum: a
# frame of look-ahead, as NLM multi has two); hqdn3d is causal, its temporal strengths beside the spatial.
FFMPEG_GRIDS = {"hqdn3d": [f"hqdn3d={s}:{s * 0.75:g}:{s * 1.5:g}:{s * 1.1:g}" for s in (4, 8, 16, 32, 64)],
                "fftdnoiz": [f"fftdnoiz=sigma={s}:prev=1:next=1" for s in (25, 50, 75, 100)]}


def images(folder: Path, n: int) -> list[tuple[str, np.ndarray]]:
    """n images evenly spaced through the sorted folder, as (name, BGR image)."""
    files = sorted(folder.iterdir())
    picked = np.unique(np.linspace(0, len(files) - 1, n).round().astype(int))
    return [(files[i].stem, cv2.imread(str(files[i]), cv2.IMREAD_COLOR)) for i in picked]


def synthetic_clips(data: Path) -> list[dict]:
    """The synthetic clips (see the module docstring): dicts of name, kind, set, clean, noisy."""
    from edgedenoise.clips import make_clip, noisy_clip

    clips = []
    for set_name in ("Kodak24", "CBSD68"):
        imgs = images(data / "test" / set_name, 2 * len(MOTIONS) + 2)
        for k, kind in enumerate(MOTIONS):
            for j in range(2):
                name, img = imgs[2 * k + j]
                clean = make_clip(img, kind, FRAMES, seed=len(clips))
                clips.append({"name": f"{set_name}/{name} {kind}", "kind": kind, "set": set_name, "clean": clean,
                              "noisy": noisy_clip(clean, SIGMA, seed=len(clips)),
                              "show": set_name == "Kodak24" and kind == "still" and j == 0})
        (n1, a), rest = imgs[-2], imgs[:-2] + imgs[-1:]
        n2, b = next((n, im) for n, im in reversed(rest) if im.shape == a.shape)  # a scene of the same size
        clean = make_clip(a, "cut", CUT_FRAMES, seed=len(clips), second=b)
        clips.append({"name": f"{set_name}/{n1}|{n2} cut", "kind": "cut", "set": set_name, "clean": clean,
                      "noisy": noisy_clip(clean, SIGMA, seed=len(clips)), "show": set_name == "Kodak24"})
    return clips


def protocol_noisy_video(clean: list[np.ndarray]) -> list[np.ndarray]:
    """The video protocol's noise: frame t gets default_rng(t), drawn in RGB order."""
    from edgedenoise.noise import protocol_noisy

    return [np.ascontiguousarray(protocol_noisy(f[:, :, ::-1], SIGMA, t, "camera")[:, :, ::-1])
            for t, f in enumerate(clean)]


def video_clips(data: Path) -> list[dict]:
    bikes = read_video(data / "video" / "bikes.mp4")[:VIDEO_FRAMES]
    bunny = read_video(data / "video" / "bigbuckbunny.mp4")[:VIDEO_FRAMES]
    h, w = bikes[0].shape[:2]
    scale = max(w / bunny[0].shape[1], h / bunny[0].shape[0])
    bunny_small = []
    for f in bunny[:20]:
        g = cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        y, x = (g.shape[0] - h) // 2, (g.shape[1] - w) // 2
        bunny_small.append(np.ascontiguousarray(g[y:y + h, x:x + w]))
    splice = bikes[:20] + bunny_small
    return [{"name": "bikes.mp4", "kind": "video", "set": "video", "clean": bikes},
            {"name": "bigbuckbunny.mp4", "kind": "video", "set": "video", "clean": bunny, "no_multi": True},
            {"name": "bikes|bigbuckbunny splice", "kind": "cut", "set": "video", "clean": splice, "show": True}]


def nlm_multi(noisy: list[np.ndarray], h: float) -> list[np.ndarray]:
    """fastNlMeansDenoisingColoredMulti, temporal window 5 (centred), shrunk at the clip's ends."""
    out = []
    for t in range(len(noisy)):
        r = min(2, t, len(noisy) - 1 - t)
        out.append(cv2.fastNlMeansDenoisingColoredMulti(noisy[t - r:t + r + 1], r, 2 * r + 1, None, h, h, 7, 21))
    return out


def ffv1_clip(noisy: list[np.ndarray], tmp: Path) -> Path:
    """The clip as a lossless FFV1 file in `tmp`, the input of every ffmpeg filter run on it. OpenCV's
    writer stores even sizes only (it would cut a row or column off): the last one is repeated here
    and cut off again by ffmpeg_filter."""
    h, w = noisy[0].shape[:2]
    src = tmp / "in.mkv"
    wr = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"FFV1"), 25, (w + w % 2, h + h % 2))
    for f in noisy:
        wr.write(cv2.copyMakeBorder(f, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE))
    wr.release()
    return src


def ffmpeg_filter(noisy: list[np.ndarray], flt: str, src: Path, exe: str = "ffmpeg") -> list[np.ndarray]:
    """An ffmpeg filter over the clip `noisy` written to `src` (ffv1_clip), in yuv444p, FFV1 in and out
    (the protocol's recipe)."""
    import subprocess

    h, w = noisy[0].shape[:2]
    dst = src.with_name("out.mkv")
    subprocess.run([exe, "-y", "-loglevel", "error", "-i", str(src), "-vf",
                    f"format=yuv444p,{flt},format=bgr0", "-c:v", "ffv1", str(dst)], check=True)
    cap = cv2.VideoCapture(str(dst))
    out = []
    while (r := cap.read())[0]:
        out.append(np.ascontiguousarray(r[1][:h, :w]))
    cap.release()
    if len(out) != len(noisy) or out[0].shape != noisy[0].shape:
        raise RuntimeError(f"ffmpeg {flt}: {len(out)} frames of {out[0].shape if out else None} back for "
                           f"{len(noisy)} of {noisy[0].shape}")
    return out


def scores(outs: list[np.ndarray], clean: list[np.ndarray]) -> dict:
    from edgedenoise.evaluate import psnr_u8, ssim_u8

    p = [psnr_u8(o, c) for o, c in zip(outs, clean)]
    s = [ssim_u8(o, c) for o, c in zip(outs, clean)]
    return {"psnr": p, "ssim": s, "tpsnr": tpsnr(outs, clean)}


def shipped_recurrent() -> list[str]:
    """The names of the shipped models that are recurrent."""
    import json

    from edgedenoise.modelfile import MODELS_DIR, known_as

    # as users know them (small-video: default-video, whose base is default)
    return sorted(known_as(p.stem) for p in MODELS_DIR.glob("*.json") if json.loads(p.read_text()).get("recurrent"))


COST_BLOCK = 10  # blend_cost: frames a case runs before the next case's turn


def blend_cost(recurrent: list[str] = ()) -> dict:
    """p50 ms per 640x480 frame: tiny and default, fp32 and int8, the blend on the demo's pan and on a
    still camera, and each recurrent model (fp32, int8) with its state. The cases take turns (each
    with its own session and state), so that a machine whose speed drifts within a run
    (these 2-core machines by 10-40 % from minute to minute) moves every case alike and the ratios
    hold; run one after another, `default-video`'s cost over `default` read +14 % in one run and
    +21 % in the next. The turns are blocks of COST_BLOCK frames, the first two of each untimed:
    frame by frame, each case found the caches holding the seven others' data, and the blend took
    twice its time alone. Which is how a stream runs it: right after the model's pass. So the pan is also
    timed that way ("after each tiny pass": an untimed `tiny` fp32 pass before each blend frame), the
    cost the issue's 10 % is about (about 3 ms where the blocks read 2.1-2.5, 2026-12-07)."""
    from edgedenoise.denoiser import Denoiser
    from edgedenoise.runtime.sources import DemoSource
    from edgedenoise.runtime.stats import summarize
    from edgedenoise.temporal import RecursiveBlend, VideoDenoiser

    demo = DemoSource(SIGMA)
    demo.open()
    frames = [demo.read() for _ in range(110)]
    dens = {f"{m} {p}": Denoiser.load(m, backend="onnxruntime", precision=p)
            for m, p in (("tiny", "fp32"), ("tiny", "int8"), ("default", "fp32"), ("default", "int8"))}
    outs = [dens["tiny fp32"].denoise(f, SIGMA) for f in frames]  # what the blend runs on (an untimed pass)
    blends = {"blend, demo pan": (RecursiveBlend(), outs),
              "blend, still camera": (RecursiveBlend(), [outs[0]] * len(outs))}
    # the pan as a stream pays it: each blend frame right after the model's pass, whose data leaves the
    # blend's buffers out of the caches (in the two cases above the blend runs ten frames in a row)
    stream = RecursiveBlend()
    videos = {f"{m} {p}": VideoDenoiser.load(m, backend="onnxruntime", precision=p, temporal="model")
              for m in recurrent for p in ("fp32", "int8")}
    cases = {}  # name -> one call for frame i, in the report's order
    before = {}  # name -> an untimed call before each of its timed ones
    for name, den in dens.items():
        cases[name] = lambda i, d=den: d.denoise(frames[i], SIGMA)
        if name == "tiny fp32":
            for bname, (b, seq) in blends.items():
                cases[bname] = lambda i, b=b, seq=seq: b(seq[i], SIGMA)
            cases["blend, demo pan, after each tiny pass"] = lambda i: stream(outs[i], SIGMA)
            before["blend, demo pan, after each tiny pass"] = lambda i, d=den: d.denoise(frames[i], SIGMA)
    for name, vd in videos.items():
        cases[name] = lambda i, v=vd: v.denoise(frames[i], SIGMA)
    times = {name: [] for name in cases}
    for b0 in range(0, len(frames), COST_BLOCK):  # every case through its frames b0.. in order, in turns
        for name, call in cases.items():
            for i in range(b0, min(b0 + COST_BLOCK, len(frames))):
                if name in before:
                    before[name](i)
                t = time.perf_counter()
                call(i)
                if b0 and i - b0 >= 2:  # the first block warms up; a block's first two calls find cold caches
                    times[name].append(time.perf_counter() - t)
    return {name: summarize(v) for name, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("EDGEDENOISE_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--recurrent", nargs="*", default=None, metavar="MODEL",
                    help="recurrent models to measure (default: the shipped ones)")
    ap.add_argument("--report-only", action="store_true",
                    help="re-write results/temporal_cpu.md from results/temporal_cpu.json (no measuring)")
    ap.add_argument("--cost-only", action="store_true",
                    help="measure the cost per frame again (a few minutes) into results/temporal_cpu.json, "
                         "keep its quality figures, re-write the report")
    a = ap.parse_args()
    data = Path(a.data)
    if a.report_only or a.cost_only:
        import json

        doc = json.loads((RESULTS / "temporal_cpu.json").read_text())
        if a.cost_only:  # the quality run's recurrent models, measured now, stamped apart
            rec = sorted({k.split()[0] for k in doc["cost_640x480"] if "-" in k.split()[0]})  # tiny-video fp32
            doc["cost_640x480"] = blend_cost(rec if a.recurrent is None else a.recurrent)
            doc["cost_stamp"] = stamp()
        ff = doc["stamp"].get("ffmpeg")
        pictures = [cut_plot(doc["results"]), RESULTS / "temporal_frames.png"]
        md = report(doc["results"], doc["cost_640x480"], doc["stamp"]["nlm_h"], ff if isinstance(ff, dict) else None,
                    pictures, doc.get("cost_stamp"))
        return publish("temporal_cpu", doc, md, also=pictures[:1])  # the cut plot is redrawn, the frames are not

    from tqdm import tqdm

    from edgedenoise.denoiser import Denoiser
    from edgedenoise.evaluate import psnr_u8
    from edgedenoise.nlm import nlm_denoise, nlm_h
    from edgedenoise.temporal import RecursiveBlend, VideoDenoiser

    recurrent = shipped_recurrent() if a.recurrent is None else a.recurrent
    clips = synthetic_clips(data) + video_clips(data)
    for c in clips:
        if "noisy" not in c:
            c["noisy"] = protocol_noisy_video(c["clean"])
    dens = {f"{m} {p}": Denoiser.load(m, backend="onnxruntime", precision=p)
            for m in ("tiny", "default") for p in ("fp32", "int8")}
    videos = {f"{m} {p}": VideoDenoiser.load(m, backend="onnxruntime", precision=p, temporal="model")
              for m in recurrent for p in ("fp32", "int8")}
    h_nlm = nlm_h(SIGMA)
    ffmpeg = find_ffmpeg()  # (path, version) or None
    tmp = RESULTS.parent / ".cache" / "temporal"
    tmp.mkdir(parents=True, exist_ok=True)
    total = sum(len(c["clean"]) for c in clips)
    bar = tqdm(total=total, unit="frame", desc="temporal")
    results, ffmpeg_choice = [], {}
    for c in clips:
        clean, noisy = c["clean"], c["noisy"]
        methods = {"noisy input": noisy}
        for label, den in dens.items():
            outs = [den.denoise(f, SIGMA) for f in noisy]
            methods[label] = outs
            b = RecursiveBlend()
            methods[label + " + blend"] = [b(o, SIGMA) for o in outs]
        for label, vd in videos.items():
            vd.reset()
            methods[label] = [vd.denoise(f, SIGMA) for f in noisy]
        methods["OpenCV NLM"] = [nlm_denoise(f, h_nlm) for f in noisy]
        if not c.get("no_multi"):
            methods["OpenCV NLM multi (5 frames)"] = nlm_multi(noisy, h_nlm)
        if ffmpeg:  # each the best of its strength grid on this clip (an oracle choice: it favours the anchor)
            src = ffv1_clip(noisy, tmp)  # once per clip, for every filter setting
            for name, grid in FFMPEG_GRIDS.items():
                runs = [(flt, ffmpeg_filter(noisy, flt, src, ffmpeg[0])) for flt in grid]
                flt, outs = max(runs, key=lambda fo: np.mean([psnr_u8(o, g) for o, g in zip(fo[1], clean)]))
                methods[f"ffmpeg {name} (best of grid)"] = outs
                ffmpeg_choice.setdefault(name, []).append(flt)
        row = {"clip": c["name"], "kind": c["kind"], "set": c["set"], "frames": len(clean),
               "size": f"{clean[0].shape[1]}x{clean[0].shape[0]}", "methods": {}}
        for label, outs in methods.items():
            row["methods"][label] = scores(outs, clean)
        if c.get("show"):
            row["show"] = True  # its PSNR per frame is in the cut plot (cut_plot reads it from here)
            c["outs"] = {k: methods[k] for k in ("default fp32", "default fp32 + blend", "tiny fp32",
                                                 "tiny fp32 + blend", *(f"{m} fp32" for m in recurrent))}
        results.append(row)
        bar.update(len(clean))
        d = row["methods"]
        bar.write(f"{c['name']}: default {np.mean(d['default fp32']['psnr']):.2f} -> blend "
                  f"{np.mean(d['default fp32 + blend']['psnr']):.2f} dB, tiny {np.mean(d['tiny fp32']['psnr']):.2f} "
                  f"-> {np.mean(d['tiny fp32 + blend']['psnr']):.2f}", file=sys.stderr)
    bar.close()
    cost = blend_cost(recurrent)
    pictures = [cut_plot(results), frames_picture(clips)]
    doc = {"stamp": stamp({"sigma": SIGMA, "nlm_h": h_nlm,
                           "ffmpeg": ffmpeg_choice or "not found: hqdn3d and fftdnoiz not run",
                           **({"ffmpeg_version": ffmpeg[1]} if ffmpeg else {})}),
           "cost_640x480": cost, "results": results}
    md = report(results, cost, h_nlm, ffmpeg_choice or None, pictures)
    return publish("temporal_cpu", doc, md, also=pictures)


def _mean(rows, method, key, start=0):
    vals = [np.mean(r["methods"][method][key][start:]) if key != "tpsnr" else r["methods"][method][key]
            for r in rows if method in r["methods"]]
    return float(np.mean(vals)) if vals else float("nan")


def report(results, cost, h_nlm, ffmpeg, pictures, cost_stamp: dict | None = None) -> str:
    groups = [("still (synthetic)", lambda r: r["kind"] == "still"),
              ("moving: pan, zoom, shake, objects, drift",
               lambda r: r["kind"] in ("pan", "zoom", "shake", "objects", "drift")),
              ("cut (synthetic)", lambda r: r["kind"] == "cut" and r["set"] != "video"),
              ("bikes.mp4 (40 frames)", lambda r: r["clip"] == "bikes.mp4"),
              ("bigbuckbunny.mp4 (40 frames)", lambda r: r["clip"] == "bigbuckbunny.mp4"),
              ("bikes|bigbuckbunny splice", lambda r: r["clip"] == "bikes|bigbuckbunny splice")]
    methods = list(results[0]["methods"])
    lines = ["## PSNR dB (all frames / frames 5..), SSIM, tPSNR dB", "",
             "| method | " + " | ".join(g for g, _ in groups) + " |", "|---|" + "---|" * len(groups)]
    for m in methods:
        cells = []
        for _, f in groups:
            rows = [r for r in results if f(r)]
            if not any(m in r["methods"] for r in rows):
                cells.append("–")
                continue
            cells.append(f"{_mean(rows, m, 'psnr'):.2f} / {_mean(rows, m, 'psnr', 5):.2f}, "
                         f"{_mean(rows, m, 'ssim'):.3f}, t {_mean(rows, m, 'tpsnr'):.1f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "## Blend gain over the same model frame by frame, dB (mean; worst clip)", "",
              "| model | " + " | ".join(g for g, _ in groups) + " |", "|---|" + "---|" * len(groups)]
    for m in ("tiny fp32", "tiny int8", "default fp32", "default int8"):
        cells = []
        for _, f in groups:
            rows = [r for r in results if f(r)]
            g = [np.mean(r["methods"][m + " + blend"]["psnr"]) - np.mean(r["methods"][m]["psnr"]) for r in rows]
            cells.append(f"{np.mean(g):+.2f}; {min(g):+.2f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    rec = sorted({m for r in results for m in r["methods"] if m.endswith((" fp32", " int8"))
                  and m.split()[0] not in ("tiny", "default")})
    if rec:
        lines += ["", "## Recurrent models against the framewise models and the blend, dB (mean; worst clip)", "",
                  "| recurrent model | against | " + " | ".join(g for g, _ in groups) + " |",
                  "|---|---|" + "---|" * len(groups)]
        for m in rec:
            for ref in ("tiny fp32", "tiny fp32 + blend", "default fp32", "default fp32 + blend"):
                cells = []
                for _, f in groups:
                    rows = [r for r in results if f(r)]
                    g = [np.mean(r["methods"][m]["psnr"]) - np.mean(r["methods"][ref]["psnr"]) for r in rows]
                    cells.append(f"{np.mean(g):+.2f}; {min(g):+.2f}")
                lines.append(f"| {m} | {ref} | " + " | ".join(cells) + " |")
    lines += ["", "## After the cuts: blend minus framewise, dB, the three frames after each cut (default fp32)", ""]
    for r in results:
        if r["kind"] == "cut":
            k = 20 if r["set"] == "video" else CUT_FRAMES // 2
            d = np.array(r["methods"]["default fp32 + blend"]["psnr"][k:k + 3]) - \
                np.array(r["methods"]["default fp32"]["psnr"][k:k + 3])
            lines.append(f"- {r['clip']}: " + ", ".join(f"{v:+.2f}" for v in d))
    for m in rec:  # a recurrent model against the framewise model it was made from (tiny-video: tiny)
        base = f"{m.split()[0].split('-')[0]} {m.split()[1]}"
        if base not in results[0]["methods"]:
            continue
        lines += ["", f"After the cuts, {m} minus {base}, the three frames after each cut:", ""]
        for r in results:
            if r["kind"] == "cut":
                k = 20 if r["set"] == "video" else CUT_FRAMES // 2
                d = np.array(r["methods"][m]["psnr"][k:k + 3]) - np.array(r["methods"][base]["psnr"][k:k + 3])
                lines.append(f"- {r['clip']}: " + ", ".join(f"{v:+.2f}" for v in d))
    t = cost
    lines += ["", "## Cost per 640x480 frame (p50 ms, the demo stream, ONNX Runtime, default threads, the cases in "
                  f"turns, {COST_BLOCK} frames at a time)", "",
              "| what | p50 ms | share of tiny fp32 | share of tiny int8 | share of its framewise model |",
              "|---|---|---|---|---|"]
    for k, v in t.items():
        # a recurrent model against the framewise model it was made from, same precision (tiny-video: tiny)
        base = f"{k.split()[0].split('-')[0]} {k.split()[-1]}"
        own = f"{v['p50_ms'] / t[base]['p50_ms']:.0%}" if "-" in k.split()[0] and base in t else ""
        lines.append(f"| {k} | {v['p50_ms']:.2f} | {v['p50_ms'] / t['tiny fp32']['p50_ms']:.0%} | "
                     f"{v['p50_ms'] / t['tiny int8']['p50_ms']:.0%} | {own} |")
    if cost_stamp:
        lines += ["", f"Cost measured again by `{cost_stamp['command']}` on {cost_stamp['date'][:10]} "
                      f"({cost_stamp['machine']['cpu']}); the quality figures above are the stamp's run."]
    lines += ["", (f"Sigma {SIGMA:g}, camera protocol, noise new in every frame; models told sigma 25. NLM h {h_nlm}, "
                   "template 7, search 21; NLM multi has two frames of look-ahead (not causal), not run on "
                   "bigbuckbunny.mp4 (seconds per frame). "
                   + (ffmpeg_note(ffmpeg) if ffmpeg else "ffmpeg's hqdn3d and fftdnoiz not run: no ffmpeg on this "
                      "machine. ")
                   + "SSIM: mean over all frames. tPSNR: the PSNR of the frame-to-frame change against the clean "
                   "clip's (higher: less flicker). "
                   "Synthetic clips: edgedenoise.clips (tools/make_clips.py writes them). temporal_frames.png: a "
                   "200-pixel crop of frames 8-10 of a still Kodak24 clip, rows noisy, `default` frame by frame, "
                   "`default` + blend (and each recurrent model), each labelled 'frame: PSNR dB' of the whole "
                   "frame."), ""]
    lines += [f"![{p.stem}]({p.name})" for p in pictures]
    return "\n".join(lines)


def ffmpeg_note(choice: dict) -> str:
    """What the ffmpeg anchors ran: each filter's grid setting chosen per clip, and how often."""
    from collections import Counter

    parts = [f"{name}: " + ", ".join(f"{flt.split('=', 1)[1]} x{n}" for flt, n in Counter(flts).most_common())
             for name, flts in choice.items()]
    return ("ffmpeg anchors: the best setting of each filter's grid per clip, chosen with the clean clip "
            f"(yuv444p, FFV1 in and out; chosen per clip: {'; '.join(parts)}). ")


def cut_plot(results) -> Path:
    """PSNR per frame across the cuts shown (rows marked "show"; results written before the mark: the
    Kodak24 cut and the video splice), drawn from the results alone, so --report-only redraws it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cuts = [r for r in results if r["kind"] == "cut" and r.get("show")] or \
        [r for r in results if r["kind"] == "cut" and r["set"] in ("Kodak24", "video")]
    fig, axes = plt.subplots(1, len(cuts), figsize=(6 * len(cuts), 4.6), squeeze=False)
    styles = [("default fp32", "C0--"), ("default fp32 + blend", "C0-"), ("tiny fp32", "C1--"),
              ("tiny fp32 + blend", "C1-")]
    recurrent = [m for m in cuts[0]["methods"] if m.endswith(" fp32") and "-" in m.split()[0]]
    styles += [(label, f"C{2 + i}-") for i, label in enumerate(recurrent)]
    for ax, r in zip(axes[0], cuts):
        k = 20 if r["set"] == "video" else CUT_FRAMES // 2
        for label, style in styles:
            ax.plot(r["methods"][label]["psnr"], style, marker=".", label=label)
        ax.axvline(k - 0.5, color="k", lw=0.8)
        ax.text(k - 0.3, 0.97, "cut", fontsize=10, va="top", transform=ax.get_xaxis_transform())
        ax.set_title(r["clip"], fontsize=11)
        ax.set_xlabel("frame")
        ax.set_ylabel("PSNR dB")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()  # one legend, below the plots: it covers no curve
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=9, frameon=False)
    fig.suptitle(f"PSNR per frame across a scene cut, sigma {SIGMA:g}: frame by frame (dashed), blend and "
                 f"recurrent models (solid)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = RESULTS / "temporal_cut.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def frames_picture(clips) -> Path:
    """A 200-pixel crop of three late frames of the still Kodak clip: noisy, default framewise, default + blend,
    and each recurrent model measured."""
    from edgedenoise.evaluate import comparison, psnr_u8

    c = next(c for c in clips if "outs" in c and c["kind"] == "still")
    h, w = c["clean"][0].shape[:2]
    s = 200
    y, x = (h - s) // 2, (w - s) // 2
    rows = []
    recurrent = [(k.split()[0], v) for k, v in c["outs"].items()
                 if k not in ("default fp32", "default fp32 + blend", "tiny fp32", "tiny fp32 + blend")]
    for label, seq in (("noisy", c["noisy"]), ("framewise", c["outs"]["default fp32"]),
                       ("blend", c["outs"]["default fp32 + blend"]), *recurrent):
        panels = [(f"{label} {t}: {psnr_u8(seq[t], c['clean'][t]):.2f}", seq[t][y:y + s, x:x + s, ::-1])
                  for t in (8, 9, 10)]
        rows.append(comparison(panels))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    pic = np.concatenate(rows[:-1], axis=0)
    path = RESULTS / "temporal_frames.png"
    cv2.imwrite(str(path), pic, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


if __name__ == "__main__":
    raise SystemExit(main())
