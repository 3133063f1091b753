"""What every benchmark shares: the stamp (machine, versions, date, command) and writing results."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache"  # slow anchor results (CBM3D), reused across runs; not committed

sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from edgedenoise.atomic import write_atomic  # noqa: E402  (after the path: a checkout without installing)


def stamp(extra: dict | None = None) -> dict:
    """Machine, library versions, threads, date and the command, for the top of every results file."""
    import cv2

    from edgedenoise.runtime.stats import stamp as base

    return {
        **base("python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])),
        "threads": {"cpu_cores": os.cpu_count(), "onnxruntime": "default (one per core)",
                    "opencv": cv2.getNumThreads()},
        **(extra or {}),
    }


def write(name: str, doc: dict, markdown: str, out: Path | None = None) -> tuple[Path, Path]:
    """<out>/<name>.json and <out>/<name>.md (out: results/ unless given; the Markdown starts with the stamp)."""
    out = Path(out) if out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    j, md = out / f"{name}.json", out / f"{name}.md"
    s = doc["stamp"]
    m = s["machine"]
    head = (f"Made by `{s['command']}` on {s['date'][:10]}: {m['cpu']}, {m['cores']} cores"
            f"{', GPU ' + m['gpu'] if m.get('gpu') else ', no GPU'}; "
            + ", ".join(f"{k} {v}" for k, v in s["versions"].items()) + ".\n\n")
    # each file whole or not at all: a stopped run leaves the last results, never half of them
    write_atomic(j, (json.dumps(doc, indent=2) + "\n").encode(), what="benchmark results")
    write_atomic(md, (head + markdown.rstrip() + "\n").encode(), what="benchmark results")
    return j, md


def publish(name: str, doc: dict, markdown: str, out: Path | None = None, also=()) -> int:
    """The end of a benchmark's main: `write` the results, print the table and the paths written;
    `also`: its pictures' paths, or a function of the JSON's path that draws them (called after the
    results are written, so a failed plot loses no measurement). Returns 0, the exit status."""
    j, md = write(name, doc, markdown, out)
    pictures = also(j) if callable(also) else also
    print(markdown)
    print("results: " + ", ".join(str(p) for p in (j, md, *pictures)))
    return 0


def find_ffmpeg() -> tuple[str, str] | None:
    """(path, version line) of an ffmpeg binary for the anchors that are ffmpeg filters (hqdn3d,
    fftdnoiz): the one on the PATH, else the static build of the imageio-ffmpeg package
    (`pip install -e .[bench]`); None if neither is there."""
    import shutil
    import subprocess

    exe = shutil.which("ffmpeg")
    if exe is None:
        try:
            import imageio_ffmpeg

            exe = imageio_ffmpeg.get_ffmpeg_exe()
        except (ImportError, RuntimeError):
            return None
    try:
        out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (exe, out.stdout.splitlines()[0]) if out.returncode == 0 and out.stdout else None


def cached(key: str, compute):
    """compute() once per key; the result (JSON-able) is kept in benchmarks/.cache/."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / (key.replace("/", "_") + ".json")
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value))
    return value
