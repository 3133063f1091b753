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
    j.write_text(json.dumps(doc, indent=2) + "\n")
    s = doc["stamp"]
    m = s["machine"]
    head = (f"Made by `{s['command']}` on {s['date'][:10]}: {m['cpu']}, {m['cores']} cores"
            f"{', GPU ' + m['gpu'] if m.get('gpu') else ', no GPU'}; "
            + ", ".join(f"{k} {v}" for k, v in s["versions"].items()) + ".\n\n")
    md.write_text(head + markdown.rstrip() + "\n")
    return j, md


def cached(key: str, compute):
    """compute() once per key; the result (JSON-able) is kept in benchmarks/.cache/."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / (key.replace("/", "_") + ".json")
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value))
    return value
