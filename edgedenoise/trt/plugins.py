"""The fused Triton boundary kernels as TensorRT plugins: which flavour, and registering it.

A frame-native engine (`edgedenoise build --kernels triton`) runs the ingest and egest kernels
compiled ahead of time by `edgedenoise kernels build`. Two plugin flavours, both in plugin
namespace `edgedenoise`, names `Ingest`/`Egest` (a recurrent model's graph: `Ingest`, `EgestGate`,
`FuseEgest`, graph.py):

- TensorRT >= 10.9: ahead-of-time Quickly Deployable Plugins (`tensorrt.plugin`, `@trtp.aot_impl`;
  qdp.py). TensorRT embeds the kernel's PTX in the engine and launches it itself; running such an
  engine needs no Python plugin code.
- TensorRT 10.3 (JetPack 6), or when asked for: Python `IPluginV3` classes (ipluginv3.py) whose
  enqueue loads the target's cubin and launches it on TensorRT's stream (launch.py). The runner
  registers them (`register_plugins`) before it deserializes such an engine.

Feature maps cross the plugin boundary channel-last, as the kernels read and write them: FP16 in
TensorFormat.HWC8 (dense NHWC when the width is a multiple of 8, which every model size is), FP32
in TensorFormat.HWC. A recurrent graph's noise (12 channels), the gate branch's input (3) and its
features (the branch's width, 12 in the shipped models) cross as FP32 HWC in either precision:
HWC8 would pad them to 16 or 8 channels, which the kernels do not stride over; TensorRT converts
the branch's FP16 features itself. The uint8 frames, sigma, weights and biases are LINEAR. The graph the parser
reads is prepared by graph.prepare_onnx.
"""
from __future__ import annotations

from .. import cuda
from . import version_tuple
from .aot_kernels import DEFAULT_KERNELS_DIR, KernelsError
from .launch import KernelSet

QDP_MIN_VERSION = (10, 9)  # AOT Quickly Deployable Plugins
FLAVOURS = ("auto", "qdp", "ipluginv3")

# One flavour per process: TensorRT's plugin registry keeps what was registered first. "keep"
# holds the Python creators (the registry does not keep the objects alive).
_STATE: dict = {"flavour": None, "kernels": None, "keep": []}


def has_qdp_aot() -> bool:
    """Whether this TensorRT has ahead-of-time Quickly Deployable Plugins."""
    try:
        import tensorrt.plugin as trtp
    except ImportError:
        return False
    return hasattr(trtp, "aot_impl") and hasattr(trtp, "KernelLaunchParams")


def plugin_flavour(trt, prefer: str = "auto") -> str:
    """'qdp' (AOT Quickly Deployable Plugins) or 'ipluginv3' for this TensorRT."""
    if prefer not in FLAVOURS:
        raise KernelsError(f"unknown plugin flavour {prefer!r}: auto, qdp or ipluginv3")
    qdp_ok = version_tuple(trt.__version__) >= QDP_MIN_VERSION and has_qdp_aot()
    if prefer == "qdp" and not qdp_ok:
        raise KernelsError("ahead-of-time Quickly Deployable Plugins need TensorRT >= 10.9 "
                           f"(this is {trt.__version__}): use the IPluginV3 plugins")
    if prefer == "ipluginv3":
        return "ipluginv3"
    return "qdp" if qdp_ok else "ipluginv3"


def register_plugins(trt, kernels_dir=DEFAULT_KERNELS_DIR, prefer: str = "auto", cc=None) -> str:
    """Make the boundary plugins (Ingest, Egest, EgestGate, FuseEgest) of namespace `edgedenoise`
    known to TensorRT, backed by the AOT kernels in `kernels_dir` for compute capability `cc`
    (default: device 0's). Call it before building from a frame-native graph and before
    deserializing an engine with IPluginV3 plugins. Returns the flavour: 'qdp' or 'ipluginv3'.
    One flavour per process."""
    flavour = plugin_flavour(trt, prefer)
    if _STATE["flavour"] not in (None, flavour):
        raise KernelsError(f"the {_STATE['flavour']} plugins are already registered in this process; "
                           f"the {flavour} ones need a fresh process")
    _STATE["kernels"] = KernelSet(kernels_dir, cuda.device_cc() if cc is None else cc)
    if _STATE["flavour"] is None:
        if flavour == "qdp":
            from .qdp import register
        else:
            from .ipluginv3 import register
        _STATE["keep"].extend(register(trt, registered_kernels))  # passed: qdp/ipluginv3 do not import this module
        _STATE["flavour"] = flavour
    return flavour


def registered_kernels() -> KernelSet:
    """The kernels the registered plugins run (what their enqueue / aot_impl asks for)."""
    if _STATE["kernels"] is None:
        raise KernelsError("the edgedenoise plugins have no kernels: call register_plugins first")
    return _STATE["kernels"]
