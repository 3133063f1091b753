#!/usr/bin/env python3
"""Latency per frame, uint8 BGR in and uint8 BGR out, side by side with OpenCV NLM in one run.

    python benchmarks/latency.py                          # CPU: ONNX Runtime fp32 + int8, every shipped size
    python benchmarks/latency.py --gpu                    # also the GPU cases, where CUDA is available

Cases, each at 640x480, 1280x720 and 1920x1080 (frames made from the bundled sample with
camera-protocol noise sigma 25, as `edgedenoise bench` makes them):
- CPU: the `onnxruntime` backend at fp32 and int8 for each model size (threads: ONNX Runtime's
  default, one per core), through `Denoiser.denoise`, so pre- and post-processing count;
- GPU (`--gpu`, needs CUDA and torch): PyTorch eager fp16 (channels_last, cuDNN), `torch.compile`
  fp16, and the `triton` backend with and without CUDA graphs, each with the upload and
  download of the uint8 frame;
- the anchor: OpenCV `fastNlMeansDenoisingColored` (quality.py's h tuned for sigma 25,
  template 7, search 21) on the same frames, timed between the cases of each
  resolution. Ratios are NLM's p50 over the case's p50.

Writes benchmarks/results/latency_<cpu|gpu>.{json,md} and latency_<cpu|gpu>.png.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from common import ROOT, stamp, write  # noqa: E402


def nlm_h() -> float:
    """quality.py's h for sigma 25 (tuned on one training image, camera protocol), 13.7 before it has run."""
    import json

    q = ROOT / "benchmarks" / "results" / "quality.json"
    return float(json.loads(q.read_text())["nlm_h"]["25"]) if q.exists() else 13.7


def gpu_cases(model: str):
    """(name, fn) pairs for the GPU: uint8 BGR frame in, uint8 BGR frame out, synchronised."""
    import torch

    from edgedenoise.denoiser import Denoiser
    from edgedenoise.modelfile import load_model, resolve

    files = resolve(model)
    mult = files.size_multiple
    net = load_model(model).cuda().eval().half().to(memory_format=torch.channels_last)
    compiled = torch.compile(net, mode="max-autotune-no-cudagraphs")

    def make(module):
        @torch.inference_mode()
        def run(frame: np.ndarray) -> np.ndarray:
            h, w = frame.shape[:2]
            x = torch.from_numpy(frame).cuda(non_blocking=True)
            x = x.flip(-1).permute(2, 0, 1)[None].half().div_(255)
            ph, pw = -h % mult, -w % mult
            if ph or pw:
                x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
            x = x.contiguous(memory_format=torch.channels_last)
            s = torch.full((1,), 25 / 255, device="cuda", dtype=torch.half)
            y = module(x, s)[0, :, :h, :w]
            return y.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).flip(-1).cpu().numpy()

        return run

    cases = [("torch eager fp16", make(net)), ("torch.compile fp16", make(compiled))]
    try:
        from edgedenoise.triton_backend import TritonBackend

        tri = Denoiser.load(model, backend="triton")
        eager = TritonBackend(files, graphs=False)
        cases.append(("triton (CUDA graphs)", lambda f: tri.denoise(f, 25.0)))
        cases.append(("triton eager", lambda f: eager.denoise_frames(f, 25.0)))
    except Exception as e:  # noqa: BLE001  (report and go on: the other cases still count)
        print(f"latency: triton backend unavailable: {e}", file=sys.stderr)
    return cases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,default")
    ap.add_argument("--precisions", default="fp32,int8", help="CPU precisions (ONNX Runtime)")
    ap.add_argument("--resolution", default="640x480,1280x720,1920x1080")
    ap.add_argument("--frames", type=int, default=100, help="timed frames per case (default 100)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--nlm-frames", type=int, default=10, help="NLM is slow: frames timed per resolution")
    ap.add_argument("--gpu", action="store_true", help="GPU cases instead of the CPU ones (CUDA needed)")
    a = ap.parse_args()

    import cv2

    from edgedenoise.denoiser import Denoiser
    from edgedenoise.evaluate import psnr_u8
    from edgedenoise.runtime.commands import bench_frames, parse_size
    from edgedenoise.runtime.stats import summarize, time_calls

    cases = []  # (label, model, precision, fn)
    for model in a.models.split(","):
        if a.gpu:
            import torch

            if not torch.cuda.is_available():
                print("latency --gpu: no CUDA device here", file=sys.stderr)
                return 2
            cases += [(name, model, "fp16" if "fp16" in name else "fp32", fn) for name, fn in gpu_cases(model)]
        else:
            for prec in a.precisions.split(","):
                den = Denoiser.load(model, backend="onnxruntime", precision=prec)
                cases.append(("onnxruntime", model, prec, lambda f, den=den: den.denoise(f, 25.0)))

    h_nlm = nlm_h()
    rows, anchors = [], []
    for res in a.resolution.split(","):
        w, h = parse_size(res)
        clean, noisy = bench_frames(w, h, 25.0)
        for label, model, prec, fn in cases:
            ts, out = time_calls(fn, noisy, a.frames, a.warmup)
            s = summarize(ts)
            k = (a.frames - 1) % len(noisy)
            rows.append({"case": label, "model": model, "precision": prec, "resolution": res, **s,
                         "fps": round(1e3 / s["mean_ms"], 2), "psnr_db": round(psnr_u8(out, clean[k]), 2)})
            print(f"latency {label} {model} {prec} {res}: p50 {s['p50_ms']:.1f} ms", file=sys.stderr)
        ts, out = time_calls(lambda f: cv2.fastNlMeansDenoisingColored(f, None, h_nlm, h_nlm, 7, 21),
                              noisy, a.nlm_frames, 1)
        s = summarize(ts)
        anchors.append({"case": "opencv-nlm", "resolution": res, **s, "fps": round(1e3 / s["mean_ms"], 2),
                        "psnr_db": round(psnr_u8(out, clean[(a.nlm_frames - 1) % len(noisy)]), 2), "h": h_nlm})
        print(f"latency opencv-nlm {res}: p50 {s['p50_ms']:.1f} ms", file=sys.stderr)
        for r in rows:
            if r["resolution"] == res:
                r["x_nlm"] = round(s["p50_ms"] / r["p50_ms"], 2)

    kind = "gpu" if a.gpu else "cpu"
    doc = {"stamp": stamp({"sigma": 25, "frames": a.frames, "warmup": a.warmup, "nlm_frames": a.nlm_frames,
                           "measure": "Denoiser.denoise / the GPU case's call: uint8 BGR frame in, uint8 out"}),
           "results": rows, "anchors": anchors}
    lines = ["| case | model | precision | resolution | p50 ms | p90 ms | p99 ms | mean ms | fps | PSNR dB | "
             "speed vs NLM (p50) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows + anchors:
        lines.append(f"| {r['case']} | {r.get('model', '–')} | {r.get('precision', '–')} | {r['resolution']} | "
                     f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_ms']:.1f} | {r['fps']:.1f} | "
                     f"{r['psnr_db']:.2f} | {str(r['x_nlm']) + 'x' if 'x_nlm' in r else '1x'} |")
    lines.append("")
    lines.append(f"Frames: the bundled sample at each size with camera-protocol noise sigma 25 (PSNR is of the last "
                 f"timed frame). {a.frames} timed frames per case after {a.warmup} warm-up; NLM {a.nlm_frames} "
                 f"frames, h {h_nlm} (quality.py's tuned h for sigma 25), template 7, search 21, timed between the cases of its resolution.")
    md = "\n".join(lines)
    j, mdp = write(f"latency_{kind}", doc, md)
    png = plot(doc, kind)
    print(md)
    print(f"results: {j}, {mdp}, {png}")
    return 0


def plot(doc: dict, kind: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = list(dict.fromkeys(r["resolution"] for r in doc["results"]))
    labels = list(dict.fromkeys(f"{r['model']} {r['case']} {r['precision']}" for r in doc["results"]))
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / (len(labels) + 1)
    x = np.arange(len(res))
    for i, lab in enumerate(labels):
        fps = [next((r["fps"] for r in doc["results"] if f"{r['model']} {r['case']} {r['precision']}" == lab
                     and r["resolution"] == rr), 0) for rr in res]
        ax.bar(x + i * width, fps, width, label=lab)
    ax.bar(x + len(labels) * width, [next(r["fps"] for r in doc["anchors"] if r["resolution"] == rr) for rr in res],
           width, label="OpenCV NLM", color="gray")
    ax.axhline(30, color="k", ls=":", lw=1)
    ax.annotate("30 fps", (x[-1] + 0.8, 30), fontsize=8, textcoords="offset points", xytext=(0, 3))
    ax.set_xticks(x + 0.4 - width / 2, res)
    ax.set_ylabel("frames per second (uint8 in, uint8 out)")
    ax.set_yscale("log")
    m = doc["stamp"]["machine"]
    ax.set_title(f"latency per frame, {kind.upper()}: {m['gpu'] or m['cpu']} ({m['cores']} cores), "
                 f"{doc['stamp']['date'][:10]}", fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    png = ROOT / "benchmarks" / "results" / f"latency_{kind}.png"
    fig.savefig(png, dpi=110)
    return png


if __name__ == "__main__":
    raise SystemExit(main())
