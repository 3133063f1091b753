"""`--backend auto`: which backend runs a model on this machine, at which precision, and why.

The order a user expects: a TensorRT engine built for this model on this machine; else the
triton backend on a CUDA GPU; else torch on the GPU; else ONNX Runtime on the CPU (torch on the
CPU when the model has no ONNX export or ONNX Runtime is missing). The precision asked narrows
it: int8 runs on an int8 engine or ONNX Runtime; fp16 on an engine, triton or torch on CUDA;
`auto` is fp16 on a GPU (the fused kernels in half precision differ from fp32 by one level on
4-5 % of pixels) and fp32 on the CPU. A recurrent model runs on every backend (triton: one whose
gate branch the kernels fuse; TensorRT: an engine built from its graph), a gray one not on triton.

Two steps, so that the decision can be tested without the hardware: `probe` looks at what this
machine has, cheaply (the CUDA driver is asked for a device through ctypes, so a machine without
a GPU never imports torch here), and `decide` is a pure function of the model's files, the
precision asked and a `Capabilities`, which a test may make up.

Engines are looked for beside the model's ONNX file and in the folder `EDGEDENOISE_ENGINES`
names: an `.engine` whose sidecar names this ONNX file's sha256 (as the graph it was built from, or,
for an engine of the frame-native graph, as the float model that graph was made from) and this
machine's TensorRT and GPU.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import ModelError
from ..modelfile import ModelFiles, file_sha256
from .base import fused_gate

ENGINES_ENV = "EDGEDENOISE_ENGINES"
GPU_BACKENDS = ("tensorrt", "triton")  # torch is a GPU backend only on CUDA (Capabilities.torch_cuda)


def x86_vnni(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this x86 Linux CPU has VNNI (AVX-512 VNNI or AVX-VNNI); None where it is not x86 or the
    flags cannot be read. Without it ONNX Runtime multiplies INT8's u8 x s8 pairs with a 16-bit sum
    that saturates, so INT8 runs no faster than fp32 and loses more (tiny int8 on still clips 1.7 dB
    under fp32 there, 0.4 on a CPU with VNNI; 2026-12-05)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        with open(cpuinfo) as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), None)
    except OSError:
        return None
    return None if flags is None else bool({"avx512_vnni", "avx_vnni"} & set(flags))


@functools.lru_cache(maxsize=1)
def int8_saturates_here() -> bool:
    """This machine's CPU lacks VNNI (x86_vnni), read once per process."""
    return x86_vnni() is False


@dataclass(frozen=True)
class Capabilities:
    """What this machine can run (see `probe`)."""

    gpu: int = 0  # CUDA devices the driver reports
    onnxruntime: bool = False
    torch: bool = False
    torch_cuda: bool = False  # torch built with CUDA and seeing the device
    triton: bool = False
    tensorrt: bool = False  # tensorrt and cuda-python import
    engines: tuple = ()  # (path, precision) of engines built for this model on this machine
    notes: tuple = field(default=(), compare=False)  # engines seen and passed over, and why

    def describe(self) -> str:
        has = [n for n in ("onnxruntime", "torch", "triton", "tensorrt") if getattr(self, n)]
        gpu = f"{self.gpu} CUDA device{'s' if self.gpu != 1 else ''}" if self.gpu else "no CUDA device"
        return f"{gpu}; {', '.join(has) or 'no inference library'}"


class Choice(NamedTuple):
    backend: str
    precision: str
    engine: Path | None
    why: str


def cuda_devices() -> int:
    """CUDA devices the driver reports (0 without a driver or device), through ctypes: no torch."""
    names = ["libcuda.so.1", "libcuda.so", ctypes.util.find_library("cuda") or ""]
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        try:
            if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
        except AttributeError:
            return 0
        return int(count.value)
    return 0


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@functools.lru_cache(maxsize=1)
def _machine() -> Capabilities:
    """The machine's part of the probe, once per process (a stream's model choice loads several models)."""
    gpu = cuda_devices()
    has_torch = _installed("torch")
    torch_cuda = False
    if gpu and has_torch:  # only a machine with a GPU pays for importing torch here
        import torch

        torch_cuda = bool(torch.cuda.is_available())
    trt = bool(gpu) and _installed("tensorrt") and _installed("cuda")
    return Capabilities(gpu=gpu, onnxruntime=_installed("onnxruntime"), torch=has_torch, torch_cuda=torch_cuda,
                        triton=_installed("triton"), tensorrt=trt)


def probe(files: ModelFiles | None = None) -> Capabilities:
    """What this machine has, and the engines it holds for `files` (see the module docstring)."""
    caps = _machine()
    if not caps.tensorrt or files is None:
        return caps
    engines, notes = find_engines(files)
    return dataclasses.replace(caps, engines=engines, notes=notes)


def engine_folders(files: ModelFiles) -> list[Path]:
    folders = [files.onnx.parent] if files.onnx is not None else []
    if os.environ.get(ENGINES_ENV):
        folders.append(Path(os.environ[ENGINES_ENV]))
    return [f for f in dict.fromkeys(folders) if f.is_dir()]


def find_engines(files: ModelFiles) -> tuple[tuple, tuple]:
    """((path, precision), ...) of engines built from `files.onnx` for this machine's TensorRT and GPU,
    and a note for each engine of this model passed over."""
    from ..errors import EdgeDenoiseError
    from ..trt.sidecar import check_sidecar, read_sidecar, this_machine

    if files.onnx is None:
        return (), ()
    sha = file_sha256(files.onnx, n=64)
    found, notes = [], []
    machine = None
    for folder in engine_folders(files):
        for path in sorted(folder.glob("*.engine")):
            try:
                meta = read_sidecar(path)
                # (an engine of the frame-native graph names the float model it came from: model_onnx_sha256)
                if sha not in (meta.get("onnx_sha256"), meta.get("model_onnx_sha256")):
                    continue
                machine = machine or this_machine()
                check_sidecar(meta, machine, path)
            except (EdgeDenoiseError, OSError) as e:  # a sidecar of another machine, CUDA
                notes.append(f"{path.name} passed over: {e}")
                continue
            found.append((path, str(meta.get("precision", "fp16"))))
    return tuple(found), tuple(notes)


def _ok_for(files: ModelFiles, backend: str) -> str | None:
    """Why `files` cannot run on `backend` (None: it can)."""
    if files.recurrent and backend == "triton" and not fused_gate(files.config):
        return "triton runs recurrent models with a gate branch fed colour sums only"
    if backend == "triton" and files.channels != 3:
        return "triton runs colour models only"
    if backend in ("torch", "triton") and files.weights is None:
        return "no .safetensors weights"
    if backend == "onnxruntime" and files.onnx is None:
        return "no ONNX export"
    return None


def _engine(caps: Capabilities, precision: str) -> tuple[Path, str] | None:
    """The first engine of `caps` that computes in `precision` (any, for auto): (path, its precision)."""
    return next(((Path(p), prec) for p, prec in caps.engines if precision in ("auto", prec)), None)


def decide(files: ModelFiles, precision: str, caps: Capabilities) -> Choice:
    """The backend `auto` runs `files` on at `precision` (fp32, fp16, int8 or auto), given `caps`."""
    passed = []

    def usable(name: str) -> bool:
        why = _ok_for(files, name)
        if why:
            passed.append(f"not {name}: {why}")
        return why is None

    gpu = caps.gpu > 0
    where = f"({caps.describe()})"
    engine = _engine(caps, precision)
    if engine is not None:  # an engine built for this model here (a recurrent one's takes `previous` too)
        path, prec = engine
        return Choice("tensorrt", prec, path, f"tensorrt: the {prec} engine {path.name} built for {files.name} on "
                                              f"this GPU {where}")
    if precision == "int8":
        if caps.onnxruntime and (files.onnx_int8 is not None or files.onnx is not None):  # (the backend says
            # what to run where the INT8 file is missing)
            return Choice("onnxruntime", "int8", None, f"onnxruntime: int8 runs on ONNX Runtime here {where}")
        raise ModelError("int8 needs ONNX Runtime (pip install onnxruntime) or an int8 TensorRT engine "
                         "(edgedenoise build --precision int8)")
    if gpu and caps.triton and caps.torch_cuda and usable("triton"):
        p = "fp16" if precision == "auto" else precision
        return Choice("triton", p, None, f"triton: the fused kernels on the GPU, {p} {where}")
    if gpu and caps.torch_cuda and usable("torch"):
        p = "fp16" if precision == "auto" else precision
        return Choice("torch", p, None, f"torch on the GPU, {p} {where}" + (f"; {'; '.join(passed)}" if passed else ""))
    if precision == "fp16":
        raise ModelError(f"fp16 needs a CUDA GPU with the triton or torch backend, or an fp16 TensorRT engine "
                         f"{where}: use fp32 (or int8 on onnxruntime)")
    if caps.onnxruntime and usable("onnxruntime"):
        return Choice("onnxruntime", "fp32", None, f"onnxruntime on the CPU {where}")
    if caps.torch and files.weights is not None:
        return Choice("torch", "fp32", None, f"torch on the CPU {where}" + (f"; {'; '.join(passed)}" if passed else ""))
    if files.onnx is not None:  # let the backend say what to install
        return Choice("onnxruntime", "fp32", None, f"onnxruntime {where}")
    return Choice("torch", "fp32", None, f"torch {where}")


def choose(backend: str, files: ModelFiles, precision: str = "fp32", caps: Capabilities | None = None) -> Choice:
    """`auto` decided on this machine (`probe`, unless `caps` is given); a named backend as named
    (its precision `auto` resolved: fp16 for triton, fp32 otherwise)."""
    if backend == "auto":
        return decide(files, precision, caps if caps is not None else probe(files))
    if backend == "tensorrt":  # an engine built for this model here, of the precision asked
        caps = caps if caps is not None else probe(files)
        engine = _engine(caps, precision)
        if engine is not None:
            path, prec = engine
            return Choice("tensorrt", prec, path, f"tensorrt: the {prec} engine {path.name} as asked")
        looked = ", ".join(str(f) for f in engine_folders(files)) or "no folder"
        notes = f" ({'; '.join(caps.notes)})" if caps.notes else ""
        raise ModelError(f"the tensorrt backend needs an engine: no {'' if precision == 'auto' else precision + ' '}"
                         f"engine built for {files.name} on this machine in {looked}{notes}; make one with "
                         f"edgedenoise build {files.onnx or 'MODEL.onnx'} --out MODEL.engine, or name it "
                         f"(--model MODEL.engine)")
    if precision == "auto":
        gpu = backend == "triton" or (backend == "torch" and (caps or probe()).torch_cuda)
        precision = "fp16" if gpu else "fp32"
    return Choice(backend, precision, None, f"{backend} as asked")
