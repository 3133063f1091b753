#!/usr/bin/env python3
"""Latency per frame, uint8 BGR in and uint8 BGR out, side by side with OpenCV NLM in one run.

    python benchmarks/latency.py                          # CPU: ONNX Runtime fp32 + int8, every shipped size
    python benchmarks/latency.py --gpu                    # the GPU cases instead (CUDA needed)
    TRITON_INTERPRET=1 python benchmarks/latency.py --gpu --smoke --out /tmp/l   # CPU check of the GPU code path

Cases, each at 640x480, 1280x720 and 1920x1080 (frames made from the bundled sample with
camera-protocol noise sigma 25, as `edgedenoise bench` makes them):
- CPU: the `onnxruntime` backend at fp32 and int8 for each model size (threads: ONNX Runtime's
  default, one per core), through `Denoiser.denoise`, so pre- and post-processing count;
- GPU (`--gpu`, needs CUDA and torch), each with the upload and download of the uint8 frame:
  the `triton` backend at fp16 with and without CUDA graphs and at fp32 with them; PyTorch
  eager fp16 (channels_last, cuDNN); `torch.compile` fp16 (inductor's default mode: convolutions
  through cuDNN, the rest fused; max-autotune takes minutes, more than a GPU check can spend);
  ONNX Runtime's CUDA provider fp32 where it loads (else the case says why not);
- the anchor: OpenCV `fastNlMeansDenoisingColored` (quality.py's h tuned for sigma 25,
  template 7, search 21) on the same frames, timed between the cases of each
  resolution. Ratios are NLM's p50 over the case's p50.

Every case reports a status (ok, failed with the reason, skipped) instead of stopping the run,
the seconds of its first call (compilation, graph capture), and beside its speed how far its
output is from the reference on the same frame: ONNX Runtime on the CPU, fp32, through
`Denoiser` (the product's default path): max difference in uint8 levels and the share of
values that differ. Results are written after every case, so a run stopped by a time limit
keeps what it measured; `--budget-s` skips the cases that would start after that many seconds.

Writes benchmarks/results/latency_<cpu|gpu>.{json,md} and latency_<cpu|gpu>.png (or under --out).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from common import publish, stamp, write  # noqa: E402

DEVICE = "cuda"  # --smoke: "cpu" (the triton backend then runs under TRITON_INTERPRET=1)


def gpu_cases(model: str, smoke: bool = False):
    """(name, precision, make) triples for the GPU; make() builds the case and returns its call:
    uint8 BGR frame in, uint8 BGR frame out, synchronised. A make() that raises marks the case failed.
    A recurrent model (tiny-video, default-video) is run as a stream runs it: each call is given
    the case's own last output at that frame size as `previous` (none on the first: the frame)."""
    import torch

    from edgedenoise.modelfile import load_model, resolve

    files = resolve(model)
    mult = files.size_multiple

    def stream(run):
        """run(frame, previous) -> out, as one call of a stream (the state kept per frame size)."""
        if not files.recurrent:
            return lambda frame: run(frame, None)
        last: dict = {}

        def call(frame):
            out = run(frame, last.get(frame.shape))
            last[frame.shape] = out
            return out

        return call

    def torch_case(compile_it: bool):
        def make():
            dt = torch.float16
            net = load_model(model).to(DEVICE).eval().to(dt).to(memory_format=torch.channels_last)
            module = torch.compile(net) if compile_it else net

            def to_input(frame: np.ndarray):
                h, w = frame.shape[:2]
                x = torch.from_numpy(frame).to(DEVICE, non_blocking=True)
                x = x.flip(-1).permute(2, 0, 1)[None].to(dt).div_(255)
                ph, pw = -h % mult, -w % mult
                if ph or pw:
                    x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
                return x.contiguous(memory_format=torch.channels_last)

            @torch.inference_mode()
            def run(frame: np.ndarray, previous) -> np.ndarray:
                h, w = frame.shape[:2]
                x = to_input(frame)
                s = torch.full((1,), 25 / 255, device=DEVICE, dtype=dt)
                state = () if not files.recurrent else (x if previous is None else to_input(previous),)
                y = module(x, s, *state)[0, :, :h, :w]
                return y.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).flip(-1).cpu().numpy()

            return stream(run)

        return make

    def triton_case(dtype: str, graphs: bool):
        def make():
            from edgedenoise.backends.triton import TritonBackend

            be = TritonBackend(files, device=DEVICE, dtype=dtype, graphs=graphs)

            def run(frame, previous):
                out = be.infer_frames(frame, 25.0, previous)
                if graphs and DEVICE == "cuda" and not be.graphs:
                    raise RuntimeError("CUDA graph capture failed: the backend fell back to eager")
                return out

            return stream(run)

        return make

    def ort_cuda():
        import onnxruntime as ort

        from edgedenoise.backends.onnxruntime import OnnxRuntimeBackend
        from edgedenoise.denoiser import Denoiser

        have = ort.get_available_providers()
        if "CUDAExecutionProvider" not in have:
            raise SkipCase(f"unavailable: onnxruntime {ort.__version__} has no CUDA provider (has {', '.join(have)})")
        den = Denoiser.load(model, backend="onnxruntime")
        den.backend = OnnxRuntimeBackend(files, providers=["CUDAExecutionProvider"])
        used = den.backend.session.get_providers()
        if used[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"the CUDA provider did not load (session providers: {', '.join(used)})")
        return stream(lambda f, previous: den.denoise(f, 25.0, previous))

    def skipped(why):
        def make():
            raise SkipCase(why)

        return make

    if files.recurrent:  # against its framewise model's rows: the fused kernels' path and torch's, in fp16
        return [("triton (CUDA graphs)", "fp16", triton_case("fp16", True)),
                ("torch eager channels_last", "fp16", torch_case(False))]
    return [("triton (CUDA graphs)", "fp16", triton_case("fp16", True)),
            ("triton eager", "fp16", triton_case("fp16", False)),
            ("triton (CUDA graphs)", "fp32", triton_case("fp32", True)),
            ("torch eager channels_last", "fp16", torch_case(False)),
            ("onnxruntime CUDA", "fp32", skipped("--smoke: no CUDA") if smoke else ort_cuda),
            # last: its compilation (tens of seconds per frame size) is what a --budget-s cuts first
            ("torch.compile", "fp16", skipped("--smoke: no compiling on the CPU") if smoke else torch_case(True))]


class SkipCase(Exception):
    """A case this run does not measure, with the reason."""


def main() -> int:
    global DEVICE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="nano,tiny,default")
    ap.add_argument("--precisions", default="fp32,int8", help="CPU precisions (ONNX Runtime)")
    ap.add_argument("--resolution", default="640x480,1280x720,1920x1080")
    ap.add_argument("--frames", type=int, default=100, help="timed frames per case (default 100)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--nlm-frames", type=int, default=10, help="NLM is slow: frames timed per resolution")
    ap.add_argument("--gpu", action="store_true", help="GPU cases instead of the CPU ones (CUDA needed)")
    ap.add_argument("--smoke", action="store_true", help="with --gpu: run the GPU cases' code on the CPU "
                    "(TRITON_INTERPRET=1, fp16 convolutions on the CPU); a code check, not a measurement")
    ap.add_argument("--budget-s", type=float, default=None, help="skip the cases that would start after this")
    ap.add_argument("--out", default=None, help="folder for the results (default benchmarks/results)")
    a = ap.parse_args()
    t_start = time.perf_counter()


    from edgedenoise.denoiser import Denoiser
    from edgedenoise.evaluate import psnr_u8
    from edgedenoise.runtime.commands import parse_size
    from edgedenoise.runtime.sources import bench_frames
    from edgedenoise.runtime.stats import summarize, time_calls

    if a.gpu:  # once per run, before any model
        import torch

        if a.smoke:
            DEVICE = "cpu"
        elif not torch.cuda.is_available():
            print("latency --gpu: no CUDA device here (--smoke checks the code on the CPU)", file=sys.stderr)
            return 2
    cases = []  # (label, model, precision, make)
    for model in a.models.split(","):
        if a.gpu:
            cases += [(name, model, prec, make) for name, prec, make in gpu_cases(model, a.smoke)]
        else:
            for prec in a.precisions.split(","):
                def make(model=model, prec=prec):
                    den = Denoiser.load(model, backend="onnxruntime", precision=prec)
                    return lambda f: den.denoise(f, 25.0)

                cases.append(("onnxruntime", model, prec, make))
    if a.gpu:  # torch.compile's compilation last of all models: what a --budget-s cuts first
        cases.sort(key=lambda c: c[0] == "torch.compile")
    refs = {m: Denoiser.load(m, backend="onnxruntime") for m in a.models.split(",")} if a.gpu else {}
    built: dict[int, object] = {}  # case index -> its call, or the exception its make() raised

    kind = "gpu" if a.gpu else "cpu"
    from edgedenoise.nlm import nlm_denoise, nlm_h

    h_nlm = nlm_h(25.0)
    doc = {"stamp": stamp({"sigma": 25, "frames": a.frames, "warmup": a.warmup, "nlm_frames": a.nlm_frames,
                           "device": DEVICE if a.gpu else "cpu", "smoke": a.smoke,
                           "reference": "onnxruntime CPU fp32 through Denoiser" if a.gpu else None,
                           "measure": "Denoiser.denoise / the GPU case's call: uint8 BGR frame in, uint8 out"}),
           "results": [], "anchors": []}
    rows, anchors = doc["results"], doc["anchors"]
    for res in a.resolution.split(","):
        w, h = parse_size(res)
        clean, noisy = bench_frames(w, h, 25.0)
        ref_out = {m: r.denoise(noisy[0], 25.0) for m, r in refs.items()}
        for i, (label, model, prec, make) in enumerate(cases):
            row = {"case": label, "model": model, "precision": prec, "resolution": res}
            elapsed = time.perf_counter() - t_start
            try:
                if a.budget_s is not None and elapsed > a.budget_s:
                    raise SkipCase(f"time budget: {elapsed:.0f} s spent of {a.budget_s:.0f}")
                if i not in built:
                    try:
                        built[i] = make()
                    except Exception as e:  # noqa: BLE001  (kept: later resolutions report it too)
                        built[i] = e
                if isinstance(built[i], Exception):
                    raise built[i]
                fn = built[i]
                t0 = time.perf_counter()
                first = fn(noisy[0])  # compiles, captures, or loads: timed apart from the frames
                row["first_call_s"] = round(time.perf_counter() - t0, 3)
                if model in ref_out:
                    d = np.abs(first.astype(np.int16) - ref_out[model].astype(np.int16))
                    row["max_diff_levels"] = int(d.max())
                    row["share_differing"] = round(float((d > 0).mean()), 5)
                ts, out = time_calls(fn, noisy, a.frames, a.warmup)
                st = summarize(ts)
                k = (a.frames - 1) % len(noisy)
                row.update(status="ok", **st, fps=round(1e3 / st["mean_ms"], 2),
                           psnr_db=round(psnr_u8(out, clean[k]), 2))
                print(f"latency {label} {model} {prec} {res}: p50 {st['p50_ms']:.2f} ms", file=sys.stderr)
            except SkipCase as e:
                row["status"] = f"skipped: {e}"
            except Exception as e:  # noqa: BLE001  (report and go on: the other cases still count)
                row["status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            if row["status"] != "ok":
                print(f"latency {label} {model} {prec} {res}: {row['status']}", file=sys.stderr)
            rows.append(row)
            write(f"latency_{kind}", doc, table(doc, a, h_nlm), a.out)  # after every case: a stopped run keeps it
        ts, out = time_calls(lambda f: nlm_denoise(f, h_nlm),
                              noisy, a.nlm_frames, 1)
        st = summarize(ts)
        anchors.append({"case": "opencv-nlm", "resolution": res, "status": "ok", **st,
                        "fps": round(1e3 / st["mean_ms"], 2),
                        "psnr_db": round(psnr_u8(out, clean[(a.nlm_frames - 1) % len(noisy)]), 2), "h": h_nlm})
        print(f"latency opencv-nlm {res}: p50 {st['p50_ms']:.1f} ms", file=sys.stderr)
        for r in rows:
            if r["resolution"] == res and r["status"] == "ok":
                r["x_nlm"] = round(st["p50_ms"] / r["p50_ms"], 2)

    md = table(doc, a, h_nlm)
    return publish(f"latency_{kind}", doc, md, a.out, also=lambda j: [plot(doc, kind, j.with_suffix(".png"))])


def table(doc: dict, a, h_nlm: float) -> str:
    diff = bool(doc["stamp"].get("reference"))
    lines = ["| case | model | precision | resolution | status | p50 ms | p90 ms | p99 ms | mean ms | fps | PSNR dB | "
             "speed vs NLM (p50) |" + (" first call s | max diff to reference (levels, share) |" if diff else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if diff else "")]
    for r in doc["results"] + doc["anchors"]:
        if r["status"] == "ok":
            ratio = str(r["x_nlm"]) + "x" if "x_nlm" in r else ("1x" if r["case"] == "opencv-nlm" else "–")
            nums = (f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['mean_ms']:.2f} | "
                    f"{r['fps']:.1f} | {r['psnr_db']:.2f} | {ratio}")
        else:
            nums = " | ".join(["–"] * 7)
        extra = ""
        if diff:
            d = (f"{r['max_diff_levels']}, {100 * r['share_differing']:.2f}%" if "max_diff_levels" in r else "–")
            extra = f" {r.get('first_call_s', '–')} | {d} |"
        lines.append(f"| {r['case']} | {r.get('model', '–')} | {r.get('precision', '–')} | {r['resolution']} | "
                     f"{r['status']} | {nums} |" + extra)
    lines.append("")
    lines.append(f"Frames: the bundled sample at each size with camera-protocol noise sigma 25 (PSNR is of the last "
                 f"timed frame). {a.frames} timed frames per case after {a.warmup} warm-up; NLM {a.nlm_frames} "
                 f"frames, h {h_nlm} (quality.py's tuned h for sigma 25), template 7, search 21, timed between the "
                 "cases of its resolution."
                 + (" Reference for the difference column: " + doc["stamp"]["reference"] + ", on the first frame."
                    if diff else ""))
    return "\n".join(lines)


def plot(doc: dict, kind: str, png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in doc["results"] if r["status"] == "ok"]
    res = list(dict.fromkeys(r["resolution"] for r in doc["results"]))
    labels = list(dict.fromkeys(f"{r['model']} {r['case']} {r['precision']}" for r in ok))
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / (len(labels) + 1)
    x = np.arange(len(res))
    for i, lab in enumerate(labels):
        fps = [next((r["fps"] for r in ok if f"{r['model']} {r['case']} {r['precision']}" == lab
                     and r["resolution"] == rr), 0) for rr in res]
        ax.bar(x + i * width, fps, width, label=lab)
    ax.bar(x + len(labels) * width, [next(r["fps"] for r in doc["anchors"] if r["resolution"] == rr) for rr in res],
           width, label="OpenCV NLM", color="gray")
    ax.axhline(30, color="k", ls=":", lw=1)
    ax.annotate("30 fps", (0.995, 30), xycoords=("axes fraction", "data"), fontsize=8, ha="right", va="bottom")
    ax.set_xticks(x + 0.4 - width / 2, res)
    ax.set_ylabel("frames per second (uint8 in, uint8 out)")
    ax.set_yscale("log")
    m = doc["stamp"]["machine"]
    ax.set_title(f"latency per frame, {kind.upper()}: {m['gpu'] or m['cpu']} ({m['cores']} cores), "
                 f"{doc['stamp']['date'][:10]}" + (" -- SMOKE: CPU interpreter, not a measurement"
                                                   if doc["stamp"].get("smoke") else ""), fontsize=10)
    # below the axes: inside, it covered the tallest bars (the H200's 1080p fp16 ones)
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return png


if __name__ == "__main__":
    raise SystemExit(main())
