#!/usr/bin/env python3
"""Ship a trained run as a packaged model: copy its weights and config into
edgedenoise/models/<name>.*, export the ONNX beside them, and score it on CBSD68 and
Kodak24 at sigma 15/25/50 under both protocols (BENCHMARK_PROTOCOL.md). The weights are
stored as float16 (the network still computes in float32), and the scores are those of the
stored weights. Also writes the INT8 variants, calibrated on CBSD432: `<name>.int8.onnx`, which
`--precision int8` loads, and `<name>.trt.int8.onnx`, the Q/DQ graph `edgedenoise build --precision
int8` makes a TensorRT engine from.

    python tools/ship_model.py runs/small --name small
    python tools/ship_model.py runs/tiny-qat --name tiny --int8-only   # a `train --qat` run: INT8 alone
    python tools/ship_model.py - --name tiny-video --score-only         # score a shipped model again

`--int8-only` ships only the INT8 file of the graph the run simulated, quantized from the run's weights
(a quantization-aware fine-tune of the shipped model, `edgedenoise train --init NAME --qat`:
`<name>.int8.onnx`; with `--qat-for tensorrt`: `<name>.trt.int8.onnx`); the float model stays as it is
and the INT8 file keeps its config (blind gain, training record) with the fine-tune's record added. A
recurrent model (`--name tiny-video`) takes a fine-tune of its framewise model (`tiny`: the same
weights) and keeps its own gate branch.
`python benchmarks/int8_val.py --int8-from OLD` then says what it changed.

Writes benchmarks/results/quality_<name>.json and .md (stamped with machine, versions,
date and the command).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "edgedenoise" / "models"


KEYS = ("steps", "batch", "patch", "lr", "lr_min", "loss", "noise", "sigma_min", "sigma_max", "sigma_power",
        "camera_fraction", "camera_sim", "map_jitter", "camera_level", "amp", "seed", "video", "frames", "fusion_lr",
        "fusion_only", "gate", "gate_in", "video_align", "stop_at", "qat", "qat_for", "act_limit", "camera_optics",
        "camera_optics_from", "average")


def training_record(run: Path) -> dict:
    """The run's settings; for a fine-tune, also what it started from, back to the first run."""
    tc = json.loads((run / "config.json").read_text())
    rec = {k: tc[k] for k in KEYS if k in tc}
    if not rec.get("stop_at"):  # 0: the run went to its --steps; only an early stop is worth recording
        rec.pop("stop_at", None)
    init = tc.get("init")
    if init:
        rec["init"] = init
        if (Path(init) / "config.json").exists():
            rec["init_training"] = training_record(Path(init))
        else:  # a shipped model: its own record, as it was when this run started from it
            from edgedenoise.modelfile import resolve

            try:
                rec["init_training"] = resolve(init).config.get("extra", {}).get("training", {})
            except Exception:  # noqa: BLE001 - the record is a courtesy; shipping goes on without it
                pass
    return rec


def ship_int8(run: Path, name: str, models: Path = MODELS) -> int:
    """The INT8 file of shipped model `name` made from `run`'s weights, into `models` (see the module
    docstring); 2 (with a line on stderr) when the run is not a fine-tune of that model."""
    from staging import export_and_quantize, move_into, staging

    from edgedenoise.modelfile import load_model, save_model

    shipped, tuned = load_model(name), load_model(run)
    state, weights = shipped.state_dict(), tuned.state_dict()
    # a recurrent model takes the run's framewise weights (they are its framewise model's) and keeps its gate
    kept = [k for k in state if k not in weights]
    if (list(tuned.config.widths), list(tuned.config.depths)) != \
            (list(shipped.config.widths), list(shipped.config.depths)) or set(weights) - set(state) \
            or any(not k.startswith("gate.") for k in kept):
        print(f"ship_model: {run} is not a fine-tune of {name} or of its framewise model", file=sys.stderr)
        return 2
    record = training_record(run)
    tc = json.loads((run / "config.json").read_text())
    if not tc.get("qat"):
        print(f"ship_model: note: {run} was not trained with --qat", file=sys.stderr)
    target = tc.get("qat_for", "onnxruntime")  # the INT8 graph the run simulated: the file it ships
    shipped.load_state_dict({**state, **weights})
    shipped.config.extra["int8_weights"] = record  # (its "qat" says whether the run was one)
    with staging(models, f"ship-{name}-int8") as work:
        stage = work / name
        save_model(shipped, stage, half=True)
        _, (q,) = export_and_quantize(stage, targets=(target,))
        move_into(work, models, names=[Path(q["path"]).name])
    return 0


def ship(run: Path, name: str, models: Path) -> None:
    """`run`'s weights as shipped model `name`: weights, config, ONNX, INT8 and blind gain, made in a
    folder of their own and moved into place together (tools/staging.py)."""
    from calibrate_blind import calibrate, write_gain
    from staging import export_and_quantize, int8_reminder, move_into, staging

    from edgedenoise.data import default_data_root
    from edgedenoise.modelfile import load_model, save_model

    net = load_model(run)
    net.config.name = name
    net.config.extra.update(trained_on="CBSD432 (BSDS500 outside CBSD68)", training=training_record(run))
    with staging(models, f"ship-{name}") as work:
        stage = work / name
        # weights stored as float16: half the files, under the repository's 5 MiB per file
        save_model(net, stage, half=True)
        export_and_quantize(stage)
        # blind mode's gain for this model (tools/calibrate_blind.py), into the JSON before it ships
        gain, res, table = calibrate(str(stage.with_suffix(".safetensors")), default_data_root() / "train" / "CBSD432")
        write_gain(stage.with_suffix(".json"), gain, res, f"python tools/calibrate_blind.py {name}")
        print(f"blind gain {gain:g}: {table}")
        move_into(work, models)
    if net.config.recurrent:  # trained as a whole (gpu_train.sh -- --video): no framewise model's QAT to take
        print(f"ship_model: {name}'s INT8 files are calibrated from its float weights (`train --qat` fine-tunes "
              f"framewise models only): check them with `python benchmarks/int8_val.py`", file=sys.stderr)
    else:
        print(f"ship_model: {int8_reminder(name)} (and --name {name}-video, after tools/rebase_video.py)",
              file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder written by `edgedenoise train`")
    ap.add_argument("--name", required=True, help="shipped model name (tiny, small, base)")
    ap.add_argument("--sigma", type=float, nargs="+", default=[15, 25, 50])
    ap.add_argument("--sets", nargs="+", default=["CBSD68", "Kodak24"])
    ap.add_argument("--int8-only", action="store_true",
                    help="ship only the INT8 file made from the run's weights (a `train --qat` run)")
    ap.add_argument("--score-only", action="store_true",
                    help="ship nothing: score the shipped NAME again (RUN is ignored; give -) into quality_NAME")
    a = ap.parse_args()
    if a.int8_only:
        return ship_int8(Path(a.run), a.name)

    from edgedenoise.data import default_data_root
    from edgedenoise.evaluate import evaluate, markdown_table
    from edgedenoise.runtime.stats import stamp

    if not a.score_only:
        ship(Path(a.run), a.name, MODELS)

    data = default_data_root() / "test"
    reports = [evaluate(a.name, data / s, a.sigma, pr) for s in a.sets for pr in ("camera", "paper")]
    meta = {
        **stamp("python " + " ".join(sys.argv)),
        "threads": "ONNX Runtime default (all cores)",
        "backend": "onnxruntime (CPU, fp32)",
    }
    for rep in reports:
        for res in rep["results"]:
            del res["images"]  # per-image rows: `edgedenoise eval --json` gives them
    out = ROOT / "benchmarks" / "results" / f"quality_{a.name}.json"
    out.write_text(json.dumps({"meta": meta, "reports": reports}, indent=1) + "\n")
    table = markdown_table(reports)
    out.with_suffix(".md").write_text(f"Measured {meta['date']} with `{meta['command']}`\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
