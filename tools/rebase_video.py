#!/usr/bin/env python3
"""Give a shipped recurrent model the weights of its framewise model as shipped now, keeping its
trained gate branch: after `tools/ship_model.py` ships new `default` weights, `default-video` (the
framewise model, untouched, plus a gate branch) would otherwise still carry the old ones, and its
promise that a scene's first frame and its own estimate of every frame are the framewise model's
would no longer hold.

    python tools/rebase_video.py default-video          # base: the model it was made from (small)
    python tools/rebase_video.py default-video --check  # and score both on the validation clips

Writes the model's .safetensors (float16), .json (the blind gain of the base, which it shares), the
ONNX export and its INT8 variant, each made in a folder of its own beside the models and moved into
place together (a failure leaves the shipped files as they were). `--check` first scores the old
and the new model on the clips `edgedenoise train --video` validates on (tools/compare_val.py
--clips) and ships only if the new one is no more than 0.05 dB below the old on their mean: the
gate was trained on the old base's outputs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOLERANCE = 0.05  # dB on the validation clips' mean


def rebased(video: str, base: str):
    """The recurrent network of model `video` with every weight but its gate branch's taken from model
    `base`."""
    from edgedenoise.modelfile import load_model

    return _rebase(load_model(video), load_model(base))


def _rebase(old, src):
    from edgedenoise.model import make_recurrent

    cfg = old.config
    if not cfg.recurrent or not cfg.gate:
        raise SystemExit(f"rebase_video: {cfg.name} has no gate branch of its own (its fusion is trained into the "
                         "whole network): retrain it with `edgedenoise train --video --init` instead")
    if (list(src.config.widths), list(src.config.depths)) != (list(cfg.widths), list(cfg.depths)):
        raise SystemExit(f"rebase_video: {src.config.name} ({src.config.widths}, {src.config.depths}) is not the "
                         f"network {cfg.name} was made from ({cfg.widths}, {cfg.depths})")
    new = make_recurrent(src, gate=cfg.gate, gate_in=cfg.gate_in)
    new.gate.load_state_dict(old.gate.state_dict())
    new.config.name, new.config.extra = cfg.name, dict(cfg.extra)
    new.eval()
    return new


def clip_scores(*nets) -> list[float]:
    """Recurrent networks' PSNR on the clips `edgedenoise train --video` validates on (those of
    `tools/compare_val.py --clips`: 8 held-out CBSD432 images, still, pan, objects, cut; sigma 25),
    the clips made once for all of them."""
    import torch

    from edgedenoise.data import default_data_root, validation_images
    from edgedenoise.train import ClipValSet

    cs = ClipValSet(validation_images(default_data_root() / "train" / "CBSD432"), 3, 25.0)
    return [float(cs.evaluate(net, torch.device("cpu"), "model")["all"]) for net in nets]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="the shipped recurrent model (default-video, tiny-video)")
    ap.add_argument("--base", help="its framewise model (default: the one it was made from)")
    ap.add_argument("--check", action="store_true", help="score old and new on the validation clips first")
    ap.add_argument("--out", help="write the files into this folder instead of the shipped models'")
    a = ap.parse_args()

    from staging import export_and_quantize, int8_reminder, move_into, staging

    from edgedenoise.modelfile import MODELS_DIR, load_model, resolve, save_model

    files = resolve(a.model)
    base = a.base or files.config["name"].removesuffix("-video")
    base_config = resolve(base).config
    old = load_model(a.model)
    net = _rebase(old, load_model(base))
    stem = files.weights.stem
    net.config.extra["framewise_from"] = {"model": base, "training": base_config.get("extra", {}).get("training", {}),
                                          "command": "python " + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    with staging(MODELS_DIR, f"rebase-{stem}") as work:
        stage = work / stem
        save_model(net, stage, half=True)
        doc = json.loads(stage.with_suffix(".json").read_text())
        doc["blind"] = base_config.get("blind", files.config.get("blind"))  # blind mode: the base's gain
        stage.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
        if a.check:
            before, after = clip_scores(old, net)
            print(f"validation clips, mean PSNR: {a.model} {before:.3f} dB, rebased on {base} {after:.3f} dB")
            if after < before - TOLERANCE:
                print(f"rebase_video: the rebased model is {before - after:.2f} dB below the shipped one on the "
                      "validation clips: not shipped (retrain its gate on the new base)", file=sys.stderr)
                return 1
        export_and_quantize(stage)
        move_into(work, Path(a.out) if a.out else MODELS_DIR, verb="written" if a.out else "shipped")
    print(f"rebase_video: {int8_reminder(stem, base)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
