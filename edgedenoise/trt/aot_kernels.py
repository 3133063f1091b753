"""The ahead-of-time compiled boundary kernels, as the TensorRT plugins read them.

`edgedenoise kernels build` (kernels/aot.py) writes PTX + cubin per target and a manifest.json;
this module reads the manifest, picks the kernel of one kind, width and dtype for one compute
capability (exactly: a cubin runs only on its own target), and reads the parameter list of its
`.entry` in the PTX. It also names the plugins' interface: namespace, plugin names, and which
kernel parameter each plugin input and output feeds.

Triton's extra parameters (checked with Triton 3.9): the compiled entry takes two trailing
`.u64 .ptr .global` parameters after the signature's runtime arguments, global_scratch and
profile_scratch. Triton's own launcher passes NULL for them when the kernel's
global_scratch_size / profile_scratch_size are 0, which they are for these kernels, and the PTX
never reads them. The manifest records neither the extra parameters nor the scratch sizes, so
the parameter list of the `.entry` in the PTX beside each cubin is read: any parameter past the
signature must be an unused 64-bit pointer (refused otherwise), and is passed as NULL by the
IPluginV3 path (launch.py). The QDP path cannot pass them at all: TensorRT launches an AOT plugin
kernel with (input pointers, extra int32 scalars, output pointers) and nothing else. So its PTX
gets the `.entry` parameter list rewritten into that order (parameters are referenced by name in
the body, so only the declaration moves) with the unused scratch parameters dropped.

No torch, triton, tensorrt or CUDA here: plain files and text.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import EdgeDenoiseError

NAMESPACE = "edgedenoise"
DEFAULT_KERNELS_DIR = "build/kernels"  # where kernels/README.md has `edgedenoise kernels build` write
PLUGIN_NAMES = {"ingest": "Ingest", "egest": "Egest", "egest_gate": "EgestGate", "fuse_egest": "FuseEgest"}
# Plugin tensors named by the kernel parameter each one feeds: (inputs in node order, outputs).
# A framewise graph has Ingest and Egest; a recurrent one (a gate branch fed colour sums) Ingest,
# EgestGate (the tail; the noise and the gate branch's input out) and FuseEgest (the fusion).
PLUGIN_IO = {
    "ingest": (("frame_ptr", "wp_ptr", "b_ptr", "smap_ptr"), ("out_ptr",)),
    "egest": (("h_ptr", "wp_ptr", "b_ptr", "frame_ptr"), ("out_ptr",)),
    "egest_gate": (("h_ptr", "wp_ptr", "b_ptr", "frame_ptr", "prev_ptr", "smap_ptr"), ("noise_ptr", "gin_ptr")),
    "fuse_egest": (("g_ptr", "wp_ptr", "b_ptr", "noise_ptr", "frame_ptr", "prev_ptr"), ("out_ptr",)),
}
GRAPH_KINDS = ({"ingest", "egest"}, {"ingest", "egest_gate", "fuse_egest"})  # framewise, recurrent
_PTX_PARAM_BITS = {"i32": 32, "u32": 32, "i64": 64, "fp32": 32}


class KernelsError(EdgeDenoiseError):
    """AOT kernels that are missing or unusable here; the message says how to rebuild them."""


def cc_int(cc) -> int:
    """87, '8.7', 'sm_87' -> 87."""
    s = str(cc).strip().lower().removeprefix("sm_").removeprefix("sm")
    if "." in s:
        major, minor = s.split(".", 1)
        return int(major) * 10 + int(minor)
    return int(s)


# ---------------------------------------------------------------- manifest and kernels


def _build_cmd(kernels_dir, cc) -> str:
    target = f"sm_{cc}" if cc is not None else "sm_XY"
    return f"edgedenoise kernels build --target {target} --out {kernels_dir}"


def load_manifest(kernels_dir, cc=None) -> dict:
    d = Path(kernels_dir)
    path = d / "manifest.json"
    if not path.exists():
        raise KernelsError(f"no AOT kernels in {d} (no manifest.json): run {_build_cmd(d, cc)}")
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("kernels"), list):
        raise KernelsError(f"{path} is not a kernels manifest: run {_build_cmd(d, cc)}")
    return manifest


@dataclass
class BoundaryKernel:
    """One compiled boundary kernel (a PLUGIN_IO kind) for one target, as the manifest describes it."""

    kind: str
    width: int
    dtype: str
    target: str
    function: str
    signature: dict
    constants: dict
    num_warps: int
    shared: int
    grid: str
    cubin_path: Path
    ptx_path: Path
    cubin_sha256: str
    pointer_align: int = 1  # bytes every buffer's address must be a multiple of (the manifest's; 1 before it said)
    _ptx: str | None = field(default=None, repr=False)

    @property
    def runtime_args(self) -> list[str]:
        """Parameter names the compiled kernel takes, in order (constexprs are compiled in)."""
        return [k for k, t in self.signature.items() if t != "constexpr"]

    @property
    def scalar_args(self) -> list[str]:
        return [k for k in self.runtime_args if not self.signature[k].startswith("*")]

    @property
    def ptx(self) -> str:
        if self._ptx is None:
            self._ptx = self.ptx_path.read_text()
        return self._ptx

    def cubin(self) -> bytes:
        data = self.cubin_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.cubin_sha256:
            raise KernelsError(f"{self.cubin_path} does not match its manifest (sha256): rebuild the kernels with "
                               f"{_build_cmd(self.cubin_path.parent.parent, self.target.removeprefix('sm_'))}")
        return data

    @cached_property
    def extra_params(self) -> int:
        """Parameters the compiled entry takes past the signature (Triton's scratch pointers)."""
        params = ptx_entry_params(self.ptx, self.function)
        n = len(self.runtime_args)
        if len(params) < n:
            raise KernelsError(f"{self.ptx_path}: entry {self.function} has {len(params)} parameters, the manifest "
                               f"signature {n}: rebuild the kernels")
        for (decl, name), arg in zip(params, self.runtime_args):
            bits = 64 if self.signature[arg].startswith("*") else _PTX_PARAM_BITS.get(self.signature[arg], 0)
            if not decl.split()[1].endswith(str(bits)):  # .param .u64 ... / .param .u32 ...
                raise KernelsError(f"{self.ptx_path}: parameter {name} ({decl.strip()}) does not fit argument {arg} "
                                   f"({self.signature[arg]}): rebuild the kernels")
        body = ptx_entry_body(self.ptx, self.function)
        for decl, name in params[n:]:
            if ".u64" not in decl or re.search(rf"\b{re.escape(name)}\b", body):
                raise KernelsError(f"{self.ptx_path}: {self.function} uses its extra parameter {name} (Triton scratch "
                                   "memory), which these plugins do not provide: rebuild with a Triton whose kernels "
                                   "need no scratch")
        return len(params) - n

    def qdp_ptx(self) -> bytes:
        """The PTX with its parameters in TensorRT's AOT plugin order: input pointers (node order),
        int32 scalars, output pointers; Triton's unused scratch parameters dropped."""
        ins, outs = PLUGIN_IO[self.kind]
        names = self.runtime_args
        _ = self.extra_params  # refuses Triton scratch parameters the body uses; unused ones are dropped below
        order = [names.index(a) for a in (*ins, *self.scalar_args, *outs)]
        if sorted(order) != list(range(len(names))):
            raise KernelsError(f"{self.function}: the manifest signature does not match the {self.kind} plugin's "
                               "inputs and outputs")
        return reorder_ptx_params(self.ptx, self.function, order).encode()


def pick_kernel(manifest: dict, kernels_dir, kind: str, width: int, dtype: str, cc) -> BoundaryKernel:
    """The `kind` kernel of this width and dtype compiled for compute capability `cc` (exact match)."""
    d = Path(kernels_dir)
    cc = cc_int(cc)
    target = f"sm_{cc}"
    entries = [e for e in manifest["kernels"] if e.get("variant", {}).get("kind") == kind]
    present = sorted({e["target"] for e in manifest["kernels"]}, key=cc_int)
    if target not in present:
        raise KernelsError(f"{d} has kernels for {', '.join(present) or 'no target'}, not {target} (this GPU): "
                           f"run {_build_cmd(d, cc)}")
    match = [e for e in entries if e["target"] == target and e["variant"].get("width") == width
             and e["variant"].get("dtype") == dtype]
    if not match:
        have = sorted({f"w{e['variant']['width']} {e['variant']['dtype']}" for e in entries if e["target"] == target})
        raise KernelsError(f"{d} has no {kind} kernel for width {width} {dtype} on {target} (has: "
                           f"{', '.join(have) or 'none'}): run {_build_cmd(d, cc)}")
    e = match[0]
    return BoundaryKernel(kind=kind, width=width, dtype=dtype, target=target, function=e["function"],
                          signature=dict(e["signature"]), constants=dict(e["constants"]),
                          num_warps=int(e["num_warps"]), shared=int(e["shared_bytes"]), grid=e["grid"],
                          cubin_path=d / e["cubin"], ptx_path=d / e["ptx"], cubin_sha256=e["cubin_sha256"],
                          pointer_align=int(manifest.get("pointer_align", 1)))


# ---------------------------------------------------------------- PTX entry parameters


def _entry_span(ptx: str, function: str) -> tuple[int, int]:
    m = re.search(rf"\.entry\s+{re.escape(function)}\s*\(", ptx)
    if not m:
        raise KernelsError(f"no .entry {function} in the PTX: rebuild the kernels")
    close = ptx.index(")", m.end())
    return m.end(), close


def ptx_entry_params(ptx: str, function: str) -> list[tuple[str, str]]:
    """[(declaration, name)] of the kernel's parameters, in declaration (= launch) order."""
    start, close = _entry_span(ptx, function)
    decls = [p.strip() for p in ptx[start:close].split(",") if p.strip()]
    return [(p, p.split()[-1]) for p in decls]


def ptx_entry_body(ptx: str, function: str) -> str:
    _, close = _entry_span(ptx, function)
    nxt = ptx.find(".entry", close)
    return ptx[close: nxt if nxt >= 0 else len(ptx)]


def reorder_ptx_params(ptx: str, function: str, order: list[int]) -> str:
    """Rewrite the .entry declaration to take parameters `order` (indices into the declared list).
    Declared parameters left out must be unused by the body."""
    start, close = _entry_span(ptx, function)
    params = ptx_entry_params(ptx, function)
    body = ptx_entry_body(ptx, function)
    for i, (_, name) in enumerate(params):
        if i not in order and re.search(rf"\b{re.escape(name)}\b", body):
            raise KernelsError(f"{function}: parameter {name} is used, it cannot be dropped")
    decl = ",\n".join("\t" + params[i][0] for i in order)
    return ptx[:start] + "\n" + decl + "\n" + ptx[close:]

