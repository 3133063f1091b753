"""Keep freed memory in the process for the next frame, instead of handing it back to the system.

A frame's way through the runtime (uint8 in, float tensors, ONNX Runtime's output, the blend's
float average) makes and frees arrays of megabytes every frame. glibc's malloc hands blocks that
large back to the system when they are freed (a block over its mmap threshold is unmapped; free
space over its trim threshold at the top of the heap is trimmed), so the next frame's arrays are
mapped afresh, and the kernel zeroes every 4 KB page at its first touch. glibc adjusts both
thresholds itself as blocks are freed, so how often that happens depends on what the process
allocated before: at 640x480 on ONNX Runtime, `tiny` alone took 2 443 page faults a frame, `tiny`
with the blend 466, `default` fp32 none.

`keep_freed_memory()` fixes both thresholds high (mallopt) so that freed blocks stay in the heap and
are reused: 0-10 faults a frame in every case, and `tiny` fp32 went from 18.9 to 13.2 ms a frame,
`tiny` int8 from 19.8 to 12.3, `default` int8 from 30.1 to 25.7; the cases glibc had already
settled kept their time (benchmarks/memory.py, 2-core AMD EPYC with VNNI, ONNX Runtime 1.32,
2026-12-06). The process's peak memory stays what it was (it keeps only what it has used).

`Denoiser` calls it when it is made, so `run`, `bench`, `denoise`, `eval` and the API get it;
EDGEDENOISE_MALLOC=system leaves malloc as the system set it. It is glibc's (Linux, JetPack);
elsewhere it does nothing and says so by returning False. ctypes only."""
from __future__ import annotations

import ctypes
import os
import platform

# mallopt's parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc caps the mmap threshold at 32 MiB on 64-bit systems (4 MiB x sizeof(long)); a 1080p float
# BGR frame (24 MiB) is under it. Blocks over it (4K float frames) are still mapped per use.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20

_applied: bool | None = None


def glibc() -> bool:
    """Whether this process's malloc is glibc's (where mallopt exists)."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Raise glibc malloc's mmap and trim thresholds (the module docstring), once per process.
    Returns whether they are raised: False where malloc is not glibc's, where mallopt refused (a
    32-bit system caps the mmap threshold lower), or where EDGEDENOISE_MALLOC=system."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("EDGEDENOISE_MALLOC", "").strip().lower() == "system":
        return False
    if not glibc():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # the mmap threshold first: setting either one stops glibc's own adjustment of both
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
