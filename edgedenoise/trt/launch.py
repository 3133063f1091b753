"""Launching the boundary kernels: launch planning, and the cubins loaded and launched.

Launch parameters follow the manifest, as the launchers in kernels/boundary.py do: grid from the
manifest's grid expression (cdiv(N*HH*WH, BLOCK_M), ...), 32 * num_warps threads, the compiled
shared-memory size, arguments in the order of the manifest signature (constexprs left out), then
Triton's unused scratch pointers as NULL (aot_kernels.py says why). Planning is pure Python;
`KernelSet` loads each cubin once (cuModuleLoadData) and launches it with cuLaunchKernel on a
given stream, through edgedenoise/cuda.py: the IPluginV3 plugins' enqueue.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgedenoise_kernels.blocks import cdiv, half_grid  # torch- and triton-free

from .. import cuda
from .aot_kernels import BoundaryKernel, KernelsError, cc_int, load_manifest, pick_kernel

_ARG_NP = {"i32": np.int32, "i64": np.int64, "u32": np.uint32, "fp32": np.float32}


def eval_grid(expr: str, names: dict, div=cdiv) -> tuple:
    """Evaluate the manifest's grid expression, e.g. '(cdiv(N*HH*WH, BLOCK_M), cdiv(CO, BLOCK_N), 1)'.
    Only names, integers, + - * // and cdiv(): no eval(). `div` may be symbolic (TensorRT)."""

    def ev(n):
        match n:
            case ast.Expression(body=b):
                return ev(b)
            case ast.Tuple(elts=elts):
                return tuple(ev(e) for e in elts)
            case ast.Constant(value=int() as v) if not isinstance(v, bool):
                return v
            case ast.Name(id=name) if name in names:
                return names[name]
            case ast.Call(func=ast.Name(id="cdiv"), args=[a, b], keywords=[]):
                x, y = ev(a), ev(b)
                return cdiv(x, y) if isinstance(x, int) and isinstance(y, int) else div(x, y)
            case ast.BinOp(left=l, op=op, right=r) if isinstance(op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)):
                x, y = ev(l), ev(r)
                if isinstance(op, (ast.Add, ast.Mult)) and isinstance(x, int) and not isinstance(y, int):
                    x, y = y, x  # symbolic operand first: TensorRT's expressions have no __radd__/__rmul__
                return {ast.Add: lambda: x + y, ast.Sub: lambda: x - y, ast.Mult: lambda: x * y,
                        ast.FloorDiv: lambda: x // y}[type(op)]()
        raise KernelsError(f"unexpected grid expression {expr!r} in the kernels manifest: rebuild the kernels")

    grid = ev(ast.parse(expr, mode="eval"))
    if not isinstance(grid, tuple) or not 1 <= len(grid) <= 3:
        raise KernelsError(f"grid expression {expr!r} in the kernels manifest is not a 1-3 tuple")
    return tuple(grid) + (1,) * (3 - len(grid))


@dataclass(frozen=True)
class Launch:
    """One kernel launch: grid, block, dynamic shared memory and the argument list, in the order
    the compiled kernel takes it ((name, manifest type, value); Triton's extra parameters last, NULL)."""

    function: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared: int
    args: tuple[tuple[str, str, int], ...]

    def kernel_params(self) -> tuple[list[np.ndarray], np.ndarray]:
        """cuLaunchKernel's kernelParams: one buffer per argument and the array of their addresses
        (keep both alive until the launch call returns)."""
        vals = [np.array([v], dtype=np.uint64 if t.startswith("*") or t == "scratch" else _ARG_NP[t])
                for _, t, v in self.args]
        return vals, np.array([a.ctypes.data for a in vals], dtype=np.uint64)


def plan_launch(kernel: BoundaryKernel, scalars: dict, pointers: dict) -> Launch:
    grid = eval_grid(kernel.grid, {**kernel.constants, **scalars})
    args = []
    for name in kernel.runtime_args:
        src = pointers if kernel.signature[name].startswith("*") else scalars
        if name not in src:
            raise KernelsError(f"{kernel.function}: no value for argument {name}")
        if src is pointers and int(src[name]) % kernel.pointer_align:
            raise KernelsError(f"{kernel.function}: buffer {name} at {int(src[name]):#x} is not "
                               f"{kernel.pointer_align}-byte aligned, as the kernels were compiled to expect")
        args.append((name, kernel.signature[name], int(src[name])))
    args += [(f"extra{i}", "scratch", 0) for i in range(kernel.extra_params)]
    return Launch(kernel.function, grid, (32 * kernel.num_warps, 1, 1), kernel.shared, tuple(args))


def ingest_launch(kernel: BoundaryKernel, n: int, h: int, w: int, multiple: int, pointers: dict) -> Launch:
    """frame (n, h, w, 3) uint8 -> features (n, HH, WH, width); pointers by kernel parameter name."""
    if (-h) % multiple >= h or (-w) % multiple >= w:
        raise KernelsError(f"frame {w}x{h} is too small to pad to a multiple of {multiple} by reflection")
    hh, wh = half_grid(h, w, multiple)
    # CO: an argument only in kernels built before the width was compiled in (plan_launch takes what the manifest lists)
    return plan_launch(kernel, {"N": n, "H": h, "W": w, "HH": hh, "WH": wh, "CO": kernel.width}, pointers)


def egest_launch(kernel: BoundaryKernel, n: int, h: int, w: int, hh: int, wh: int, pointers: dict) -> Launch:
    """features (n, hh, wh, width) + frame (n, h, w, 3) -> frame (n, h, w, 3) uint8 (egest); the same
    grid and scalars for a recurrent model's egest_gate (-> noise and the gate branch's input) and
    fuse_egest (the branch's features, width its own -> frame). CI: as CO in ingest_launch."""
    return plan_launch(kernel, {"N": n, "H": h, "W": w, "HH": hh, "WH": wh, "CI": kernel.width}, pointers)


class KernelSet:
    """The boundary kernels of one kernels folder for one compute capability; loads each cubin
    once (in the current CUDA context) and launches it on a given stream."""

    def __init__(self, kernels_dir, cc, driver=None):
        self.dir = Path(kernels_dir)
        self.cc = cc_int(cc)
        self.manifest = load_manifest(self.dir, self.cc)
        self._driver = driver
        self._kernels: dict = {}
        self._functions: dict = {}
        self._images: list = []  # module images stay referenced while loaded

    def kernel(self, kind: str, width: int, dtype: str) -> BoundaryKernel:
        key = (kind, width, dtype)
        if key not in self._kernels:
            self._kernels[key] = pick_kernel(self.manifest, self.dir, kind, width, dtype, self.cc)
        return self._kernels[key]

    def _function(self, kernel: BoundaryKernel, drv):
        if kernel.cubin_sha256 not in self._functions:
            image = np.frombuffer(kernel.cubin(), dtype=np.uint8).copy()
            module = cuda.check(drv.cuModuleLoadData(image), f"cuModuleLoadData({kernel.cubin_path.name})")
            fn = cuda.check(drv.cuModuleGetFunction(module, kernel.function.encode()),
                            f"cuModuleGetFunction({kernel.function})")
            if kernel.shared > 48 * 1024:  # above the default: opt in, as Triton's loader does
                attr = drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
                cuda.check(drv.cuFuncSetAttribute(fn, attr, kernel.shared), "cuFuncSetAttribute")
            self._images.append((image, module))
            self._functions[kernel.cubin_sha256] = fn
        return self._functions[kernel.cubin_sha256]

    def launch(self, kernel: BoundaryKernel, launch: Launch, stream: int) -> None:
        if launch.grid[0] * launch.grid[1] * launch.grid[2] == 0:
            return
        drv = self._driver or cuda.driver()
        fn = self._function(kernel, drv)
        vals, params = launch.kernel_params()
        cuda.check(drv.cuLaunchKernel(fn, *launch.grid, *launch.block, launch.shared, int(stream), params, 0),
                   f"cuLaunchKernel({kernel.function})")
        del vals

