"""Ahead-of-time build of the Triton kernels: PTX and cubin for NVIDIA targets, no GPU needed.

    from edgedenoise_kernels.aot import ConvVariant, build
    manifest = build([ConvVariant(3, 3, 1, 1, "relu", False, 32, 32, "fp16", 24, 24)], ["sm_87"], "build/kernels")

Each variant (a ConvVariant, or a BoundaryVariant for the ingest/egest kernels) fixes the
kernel's compile-time constants (window, stride, padding, activation, residual, block sizes)
and its dtype; `build` compiles it with
`triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))` for every target and writes
`<name>.ptx`, `<name>.cubin` and one `manifest.json` (kernel name, signature, constants,
num_warps, shared memory, Triton version, target, cubin sha256). A loader on a device without
Triton (a Jetson plugin) reads the manifest to launch the cubin.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ACT_CODES = {"none": 0, "relu": 1}
# PTX ISA 8.5 (CUDA 12.5, what JetPack 6's CUDA 12.6 driver JIT-compiles): newer Triton releases
# emit the ISA of the CUDA they bundle (8.8 with Triton 3.9), which an older driver refuses to load.
PTX_VERSION = 85
BLOCK_M = 64
NUM_WARPS = 4
POINTER_ALIGN = 16  # bytes: the kernels are compiled for buffers aligned so (CUDA and TensorRT allocate at 256)


@dataclass(frozen=True)
class ConvVariant:
    kh: int
    kw: int
    stride: int
    pad: int
    act: str
    residual: bool
    block_n: int
    block_k: int
    dtype: str  # fp16 | fp32
    ci: int  # input and output channels: compiled in (conv_kernels.py says why)
    co: int

    @property
    def name(self) -> str:
        return (f"conv{self.kh}x{self.kw}s{self.stride}p{self.pad}_{self.act}{'_res' if self.residual else ''}"
                f"_c{self.ci}to{self.co}_n{self.block_n}k{self.block_k}_{self.dtype}")


@dataclass(frozen=True)
class BoundaryVariant:
    """The ingest (uint8 frame -> head conv) or egest (tail conv -> uint8 frame) kernel for one
    model width: `width` is the head's output / the tail's input channel count. A recurrent model
    with a gate branch ends in egest_gate (the tail conv, width as egest's; dtype the features',
    its two outputs fp32) and fuse_egest (width: the gate branch's; fp32 in, as the TensorRT
    plugins feed it)."""

    kind: str  # ingest | egest | egest_gate | fuse_egest
    width: int
    dtype: str  # fp16 | fp32

    @property
    def name(self) -> str:
        return f"{self.kind}_w{self.width}_{self.dtype}"


def parse_targets(spec: str | list[str]) -> list[int]:
    """'sm_72,sm_87,sm_90' -> [72, 87, 90]."""
    items = spec.split(",") if isinstance(spec, str) else spec
    out = []
    for t in items:
        t = t.strip().lower().removeprefix("sm_").removeprefix("sm")
        if not t.isdigit() or int(t) < 70:
            raise ValueError(f"bad target {t!r}: use sm_XY with compute capability >= 7.0 (e.g. sm_87)")
        out.append(int(t))
    return out


def conv_signature(dtype: str) -> dict:
    p = f"*{dtype}"
    sig = {"x_ptr": p, "wp_ptr": p, "b_ptr": "*fp32", "res_ptr": p, "out_ptr": p}
    # in the kernel's parameter order; the channel counts are compiled in (conv_kernels.py says why)
    sig.update({k: "constexpr" if k in ("CI", "CO") else "i32" for k in ("N", "H", "W", "CI", "HO", "WO", "CO")})
    sig.update({k: "constexpr" for k in ("KH", "KW", "STRIDE", "PAD", "ACT", "HAS_RES", "BLOCK_M", "BLOCK_N",
                                          "BLOCK_K", "IEEE")})
    return sig


def boundary_signature(kind: str, dtype: str) -> dict:
    p = f"*{dtype}"
    if kind == "ingest":
        sig = {"frame_ptr": "*u8", "wp_ptr": p, "b_ptr": "*fp32", "smap_ptr": "*fp32", "out_ptr": p}
        sig.update({k: "i32" for k in ("N", "H", "W", "HH", "WH")})
        sig.update({k: "constexpr" for k in ("CO", "CIN", "BLOCK_M", "BLOCK_N", "BLOCK_K", "IEEE")})  # CO: width
    else:
        sig = {
            "egest": {"h_ptr": p, "wp_ptr": p, "b_ptr": "*fp32", "frame_ptr": "*u8", "out_ptr": "*u8"},
            "egest_gate": {"h_ptr": p, "wp_ptr": p, "b_ptr": "*fp32", "frame_ptr": "*u8", "prev_ptr": "*u8",
                           "smap_ptr": "*fp32", "noise_ptr": "*fp32", "gin_ptr": "*fp32"},
            "fuse_egest": {"g_ptr": p, "wp_ptr": p, "b_ptr": "*fp32", "noise_ptr": "*fp32", "frame_ptr": "*u8",
                           "prev_ptr": "*u8", "out_ptr": "*u8"},
        }[kind]
        sig.update({k: "i32" for k in ("N", "H", "W", "HH", "WH")})
        sig.update({k: "constexpr" for k in ("CI", "BLOCK_M", "BLOCK_K", "IEEE")})
    return sig


def _spec(v):
    """(jit function, signature, constants, grid description) of a variant."""
    from .blocks import conv_blocks
    from .boundary_kernels import egest_conv_kernel, egest_gate_kernel, fuse_egest_kernel, ingest_conv_kernel
    from .conv_kernels import conv2d_nhwc_kernel

    if isinstance(v, ConvVariant):
        consts = dict(CI=v.ci, CO=v.co, KH=v.kh, KW=v.kw, STRIDE=v.stride, PAD=v.pad, ACT=ACT_CODES[v.act],
                      HAS_RES=v.residual, BLOCK_M=BLOCK_M, BLOCK_N=v.block_n, BLOCK_K=v.block_k, IEEE=v.dtype == "fp32")
        return conv2d_nhwc_kernel, conv_signature(v.dtype), consts, "(cdiv(N*HO*WO, BLOCK_M), cdiv(CO, BLOCK_N), 1)"
    if v.kind == "ingest":
        bn, _ = conv_blocks(13, v.width)
        consts = dict(CO=v.width, CIN=13, BLOCK_M=BLOCK_M, BLOCK_N=bn, BLOCK_K=16, IEEE=v.dtype == "fp32")
        return ingest_conv_kernel, boundary_signature("ingest", v.dtype), consts, \
            "(cdiv(N*HH*WH, BLOCK_M), cdiv(CO, BLOCK_N), 1)"
    _, bk = conv_blocks(v.width, 12)
    consts = dict(CI=v.width, BLOCK_M=BLOCK_M, BLOCK_K=bk, IEEE=v.dtype == "fp32")
    fn = {"egest": egest_conv_kernel, "egest_gate": egest_gate_kernel, "fuse_egest": fuse_egest_kernel}[v.kind]
    return fn, boundary_signature(v.kind, v.dtype), consts, "(cdiv(N*HH*WH, BLOCK_M), 1, 1)"


def build(variants: list, targets: list[int], out_dir: str | Path, progress=None) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for cc in targets:
        tdir = out / f"sm_{cc}"
        tdir.mkdir(exist_ok=True)
        for v in variants:
            t0 = time.time()
            fn, sig, consts, grid = _spec(v)
            # every pointer 16-byte aligned, as the JIT marks an aligned tensor's: without it the compiler
            # assumes nothing and emits 2-byte loads and stores and no asynchronous copies
            # (benchmarks/kernel_codegen.py); launchers check it (trt/launch.py)
            attrs = {(fn.arg_names.index(k),): [["tt.divisibility", POINTER_ALIGN]]
                     for k, t in sig.items() if t.startswith("*")}
            compiled = triton.compile(ASTSource(fn, sig, consts, attrs), target=GPUTarget("cuda", cc, 32),
                                      options={"num_warps": NUM_WARPS, "ptx_version": PTX_VERSION})
            (tdir / f"{v.name}.ptx").write_text(compiled.asm["ptx"])
            cubin = compiled.asm["cubin"]
            (tdir / f"{v.name}.cubin").write_bytes(cubin)
            entries.append({
                "name": v.name,
                "target": f"sm_{cc}",
                "function": compiled.metadata.name,
                "variant": asdict(v),
                "signature": sig,
                "constants": consts,
                "num_warps": NUM_WARPS,
                "shared_bytes": compiled.metadata.shared,
                # Triton's scratch buffers (trailing pointer parameters); 0 = the launcher passes NULL
                "global_scratch_bytes": int(getattr(compiled.metadata, "global_scratch_size", 0) or 0),
                "profile_scratch_bytes": int(getattr(compiled.metadata, "profile_scratch_size", 0) or 0),
                "num_ctas": int(getattr(compiled.metadata, "num_ctas", 1) or 1),
                "ptx": f"sm_{cc}/{v.name}.ptx",
                "cubin": f"sm_{cc}/{v.name}.cubin",
                "cubin_sha256": hashlib.sha256(cubin).hexdigest(),
                "grid": grid,
                "seconds": round(time.time() - t0, 2),
            })
            if progress is not None:
                progress(entries[-1])
    manifest = {"triton_version": triton.__version__, "block_m": BLOCK_M, "ptx_version": PTX_VERSION,
                "pointer_align": POINTER_ALIGN,
                "kernels": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
