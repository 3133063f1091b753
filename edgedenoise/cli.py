"""The `edgedenoise` command. Each subcommand imports what it needs when it runs, so the
runtime commands work without torch installed."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .backends import CHOICES as BACKEND_CHOICES
from .errors import EdgeDenoiseError
from .version import __version__


def _floats(s: str) -> list[float]:
    try:
        return [float(v) for v in s.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, not {s!r}") from None


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {s!r}")
    return v


# ---------------------------------------------------------------- train


def add_train(sub):
    from dataclasses import fields

    p = sub.add_parser("train", help="train a denoising autoencoder on a folder of images")
    p.add_argument("--data", required=True, help="folder of clean training images (jpg/png/tif/bmp)")
    p.add_argument("--model", default="small", help="model size: nano, tiny, small or base (default small)")
    p.add_argument("--out", required=True, help="run folder (resumed if it holds a checkpoint)")
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--gray", action="store_true", help="train a grayscale (1-channel) model")
    p.add_argument("--sigma-range", type=_floats, default=[0.0, 75.0], metavar="LO,HI",
                   help="AWGN sigma range on the 0-255 scale (default 0,75)")
    from .trainconfig import TrainConfig

    skip = {"data", "out", "model", "steps", "channels", "sigma_min", "sigma_max", "extra"}
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action="store_true", default=f.default)
        else:
            typ = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(flag, type=typ, default=f.default, help=f"(default {f.default})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(a):
    from dataclasses import fields

    from .errors import DataError
    from .train import train
    from .trainconfig import TrainConfig

    kw = {f.name: getattr(a, f.name) for f in fields(TrainConfig) if hasattr(a, f.name)}
    if len(a.sigma_range) != 2:
        raise DataError(f"--sigma-range takes two numbers LO,HI (e.g. 0,75), not {len(a.sigma_range)}")
    lo, hi = a.sigma_range
    kw.update(channels=1 if a.gray else 3, sigma_min=lo, sigma_max=hi)
    res = train(TrainConfig(**kw).check(), progress=not a.quiet)
    if res.get("val_psnr") is not None:
        clips = res.get("val_video_psnr")
        print(f"done: {res['run']} step {res['step']}, validation PSNR {res['val_psnr']:.2f} dB"
              + ("" if clips is None else f", clips {clips:.2f} dB"))


# ---------------------------------------------------------------- eval / denoise


def add_eval(sub):
    p = sub.add_parser("eval", help="PSNR/SSIM on a test folder (BENCHMARK_PROTOCOL.md)")
    p.add_argument("--model", default="default", help="model name, run folder or file (default: default)")
    p.add_argument("--data", required=True, action="append", help="test folder (repeatable)")
    p.add_argument("--sigma", type=float, nargs="+", default=None,
                   help="noise levels (default 15 25 50); with --noise camera-sim: the levels told to the model")
    p.add_argument("--protocol", choices=["camera", "paper", "both"], default="camera",
                   help="Gaussian noise of each --sigma: camera (clipped, rounded to uint8) or paper (float)")
    p.add_argument("--noise", default="gaussian", metavar="gaussian|camera-sim:SETTING",
                   help="gaussian (default, as --protocol says) or camera-sim:daylight|low-light|very-low-light: "
                        "the camera simulation (edgedenoise/camera.py); --sigma is then the level told to the "
                        "model, --blind estimates it")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES)
    p.add_argument("--blind", action="store_true", help="estimate sigma from each image instead of giving it")
    p.add_argument("--precision", choices=["fp32", "int8"], default="fp32", help="int8: the model's INT8 variant")
    p.add_argument("--json", help="write results here (and a Markdown table beside it)")
    p.add_argument("--save", help="folder for noisy | denoised | clean comparison images")
    p.add_argument("--limit", type=_positive_int, help="first N images only")
    p.set_defaults(func=cmd_eval)


def cmd_eval(a):
    from .data import list_images
    from .errors import DataError
    from .evaluate import check_protocol, evaluate, write_reports
    from .outputs import guard

    if a.noise != "gaussian":  # checked before anything is read
        check_protocol(a.noise)
        if a.blind and a.sigma is not None:
            raise DataError(f"--blind estimates the level of the {a.noise} noise and --sigma would tell the model a "
                            f"level: give one of them, not both")
    a.sigma = a.sigma if a.sigma is not None else [15.0, 25.0, 50.0]
    inputs = [Path(d) for d in a.data] + [f for d in a.data for f in list_images(d)]
    if a.json:  # refused before hours of scoring, not after
        guard(a.json, inputs, what="--json file")
        guard(Path(a.json).with_suffix(".md"), inputs, what="--json table")
    if a.save:
        guard(a.save, inputs, folder=True, what="--save folder")

    protocols = ["camera", "paper"] if a.protocol == "both" else [a.protocol]
    if a.noise != "gaussian":
        protocols = [a.noise]
    reports = [evaluate(a.model, d, a.sigma, pr, a.backend, a.blind, a.save, limit=a.limit,
                        precision=a.precision)
               for d in a.data for pr in protocols]
    print(write_reports(reports, a.json))


def add_denoise(sub):
    from .runtime.commands import parse_size, sigma_scale_arg

    p = sub.add_parser("denoise", help="denoise an image or a folder of images (no arguments: the bundled "
                                       "sample, with added noise)")
    p.add_argument("input", nargs="?", help="noisy image, or a folder of them; omitted: the bundled sample with "
                                            "synthetic noise")
    p.add_argument("output", nargs="?", help="denoised image, or folder for a folder (default: in the working "
                                             "folder, <name>_denoised.png or <folder>_denoised/; for the sample "
                                             "edgedenoise_demo.png)")
    p.add_argument("-o", "--out", help="output path (same as the positional OUTPUT)")
    p.add_argument("--model", default="auto",
                   help="model name or file (.onnx, .safetensors, .engine), or auto (default): the shipped model "
                        "best on camera noise (the figure each shipped model carries; with --temporal model its "
                        "recurrent variant), said in the first line")
    p.add_argument("--sigma", type=float, help="noise std on the 0-255 scale; omitted: estimated from the image")
    p.add_argument("--sigma-scale", type=sigma_scale_arg, default=1.0, metavar="K",
                   help="multiply the noise level told to the model (estimated or given) by K: above 1 denoises "
                        "more, below 1 keeps more detail (default 1)")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES)
    p.add_argument("--tile", type=parse_size, metavar="WxH", help="denoise in tiles of at most WxH (memory bounded "
                                                                  "by the tile: for very large images)")
    p.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels (default 32)")
    p.add_argument("--demo-sigma", type=float, default=25.0, help="noise added to the bundled sample (default 25)")
    p.add_argument("--temporal", choices=["off", "blend", "model"], default="off",
                   help="a folder of video frames, denoised in name order with the frames before: blend (the "
                        "motion-adaptive recursive filter of `run`), model (a recurrent model given its last "
                        "output); off (default): each image alone")
    p.set_defaults(func=cmd_denoise)


def _check_image_ext(path: Path) -> None:
    """DataError unless OpenCV can write an image with this file name's extension."""
    import cv2
    import numpy as np

    from .errors import DataError

    ok = False
    if path.suffix:
        try:
            ok = cv2.imencode(path.suffix, np.zeros((2, 2, 3), np.uint8))[0]
        except cv2.error:
            ok = False
    if not ok:
        raise DataError(f"cannot write an image as {path.suffix or '(no extension)'!r} ({path}): use .png, "
                        f".tif (lossless), .jpg or .bmp")


def _ran(den) -> str:
    """'tiny, onnxruntime', with the precision where it is not fp32 (a named INT8 file runs INT8)."""
    return f"{den.name}{'' if den.precision == 'fp32' else ' ' + den.precision}, {den.backend_name}"


def _told(den, sigma: float) -> str:
    """', told X' where --sigma-scale changes what the model is told."""
    return f", told {den.told(sigma):.1f}" if den.sigma_scale != 1.0 else ""


def _auto_model(a) -> None:
    """`denoise --model auto`: the name of the shipped model it takes into a.model, said in one line."""
    if a.model != "auto":
        return
    from .modelfile import recurrent_variant
    from .runtime.autoselect import best_model

    a.model, why = best_model()
    variant = recurrent_variant(a.model) if a.temporal == "model" else None
    if variant:
        a.model, why = variant, f"the recurrent variant of {a.model}, {why}"
    print(f"model {a.model} (auto): {why}")


def cmd_denoise(a):
    import time

    import numpy as np

    from .data import SAMPLE_IMAGE, read_image
    from .denoiser import Denoiser
    from .errors import DataError
    from .evaluate import comparison, psnr_u8
    from .frames import IMAGE_EXTS, depth_stretch, read_frame, write_image
    from .noise import protocol_noisy
    from .outputs import guard, output_names
    from .runtime.commands import check_tile

    check_tile(a.tile, a.overlap)
    if a.temporal != "off" and (a.input is None or not Path(a.input).is_dir()):
        raise DataError(f"--temporal {a.temporal} is for a folder of video frames, denoised in name order; "
                        f"{a.input or 'the bundled sample'} is one image")

    if a.output and a.out and a.output != a.out:
        raise DataError(f"two outputs given ({a.output} and -o {a.out}): give one")
    a.output = a.output or a.out
    if a.input is None:
        dest = Path(a.output or "edgedenoise_demo.png")
        _check_image_ext(dest)
        guard(dest)
        _auto_model(a)
        den = Denoiser.load(a.model, backend=a.backend, sigma_scale=a.sigma_scale)
        clean = read_image(SAMPLE_IMAGE, 3)[:, :, ::-1]  # BGR
        noisy = protocol_noisy(clean, a.demo_sigma, 0, "camera")
        t = time.perf_counter()
        sigma = a.sigma if a.sigma is not None else den.estimate(noisy)
        out = den.denoise(noisy, sigma)
        dt = time.perf_counter() - t
        pic = comparison([(f"noisy sigma={a.demo_sigma:g}: {psnr_u8(noisy, clean):.2f} dB", noisy[:, :, ::-1]),
                          (f"{den.name} ({den.backend_name}): {psnr_u8(out, clean):.2f} dB", out[:, :, ::-1]),
                          ("clean", clean[:, :, ::-1])])
        write_image(dest, pic)
        print(f"sample {SAMPLE_IMAGE.name} {clean.shape[1]}x{clean.shape[0]}, sigma {a.demo_sigma:g}: "
              f"noisy {psnr_u8(noisy, clean):.2f} dB -> denoised {psnr_u8(out, clean):.2f} dB "
              f"in {dt * 1e3:.0f} ms ({_ran(den)}, sigma "
              f"{'given' if a.sigma is not None else 'estimated'} {sigma:.1f}{_told(den, sigma)})")
        print(f"comparison (noisy | denoised | clean): {dest}")
        return
    src = Path(a.input)
    if not src.exists():
        raise DataError(f"image not found: {src}")
    read_ahead: dict[Path, np.ndarray] = {}
    if src.is_dir():
        files = sorted(f for f in src.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise DataError(f"no images in folder {src} ({', '.join(sorted(IMAGE_EXTS))})")
        out_dir = Path(a.output or f"{src.resolve().name}_denoised")
        if out_dir.suffix.lower() in IMAGE_EXTS and not out_dir.is_dir():
            raise DataError(f"the input {src} is a folder, so the output must be a folder too, not {out_dir}")
        guard(out_dir, [src, *files], folder=True)
        # a.jpg and a.png both in the folder: keep both names whole; never two inputs on one output
        pairs = [(f, out_dir / n) for f, n in zip(files, output_names(files))]
    else:
        dest = Path(a.output or f"{src.stem}_denoised.png")
        if dest.is_dir():
            dest = dest / f"{src.stem}_denoised.png"
        _check_image_ext(dest)
        guard(dest, [src])
        pairs = [(src, dest)]
        # read before the model is chosen and loaded: an empty or corrupt picture is its one error line
        # alone, not after the model's
        read_ahead[src] = read_frame(src)
    _auto_model(a)
    den = Denoiser.load(a.model, backend=a.backend, sigma_scale=a.sigma_scale)
    from .temporal import TemporalStep, check_mode

    step = TemporalStep(check_mode(a.temporal, den.name, den.recurrent))
    tracker = None  # frames of one video (--temporal): the level as `run` keeps it offline, not per frame
    if step.mode != "off" and a.sigma is None:
        from .runtime.pipeline import SigmaTracker
        from .runtime.sources import FOLDER_FPS

        tracker = SigmaTracker(None, fps=FOLDER_FPS, gain=lambda: den.blind_gain)

    from tqdm import tqdm

    bar = tqdm(pairs, unit="image", disable=len(pairs) == 1, file=sys.stderr)
    notes: set[str] = set()

    def note(text: str) -> None:  # each kind of note once per run
        if text not in notes:
            notes.add(text)
            bar.write(f"note: {text}", file=sys.stderr)

    shape, resets = None, 0
    for f, dest in bar:
        img = read_ahead.pop(f) if f in read_ahead else read_frame(f)
        t = time.perf_counter()
        stretch = depth_stretch(img)
        if stretch > 1:  # 12-bit data in a 16-bit file: denoised stretched to 16 bits, written at its own scale
            bits = 16 - (stretch.bit_length() - 1)  # x16: 12-bit data, x64: 10-bit
            note(f"{f.name}: 16-bit pixels all below {1 << bits} ({bits}-bit data?): "
                 f"denoised scaled by {stretch} to the full 16-bit range and written back at its own scale")
            img = img * np.uint16(stretch)
        # one noise level for the whole image, also when it is denoised in tiles
        if a.sigma is not None:
            sigma = a.sigma * stretch
        elif tracker is not None:  # the stream's level, started again at a new size, measured afresh after a cut
            if img.shape != shape:
                tracker.reset()
            elif step.resets != resets:
                tracker.new_scene()
            shape, resets = img.shape, step.resets
            sigma = tracker(img)
        else:
            sigma = den.estimate(img)
        out = step(den, img, sigma, a.tile[::-1] if a.tile else None, a.overlap)[0]
        dt = time.perf_counter() - t
        if stretch > 1:
            out = ((out.astype(np.uint32) + stretch // 2) // stretch).astype(np.uint16)
        converted = write_image(dest, out)
        if converted:
            note(converted)
        level = f"sigma {'given' if a.sigma is not None else 'estimated'} {sigma:.1f}{_told(den, sigma)}"
        if len(pairs) == 1:
            print(f"{f} -> {dest} ({img.shape[1]}x{img.shape[0]}, {level}, {dt * 1e3:.0f} ms, {_ran(den)})")
        else:
            bar.write(f"{f.name} -> {dest.name}: {level}", file=sys.stdout)
    if len(pairs) > 1:
        how = (f", temporal {a.temporal}, state reset {step.resets} times (scene cuts or frame size changes)"
               if step.mode != "off" else "")
        print(f"{src}: {len(pairs)} images -> {pairs[0][1].parent}/ ({_ran(den)}{how})")


# ---------------------------------------------------------------- info / export


def add_info(sub):
    p = sub.add_parser("info", help="parameters and MACs per pixel of a model (measured by running it)")
    p.add_argument("--model", default=None, help="model name or file, or a size (nano/tiny/small/base); "
                   "default: default")
    p.add_argument("model_pos", nargs="?", metavar="MODEL", help=argparse.SUPPRESS)  # `info MODEL`, as before
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)


def cmd_info(a):
    from .errors import DataError
    from .model import SIZES, build_model, count_macs, count_params
    from .modelfile import load_model, resolve

    if a.model and a.model_pos and a.model != a.model_pos:
        raise DataError(f"two models given ({a.model_pos} and --model {a.model}): give one")
    a.model = a.model or a.model_pos or "default"

    if a.model in SIZES and not Path(a.model).exists():
        try:
            net, files = load_model(a.model), resolve(a.model)
        except EdgeDenoiseError:
            net, files = build_model(a.model), None  # a size with no trained weights shipped
    else:
        files = resolve(a.model)
        # an .onnx on its own has no safetensors: its architecture (in its metadata) is all that is counted
        net = load_model(a.model) if files.weights else build_model(files.config)
    _, mpp = count_macs(net)
    cfg = net.config
    info = {
        "name": cfg.name,
        "parameters": count_params(net),
        "macs_per_pixel": round(mpp),
        "widths": list(cfg.widths),
        "depths": list(cfg.depths),
        "channels": cfg.channels,
        "size_multiple": cfg.size_multiple,
        "weights": str(files.weights) if files and files.weights else None,
        "onnx": str(files.onnx) if files and files.onnx else None,
        "onnx_int8": str(files.onnx_int8) if files and files.onnx_int8 else None,
        "onnx_trt_int8": str(files.onnx_trt_int8) if files and files.onnx_trt_int8 else None,
        "trained": (files.config.get("extra", {}) if files else {}),
    }
    if a.json:
        print(json.dumps(info, indent=2))
        return
    print(f"model {info['name']}: {info['parameters']:,} parameters, {mpp / 1e3:.1f} kMAC per pixel "
          f"({mpp * 1280 * 720 / 1e9:.1f} GMAC per 720p frame)")
    print(f"  widths {info['widths']}, depths {info['depths']}, {cfg.channels} channel(s), "
          f"H and W padded to multiples of {cfg.size_multiple}")
    for k, what in (("weights", "weights"), ("onnx", "onnx"), ("onnx_int8", "onnx int8 (CPU)"),
                    ("onnx_trt_int8", "onnx int8 for TensorRT (build --precision int8)")):
        if info[k]:
            print(f"  {what}: {info[k]}")
    for k, v in info["trained"].items():
        print(f"  {k}: {_readable(v)}")


def _training_summary(rec: dict) -> str:
    """A training record (ship_model's: the run's settings, `init_training` the run it started from,
    and so on back) as one line: the last run's main settings and what came before it in all."""
    runs, steps, r = 0, 0, rec
    while isinstance(r, dict) and r:
        runs += 1
        steps += int(r.get("stop_at") or r.get("steps") or 0)
        r = r.get("init_training")
    keys = (("batch", "batch {}"), ("patch", "patch {}"), ("lr", "lr {}"), ("camera_sim", "camera simulation {}"),
            ("qat_for", "quantization-aware for {}"), ("seed", "seed {}"))
    parts = [fmt.format(rec[k]) for k, fmt in keys if rec.get(k) not in (None, "", 0, False)]
    if rec.get("qat") and "qat_for" not in rec:
        parts.append("quantization-aware")
    line = f"{rec.get('stop_at') or rec.get('steps', '?')} steps ({', '.join(parts)})"
    if rec.get("init"):
        line += f", fine-tuned from {rec['init']}"
    if runs > 1:
        line += f"; {runs} runs, {steps:,} steps in all"
    return line + " (--json: every run's settings)"


def _readable(v) -> str:
    """An `info` value as one readable line: a training record summarised, another long value cut."""
    if isinstance(v, dict) and "steps" in v:
        return _training_summary(v)
    if isinstance(v, dict) and isinstance(v.get("training"), dict):  # framewise_from: {model, training}
        rest = {k: x for k, x in v.items() if k != "training"}
        return f"{rest}, trained {_training_summary(v['training'])}"
    text = str(v)
    return text if len(text) <= 200 else text[:200] + " ... (--json: all of it)"


def add_export(sub):
    p = sub.add_parser("export", help="export a model to ONNX")
    p.add_argument("--model", default="default", help="model name, run folder or .safetensors (default: default)")
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--frame-native", action="store_true",
                   help="uint8 BGR frame in and out, boundary layers as custom ops (domain edgedenoise) for TensorRT")
    p.add_argument("--half-weights", action="store_true",
                   help="store the weights as float16 (half the file, as tools/ship_model.py ships models); the "
                        "graph still computes in float32")
    p.set_defaults(func=cmd_export)


def cmd_export(a):
    from .export import export_onnx

    r = export_onnx(a.model, a.out, frame_native=a.frame_native, half_weights=a.half_weights)
    if a.frame_native:
        print(f"export onnx (frame-native): {r['path']}, {r['bytes'] / 1e6:.2f} MB, {r['seconds']:.1f} s: ok")
        return
    notes = ("slimmed, " if r["slimmed"] else "") + ("float16 weights, " if r["half_weights"] else "")
    print(f"export onnx: {r['path']}, {r['bytes'] / 1e6:.2f} MB, {r['seconds']:.1f} s, {notes}"
          f"ONNX Runtime vs PyTorch on 3 real crops (one odd): max abs error {r['max_abs_err']:.1e}: ok")


def add_quantize(sub):
    p = sub.add_parser("quantize", help="INT8 Q/DQ variant of a model: for CPUs (ONNX Runtime) or for TensorRT")
    p.add_argument("--model", default="default", help="model with an ONNX export (name, run folder or .onnx)")
    p.add_argument("--calib", required=True, help="folder of clean images to calibrate on (training images)")
    p.add_argument("--count", type=int, default=64,
                   help="calibration crops, half through the camera simulation (default 64: quantize.CALIB_COUNT)")
    p.add_argument("--for", dest="target", choices=["onnxruntime", "tensorrt"], default="onnxruntime",
                   help="onnxruntime: INT8 for CPUs, <model>.int8.onnx (uint8 activations); tensorrt: the symmetric "
                        "int8 Q/DQ graph edgedenoise build --precision int8 takes, <model>.trt.int8.onnx "
                        "(default onnxruntime)")
    p.add_argument("--out", help="output path (default: beside your model's .onnx, where --precision int8 and "
                                 "edgedenoise build find it; for a shipped model, in the working folder)")
    p.set_defaults(func=cmd_quantize)


def cmd_quantize(a):
    from .quantize import quantize_model  # guards its output (never inside the installed package)

    r = quantize_model(a.model, a.calib, a.out, a.count, target=a.target)
    use = "load it with --precision int8" if a.target == "onnxruntime" else \
        f"build it with edgedenoise build {r['path']} --out MODEL.engine --precision int8"
    print(f"quantize int8 for {a.target}: {r['path']}, {r['bytes'] / 1e6:.2f} MB, {r['calibration_crops']} calibration "
          f"crops, {r['seconds']} s: ok ({use})")


def add_build(sub):
    from .runtime.commands import parse_size
    from .trt.aot_kernels import DEFAULT_KERNELS_DIR
    from .trt.sidecar import DEFAULT_PRECISION

    p = sub.add_parser("build", help="build a TensorRT engine from an exported ONNX model")
    p.add_argument("onnx", help="ONNX model (edgedenoise export)")
    p.add_argument("--out", required=True, help="engine path (a .json sidecar is written beside it)")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], default=DEFAULT_PRECISION)
    p.add_argument("--calib", help="int8: folder of clean images the symmetric Q/DQ graph is calibrated on (not "
                                   "needed when ONNX is that graph, or <model>.trt.int8.onnx is beside it)")
    p.add_argument("--kernels", choices=["native", "triton", "auto"], default="native",
                   help="native: the float graph, TensorRT's own kernels; triton: the frame-native graph with the "
                        "fused Triton boundary kernels as plugins; auto: build both, keep the faster of those whose "
                        "output matches ONNX Runtime's (default native)")
    p.add_argument("--kernels-dir", default=DEFAULT_KERNELS_DIR,
                   help="AOT kernels for --kernels triton|auto (edgedenoise kernels build --out DIR; "
                        f"default {DEFAULT_KERNELS_DIR})")
    p.add_argument("--min", type=parse_size, default="256x256", help="smallest frame WxH of the profile")
    p.add_argument("--opt", type=parse_size, default="1280x720", help="frame WxH TensorRT tunes for")
    p.add_argument("--max", type=parse_size, default="1920x1088", help="largest frame WxH of the profile")
    p.set_defaults(func=cmd_build)


def cmd_build(a):
    from .engine import build_engine

    prof = {k: getattr(a, k)[::-1] for k in ("min", "opt", "max")}  # (W, H) -> (H, W)
    m = build_engine(a.onnx, a.out, a.precision, a.calib, prof, kernels=a.kernels, kernels_dir=a.kernels_dir)
    kern = m["kernels"] + (f" ({m['plugins']} plugins)" if m["kernels"] == "triton" else "")
    prec = m["precision"] + (f" ({m['int8']['flow']})" if "int8" in m else "")
    print(f"build tensorrt: {a.out}, {Path(a.out).stat().st_size / 1e6:.1f} MB, {m['seconds']} s, {prec}, "
          f"kernels {kern}, TensorRT {m['tensorrt']} on {m['gpu']} (sm {m['compute_capability']}): ok")


def add_kernels(sub):
    p = sub.add_parser("kernels", help="Triton kernels: ahead-of-time build")
    ks = p.add_subparsers(dest="kernels_command", required=True, metavar="ACTION")
    b = ks.add_parser("build", help="compile every kernel variant the models use to PTX + cubin (no GPU needed)")
    b.add_argument("--target", default="sm_72,sm_87,sm_90", help="NVIDIA targets (default sm_72,sm_87,sm_90)")
    b.add_argument("--out", required=True, help="output folder (PTX, cubin, manifest.json)")
    b.add_argument("--sizes", nargs="+", help="model sizes to cover (default all)")
    b.set_defaults(func=cmd_kernels_build)


def cmd_kernels_build(a):
    import time

    from .errors import EdgeDenoiseError
    from .kernel_build import build_kernels

    t0 = time.time()
    try:
        m = build_kernels(a.target, a.out, a.sizes)
    except ImportError as e:
        raise EdgeDenoiseError(f"kernels build needs triton and torch ({e}): pip install -e .[kernels,train]") from None
    except ValueError as e:
        raise EdgeDenoiseError(str(e)) from None
    n = len(m["kernels"])
    targets = sorted({k["target"] for k in m["kernels"]})
    print(f"kernels build: {n} kernels for {', '.join(targets)} with Triton {m['triton_version']} "
          f"in {time.time() - t0:.0f} s -> {a.out}/manifest.json")


def add_doctor(sub):
    p = sub.add_parser("doctor", help="which backends work on this machine, with versions, and why not")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(a):
    from .doctor import main as doctor_main

    if doctor_main():
        raise SystemExit(1)


# ---------------------------------------------------------------- explain


def add_explain(sub):
    p = sub.add_parser("explain", help="how the network denoises an image: its filters (Jacobian rows) and "
                                       "subspace, drawn and measured (docs/how-it-denoises.md)")
    p.add_argument("image", nargs="?", help="clean image (noise of each --sigma is added); omitted: the bundled sample")
    p.add_argument("--model", default="tiny", help="model name, run folder or .safetensors (default tiny)")
    p.add_argument("--sigma", type=_floats, nargs="+", default=None, metavar="S",
                   help="noise levels on the 0-255 scale (default 10 25 50; the middle one is set beside NLM)")
    p.add_argument("--dims-sigma", type=_floats, nargs="+", default=None, metavar="S",
                   help="noise levels of the subspace view (default 5 10 15 25 35 50 75)")
    p.add_argument("--pixel", nargs="+", metavar="X,Y", help="pixels to explain (default: a flat area, an edge, a "
                                                           "texture and a corner, picked automatically)")
    p.add_argument("--out", default="explain", help="output folder for the figures and explain.json (default explain)")
    p.add_argument("--toy", action="store_true", help="the 1-D toy instead: a one-hidden-layer fully connected "
                                                      "denoiser of step signals (seconds)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_explain)


def cmd_explain(a):
    from . import explain as E
    from .data import SAMPLE_IMAGE
    from .errors import DataError
    from .outputs import guard

    if a.toy:
        if a.image or a.pixel:
            raise DataError("--toy trains on 1-D signals: it takes no IMAGE or --pixel")
        r = E.toy_experiment(guard(a.out, folder=True, what="--out folder"), progress=not a.quiet)
        print(f"toy: one hidden layer of {r['hidden']} units, test MSE {r['mse_noisy']:.4f} -> {r['mse_denoised']:.4f} "
              f"({r['factor']:.1f}x lower); figures: {', '.join(str(Path(a.out) / f) for f in r['files'])}")
        return
    image = Path(a.image) if a.image else SAMPLE_IMAGE
    pixels = [E.parse_pixel(s) for s in a.pixel] if a.pixel else None
    sigmas = [s for group in a.sigma for s in group] if a.sigma else E.DEFAULT_SIGMAS
    dims = [s for group in a.dims_sigma for s in group] if a.dims_sigma else E.SUBSPACE_SIGMAS
    n = E.explain(image, a.model, sigmas, pixels, a.out, progress=not a.quiet, subspace_sigmas=dims)
    print(E.filters_table(n))
    print()
    print(E.subspace_table(n))
    print(f"figures: {', '.join(str(Path(a.out) / f) for f in n['files'])}")


# ---------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgedenoise", description="Real-time neural video denoising for edge devices.")
    p.add_argument("--version", action="version", version=f"edgedenoise {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .runtime.commands import add_bench, add_run

    for add in (add_run, add_bench, add_denoise, add_train, add_eval, add_export, add_quantize, add_build, add_info,
                add_kernels, add_doctor, add_explain):
        add(sub)
    return p


# a module a command needs -> the extra that installs it (pip install -e ".[EXTRA]")
EXTRAS = {"torch": "train", "safetensors": "train", "onnx": "train", "onnxslim": "train", "skimage": "train",
          "matplotlib": "train", "onnxruntime": "runtime", "cv2": "runtime", "triton": "kernels",
          "bm3d": "bench", "tensorrt": None}


def missing_module_message(e: ModuleNotFoundError, command: str) -> str | None:
    """One line naming the extra that installs a missing module, or None for a module of ours (a bug)."""
    name = (e.name or "").split(".")[0]
    if name not in EXTRAS:
        return None
    if name == "tensorrt":
        return (f"`{command}` needs TensorRT (Python bindings), which is not installed: on a Jetson it comes "
                "with JetPack (python3-libnvinfer); elsewhere pip install tensorrt")
    extra = EXTRAS[name]
    what = "the PyTorch CPU wheel first (pip install torch==2.13.0), then " if extra == "train" else ""
    return (f"`{command}` needs {name}, which is not installed: install {what}"
            f"the [{extra}] extra: pip install -e \".[{extra}]\"")


def main(argv: list[str] | None = None) -> int:
    """Run one command. How every command fails is decided here: an EdgeDenoiseError (bad input,
    missing file, refused output), a missing optional dependency or an OS error on a file is
    one line on stderr and exit status 2; an interrupted run exits 128 + the signal (130 for
    SIGINT, 143 for SIGTERM) after finalising its outputs; anything else is a bug and keeps its
    traceback."""
    from .errors import Interrupted

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:  # `edgedenoise` alone: what it can do, not "the following arguments are required"
        parser.print_help()
        print("\nstart with `edgedenoise run` (the demo stream) or `edgedenoise denoise` (the demo picture); "
              "`edgedenoise COMMAND -h` for a command's options")
        return 2
    args, extra = parser.parse_known_args(argv)
    if extra:
        shown = " ".join(extra[:3]) + (f" ... ({len(extra)} in all)" if len(extra) > 3 else "")
        # `--source imgs/*.png` or `denoise *.jpg` unquoted: the shell made the glob a list of files
        glob = all(Path(x).exists() for x in extra)
        parser.error(f"unrecognized arguments: {shown}" + ("; they are files: a shell expands an unquoted "
                     "glob, so quote it ('DIR/*.png') or give the folder" if glob else ""))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        args.func(args)
    except Interrupted as e:
        print(f"edgedenoise: interrupted by {e.name}; outputs finalised", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("edgedenoise: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - sorted into one-line errors and bugs below
        if args.verbose:
            raise
        if isinstance(e, EdgeDenoiseError):
            msg = str(e)
        elif isinstance(e, ModuleNotFoundError):
            msg = missing_module_message(e, args.command)
            if msg is None:
                raise
        elif isinstance(e, OSError) and (e.filename or e.strerror):
            where = f" {e.filename}" if e.filename else ""
            msg = f"cannot use{where}: {e.strerror or e}"
        else:
            raise
        print(f"edgedenoise: error: {msg}", file=sys.stderr)
        return 2
    return 0


def entry() -> None:
    """The `edgedenoise` command: main(), then exit with its status. A pipeline thread that an
    interrupted run left behind (still inside a library call after the run's joins gave up on
    it, e.g. ONNX Runtime on an overloaded machine) would be torn down mid-call by the
    interpreter's shutdown, and the C++ runtime aborts the process (SIGABRT instead of 130/143):
    then the outputs, already finalised, are flushed and the process ends at once."""
    import os
    import threading

    code = main()
    left = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()
            and t.name.startswith("edgedenoise-")]
    if left:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
