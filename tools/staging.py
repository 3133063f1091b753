"""Making a shipped model's files in a folder of their own and moving them into place together, for
tools/ship_model.py, tools/rebase_video.py and tools/reexport_models.py: the shipped model's files
are inputs that export and quantize refuse to overwrite, and a failure part way (an export that does
not match PyTorch, a quantization that fails) must leave the shipped model as it was.

    with staging(MODELS_DIR, "ship-small") as work:
        save_model(net, work / "small", half=True)
        export_and_quantize(work / "small")
        move_into(work, MODELS_DIR)          # or nothing, to ship nothing
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staging(models: Path, what: str):
    """A private folder inside `models` (the same file system: the moves are renames), removed at the
    end with whatever was not moved out of it, on success or failure."""
    work = Path(tempfile.mkdtemp(prefix=f".{what}-", dir=models))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def export_and_quantize(stage: Path, progress: bool = True, quiet: bool = False,
                        targets: tuple[str, ...] = ("onnxruntime", "tensorrt")) -> tuple[dict, list[dict]]:
    """`stage`.onnx (float16 weights, checked against PyTorch) and its INT8 graphs for `targets`,
    calibrated on the training images: `stage`.int8.onnx (ONNX Runtime) and `stage`.trt.int8.onnx
    (the symmetric Q/DQ graph `edgedenoise build --precision int8` takes from beside the model, so
    that a shipped model's INT8 engine needs no calibration images), from `stage`.safetensors. Both
    are made every time the float weights change: neither may be left behind from older weights.
    Returns export_onnx's summary and quantize_model's, one per target."""
    from edgedenoise.data import default_data_root
    from edgedenoise.export import export_onnx
    from edgedenoise.quantize import quantize_model

    r = export_onnx(stage.with_suffix(".safetensors"), stage.with_suffix(".onnx"), half_weights=True)
    if not quiet:
        print(f"export onnx: {r['bytes'] / 1e6:.2f} MB, max abs err vs PyTorch {r['max_abs_err']:.1e}")
    qs = []
    for target in targets:  # each written beside the staged model under its target's name (quantize.py)
        q = quantize_model(stage.with_suffix(".onnx"), default_data_root() / "train" / "CBSD432",
                           progress=progress, target=target)
        if not quiet:
            print(f"quantize int8 for {target}: {Path(q['path']).name}, {q['bytes'] / 1e6:.2f} MB")
        qs.append(q)
    return r, qs


def move_into(work: Path, dest: Path, names: list[str] | None = None, verb: str | None = "shipped") -> list[Path]:
    """The files of `work` (all, or those `names`) moved into `dest`, each replacing its namesake by a
    rename (a copy and a rename where `dest` is on another file system: no reader sees half a file).
    Prints `verb: path` per file unless `verb` is None; returns the new paths."""
    dest.mkdir(parents=True, exist_ok=True)
    moved = []
    for f in sorted(work / n for n in names) if names else sorted(work.iterdir()):
        target = dest / f.name
        try:
            os.replace(f, target)
        except OSError:  # another file system: copy beside the target, then rename over it
            tmp = dest / f".{f.name}.part"
            shutil.copy2(f, tmp)
            os.replace(tmp, target)
        moved.append(target)
        if verb:
            print(f"{verb}: {target}")
    return moved


def int8_reminder(name: str, framewise: str | None = None) -> str:
    """What to run after `export_and_quantize` shipped `name`'s INT8 from its float weights: the INT8
    files of tiny and default (and their recurrent variants) come from quantization-aware fine-tunes
    of the framewise model (`framewise`, default `name`), one per INT8 graph, which halved default's
    loss (benchmarks/results/ship_int8_qat.md, ship_trt_int8_qat.md)."""
    base = framewise or name
    return (f"next, {name}'s INT8 files from quantization-aware fine-tunes of {base} (5 minutes each for default "
            f"here): `edgedenoise train --data DATA --model {base} --init {base} --qat --steps 3000 --batch 16 "
            f"--patch 64 --lr 2e-5 --sigma-power 1.5 --camera-sim 0.3 --camera-level true --out RUN` for "
            f"{name}.int8.onnx, the same with `--qat-for tensorrt --out RUN2` for {name}.trt.int8.onnx, then "
            f"`python tools/ship_model.py RUN --name {name} --int8-only` and the same for RUN2; the commands of "
            "the shipped ones: benchmarks/results/ship_int8_qat.md, ship_trt_int8_qat.md")
