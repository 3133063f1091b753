#!/usr/bin/env python3
"""Package a model for a Jetson and, given a host, copy it there and set it up.

    python tools/jetson_deploy.py --model default --out build/jetson
    python tools/jetson_deploy.py --model default --host nvidia@orin.local [--remote-dir edgedenoise]

Run it on the development machine (torch and triton installed: `pip install -e .[dev]`). It does
what needs them, which a Jetson lacks, and leaves the rest to the device:

1. the model's ONNX graph and config (`models/NAME.onnx`, `.json`) and its frame-native graph
   (`models/NAME.frame.onnx`: uint8 frame in and out, the boundary layers as custom ops), so
   `edgedenoise build --kernels triton|auto` on the device finds it beside the model, and, where
   the model has one (every shipped model does), its TensorRT Q/DQ graph (`models/NAME.trt.int8.onnx`,
   quantization-aware for `tiny` and `default`), from which `build --precision int8` makes the INT8
   engine without calibration images; and the same files of its shipped recurrent variant
   (`models/NAME-video.*`: default -> default-video), whose engine jetson_setup.sh builds too;
2. the fused Triton kernels compiled ahead of time for the device (`build/kernels`, default
   sm_87: Orin);
3. the package's source (edgedenoise/, kernels/, tools/, pyproject.toml, README.md) and
   BUNDLE.json (model, target, versions, commit, date, this command).

With --host, the bundle goes over ssh (tar, so rsync need not be installed on either side) and
`bash tools/jetson_setup.sh` runs on the device: a venv over JetPack's TensorRT and OpenCV, then
the TensorRT engine, built there (engines are tied to the GPU and the TensorRT version). Options
after `--` go to jetson_setup.sh, e.g. `-- --precision int8`.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ["edgedenoise", "kernels", "tools", "pyproject.toml", "README.md"]
SKIP = {"__pycache__", ".pytest_cache"}


def fail(msg: str) -> None:
    print(f"jetson_deploy: error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def copy_source(dest: Path) -> int:
    """The package's files that git does not ignore (all of them outside git), into dest. Returns the count."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *SOURCE],
                             cwd=ROOT, capture_output=True, check=True)
        files = [ROOT / f for f in out.stdout.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if not files:
        files = [p for s in SOURCE for p in ([ROOT / s] if (ROOT / s).is_file() else (ROOT / s).rglob("*"))
                 if p.is_file() and not SKIP & set(p.parts)]
    for f in files:
        if not f.exists():  # deleted in the work tree, not yet in the index
            continue
        t = dest / f.relative_to(ROOT)
        t.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, t)
    return len(files)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *SOURCE], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def make_bundle(model: str, target: str, out: Path, name: str | None = None) -> dict:
    from edgedenoise.kernel_build import build_kernels
    from edgedenoise.model import SIZES
    from edgedenoise.modelfile import recurrent_variant, resolve
    from edgedenoise.runtime.stats import stamp

    t0 = time.time()
    files = resolve(model)
    if files.weights is None:
        fail(f"model {model} has no safetensors weights beside it: the frame-native graph is exported from them")
    size = next((k for k, v in SIZES.items() if list(v.widths) == list(files.config["widths"])), None)
    name = name or files.name
    if out.exists() and any(out.iterdir()) and not (out / "BUNDLE.json").exists():
        fail(f"{out} exists and is not a bundle: choose an empty or new folder")
    final, out = out, out.with_name(f".{out.name}.partial")  # built aside: a failed build leaves the old bundle
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    n = copy_source(out)
    print(f"source: {n} files")
    models = out / "models"
    models.mkdir()
    frame_onnx = _bundle_model(model, files, name, models)
    # a shipped model's recurrent variant (default -> default-video) goes beside it, named after it, so
    # that jetson_setup.sh builds its engine too and `run --temporal auto` finds it on the GPU (its tail
    # kernels are among the size's: kernel_build.family_variants)
    variant = None if files.recurrent else recurrent_variant(model)
    if variant is not None:
        _bundle_model(variant, resolve(variant), f"{name}-video", models)
    # a recurrent model of one's own: its gate's width, which the size's shipped variant may not have
    gates = [int(files.config["gate"])] if frame_onnx and files.recurrent else None
    manifest = build_kernels(target, out / "build" / "kernels", [size] if size else None, gates)
    print(f"kernels: {len(manifest['kernels'])} for {target}")
    info = {"model": model, "name": name, "widths": files.config["widths"], "recurrent": bool(files.recurrent),
            "target": target, "onnx": f"models/{name}.onnx", "frame_onnx": frame_onnx,
            "variant": f"models/{name}-video.onnx" if variant else None, "kernels": "build/kernels",
            "commit": git_commit(), "seconds": round(time.time() - t0, 1),
            **stamp(" ".join(shlex.quote(x) for x in ["python", "tools/jetson_deploy.py", *sys.argv[1:]]))}
    (out / "BUNDLE.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    out.rename(final)
    return info


def _bundle_model(model: str, files, name: str, models: Path) -> str | None:
    """models/NAME.onnx, .json and the frame-native graph of one model; the graph's path in the
    bundle, or None where the kernels do not fuse its gate."""
    from edgedenoise.backends.base import fused_gate
    from edgedenoise.export import export_onnx

    if files.onnx is not None:
        shutil.copy2(files.onnx, models / f"{name}.onnx")
    else:  # float16-stored weights: half the bytes to copy, the same float32 compute (onnxweights.py)
        export_onnx(model, models / f"{name}.onnx", half_weights=True)
    shutil.copy2(files.weights.with_suffix(".json"), models / f"{name}.json")
    if files.onnx_trt_int8 is not None:  # build --precision int8 finds it beside the model
        shutil.copy2(files.onnx_trt_int8, models / f"{name}.trt.int8.onnx")
        print(f"onnx: models/{name}.trt.int8.onnx (the Q/DQ graph of its INT8 engine)")
    if files.recurrent and not fused_gate(files.config):  # not a fusion the kernels compute: TensorRT's own only
        print(f"onnx: models/{name}.onnx (a recurrent model without a gate branch fed colour sums: no frame-native "
              "graph; build it with --kernels native on the device)")
        return None
    export_onnx(model, models / f"{name}.frame.onnx", frame_native=True)  # a recurrent one ends in EgestGate
    print(f"onnx: models/{name}.onnx, models/{name}.frame.onnx")
    return f"models/{name}.frame.onnx"


def unpack_command(remote_dir: str) -> str:
    """The shell command, run on the device, that unpacks the tar stream on its stdin into remote_dir.
    A folder of an earlier bundle is refreshed, its .venv and engines/ kept (the set-up reuses
    them); any other existing folder is left alone (exit 3)."""
    rd = shlex.quote(remote_dir)
    return (f"if [ -e {rd} ] && [ ! -f {rd}/BUNDLE.json ]; then echo {rd} exists and is not an edgedenoise bundle >&2;"
            f" exit 3; fi; mkdir -p {rd} && find {rd} -mindepth 1 -maxdepth 1 ! -name .venv ! -name engines "
            f"-exec rm -rf {{}} + && tar -C {rd} -xzf -")


def ship(out: Path, host: str, remote_dir: str, setup_args: list[str]) -> None:
    """tar the bundle over ssh into remote_dir, then run the set-up there."""
    rd = shlex.quote(remote_dir)
    tar = subprocess.Popen(["tar", "-C", str(out), "-czf", "-", "."], stdout=subprocess.PIPE)
    remote = unpack_command(remote_dir)
    print(f"copying the bundle to {host}:{remote_dir}")
    r = subprocess.run(["ssh", host, remote], stdin=tar.stdout, check=False)
    tar.stdout.close()
    if tar.wait() or r.returncode:
        fail(f"copying to {host}:{remote_dir} failed (ssh exit {r.returncode}; 3: the folder is not a bundle): "
             f"check that `ssh {host} true` works without a password")
    setup = f"cd {rd} && bash tools/jetson_setup.sh " + " ".join(shlex.quote(a) for a in setup_args)
    print(f"on {host}: {setup}")
    r = subprocess.run(["ssh", "-t", host, setup], check=False)
    if r.returncode:
        fail(f"the set-up on {host} failed (exit {r.returncode}); its messages are above")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="shipped name, run folder or .safetensors (default: default)")
    p.add_argument("--name", help="file name of the model in the bundle (default: the model's own)")
    p.add_argument("--target", default="sm_87", help="GPU target of the device (default sm_87: Orin)")
    p.add_argument("--out", default="build/jetson", help="bundle folder (default build/jetson; replaced if it is one)")
    p.add_argument("--host", help="user@host of the Jetson: copy the bundle there and run tools/jetson_setup.sh")
    p.add_argument("--remote-dir", default="edgedenoise", help="folder on the device (default ~/edgedenoise)")
    a = p.parse_args(argv)
    from edgedenoise.errors import EdgeDenoiseError

    try:
        info = make_bundle(a.model, a.target, Path(a.out), a.name)
    except ImportError as e:
        fail(f"this needs torch, onnx and triton ({e}): pip install -e .[dev]")
    except EdgeDenoiseError as e:  # the package's own errors already say what to do
        fail(str(e))
    print(f"bundle: {a.out} ({info['seconds']:.0f} s)")
    if a.host:
        ship(Path(a.out), a.host, a.remote_dir, setup_args)
    else:
        print(f"copy {a.out} to the device, then run there: bash tools/jetson_setup.sh")


if __name__ == "__main__":
    main()
