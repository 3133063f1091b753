"""The fused Triton boundary kernels (kernels/boundary_kernels.py) as TensorRT plugins.

A frame-native engine (`edgedenoise build --kernels triton`) runs the ingest and egest kernels
compiled ahead of time by `edgedenoise kernels build` (kernels/aot.py: PTX + cubin per target and a
manifest.json). Two plugin flavours, both in plugin namespace `edgedenoise`, names `Ingest`/`Egest`:

- TensorRT >= 10.9: ahead-of-time Quickly Deployable Plugins (`tensorrt.plugin`, `@trtp.aot_impl`).
  TensorRT embeds the kernel's PTX in the engine and launches it itself; running such an engine
  needs no Python plugin code.
- TensorRT 10.3 (JetPack 6), or when asked for: Python `IPluginV3` classes whose enqueue loads the
  target's cubin (cuModuleLoadData) and launches it with cuLaunchKernel on TensorRT's stream. The
  runner registers them (`register_plugins`) before it deserializes such an engine.

How the graph reaches the plugins (`prepare_onnx`): TensorRT's ONNX parser maps a node of an unknown
op to the plugin creator named by its op_type, in the namespace given by the node's
`plugin_namespace` attribute (the ONNX domain is ignored), hands the creator the node attributes
that match the creator's field names, and turns every node input -- initializers included -- into
a plugin input tensor (constants become IConstantLayer outputs). So the frame-native graph is
rewritten in memory before parsing: each boundary node gets `plugin_namespace`, its weight
initializer is replaced by the weight already packed the way the kernel reads it ((9*CIN, CO),
kernels/conv.pack_weight's layout, in the kernel's dtype), and the noise-map scale of Ingest is
folded into the packed weight's map-channel rows, so that the kernel takes sigma itself as its
`smap` (the head conv is linear in the map channel: w * (sigma * scale) == (w * scale) * sigma).
The weights thus reach the kernel as constant input tensors that TensorRT keeps in the engine; the
plugin fields are only small integers (multiple, width, half). The nodes' inputs are put in the
order the kernel takes its pointers: Ingest (frame, wp, bias, sigma), Egest (h, wp, bias, frame).

Feature maps cross the plugin boundary channel-last, as the kernels read and write them: FP16 in
TensorFormat.HWC8 (dense NHWC when the width is a multiple of 8, which every model size is), FP32
in TensorFormat.HWC. The uint8 frame, sigma, weights and biases are LINEAR.

Launch parameters follow the manifest, as the launchers in kernels/boundary.py do: grid from the
manifest's grid expression (cdiv(N*HH*WH, BLOCK_M), ...), 32 * num_warps threads, the compiled
shared-memory size, arguments in the order of the manifest signature (constexprs left out).

Triton's extra parameters (checked with Triton 3.9): the compiled entry takes two trailing
`.u64 .ptr .global` parameters after the signature's runtime arguments, global_scratch and
profile_scratch. Triton's own launcher passes NULL for them when the kernel's
global_scratch_size / profile_scratch_size are 0, which they are for these kernels, and the PTX
never reads them. The manifest records neither the extra parameters nor the scratch sizes, so
this module reads the parameter list of the `.entry` in the PTX beside each cubin: any parameter
past the signature must be an unused 64-bit pointer (refused otherwise), and is passed as NULL by
the IPluginV3 path. The QDP path cannot pass them at all: TensorRT launches an AOT plugin kernel
with (input pointers, extra int32 scalars, output pointers) and nothing else. So its PTX gets the
`.entry` parameter list rewritten into that order (parameters are referenced by name in the
body, so only the declaration moves) with the unused scratch parameters dropped.

Nothing here imports torch or triton; tensorrt, tensorrt.plugin, onnx and cuda-python are
imported only by the functions that need them.
"""
import ast
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from edgedenoise_kernels.blocks import cdiv, half_grid  # torch- and triton-free

from .errors import EdgeDenoiseError
from .onnxweights import fold_weight_casts

NAMESPACE = "edgedenoise"
DEFAULT_KERNELS_DIR = "build/kernels"  # where kernels/README.md has `edgedenoise kernels build` write
QDP_MIN_VERSION = (10, 9)  # AOT Quickly Deployable Plugins
PLUGIN_NAMES = {"ingest": "Ingest", "egest": "Egest"}
# Plugin tensors named by the kernel parameter each one feeds: (inputs in node order, outputs).
PLUGIN_IO = {
    "ingest": (("frame_ptr", "wp_ptr", "b_ptr", "smap_ptr"), ("out_ptr",)),
    "egest": (("h_ptr", "wp_ptr", "b_ptr", "frame_ptr"), ("out_ptr",)),
}
_ARG_NP = {"i32": np.int32, "i64": np.int64, "u32": np.uint32, "fp32": np.float32}
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
    """One compiled ingest or egest kernel for one target, as the manifest describes it."""

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
                          cubin_path=d / e["cubin"], ptx_path=d / e["ptx"], cubin_sha256=e["cubin_sha256"])


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


# ---------------------------------------------------------------- launch planning


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
        args.append((name, kernel.signature[name], int(src[name])))
    args += [(f"extra{i}", "scratch", 0) for i in range(kernel.extra_params)]
    return Launch(kernel.function, grid, (32 * kernel.num_warps, 1, 1), kernel.shared, tuple(args))


def ingest_launch(kernel: BoundaryKernel, n: int, h: int, w: int, multiple: int, pointers: dict) -> Launch:
    """frame (n, h, w, 3) uint8 -> features (n, HH, WH, width); pointers by kernel parameter name."""
    if (-h) % multiple >= h or (-w) % multiple >= w:
        raise KernelsError(f"frame {w}x{h} is too small to pad to a multiple of {multiple} by reflection")
    hh, wh = half_grid(h, w, multiple)
    return plan_launch(kernel, {"N": n, "H": h, "W": w, "HH": hh, "WH": wh, "CO": kernel.width}, pointers)


def egest_launch(kernel: BoundaryKernel, n: int, h: int, w: int, hh: int, wh: int, pointers: dict) -> Launch:
    """features (n, hh, wh, width) + frame (n, h, w, 3) -> frame (n, h, w, 3) uint8."""
    return plan_launch(kernel, {"N": n, "H": h, "W": w, "HH": hh, "WH": wh, "CI": kernel.width}, pointers)


# ---------------------------------------------------------------- CUDA driver (cuda-python)


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver
        except ImportError:
            raise KernelsError("the Triton plugins need cuda-python: pip install cuda-python") from None
    return driver


def _cu(result, what: str):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise KernelsError(f"{what} failed: {err}")
    return rest[0] if len(rest) == 1 else rest


def device_cc(device: int = 0) -> int:
    drv = _driver()
    _cu(drv.cuInit(0), "cuInit")
    dev = _cu(drv.cuDeviceGet(device), "cuDeviceGet")
    a = drv.CUdevice_attribute
    major, minor = (_cu(drv.cuDeviceGetAttribute(x, dev), "cuDeviceGetAttribute") for x in
                    (a.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, a.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR))
    return int(major) * 10 + int(minor)


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
            module = _cu(drv.cuModuleLoadData(image), f"cuModuleLoadData({kernel.cubin_path.name})")
            fn = _cu(drv.cuModuleGetFunction(module, kernel.function.encode()),
                     f"cuModuleGetFunction({kernel.function})")
            if kernel.shared > 48 * 1024:  # above the default: opt in, as Triton's loader does
                attr = drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
                _cu(drv.cuFuncSetAttribute(fn, attr, kernel.shared), "cuFuncSetAttribute")
            self._images.append((image, module))
            self._functions[kernel.cubin_sha256] = fn
        return self._functions[kernel.cubin_sha256]

    def launch(self, kernel: BoundaryKernel, launch: Launch, stream: int) -> None:
        if launch.grid[0] * launch.grid[1] * launch.grid[2] == 0:
            return
        drv = self._driver or _driver()
        fn = self._function(kernel, drv)
        vals, params = launch.kernel_params()
        _cu(drv.cuLaunchKernel(fn, *launch.grid, *launch.block, launch.shared, int(stream), params, 0),
            f"cuLaunchKernel({kernel.function})")
        del vals


# ---------------------------------------------------------------- the graph TensorRT parses


def pack_weight(w: np.ndarray) -> np.ndarray:
    """(CO, CI, KH, KW) -> (KH*KW*CI, CO), the layout kernels/conv.pack_weight gives the kernels."""
    co, ci, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(kh * kw * ci, co))


def _onnx():
    try:
        import onnx
    except ImportError:
        raise KernelsError("--kernels triton needs the onnx package to prepare the graph: pip install onnx") from None
    return onnx


def onnx_variant(path) -> str:
    """'frame-native' or 'float', from the metadata edgedenoise export writes."""
    onnx = _onnx()
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise KernelsError(f"cannot read ONNX model {path}: {e.__class__.__name__} "
                           "(corrupt or truncated? re-export it)") from None
    return {p.key: p.value for p in m.metadata_props}.get("variant", "float")


def prepare_onnx(data: bytes, dtype: str, flavour: str) -> tuple[bytes, dict]:
    """The frame-native graph as TensorRT's parser should see it (see the module docstring).
    Returns the serialized graph and {'ingest': width, 'egest': width}."""
    onnx = _onnx()
    from onnx import helper, numpy_helper

    if dtype not in ("fp16", "fp32"):
        raise KernelsError(f"the boundary kernels come in fp16 and fp32, not {dtype}")
    m = onnx.load_from_string(data)
    fold_weight_casts(m)  # float16-stored weights: the kernels' packing reads float32 initializers
    if {p.key: p.value for p in m.metadata_props}.get("variant") != "frame-native":
        raise KernelsError("the TensorRT plugins need the frame-native graph: edgedenoise export --frame-native")
    inits = {i.name: i for i in m.graph.initializer}
    np_dtype = np.float16 if dtype == "fp16" else np.float32
    widths = {}
    for node in m.graph.node:
        if node.domain != NAMESPACE:
            continue
        kind = node.op_type.lower()
        if kind not in PLUGIN_IO or kind in widths:
            raise KernelsError(f"unexpected node {NAMESPACE}::{node.op_type} in the frame-native graph: re-export it")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if kind == "ingest":
            frame, sigma, w_name, b_name = node.input
        else:
            h, w_name, b_name, frame = node.input
        if w_name not in inits or b_name not in inits:
            raise KernelsError(f"{node.op_type}: weight and bias must be initializers of the graph: re-export it")
        w = numpy_helper.to_array(inits[w_name]).astype(np.float32)
        bias = numpy_helper.to_array(inits[b_name]).astype(np.float32)
        if kind == "ingest":
            if w.ndim != 4 or w.shape[1:] != (13, 3, 3):
                raise KernelsError(f"Ingest weight has shape {w.shape}, expected (width, 13, 3, 3)")
            w = w.copy()
            w[:, 12] *= np.float32(attrs["map_scale"])  # sigma goes to the kernel unscaled
            width, fields = w.shape[0], {"multiple": int(attrs["multiple"])}
        else:
            if w.ndim != 4 or w.shape[0] != 12 or w.shape[2:] != (3, 3):
                raise KernelsError(f"Egest weight has shape {w.shape}, expected (12, width, 3, 3)")
            width, fields = w.shape[1], {}
        if dtype == "fp16" and width % 8:
            raise KernelsError(f"{node.op_type}: width {width} is not a multiple of 8 (FP16 features cross the "
                               "plugin boundary as HWC8): build with --precision fp32")
        wp_name, b32_name = f"{NAMESPACE}_{kind}_wp", f"{NAMESPACE}_{kind}_bias"
        m.graph.initializer.extend([numpy_helper.from_array(pack_weight(w).astype(np_dtype), wp_name),
                                    numpy_helper.from_array(bias, b32_name)])
        del node.input[:]
        node.input.extend([frame, wp_name, b32_name, sigma] if kind == "ingest" else [h, wp_name, b32_name, frame])
        fields.update(width=int(width), half=int(dtype == "fp16"))
        del node.attribute[:]
        node.attribute.extend(helper.make_attribute(k, v) for k, v in fields.items())
        node.attribute.extend([helper.make_attribute("plugin_namespace", NAMESPACE),
                               helper.make_attribute("plugin_version", "1")])
        if flavour == "qdp":
            node.attribute.append(helper.make_attribute("aot", 1))  # the AOT implementation, not a JIT one
        widths[kind] = int(width)
    if set(widths) != set(PLUGIN_IO):
        raise KernelsError("the frame-native graph lacks an Ingest or Egest node: re-export it")
    used = {i for n in m.graph.node for i in n.input}
    keep = [i for i in m.graph.initializer if i.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    return m.SerializeToString(), widths


# ---------------------------------------------------------------- registration


_STATE: dict = {"flavour": None, "kernels": None, "keep": []}


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in (re.findall(r"\d+", v) + ["0", "0"])[:2])


def _has_qdp_aot() -> bool:
    try:
        import tensorrt.plugin as trtp
    except ImportError:
        return False
    return hasattr(trtp, "aot_impl") and hasattr(trtp, "KernelLaunchParams")


def plugin_flavour(trt, prefer: str = "auto") -> str:
    """'qdp' (AOT Quickly Deployable Plugins) or 'ipluginv3' for this TensorRT."""
    if prefer not in ("auto", "qdp", "ipluginv3"):
        raise KernelsError(f"unknown plugin flavour {prefer!r}: auto, qdp or ipluginv3")
    qdp_ok = _version(trt.__version__) >= QDP_MIN_VERSION and _has_qdp_aot()
    if prefer == "qdp" and not qdp_ok:
        raise KernelsError("ahead-of-time Quickly Deployable Plugins need TensorRT >= 10.9 "
                           f"(this is {trt.__version__}): use the IPluginV3 plugins")
    if prefer == "ipluginv3":
        return "ipluginv3"
    return "qdp" if qdp_ok else "ipluginv3"


def register_plugins(trt, kernels_dir=DEFAULT_KERNELS_DIR, prefer: str = "auto", cc=None) -> str:
    """Make the Ingest/Egest plugins of namespace `edgedenoise` known to TensorRT, backed by the AOT
    kernels in `kernels_dir` for compute capability `cc` (default: device 0's). Call it before
    building from a frame-native graph and before deserializing an engine with IPluginV3 plugins.
    Returns the flavour: 'qdp' or 'ipluginv3'. One flavour per process."""
    flavour = plugin_flavour(trt, prefer)
    if _STATE["flavour"] not in (None, flavour):
        raise KernelsError(f"the {_STATE['flavour']} plugins are already registered in this process; "
                           f"the {flavour} ones need a fresh process")
    _STATE["kernels"] = KernelSet(kernels_dir, device_cc() if cc is None else cc)
    if _STATE["flavour"] is None:
        (_register_qdp if flavour == "qdp" else _register_v3)(trt)
        _STATE["flavour"] = flavour
    return flavour


def _kernels() -> KernelSet:
    if _STATE["kernels"] is None:
        raise KernelsError("the edgedenoise plugins have no kernels: call register_plugins first")
    return _STATE["kernels"]


# ---------------------------------------------------------------- TensorRT 10.3: Python IPluginV3


def _v3_classes(trt):
    """The IPluginV3 plugin and IPluginCreatorV3One classes, built on the given tensorrt module."""
    DT, TF = trt.DataType, trt.TensorFormat

    class _Boundary(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        kind = ""
        field_names = ("width", "half")

        def __init__(self, fields: dict | None = None):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.plugin_name = PLUGIN_NAMES[self.kind]
            self.plugin_namespace = NAMESPACE
            self.plugin_version = "1"
            self.num_outputs = 1
            self.timing_cache_id = ""
            self.fields = {k: int(v) for k, v in (fields or {}).items()}
            missing = [k for k in self.field_names if k not in self.fields]
            if fields is not None and missing:
                raise KernelsError(f"{NAMESPACE}::{self.plugin_name}: missing plugin field(s) {', '.join(missing)}")

        @property
        def dtype(self) -> str:
            return "fp16" if self.fields["half"] else "fp32"

        def _feature(self):  # (type, format) of the channel-last feature map
            return (DT.HALF, TF.HWC8) if self.fields["half"] else (DT.FLOAT, TF.HWC)

        def get_capability_interface(self, type):
            return self

        def clone(self):
            twin = type(self)(dict(self.fields))
            twin.__dict__.update(self.__dict__)
            return twin

        def get_fields_to_serialize(self):
            int32 = trt.PluginFieldType.INT32
            return trt.PluginFieldCollection([trt.PluginField(k, np.array([v], dtype=np.int32), int32)
                                              for k, v in self.fields.items()])

        def supports_format_combination(self, pos, in_out, num_inputs):
            want = self._io()
            desc = in_out[pos].desc
            return pos < len(want) and (desc.type, desc.format) == want[pos]

        def configure_plugin(self, inp, out):
            pass

        def on_shape_change(self, inp, out):
            pass

        def attach_to_context(self, context):
            return self.clone()

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            ks = _kernels()
            k = ks.kernel(self.kind, self.fields["width"], self.dtype)
            ptrs = dict(zip(PLUGIN_IO[self.kind][0], inputs)) | dict(zip(PLUGIN_IO[self.kind][1], outputs))
            ks.launch(k, self._launch(k, input_desc, output_desc, ptrs), stream)

    class IngestPlugin(_Boundary):
        kind = "ingest"
        field_names = ("multiple", "width", "half")

        def _io(self):
            feat = self._feature()  # frame, wp, bias, sigma -> features
            return [(DT.UINT8, TF.LINEAR), (feat[0], TF.LINEAR), (DT.FLOAT, TF.LINEAR), (DT.FLOAT, TF.LINEAR), feat]

        def get_output_data_types(self, input_types, ranks=None):
            return [self._feature()[0]]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            frame, m = inputs[0], self.fields["multiple"]
            op = trt.DimensionOperation

            def half(d):  # ceil(d / m) * (m / 2)
                return expr_builder.operation(op.PROD, expr_builder.operation(op.CEIL_DIV, d, expr_builder.constant(m)),
                                              expr_builder.constant(m // 2))

            out = trt.DimsExprs(4)
            out[0], out[1], out[2], out[3] = frame[0], expr_builder.constant(self.fields["width"]), half(frame[1]), \
                half(frame[2])
            return [out]

        def _launch(self, k, input_desc, output_desc, ptrs):
            n, h, w, _ = tuple(input_desc[0].dims)
            launch = ingest_launch(k, n, h, w, self.fields["multiple"], ptrs)
            if tuple(output_desc[0].dims) != (n, k.width, *half_grid(h, w, self.fields["multiple"])):
                raise KernelsError(f"Ingest output {tuple(output_desc[0].dims)} does not match the frame {w}x{h}")
            return launch

    class EgestPlugin(_Boundary):
        kind = "egest"

        def _io(self):
            feat = self._feature()  # features, wp, bias, frame -> frame
            return [feat, (feat[0], TF.LINEAR), (DT.FLOAT, TF.LINEAR), (DT.UINT8, TF.LINEAR), (DT.UINT8, TF.LINEAR)]

        def get_output_data_types(self, input_types, ranks=None):
            return [DT.UINT8]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            return [trt.DimsExprs(inputs[3])]  # the frame's shape

        def _launch(self, k, input_desc, output_desc, ptrs):
            n, c, hh, wh = tuple(input_desc[0].dims)
            _, h, w, _ = tuple(input_desc[3].dims)
            if c != k.width:
                raise KernelsError(f"Egest features have {c} channels, the kernel {k.width}")
            return egest_launch(k, n, h, w, hh, wh, ptrs)

    def creator(plugin_cls):
        class Creator(trt.IPluginCreatorV3One):
            def __init__(self):
                trt.IPluginCreatorV3One.__init__(self)
                self.name = PLUGIN_NAMES[plugin_cls.kind]
                self.plugin_namespace = NAMESPACE
                self.plugin_version = "1"
                self.field_names = trt.PluginFieldCollection(
                    [trt.PluginField(k, np.array([], dtype=np.int32), trt.PluginFieldType.INT32)
                     for k in plugin_cls.field_names])

            def create_plugin(self, name, *args):  # (name, fc, phase); newer bindings add the namespace
                fc = args[-2]
                return plugin_cls({f.name: int(np.asarray(f.data).reshape(-1)[0]) for f in fc})

        return Creator

    return IngestPlugin, EgestPlugin, creator(IngestPlugin), creator(EgestPlugin)


def _register_v3(trt) -> None:
    _, _, ingest_creator, egest_creator = _v3_classes(trt)
    registry = trt.get_plugin_registry()
    for cls in (ingest_creator, egest_creator):
        c = cls()
        _STATE["keep"].append(c)  # the registry does not keep the Python object alive
        if not registry.register_creator(c, NAMESPACE):
            raise KernelsError(f"TensorRT refused the plugin creator {NAMESPACE}::{c.name} (registered twice?)")


# ---------------------------------------------------------------- TensorRT >= 10.9: AOT QDP


def _qdp_kernel(trtp, kernel: BoundaryKernel, scalars: dict):
    """What @trtp.aot_impl returns: kernel name, PTX, launch parameters, int32 scalar arguments."""
    grid = eval_grid(kernel.grid, {**kernel.constants, **scalars}, div=trtp.cdiv)
    launch = trtp.KernelLaunchParams()
    launch.grid_x, launch.grid_y, launch.grid_z = grid
    launch.block_x = 32 * kernel.num_warps
    launch.shared_mem = kernel.shared
    extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(scalars[name]) for name in kernel.scalar_args])
    return kernel.function.encode(), kernel.qdp_ptx(), launch, extra


def _register_qdp(trt) -> None:
    # No `from __future__ import annotations` in this module: tensorrt.plugin reads these
    # annotations as objects.
    import tensorrt.plugin as trtp

    def dtypes(half: int) -> tuple[str, str]:
        return ("FP16", "HWC8") if half else ("FP32", "HWC")

    @trtp.register(f"{NAMESPACE}::Ingest")
    def ingest_desc(frame: trtp.TensorDesc, wp: trtp.TensorDesc, bias: trtp.TensorDesc, sigma: trtp.TensorDesc,
                    multiple: int, width: int, half: int) -> trtp.TensorDesc:
        n, h, w = frame.shape_expr[0], frame.shape_expr[1], frame.shape_expr[2]
        hh, wh = trtp.cdiv(h, multiple) * (multiple // 2), trtp.cdiv(w, multiple) * (multiple // 2)
        return trtp.from_shape_expr((n, width, hh, wh), dtype=trt.float16 if half else trt.float32)

    @trtp.autotune(f"{NAMESPACE}::Ingest")
    def ingest_formats(frame, wp, bias, sigma, half, outputs):
        t, f = dtypes(half)
        return [trtp.AutoTuneCombination(f"UINT8, {t}, FP32, FP32, {t}", f"LINEAR, LINEAR, LINEAR, LINEAR, {f}")]

    @trtp.aot_impl(f"{NAMESPACE}::Ingest")
    def ingest_aot(frame, wp, bias, sigma, multiple, width, half, outputs, tactic):
        k = _kernels().kernel("ingest", int(width), "fp16" if half else "fp32")
        out = outputs[0].shape_expr
        scalars = {"N": frame.shape_expr[0], "H": frame.shape_expr[1], "W": frame.shape_expr[2], "HH": out[2],
                   "WH": out[3], "CO": int(width)}
        return _qdp_kernel(trtp, k, scalars)

    @trtp.register(f"{NAMESPACE}::Egest")
    def egest_desc(h: trtp.TensorDesc, wp: trtp.TensorDesc, bias: trtp.TensorDesc, frame: trtp.TensorDesc,
                   width: int, half: int) -> trtp.TensorDesc:
        return frame.like()

    @trtp.autotune(f"{NAMESPACE}::Egest")
    def egest_formats(h, wp, bias, frame, half, outputs):
        t, f = dtypes(half)
        return [trtp.AutoTuneCombination(f"{t}, {t}, FP32, UINT8, UINT8", f"{f}, LINEAR, LINEAR, LINEAR, LINEAR")]

    @trtp.aot_impl(f"{NAMESPACE}::Egest")
    def egest_aot(h, wp, bias, frame, width, half, outputs, tactic):
        k = _kernels().kernel("egest", int(width), "fp16" if half else "fp32")
        f = frame.shape_expr
        scalars = {"N": f[0], "H": f[1], "W": f[2], "HH": h.shape_expr[2], "WH": h.shape_expr[3], "CI": int(width)}
        return _qdp_kernel(trtp, k, scalars)
