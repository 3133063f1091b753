"""`edgedenoise doctor`: which backends work on this machine, and why not where they don't.

Each check imports its library in its own try block, so a broken or missing one is reported
as a line rather than a crash; nothing here is imported by the runtime path.
"""
from __future__ import annotations

import platform


def _check(name: str, fn) -> tuple[str, bool, str]:
    try:
        return name, True, fn()
    except Exception as e:  # ImportError, or a library that imports but cannot run
        return name, False, f"{e.__class__.__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


def _onnxruntime() -> str:
    import onnxruntime as ort

    return f"{ort.__version__}, providers {', '.join(ort.get_available_providers())}{int8_note()}"


def int8_note(cpuinfo: str = "/proc/cpuinfo") -> str:
    """What INT8 on the CPU is worth here (backends.choice.x86_vnni); empty where not x86 Linux."""
    from .backends.choice import x86_vnni

    vnni = x86_vnni(cpuinfo)
    if vnni is None:
        return ""
    if vnni:
        return "; CPU int8: VNNI (fast)"
    return ("; CPU int8: no VNNI on this CPU, so int8 runs about as fast as fp32 and loses more quality: "
            "prefer fp32 (`--model auto` tries no int8 here)")


def _torch() -> str:
    import torch

    if torch.cuda.is_available():
        cc = torch.cuda.get_device_capability(0)
        dev = f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)} (sm_{cc[0]}{cc[1]})"
    else:
        dev = "CPU only (no CUDA device visible)"
    return f"{torch.__version__}, {dev}"


def _triton() -> str:
    import triton

    try:
        import torch

        gpu = torch.cuda.is_available()
    except ImportError:
        gpu = False
    note = "" if gpu else "; no CUDA GPU here: kernels run only under TRITON_INTERPRET=1 or compile ahead of time"
    return f"{triton.__version__}{note}"


def _tensorrt() -> str:
    import tensorrt as trt

    plugin = ", tensorrt.plugin available" if _has_trt_plugin() else ", no tensorrt.plugin (< 10.6)"
    return f"{trt.__version__}{plugin}"


def _has_trt_plugin() -> bool:
    try:
        import tensorrt.plugin  # noqa: F401

        return True
    except ImportError:
        return False


def _opencv() -> str:
    import cv2

    from .runtime.sources import has_gstreamer

    gst = has_gstreamer()
    why = "no (csi:// and gst: sources need an OpenCV built with it)"
    return f"{cv2.__version__}, GStreamer " + ("yes" if gst else why)


def report() -> list[tuple[str, bool, str]]:
    return [
        _check("onnxruntime", _onnxruntime),
        _check("torch", _torch),
        _check("triton", _triton),
        _check("tensorrt", _tensorrt),
        _check("opencv", _opencv),
    ]


def main() -> int:
    print(f"edgedenoise doctor: Python {platform.python_version()} on {platform.machine()} ({platform.platform()})")
    rows = report()
    for name, ok, detail in rows:
        print(f"  {name:<12} {'ok  ' if ok else 'no  '} {detail}")
    ok = {n for n, good, _ in rows if good}
    usable = [b for b in ("onnxruntime", "torch") if b in ok]
    print(f"backends usable now: {', '.join(usable) or 'none (install the runtime extra: pip install -e .[runtime])'}")
    return 0 if usable else 1
