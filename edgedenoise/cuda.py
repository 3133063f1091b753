"""CUDA through cuda-python: the one home of the runtime and driver API calls and their errors.

The TensorRT runner (device memory, its stream, copies: the runtime API) and the Triton plugins
(cubins loaded and launched on TensorRT's stream: the driver API) call CUDA through cuda-python,
which JetPack and the TensorRT wheels pair with; no torch. cuda-python answers every call with a
tuple (error, *values); `check(result, what)` returns the values and raises `CudaError` naming the
call when the error is not 0. cuda-python is imported when a function here first needs it.
"""
from __future__ import annotations

from .errors import EdgeDenoiseError

INSTALL = "pip install cuda-python"


class CudaError(EdgeDenoiseError):
    """cuda-python missing, or a CUDA call that failed; the message names the call."""


def runtime():
    """The CUDA runtime API module (`cuda.bindings.runtime`; `cuda.cudart` in older releases)."""
    try:
        from cuda.bindings import runtime as rt
    except ImportError:
        try:
            from cuda import cudart as rt
        except ImportError:
            raise CudaError(f"the TensorRT runner and the Triton plugins need cuda-python: {INSTALL}") from None
    return rt


def driver():
    """The CUDA driver API module (`cuda.bindings.driver`; `cuda.cuda` in older releases)."""
    try:
        from cuda.bindings import driver as drv
    except ImportError:
        try:
            from cuda import cuda as drv
        except ImportError:
            raise CudaError(f"the TensorRT runner and the Triton plugins need cuda-python: {INSTALL}") from None
    return drv


def check(result, what: str):
    """The value(s) of a cuda-python call's (error, *values) result; CudaError if error != 0."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise CudaError(f"{what} failed: {err}")
    return rest[0] if len(rest) == 1 else rest


def device_cc(device: int = 0) -> int:
    """Compute capability of `device` as an integer (8.7 -> 87), through the driver API."""
    drv = driver()
    check(drv.cuInit(0), "cuInit")
    dev = check(drv.cuDeviceGet(device), "cuDeviceGet")
    a = drv.CUdevice_attribute
    major, minor = (check(drv.cuDeviceGetAttribute(x, dev), "cuDeviceGetAttribute") for x in
                    (a.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, a.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR))
    return int(major) * 10 + int(minor)


def device_name_cc(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of `device`, through the runtime API."""
    props = check(runtime().cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.strip("\x00 "), f"{props.major}.{props.minor}"
