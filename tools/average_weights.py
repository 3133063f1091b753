#!/usr/bin/env python3
"""Interpolate between a fine-tuned run and the model it started from, in weight space, into a new
run folder that `tools/compare_val.py` scores and `tools/ship_model.py` ships like any other.

    python tools/average_weights.py ~/runs/default_cam --with default --weight 0.5 --out ~/runs/default_cam_avg

A fine-tune that moves a model towards new noise (the camera mixture) and costs it a little on the old
(Gaussian noise) can often keep most of the gain and little of the cost half way back: the two sets of
weights come from one training and lie in one basin, so their average is a network of its own that sits
between them on both (weight-space ensembling, Wortsman et al., "Robust fine-tuning of zero-shot models",
CVPR 2022). `--weight` is the run's share: 1 gives the run, 0 the model it is averaged with. Choose it on
the validation split (compare_val.py), never on the test sets.

Writes OUT/model.safetensors (float32), OUT/model.json and OUT/config.json (the run's training settings
with the averaging added, which ship_model.py's training record keeps). Both models must be the same
network (sizes, depths, a recurrent model's gate); OUT may not be either input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def average(run, base, weight: float):
    """The network `run` with weights weight * run + (1 - weight) * base; main() has checked that the two
    are one network (_network), so their weights have the same names and shapes."""
    import torch

    theirs = base.state_dict()
    run.load_state_dict({k: torch.lerp(theirs[k], v, weight) if v.is_floating_point() else v
                         for k, v in run.state_dict().items()})
    return run


def _network(model) -> dict:
    """What makes a model's network: its config without the name, notes and blind calibration."""
    return {k: v for k, v in model.config.to_dict().items() if k not in ("name", "extra", "blind")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder written by `edgedenoise train` (its config.json is kept)")
    ap.add_argument("--with", dest="base", required=True,
                    help="the model to average with: a shipped name (often the run's --init), run folder or file")
    ap.add_argument("--weight", type=float, required=True, help="the run's share, 0..1")
    ap.add_argument("--out", required=True, help="new run folder")
    args = ap.parse_args(argv)

    from edgedenoise.atomic import write_atomic
    from edgedenoise.errors import ModelError
    from edgedenoise.modelfile import load_model, resolve, save_model

    run, out = Path(args.run), Path(args.out)
    if not 0.0 <= args.weight <= 1.0:
        print(f"average_weights: --weight {args.weight:g} is outside 0..1", file=sys.stderr)
        return 2
    if not (run / "config.json").is_file():
        print(f"average_weights: {run} is not a run folder (no config.json)", file=sys.stderr)
        return 2
    try:
        inputs = {run.resolve()}
        base_files = resolve(args.base)
        if base_files.weights is not None:
            inputs.add(base_files.weights.parent.resolve())
        if out.resolve() in inputs:
            print(f"average_weights: --out {out} is one of the inputs; give a new folder", file=sys.stderr)
            return 2
        net, base = load_model(run), load_model(args.base)
    except ModelError as e:
        print(f"average_weights: {e}", file=sys.stderr)
        return 2
    if _network(net) != _network(base):
        print(f"average_weights: {args.base} is not the network of {run} (sizes, depths or gate differ)",
              file=sys.stderr)
        return 2
    average(net, base, args.weight)
    note = {"with": str(args.base), "weight": args.weight}
    config = json.loads((run / "config.json").read_text())
    config["average"] = note
    out.mkdir(parents=True, exist_ok=True)
    save_model(net, out / "model")  # (the averaging is recorded once, in config.json, as a run's settings are)
    write_atomic(out / "config.json", (json.dumps(config, indent=2) + "\n").encode(), what="run config")
    print(f"average_weights: {out}: {args.weight:g} x {run} + {1 - args.weight:g} x {args.base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
