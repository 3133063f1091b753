"""The streaming commands: `edgedenoise run` and `edgedenoise bench`.

`add_run(sub)` and `add_bench(sub)` register them on the CLI's subparsers, like the
commands in cli.py. Nothing here imports torch unless `--backend torch` asks for it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..atomic import write_atomic
from ..backends import CHOICES
from ..errors import DataError
from .stats import RunStats

BACKENDS = CHOICES
PRECISIONS = ["fp32", "int8", "fp16"]  # int8: ONNX Runtime; fp16: triton, torch on CUDA; engines their own


def parse_size(s: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    try:
        w, h = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {s!r}: use WIDTHxHEIGHT, e.g. 1280x720") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"bad size {s!r}: width and height must be positive")
    return w, h


def sigma_scale_arg(s: str) -> float:
    """--sigma-scale K: a number in (0, 10]."""
    from ..denoiser import check_sigma_scale

    try:
        return check_sigma_scale(float(s))
    except (ValueError, DataError) as e:
        raise argparse.ArgumentTypeError(f"--sigma-scale takes a number in (0, 10], not {s!r}") from e


def _sigma(s: str) -> float | None:
    if s == "auto":
        return None
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sigma takes a number (0-255 scale) or 'auto', not {s!r}") from None
    if not 0 <= v <= 255:
        raise argparse.ArgumentTypeError(f"--sigma {v} is outside 0-255")
    return v


# ---------------------------------------------------------------- run


def add_run(sub):
    p = sub.add_parser("run", help="denoise a stream: camera, file, RTSP, GStreamer, images or demo -> "
                                   "display, file, folder, HTTP viewer or null",
                       description="Stream frames through the denoiser. Sources: 0 | v4l2:///dev/video0 | csi://0 | "
                                   "gst:PIPELINE | video file | image folder or 'glob' | rtsp://... | http(s)://... | "
                                   "demo[:SIGMA]. Sinks: display | out.mp4/.avi/.mkv | folder/ | null | "
                                   "http://127.0.0.1:PORT.")
    p.add_argument("--source", default="demo", help="what to read (default: demo, the bundled moving sample "
                                                    "with noise sigma 25)")
    p.add_argument("--sink", help="where to write (default: display where there is one; else, for the demo, "
                                  "edgedenoise_demo.mp4, noisy | denoised side by side, and for other sources "
                                  "http://127.0.0.1:8080)")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="auto (default): a TensorRT engine built for the model here, else triton on a CUDA GPU, "
                        "else torch on the GPU, else ONNX Runtime on the CPU; it says what it took and why")
    p.add_argument("--model", default="auto",
                   help="model name or file (.onnx, .safetensors, .engine), or auto (default): in realtime mode the "
                        "best shipped model and precision that keeps up with the source on this machine (timed at "
                        "start), in offline mode the best")
    p.add_argument("--sigma", type=_sigma, default=None, metavar="S|auto",
                   help="noise std on the 0-255 scale, or auto: estimated per frame and smoothed (default auto)")
    p.add_argument("--sigma-scale", type=sigma_scale_arg, default=1.0, metavar="K",
                   help="multiply the noise level told to the model (estimated or given) by K: above 1 "
                        "denoises more, below 1 keeps more detail (default 1)")
    p.add_argument("--mode", choices=["realtime", "offline"],
                   help="realtime: always the newest frame, drops counted; offline: every frame, in order "
                        "(default: realtime for cameras, streams and demo; offline for files and images)")
    p.add_argument("--stats", help="write run statistics (JSON) here on exit")
    p.add_argument("--frames", type=int, help="stop after this many input frames; 0: never (default: 150 for the "
                                              "demo written to a file, else the whole stream, or until the window "
                                              "or viewer is stopped)")
    p.add_argument("--lossless", action="store_true", help="video sink: FFV1 in .mkv/.avi")
    p.add_argument("--compare", action="store_true", help="video or folder sink: store noisy | denoised side by "
                                                          "side, labelled, instead of the denoised frames")
    p.add_argument("--tile", type=parse_size, metavar="WxH", help="largest frame given to the model at once; larger "
                                                             "frames are tiled with overlap and blended")
    p.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels (default 32)")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    p.add_argument("--precision", choices=["auto", *PRECISIONS], default="auto",
                   help="int8: ONNX Runtime with the model's INT8 variant (edgedenoise quantize; shipped for tiny "
                        "and default), faster on CPUs, some PSNR lost (benchmarks/results/quality.md); fp16: on a "
                        "CUDA GPU (triton, torch) or an fp16 engine; auto (default): chosen with --model auto, else "
                        "fp16 on a GPU and fp32 on the CPU")
    p.add_argument("--temporal", choices=["auto", "off", "blend", "model"], default="auto",
                   help="use the previous frames too: blend (a motion-adaptive recursive filter on the model's "
                        "outputs; where the scene holds still it averages over up to 8 frames), model (a recurrent "
                        "model given its last output, e.g. --model tiny-video), off (each frame alone); auto "
                        "(default): for video files, cameras, streams and the demo model if the model is "
                        "recurrent, or a shipped model's recurrent variant where one ships (tiny -> tiny-video, "
                        "default -> default-video; for a model given by its shipped name, not a file; not where "
                        "--model auto is timed against a live source), else blend; off for images")
    p.add_argument("--reconnect", type=int, default=10, help="tries to reopen a dropped camera or stream (default 10)")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.set_defaults(func=cmd_run)


def _default_sink(demo: bool) -> str:
    import os

    from .sinks import DisplaySink

    headless = "edgedenoise_demo.mp4" if demo else "http://127.0.0.1:8080"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return headless
    try:
        DisplaySink().open()
        DisplaySink().close()
        return "display"
    except DataError:
        return headless


def check_tile(tile: tuple[int, int] | None, overlap: int) -> None:
    """--tile WxH and --overlap N make sense together (DataError otherwise)."""
    if overlap < 0:
        raise DataError(f"--overlap {overlap} is negative: give 0 or more pixels")
    if tile is not None and overlap >= min(tile):
        raise DataError(f"--overlap {overlap} must be smaller than the tile ({tile[0]}x{tile[1]}): "
                        f"e.g. --tile {max(tile[0], 4 * overlap)}x{max(tile[1], 4 * overlap)}")


def command_line() -> str:
    """The command as typed, passwords in URLs hidden (it is kept in stats and logs)."""
    from .sources import redact

    return redact(" ".join(["edgedenoise", *sys.argv[1:]]) if sys.argv[1:] else "edgedenoise run")


def temporal_mode(asked: str, source) -> str:
    """--temporal auto: blend for a stream of frames (video, camera, network, demo), off for images
    (a folder of photographs is not a video; `--temporal blend` says it is)."""
    from .sources import ImageSource

    if asked != "auto":
        return asked
    return "off" if isinstance(source, ImageSource) else "blend"


def cmd_run(a):
    from ..denoiser import Denoiser
    from ..errors import EdgeDenoiseError, Interrupted
    from ..modelfile import known_as
    from ..outputs import OutputLock, guard, refuse_inputs
    from ..temporal import check_mode, load_recurrent_variant
    from .autoselect import choose, rung_name
    from .pipeline import Pipeline, Signals
    from .sinks import parse_sink
    from .sources import parse_source

    if a.frames is not None and a.frames < 0:
        raise DataError("--frames must be 0 (never stop) or more")
    check_tile(a.tile, a.overlap)
    stats = RunStats()
    stats.info.update(command=command_line())
    try:
        source = parse_source(a.source)
    except DataError as e:  # a missing file, an empty folder...: the stats say so too
        if a.stats:
            guard(a.stats, [Path(a.source)], what="--stats file")
            stats.info["error"] = str(e)
            stats.finish()
            stats.write_json(a.stats)
        raise
    inputs = source.inputs()
    if a.stats:  # guarded first: it is written even when the run fails
        guard(a.stats, inputs, what="--stats file")
    locks: list[OutputLock] = []
    sink, written, stats_lock = None, False, None
    try:
        demo = source.sigma is not None
        spec = a.sink or _default_sink(demo)
        if demo and a.frames is None and spec != "display" and not spec.startswith("http"):
            a.frames = 150  # six seconds of the built-in demo into a file, so the default run ends by itself
        # the demo's own video (no display here) shows what the model does: noisy | denoised, as a window would
        compare = a.compare or (demo and a.sink is None and spec != "display")
        sink = parse_sink(spec, source.fps, a.lossless, compare)
        out = sink.output()
        if out is not None:  # before anything is opened for writing
            refuse_inputs(out, inputs, what="sink")
            if a.stats:
                refuse_inputs(a.stats, [out], what="--stats file", against="sink")
            locks.append(OutputLock(out, "sink").acquire())
        if a.stats:
            locks.append(stats_lock := OutputLock(a.stats, "--stats file").acquire())
        source.open()  # fails fast on a missing path, closed port, missing codec...
        mode = a.mode or ("realtime" if source.realtime else "offline")
        temporal = temporal_mode(a.temporal, source)
        # the ladder's rungs are the shipped framewise models: only when both are left to auto; it times
        # every rung at start, so it is asked for only then
        adapt = mode == "realtime" and a.model == "auto" and a.precision == "auto" and temporal != "model"
        chosen = choose(a.model, a.precision, a.backend, a.threads, mode, source.frame_size(), source.fps,
                        temporal=temporal, ladder=adapt)
        den, why, ladder = chosen if adapt else (*chosen, None)
        if a.temporal == "auto" and temporal == "blend" and den.recurrent:
            temporal = "model"  # the best available: the model's own use of the frames before
        elif a.temporal == "auto" and temporal == "blend" and not ladder and (mode == "offline" or a.model != "auto"):
            # a shipped model's recurrent variant (not where auto timed the models against a live source:
            # a variant costs 10-35 % more); else the blend. The model as named (a file of one's own whose
            # config says "tiny" has no shipped variant: modelfile.recurrent_variant), auto's by its name
            rec, note = load_recurrent_variant(den.name if a.model == "auto" else a.model, lambda m: Denoiser.load(
                m, backend=a.backend, threads=a.threads, precision=den.precision), framewise=den)
            why += f"; {note}" if note else ""
            if rec is not None:
                den.close()
                den, temporal = rec, "model"
        check_mode(temporal, den.name, den.recurrent)
        den.sigma_scale = a.sigma_scale
        sigma_desc = "auto (estimated, smoothed)" if a.sigma is None else f"{a.sigma:g}"
        if a.sigma_scale != 1.0:
            sigma_desc += f", told x{a.sigma_scale:g}"
        if source.sigma is not None:
            sigma_desc += f"; source noise is sigma {source.sigma:g}"
        print(f"run: {source.describe()} -> {sink.name}, {mode} mode, model {known_as(den.name)} on "
              f"{den.backend_name}{'' if den.precision == 'fp32' else ' ' + den.precision}, sigma {sigma_desc}, "
              f"temporal {temporal}" + (" (off on the ladder's rung without it, where it starts)"
                                        if ladder is not None and not ladder.blend else ""),
              file=sys.stderr)
        if a.model == "auto" or a.precision == "auto":
            print(f"auto: {why}" + ("; keeps adapting while the stream runs" if ladder else ""), file=sys.stderr)
        elif a.backend == "auto":
            print(f"auto: {den.why}", file=sys.stderr)
        if ladder is not None:
            stats.info["model_now"] = rung_name(ladder.current)
        stats.info.update(model=den.name, backend=den.backend_name, precision=den.precision, model_choice=why,
                          backend_choice=den.why,
                          sigma=a.sigma if a.sigma is not None else "auto", sigma_scale=a.sigma_scale,
                          threads=a.threads, tile=list(a.tile) if a.tile else None)
        sink.open(stats)
        pipe = Pipeline(source, sink, den, mode=mode, sigma=a.sigma, max_frames=a.frames or None,
                        tile=(a.tile[1], a.tile[0]) if a.tile else None, overlap=a.overlap,
                        reconnect=a.reconnect, status=not a.quiet, stats=stats, temporal=temporal, ladder=ladder)
        sink = None  # the pipeline closes it (and the source) from here on
        with Signals(ending=True) as sig:  # held until the stats are written: later signals cannot cut that short
            try:
                pipe.run(sig)
            except EdgeDenoiseError as e:
                stats.info["error"] = str(e)
                raise
            finally:
                if a.stats:  # written on errors and interrupts too: that is when it is wanted most
                    stats.write_json(a.stats)
                    written = True
    except EdgeDenoiseError as e:
        stats.info.setdefault("error", str(e))
        raise
    finally:
        if sink is not None:  # failed before the pipeline took over
            sink.close()
            source.close()
        if a.stats and not written and stats_lock is not None:  # the run never started (source, model...)
            stats.finish()
            stats.write_json(a.stats)
        for lock in locks:
            lock.release()
    print(stats.table())
    if pipe.stopped_by and pipe.stopped_by != "sink":
        print(f"stopped by {pipe.stopped_by}; output finalised: {pipe.sink.name}", file=sys.stderr)
    if a.stats:
        print(f"stats: {a.stats}", file=sys.stderr)
    if sig.received:
        raise Interrupted(int(sig.received[0]), sig.received[0].name)


# ---------------------------------------------------------------- bench


def add_bench(sub):
    p = sub.add_parser("bench", help="latency per frame (uint8 in, uint8 out) per backend and resolution")
    p.add_argument("--backend", default="auto", help=f"comma-separated: {', '.join(BACKENDS)} (default auto)")
    p.add_argument("--model", default="default",
                   help="model name or file (.onnx, .safetensors, .engine) to time (default: default)")
    p.add_argument("--resolution", default="640x480,1280x720,1920x1080", help="comma-separated WxH list")
    p.add_argument("--frames", type=int, default=100, help="timed frames per case, after warm-up (default 100)")
    p.add_argument("--warmup", type=int, default=5, help="untimed frames first (default 5)")
    p.add_argument("--sigma", type=float, default=25.0, help="noise added and given to the model (default 25)")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="int8: ONNX Runtime with the model's INT8 variant (edgedenoise quantize); fp16: triton, "
                        "or torch on CUDA (channels_last)")
    p.add_argument("--temporal", choices=["auto", "off", "blend", "model"], default="auto",
                   help="what of the frames before is used, timed with the model: off (each frame alone), blend "
                        "(the recursive filter on the model's outputs), model (a recurrent model given its last "
                        "output); auto (default): model for a recurrent model, else off")
    p.add_argument("--vs", choices=["nlm"], help="also time OpenCV fastNlMeansDenoisingColored on the same frames")
    p.add_argument("--nlm-frames", type=int, default=10, help="frames timed for --vs nlm (it is slow; default 10)")
    p.add_argument("--json", help="write the results here")
    p.set_defaults(func=cmd_bench)


def _reason(e: BaseException) -> str:
    return str(e).splitlines()[0][:300] if str(e) else type(e).__name__


def cmd_bench(a):
    from ..denoiser import Denoiser
    from ..errors import EdgeDenoiseError
    from ..frames import psnr_u8
    from ..nlm import nlm_denoise, nlm_h
    from ..temporal import VideoDenoiser, check_mode
    from .sources import bench_frames
    from .stats import stamp, summarize, time_calls

    backends = [b.strip() for b in a.backend.split(",") if b.strip()]
    for b in backends:
        if b not in BACKENDS:
            raise DataError(f"unknown backend {b!r}: choose from {', '.join(BACKENDS)}")
    try:
        sizes = [parse_size(s) for s in a.resolution.split(",") if s.strip()]
    except argparse.ArgumentTypeError as e:
        raise DataError(str(e)) from None
    if a.frames <= 0 or a.warmup < 0:
        raise DataError("--frames must be positive and --warmup not negative")
    from ..denoiser import MAX_PIXELS

    for w, h in sizes:
        if w * h > MAX_PIXELS:
            raise DataError(f"--resolution {w}x{h} is larger than one call takes ({MAX_PIXELS / 1e6:.1f} MP); bench "
                            f"sizes up to 4096x4096")
    if not 0 <= a.sigma <= 255:
        raise DataError(f"--sigma {a.sigma:g} is outside 0-255 (the noise std on the 0-255 scale)")
    rows, nlm_rows = [], []
    dens, failed = {}, []  # every backend gets a status: one that cannot load or run does not stop the others
    for b in backends:
        try:
            dens[b] = Denoiser.load(a.model, backend=b, threads=a.threads, precision=a.precision)
        except (EdgeDenoiseError, ImportError) as e:
            failed.append({"backend": b, "requested": b, "status": f"failed: {_reason(e)}"})
            print(f"bench {b}: {failed[-1]['status']}", file=sys.stderr)
    if not dens:
        raise DataError("no backend could run: " + "; ".join(f"{r['backend']} {r['status']}" for r in failed))
    # what ran, not what was asked: a named INT8 file runs INT8 whatever --precision says
    precision = "/".join(dict.fromkeys(d.precision for d in dens.values()))
    temporal = {b: ("model" if d.recurrent else "off") if a.temporal == "auto" else check_mode(a.temporal, d.name,
                                                                                                d.recurrent)
                for b, d in dens.items()}
    h_nlm = nlm_h(a.sigma)
    for w, h in sizes:
        clean, noisy = bench_frames(w, h, a.sigma)
        for b, den in dens.items():
            base = {"backend": den.backend_name, "requested": b, "resolution": f"{w}x{h}", "backend_choice": den.why,
                    "temporal": temporal[b]}
            # a recurrent model (or the blend) as a stream runs it: each frame given the state of the frames
            # before (its camera motion and cut test included in the time), a fresh state per resolution
            call = den.denoise if temporal[b] == "off" else VideoDenoiser(den, temporal[b]).denoise
            try:
                times, out = time_calls(lambda f, call=call: call(f, a.sigma), noisy, a.frames, a.warmup)
            except (EdgeDenoiseError, RuntimeError) as e:  # e.g. a frame outside an engine's profile
                rows.append({**base, "status": f"failed: {_reason(e)}"})
                print(f"bench {den.backend_name} {w}x{h}: {rows[-1]['status']}", file=sys.stderr)
                continue
            s = summarize(times)
            rows.append({**base, "status": "ok", **s,
                         "fps": round(1e3 / s["mean_ms"], 3),
                         "psnr_noisy_db": round(psnr_u8(noisy[(a.frames - 1) % len(noisy)],
                                                        clean[(a.frames - 1) % len(noisy)]), 2),
                         "psnr_db": round(psnr_u8(out, clean[(a.frames - 1) % len(noisy)]), 2)})
            print(f"bench {den.backend_name} {w}x{h}: p50 {s['p50_ms']:.1f} ms", file=sys.stderr)
        if a.vs == "nlm":
            n = max(1, min(a.nlm_frames, a.frames))
            times, out = time_calls(lambda f: nlm_denoise(f, h_nlm), noisy, n, 1)
            s = summarize(times)
            nlm_rows.append({"method": "opencv-nlm", "resolution": f"{w}x{h}", "status": "ok", **s,
                             "fps": round(1e3 / s["mean_ms"], 3), "h": h_nlm,
                             "psnr_db": round(psnr_u8(out, clean[(n - 1) % len(noisy)]), 2)})
            for r in rows:
                if r["resolution"] == f"{w}x{h}" and r["status"] == "ok":
                    r["nlm_p50_ratio"] = round(s["p50_ms"] / r["p50_ms"], 3)
            print(f"bench opencv-nlm {w}x{h}: p50 {s['p50_ms']:.1f} ms", file=sys.stderr)
    rows = failed + rows
    model = next(iter(dens.values())).name

    head = (f"{'backend':<13} {'resolution':>10} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'mean ms':>9} "
            f"{'fps':>7} {'PSNR dB':>8}")
    if nlm_rows:
        head += f" {'NLM/this':>9}"
    lines = [head]
    for r in rows + nlm_rows:
        if r["status"] != "ok":
            lines.append(f"{r['backend']:<13} {r.get('resolution', 'all'):>10}   {r['status']}")
            continue
        line = (f"{r.get('backend', r.get('method')):<13} {r['resolution']:>10} {r['p50_ms']:9.2f} {r['p90_ms']:9.2f} "
                f"{r['p99_ms']:9.2f} {r['mean_ms']:9.2f} {r['fps']:7.2f} {r['psnr_db']:8.2f}")
        if "nlm_p50_ratio" in r:
            line += f" {r['nlm_p50_ratio']:8.1f}x"
        lines.append(line)
    print("\n".join(lines))
    print(f"latency per frame, uint8 BGR in -> uint8 BGR out, sigma {a.sigma:g}, {a.frames} frames after "
          f"{a.warmup} warm-up; model {model}; {precision}"
          + ({"model": "; temporal model: each frame given the model's last output (its state's work timed too)",
              "blend": "; temporal blend: the recursive filter on the outputs, timed with the model"}.get(
                 next(iter(temporal.values())), ""))
          + (f"; NLM on {nlm_rows[0]['count']} frames, h={h_nlm:g}, template 7, search 21" if nlm_rows else ""))
    if a.json:
        doc = {**stamp(), "model": model, "threads": a.threads, "precision": precision, "sigma": a.sigma,
               "frames": a.frames, "warmup": a.warmup, "protocol": "camera", "results": rows, "anchors": nlm_rows}
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, json.dumps(doc, indent=2).encode(), what="--json output")
        print(f"results: {out}", file=sys.stderr)
    if rows and all(r["status"] != "ok" for r in rows):
        raise DataError(f"every case failed ({rows[0]['status']})")
