"""The engine's JSON sidecar (`model.engine.json`): what an engine was built with, and by whom.

Written beside every engine: the TensorRT version, GPU name and compute capability, precision,
optimization profile, the ONNX file and its sha256, the kernels (and plugin flavour) -- the
fields `check_sidecar` compares with this machine before an engine is loaded, so that an engine
from another TensorRT or GPU is refused with the command that rebuilds it, never with a crash
deep in TensorRT -- plus the project's one results stamp (date, command, machine, versions:
runtime.stats.stamp).
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import cuda
from ..atomic import write_atomic
from . import EngineError, load_tensorrt

DEFAULT_PRECISION = "fp16"  # what `edgedenoise build` builds by default; assumed for a sidecar without one


def this_machine() -> dict:
    """TensorRT version, GPU name and compute capability of this machine."""
    trt = load_tensorrt()
    gpu, cc = cuda.device_name_cc(0)
    return {"tensorrt": trt.__version__, "gpu": gpu, "compute_capability": cc}


def sidecar_path(engine: Path) -> Path:
    return Path(str(engine) + ".json")


def rebuild_command(meta: dict, engine: Path) -> str:
    """The `edgedenoise build` line that makes this engine again, from its sidecar."""
    cmd = (f"edgedenoise build {meta.get('onnx', 'MODEL.onnx')} --out {engine} "
           f"--precision {meta.get('precision', DEFAULT_PRECISION)}")
    if meta.get("kernels", "native") != "native":
        cmd += f" --kernels {meta['kernels']}"
    if meta.get("calib"):
        cmd += f" --calib {meta['calib']}"
    return cmd


def check_sidecar(meta: dict, machine: dict, engine: Path) -> None:
    """Refuse an engine built elsewhere, saying how to rebuild it."""
    rebuild = f"rebuild it here: {rebuild_command(meta, engine)}"
    if meta.get("tensorrt") != machine["tensorrt"]:
        raise EngineError(f"{engine} was built with TensorRT {meta.get('tensorrt')}, this machine has "
                          f"{machine['tensorrt']}: {rebuild}")
    if meta.get("compute_capability") != machine["compute_capability"]:
        raise EngineError(f"{engine} was built for {meta.get('gpu')} (sm {meta.get('compute_capability')}), this is "
                          f"{machine['gpu']} (sm {machine['compute_capability']}): {rebuild}")


def read_sidecar(engine: Path) -> dict:
    sc = sidecar_path(engine)
    if not engine.exists():
        raise EngineError(f"engine not found: {engine}")
    if not sc.exists():
        raise EngineError(f"{engine} has no sidecar {sc.name} (TensorRT version, GPU, profile): rebuild it with "
                          "edgedenoise build")
    try:
        doc = json.loads(sc.read_text())
    except ValueError:
        raise EngineError(f"sidecar {sc} is not valid JSON: rebuild the engine with edgedenoise build") from None
    if not isinstance(doc, dict):
        raise EngineError(f"sidecar {sc} holds a JSON {type(doc).__name__}, not an object: rebuild the engine with "
                          f"edgedenoise build")
    return doc


def write_sidecar(engine: Path, meta: dict) -> dict:
    """Write `meta` beside `engine`, the results stamp first (its own keys: date, command, machine,
    versions; the build's fields win where they share one). Returns what was written."""
    from ..runtime.stats import stamp  # the build's dependency only: the runner reads sidecars

    doc = {**stamp(), **meta}
    write_atomic(sidecar_path(engine), (json.dumps(doc, indent=2) + "\n").encode(), what="engine sidecar")
    return doc
