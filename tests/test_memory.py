"""Freed memory kept for the next frame (edgedenoise/memory.py): each case in a fresh process, since
malloc's settings hold for a whole process. Counts page faults, never time."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgedenoise import memory

glibc = pytest.mark.skipif(not memory.glibc(),
                           reason="mallopt is glibc's; elsewhere keep_freed_memory does nothing (returns False)")

STREAM = """
import json, resource
from edgedenoise import memory
from edgedenoise.runtime.sources import DemoSource
from edgedenoise.temporal import VideoDenoiser
demo = DemoSource(25.0)
demo.open()
frames = [demo.read() for _ in range(30)]
vd = VideoDenoiser.load("tiny-video", backend="onnxruntime", threads=1, temporal="model")
for f in frames[:10]:
    vd.denoise(f, 25.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for f in frames[10:]:
    vd.denoise(f, 25.0)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
print(json.dumps({"kept": memory.keep_freed_memory(), "faults": faults}))
"""


def _env(setting: str | None) -> dict:
    """This process's environment with EDGEDENOISE_MALLOC set to `setting` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "EDGEDENOISE_MALLOC"}
    if setting:
        env["EDGEDENOISE_MALLOC"] = setting
    return env


def _stream(setting: str | None) -> dict:
    out = subprocess.run([sys.executable, "-c", STREAM], env=_env(setting), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_a_stream_reuses_its_memory_instead_of_mapping_fresh_pages_each_frame():
    # a recurrent model's stream: since the frames go in and out through OpenCV (2026-12-07) the
    # framewise ones and the blend free too little a frame for glibc to give pages back (0.05
    # faults a frame either way), while this one still faulted 1340 times a frame with the
    # system's settings, 37.5 with memory kept
    kept, system = _stream(None), _stream("system")
    assert kept["kept"] and not system["kept"]
    # 100 faults = 400 KB of fresh pages a frame; a 640x480 float frame alone is 3.7 MB
    assert kept["faults"] < 100, (kept, system)
    assert kept["faults"] < system["faults"], (kept, system)


def test_keep_freed_memory_is_once_per_process_and_can_be_declined():
    code = ("import json; from edgedenoise.memory import keep_freed_memory as k; "
            "print(json.dumps([k(), k()]))")
    for setting in ("system", None):
        out = subprocess.run([sys.executable, "-c", code], env=_env(setting), capture_output=True, text=True,
                             timeout=60)
        first, again = json.loads(out.stdout)
        assert first == again
        if setting == "system":
            assert first is False
        else:
            assert first is memory.glibc()
