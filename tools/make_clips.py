#!/usr/bin/env python3
"""Write the synthetic test clips of benchmarks/temporal.py to disk, to look at or to feed to other tools.

    python tools/make_clips.py OUT_DIR [--sigma 25] [--video]

For each clip, OUT_DIR/<set>_<image>_<kind>/ gets clean/NNN.png and noisy/NNN.png (sigma 25, camera
protocol, independent noise per frame), and with --video also clean.mkv and noisy.mkv (FFV1, lossless,
25 fps). The clips are exactly those benchmarks/temporal.py measures (the same images, motions,
seeds and noise), made by `edgedenoise.clips`: seeded, so every run writes the same frames.
Test material: never train on it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="folder to write the clips into (created; must not exist or be empty)")
    ap.add_argument("--data", default=os.environ.get("EDGEDENOISE_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--video", action="store_true", help="also write each clip as lossless FFV1 .mkv files")
    a = ap.parse_args()

    import temporal

    from edgedenoise.clips import noisy_clip

    out = Path(a.out)
    if out.exists() and any(out.iterdir()):
        print(f"make_clips: {out} is not empty: give a new folder", file=sys.stderr)
        return 2
    temporal.SIGMA = a.sigma
    clips = temporal.synthetic_clips(Path(a.data))
    for i, c in enumerate(clips):
        noisy = c["noisy"] if a.sigma == 25.0 else noisy_clip(c["clean"], a.sigma, seed=i)
        name = c["name"].replace("/", "_").replace("|", "+").replace(" ", "_")
        folder = out / name
        for part, frames in (("clean", c["clean"]), ("noisy", noisy)):
            (folder / part).mkdir(parents=True)
            for t, f in enumerate(frames):
                cv2.imwrite(str(folder / part / f"{t:03d}.png"), f)
            if a.video:
                h, w = frames[0].shape[:2]
                wr = cv2.VideoWriter(str(folder / f"{part}.mkv"), cv2.VideoWriter_fourcc(*"FFV1"), 25, (w, h))
                for f in frames:
                    wr.write(f)
                wr.release()
        print(f"{folder}: {len(c['clean'])} frames {c['clean'][0].shape[1]}x{c['clean'][0].shape[0]} ({c['kind']})")
    print(f"{len(clips)} clips in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
