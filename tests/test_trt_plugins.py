"""The fused Triton boundary kernels as TensorRT plugins (edgedenoise/trt/: aot_kernels, launch,
graph, plugins, ipluginv3, qdp).

Everything that needs no TensorRT and no GPU runs everywhere: the boundary kernels are compiled
ahead of time for sm_72/sm_87/sm_90 into a temporary folder, then the manifest-driven kernel
choice, launch grid and packed argument list are checked against what the Triton launchers in
kernels/boundary.py pass, the packed arguments against the cubin's own parameter table, the
TensorRT-ordered PTX of the Quickly Deployable Plugins by assembling it, the graph TensorRT
parses (packed weights, folded noise-map scale) against the PyTorch reference, and the IPluginV3
classes against a stand-in for the tensorrt module and the CUDA driver. The tests that need
TensorRT skip elsewhere with the reason."""
import ctypes
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edgedenoise import cuda
from edgedenoise.trt import aot_kernels as ak
from edgedenoise.trt import graph, ipluginv3, plugins, version_tuple
from edgedenoise.trt import launch as lp
from edgedenoise.trt.aot_kernels import KernelsError

triton = pytest.importorskip("triton", reason="triton is not installed (pip install -e .[kernels])")
torch = pytest.importorskip("torch")

WIDTH = 24  # the default (small) model's first width
GATE = 12  # default-video's gate branch width (fuse_egest's kernels take it FP32)
KINDS = ("ingest", "egest", "egest_gate", "fuse_egest")
TARGETS = (72, 87, 90)
NVBIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
# compiling needs the real JIT, not the interpreter the other kernel tests run in
COMPILE_ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


@pytest.fixture(scope="module")
def aot_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("aot")
    code = ("import sys\nfrom edgedenoise_kernels.aot import BoundaryVariant, build\n"
            f"build([BoundaryVariant('ingest', {WIDTH}, 'fp16'), BoundaryVariant('egest', {WIDTH}, 'fp16'), "
            f"BoundaryVariant('egest_gate', {WIDTH}, 'fp16'), BoundaryVariant('fuse_egest', {GATE}, 'fp32')], "
            f"{list(TARGETS)}, sys.argv[1])\n")
    p = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=COMPILE_ENV)
    assert p.returncode == 0, p.stderr[-2000:]
    return out


def kernel(aot_dir, kind, cc=87):
    width, dtype = (GATE, "fp32") if kind == "fuse_egest" else (WIDTH, "fp16")
    return ak.pick_kernel(ak.load_manifest(aot_dir), aot_dir, kind, width, dtype, cc)


# ---------------------------------------------------------------- kernel choice


@pytest.mark.parametrize("cc", [72, 87, 90, "8.7", "sm_90"])
def test_the_cubin_of_this_target_is_picked(aot_dir, cc):
    target = f"sm_{ak.cc_int(cc)}"
    for kind in KINDS:
        k = kernel(aot_dir, kind, cc)
        assert k.target == target and k.kind == kind and k.width == (GATE if kind == "fuse_egest" else WIDTH)
        assert k.cubin_path.parent.name == target and k.ptx_path.parent.name == target
        assert k.cubin()[:4] == b"\x7fELF"  # and its sha256 matches the manifest
        assert f".target {target}" in k.ptx


def test_missing_target_variant_or_kernels_say_how_to_build(aot_dir, tmp_path):
    manifest = ak.load_manifest(aot_dir)
    with pytest.raises(KernelsError) as e:
        ak.pick_kernel(manifest, aot_dir, "ingest", WIDTH, "fp16", "8.9")
    msg = str(e.value)
    assert "sm_72, sm_87, sm_90, not sm_89" in msg
    assert f"edgedenoise kernels build --target sm_89 --out {aot_dir}" in msg
    with pytest.raises(KernelsError, match=r"no egest kernel for width 48 fp32 on sm_87 \(has: w24 fp16\).*sm_87"):
        ak.pick_kernel(manifest, aot_dir, "egest", 48, "fp32", 87)
    with pytest.raises(KernelsError, match=f"no AOT kernels in {tmp_path}.*--target sm_87 --out {tmp_path}"):
        lp.KernelSet(tmp_path, 87)
    bad = tmp_path / "bad"
    shutil.copytree(aot_dir, bad)
    k = kernel(bad, "ingest")
    k.cubin_path.write_bytes(k.cubin_path.read_bytes()[:-8])
    with pytest.raises(KernelsError, match="does not match its manifest"):
        k.cubin()


# ---------------------------------------------------------------- launch parameters and arguments


class Recorder:
    """Stands in for a @triton.jit kernel: records kernel[grid](*args, **kwargs)."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((tuple(grid), args, kwargs))


def check_same_launch(mine: lp.Launch, k: ak.BoundaryKernel, grid, args, kwargs, roles):
    assert mine.grid == tuple(grid) + (1,) * (3 - len(grid))
    assert mine.block == (32 * k.num_warps, 1, 1) == (128, 1, 1)
    assert mine.shared == k.shared > 0
    assert mine.function == k.function
    assert {n: kwargs[n] for n in k.constants} == k.constants  # the launcher's constexprs = the compiled ones
    assert len(args) == len(k.runtime_args) == len(mine.args) - k.extra_params
    for (name, typ, value), theirs in zip(mine.args, args):
        if typ.startswith("*"):
            assert roles[id(theirs)] == name  # the same tensor goes in this position
        else:
            assert value == theirs, name
    # Triton 3.x: the compiled entry takes trailing scratch pointers; the plugins pass NULL
    assert [(t, v) for _, t, v in mine.args[len(args):]] == [("scratch", 0)] * k.extra_params


SIZES = [(1, 720, 1280), (1, 45, 71), (2, 33, 17), (1, 17, 200)]


@pytest.mark.parametrize("n,h,w", SIZES, ids=[f"{n}x{w}x{h}" for n, h, w in SIZES])
def test_ingest_launch_is_the_triton_launchers(aot_dir, monkeypatch, n, h, w):
    from edgedenoise_kernels import boundary, boundary_kernels

    rec = Recorder()
    monkeypatch.setattr(boundary_kernels, "ingest_conv_kernel", rec)
    k = kernel(aot_dir, "ingest")
    frame = torch.zeros((n, h, w, 3), dtype=torch.uint8)
    wp = torch.zeros((9 * 13, WIDTH), dtype=torch.float16)
    bias, smap = torch.zeros(WIDTH), torch.zeros(n)
    out = boundary.ingest(frame, wp, bias, smap, 16)
    (grid, args, kwargs), = rec.calls
    roles = {id(frame): "frame_ptr", id(wp): "wp_ptr", id(bias): "b_ptr", id(smap): "smap_ptr", id(out): "out_ptr"}
    mine = lp.ingest_launch(k, n, h, w, 16, {r: 0x10000 + 256 * i for i, r in enumerate(roles.values())})
    check_same_launch(mine, k, grid, args, kwargs, roles)
    assert tuple(out.shape[1:3]) == lp.half_grid(h, w, 16) == boundary.half_grid(h, w, 16)


def test_a_buffer_not_aligned_as_compiled_is_refused(aot_dir):
    """The kernels are compiled for 16-byte aligned buffers (their loads are vectors): a launch with a
    pointer off that alignment is refused in one line rather than fault or read the wrong bytes."""
    k = kernel(aot_dir, "egest")
    assert k.pointer_align == 16
    ptrs = {r: 0x10000 + 256 * i for i, r in enumerate(ak.PLUGIN_IO["egest"][0] + ak.PLUGIN_IO["egest"][1])}
    lp.egest_launch(k, 1, 32, 48, 16, 24, ptrs)
    ptrs["h_ptr"] += 2
    with pytest.raises(ak.KernelsError, match="h_ptr .* is not 16-byte aligned"):
        lp.egest_launch(k, 1, 32, 48, 16, 24, ptrs)


@pytest.mark.parametrize("kind", ("ingest", "egest", "egest_gate"))  # fuse_egest: fp32, one 1x1 tap
def test_the_aot_kernels_load_in_vectors_and_pipeline_their_gathers(aot_dir, kind):
    """Compiled as the JIT compiles a call (pointers 16-byte aligned, the width a constant), a 24-channel
    kernel reads its features in 16-byte asynchronous copies and writes them (ingest) in vectors; built
    without either, it read and wrote them two bytes at a time with nothing overlapped
    (benchmarks/kernel_codegen.py)."""
    for cc in (87, 90):
        ptx = kernel(aot_dir, kind, cc).ptx
        assert re.search(r"cp\.async\.c[ag]\.shared", ptx), f"sm_{cc} {kind}: no asynchronous copies"
        assert not re.search(r"\bld\.global(\.[a-z]+)*\.b16\b", ptx), f"sm_{cc} {kind}: 2-byte loads"
        assert not re.search(r"\bst\.global(\.[a-z]+)*\.b16\b", ptx), f"sm_{cc} {kind}: 2-byte stores"


@pytest.mark.parametrize("n,h,w", SIZES, ids=[f"{n}x{w}x{h}" for n, h, w in SIZES])
def test_egest_launch_is_the_triton_launchers(aot_dir, monkeypatch, n, h, w):
    from edgedenoise_kernels import boundary, boundary_kernels

    rec = Recorder()
    monkeypatch.setattr(boundary_kernels, "egest_conv_kernel", rec)
    k = kernel(aot_dir, "egest")
    hh, wh = boundary.half_grid(h, w, 16)
    feats = torch.zeros((n, hh, wh, WIDTH), dtype=torch.float16)
    wp = torch.zeros((9 * WIDTH, 12), dtype=torch.float16)
    bias, frame = torch.zeros(12), torch.zeros((n, h, w, 3), dtype=torch.uint8)
    out = boundary.egest(feats, wp, bias, frame)
    (grid, args, kwargs), = rec.calls
    roles = {id(feats): "h_ptr", id(wp): "wp_ptr", id(bias): "b_ptr", id(frame): "frame_ptr", id(out): "out_ptr"}
    mine = lp.egest_launch(k, n, h, w, hh, wh, {r: 0x10000 + 256 * i for i, r in enumerate(roles.values())})
    check_same_launch(mine, k, grid, args, kwargs, roles)


@pytest.mark.parametrize("n,h,w", SIZES, ids=[f"{n}x{w}x{h}" for n, h, w in SIZES])
def test_recurrent_tail_launches_are_the_triton_launchers(aot_dir, monkeypatch, n, h, w):
    from edgedenoise_kernels import boundary, boundary_kernels

    rec = Recorder()
    monkeypatch.setattr(boundary_kernels, "egest_gate_kernel", rec)
    monkeypatch.setattr(boundary_kernels, "fuse_egest_kernel", rec)
    hh, wh = boundary.half_grid(h, w, 16)
    feats = torch.zeros((n, hh, wh, WIDTH), dtype=torch.float16)
    wp, bias = torch.zeros((9 * WIDTH, 12), dtype=torch.float16), torch.zeros(12)
    frame, prev = torch.zeros((n, h, w, 3), dtype=torch.uint8), torch.zeros((n, h, w, 3), dtype=torch.uint8)
    smap = torch.zeros(n)
    noise, gin = boundary.egest_gate(feats, wp, bias, frame, prev, smap)
    g = torch.zeros((n, hh, wh, GATE))
    wg, bg = torch.zeros((GATE, 12)), torch.zeros(12)
    out = boundary.fuse_egest(g, wg, bg, noise, frame, prev)
    (grid, args, kwargs), (grid2, args2, kwargs2) = rec.calls
    roles = {id(feats): "h_ptr", id(wp): "wp_ptr", id(bias): "b_ptr", id(frame): "frame_ptr", id(prev): "prev_ptr",
             id(smap): "smap_ptr", id(noise): "noise_ptr", id(gin): "gin_ptr"}
    k = kernel(aot_dir, "egest_gate")
    mine = lp.egest_launch(k, n, h, w, hh, wh, {r: 0x10000 + 256 * i for i, r in enumerate(roles.values())})
    check_same_launch(mine, k, grid, args, kwargs, roles)
    # the launcher passes the packed weight cast to g's dtype: a new tensor of the same role
    roles = {id(g): "g_ptr", id(args2[1]): "wp_ptr", id(args2[2]): "b_ptr", id(noise): "noise_ptr",
             id(frame): "frame_ptr", id(prev): "prev_ptr", id(out): "out_ptr"}
    k = kernel(aot_dir, "fuse_egest")
    mine = lp.egest_launch(k, n, h, w, hh, wh, {r: 0x20000 + 256 * i for i, r in enumerate(roles.values())})
    check_same_launch(mine, k, grid2, args2, kwargs2, roles)


def test_a_frame_too_small_to_pad_is_refused(aot_dir):
    with pytest.raises(KernelsError, match="too small"):
        lp.ingest_launch(kernel(aot_dir, "ingest"), 1, 8, 64, 16, {})


def kparam_sizes(cubin: Path) -> list[int]:
    """Parameter sizes by ordinal, from the cubin's own parameter table (cuobjdump -elf)."""
    tool = NVBIN / "cuobjdump"
    if not tool.exists():
        pytest.skip(f"cuobjdump is not shipped with this triton ({tool})")
    dump = subprocess.run([str(tool), "-elf", str(cubin)], capture_output=True, text=True, check=True).stdout
    found = re.findall(r"Ordinal\s*:\s*(0x[0-9a-f]+)\s+Offset\s*:\s*0x[0-9a-f]+\s+Size\s*:\s*(0x[0-9a-f]+)", dump)
    by_ordinal = dict(sorted((int(o, 16), int(s, 16)) for o, s in found))
    assert list(by_ordinal) == list(range(len(by_ordinal)))
    return list(by_ordinal.values())


@pytest.mark.parametrize("kind", KINDS)
def test_packed_arguments_fit_the_cubins_parameters(aot_dir, kind):
    for cc in TARGETS:
        k = kernel(aot_dir, kind, cc)
        ptrs = dict.fromkeys(ak.PLUGIN_IO[kind][0] + ak.PLUGIN_IO[kind][1], 0)
        if kind == "ingest":
            launch = lp.ingest_launch(k, 1, 45, 71, 16, ptrs)
        else:
            launch = lp.egest_launch(k, 1, 45, 71, 24, 40, ptrs)
        vals, params = launch.kernel_params()
        assert [v.itemsize for v in vals] == kparam_sizes(k.cubin_path)
        assert len(params) == len(vals) and params.dtype == np.uint64


# ---------------------------------------------------------------- the QDP path's PTX


# the QDP parameter order, by index into the kernel's own: input pointers, int32 scalars, output pointers
# the five int32 scalars N, H, W, HH, WH (the width is compiled in)
QDP_ORDER = {"ingest": (0, 1, 2, 3, 5, 6, 7, 8, 9, 4), "egest": (0, 1, 2, 3, 5, 6, 7, 8, 9, 4),
             "egest_gate": (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 6, 7),
             "fuse_egest": (0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 6)}


@pytest.mark.parametrize("kind", KINDS)
def test_qdp_ptx_takes_inputs_scalars_outputs(aot_dir, tmp_path, kind):
    ptxas = NVBIN / "ptxas"
    if not ptxas.exists():
        pytest.skip(f"ptxas is not shipped with this triton ({ptxas})")
    k = kernel(aot_dir, kind)
    ptx = k.qdp_ptx().decode()
    names = [name for _, name in ak.ptx_entry_params(ptx, k.function)]
    # TensorRT launches an AOT plugin kernel with (input pointers, int32 scalars, output pointers)
    assert names == [f"{k.function}_param_{i}" for i in QDP_ORDER[kind]]
    src, cubin = tmp_path / f"{kind}.ptx", tmp_path / f"{kind}.cubin"
    src.write_text(ptx)
    p = subprocess.run([str(ptxas), "-arch=sm_87", str(src), "-o", str(cubin)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    n_in, n_out = (len(x) for x in ak.PLUGIN_IO[kind])
    assert kparam_sizes(cubin) == [8] * n_in + [4] * 5 + [8] * n_out


PTX = """.version 8.0
.target sm_87
.address_size 64
.visible .entry k(
\t.param .u64 .ptr .global .align 1 k_param_0,
\t.param .u32 k_param_1,
\t.param .u64 .ptr .global .align 1 k_param_2
)
{
\t.reg .b32 %r<2>;
\tld.param.u32 %r1, [k_param_1];
\tret;
}
"""


def test_parameters_in_use_are_never_dropped(aot_dir, tmp_path):
    swapped = ak.reorder_ptx_params(PTX, "k", [1, 0])
    assert [n for _, n in ak.ptx_entry_params(swapped, "k")] == ["k_param_1", "k_param_0"]
    with pytest.raises(KernelsError, match="k_param_1 is used"):
        ak.reorder_ptx_params(PTX, "k", [0, 2])
    # a kernel that reads Triton's scratch pointer cannot run with NULL there: refused
    bad = tmp_path / "bad"
    shutil.copytree(aot_dir, bad)
    k = kernel(bad, "ingest")
    scratch = f"{k.function}_param_{len(k.runtime_args)}"
    k.ptx_path.write_text(k.ptx.replace("\tret;", f"\tld.param.u64 %rd1, [{scratch}];\n\tret;", 1))
    with pytest.raises(KernelsError, match=f"uses its extra parameter {scratch}"):
        assert kernel(bad, "ingest").extra_params


# ---------------------------------------------------------------- the graph TensorRT parses


@pytest.fixture(scope="module")
def frame_native_onnx(tmp_path_factory):
    from edgedenoise.export import export_onnx

    path = tmp_path_factory.mktemp("fn") / "frame.onnx"
    export_onnx("default", path, frame_native=True)
    return path


def nodes(model):
    return {n.op_type: n for n in model.graph.node if n.domain == ak.NAMESPACE}


def attrs(node):
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


@pytest.mark.parametrize("dtype,flavour", [("fp16", "ipluginv3"), ("fp32", "qdp")])
def test_prepared_graph_packs_weights_and_folds_the_map_scale(frame_native_onnx, dtype, flavour):
    import onnx
    from edgedenoise_kernels.boundary import ingest_reference
    from edgedenoise_kernels.conv import pack_weight
    from onnx import numpy_helper

    from edgedenoise.model import SIGMA_MAP_SCALE

    src = onnx.load(str(frame_native_onnx))
    data, widths = graph.prepare_onnx(frame_native_onnx.read_bytes(), dtype, flavour)
    got = onnx.load_from_string(data)
    assert widths == {"ingest": WIDTH, "egest": WIDTH}
    before, after = nodes(src), nodes(got)
    inits = {i.name: numpy_helper.to_array(i) for i in got.graph.initializer}
    used = set(before["Ingest"].input) | set(before["Egest"].input)
    w = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in src.graph.initializer if i.name in used}
    np_dtype = np.float16 if dtype == "fp16" else np.float32

    ing = after["Ingest"]
    frame, sigma, w_name, b_name = before["Ingest"].input
    assert list(ing.input) == [frame, "edgedenoise_ingest_wp", "edgedenoise_ingest_bias", sigma]
    scale = attrs(before["Ingest"])["map_scale"]
    assert scale == pytest.approx(SIGMA_MAP_SCALE)
    folded = w[w_name].clone()
    folded[:, 12] *= scale
    wp = inits["edgedenoise_ingest_wp"]
    assert wp.dtype == np_dtype and wp.shape == (9 * 13, WIDTH)
    np.testing.assert_array_equal(wp, pack_weight(folded).numpy().astype(np_dtype))  # the launcher's packing
    np.testing.assert_array_equal(inits["edgedenoise_ingest_bias"], w[b_name].numpy())
    # folding: the head conv with the scaled map rows on sigma == the original on sigma * scale
    fr = torch.randint(0, 256, (2, 37, 50, 3), dtype=torch.uint8)
    s = torch.tensor([5 / 255, 40 / 255])
    torch.testing.assert_close(ingest_reference(fr, folded, w[b_name], s, 16),
                               ingest_reference(fr, w[w_name], w[b_name], s * scale, 16), atol=2e-5, rtol=1e-5)

    eg = after["Egest"]
    h, w_name, b_name, frame = before["Egest"].input
    assert list(eg.input) == [h, "edgedenoise_egest_wp", "edgedenoise_egest_bias", frame]
    np.testing.assert_array_equal(inits["edgedenoise_egest_wp"], pack_weight(w[w_name]).numpy().astype(np_dtype))

    half = int(dtype == "fp16")
    extra = {"aot": 1} if flavour == "qdp" else {}
    assert attrs(ing) == {"multiple": 16, "width": WIDTH, "half": half, "plugin_namespace": b"edgedenoise",
                          "plugin_version": b"1", **extra}
    assert attrs(eg) == {"width": WIDTH, "half": half, "plugin_namespace": b"edgedenoise", "plugin_version": b"1",
                         **extra}
    # the original weight initializers are gone, the rest of the graph is untouched
    assert not {n for n in inits if n.startswith(("net.head.", "net.tail."))}
    assert [(n.op_type, list(n.input)) for n in got.graph.node if n.domain != ak.NAMESPACE] == \
        [(n.op_type, list(n.input)) for n in src.graph.node if n.domain != ak.NAMESPACE]


def test_prepare_packs_float16_stored_weights_like_float32_ones(frame_native_onnx):
    import onnx
    from onnx import numpy_helper

    from edgedenoise.onnxweights import halve_weights

    rounded = onnx.load(str(frame_native_onnx))  # weights already float16 values, stored as float32
    for i in rounded.graph.initializer:
        if i.data_type == onnx.TensorProto.FLOAT:
            i.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(i).astype(np.float16).astype(np.float32), i.name))
    halved = onnx.ModelProto()
    halved.CopyFrom(rounded)
    convs = sum(n.op_type == "Conv" for n in rounded.graph.node)
    assert halve_weights(halved) == 2 * (convs + 2)  # weight and bias of each Conv, of Ingest and of Egest
    for dtype in ("fp16", "fp32"):
        a, wa = graph.prepare_onnx(rounded.SerializeToString(), dtype, "ipluginv3")
        b, wb = graph.prepare_onnx(halved.SerializeToString(), dtype, "ipluginv3")
        ga, gb = onnx.load_from_string(a), onnx.load_from_string(b)
        assert wa == wb
        assert [(n.op_type, list(n.input)) for n in ga.graph.node] == \
            [(n.op_type, list(n.input)) for n in gb.graph.node]
        ia = {i.name: numpy_helper.to_array(i) for i in ga.graph.initializer}
        ib = {i.name: numpy_helper.to_array(i) for i in gb.graph.initializer}
        assert ia.keys() == ib.keys()
        for k, v in ia.items():
            np.testing.assert_array_equal(v, ib[k], err_msg=k)


def test_prepare_refuses_the_float_graph_and_int8():
    from edgedenoise.modelfile import resolve

    data = resolve("default").onnx.read_bytes()
    with pytest.raises(KernelsError, match="frame-native graph"):
        graph.prepare_onnx(data, "fp16", "ipluginv3")
    with pytest.raises(KernelsError, match="fp16 and fp32, not int8"):
        graph.prepare_onnx(data, "int8", "ipluginv3")


@pytest.fixture(scope="module")
def recurrent_onnx(tmp_path_factory):
    from edgedenoise.export import export_onnx

    path = tmp_path_factory.mktemp("fn") / "video.frame.onnx"
    export_onnx("default-video", path, frame_native=True)
    return path


@pytest.mark.parametrize("dtype,flavour", [("fp16", "ipluginv3"), ("fp32", "qdp")])
def test_prepared_recurrent_graph_packs_the_tail_and_the_gate(recurrent_onnx, dtype, flavour):
    """default-video's frame-native graph: Ingest as the framewise one's; EgestGate's tail packed as
    Egest's (features' dtype), FuseEgest's 1x1 conv packed as the triton launcher packs it (FP32 in
    either precision: the gate's 12 channels cross as FP32 HWC); the kernels' input order."""
    import onnx
    from edgedenoise_kernels.boundary import pack_gate_logits
    from edgedenoise_kernels.conv import pack_weight
    from onnx import numpy_helper

    src = onnx.load(str(recurrent_onnx))
    assert [i.name for i in src.graph.input] == ["frame", "sigma", "previous"]
    data, widths = graph.prepare_onnx(recurrent_onnx.read_bytes(), dtype, flavour)
    got = onnx.load_from_string(data)
    assert widths == {"ingest": WIDTH, "egest_gate": WIDTH, "fuse_egest": GATE}
    before, after = nodes(src), nodes(got)
    assert set(after) == {"Ingest", "EgestGate", "FuseEgest"}
    w = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in src.graph.initializer}
    inits = {i.name: numpy_helper.to_array(i) for i in got.graph.initializer}
    np_dtype = np.float16 if dtype == "fp16" else np.float32

    h, w_name, b_name, frame, previous, smap = before["EgestGate"].input
    assert (frame, previous) == ("frame", "previous")
    assert list(after["EgestGate"].input) == [h, "edgedenoise_egest_gate_wp", "edgedenoise_egest_gate_bias", frame,
                                              previous, smap]
    np.testing.assert_array_equal(inits["edgedenoise_egest_gate_wp"], pack_weight(w[w_name]).numpy().astype(np_dtype))
    np.testing.assert_array_equal(inits["edgedenoise_egest_gate_bias"], w[b_name].numpy())
    g, w_name, b_name, noise, frame, previous = before["FuseEgest"].input
    assert noise == before["EgestGate"].output[0] and (frame, previous) == ("frame", "previous")
    assert list(after["FuseEgest"].input) == [g, "edgedenoise_fuse_egest_wp", "edgedenoise_fuse_egest_bias", noise,
                                              frame, previous]
    wp, b12 = pack_gate_logits(w[w_name], w[b_name])
    assert inits["edgedenoise_fuse_egest_wp"].dtype == np.float32
    np.testing.assert_array_equal(inits["edgedenoise_fuse_egest_wp"], wp.numpy())
    np.testing.assert_array_equal(inits["edgedenoise_fuse_egest_bias"], b12.numpy())
    extra = {"aot": 1} if flavour == "qdp" else {}
    common = {"plugin_namespace": b"edgedenoise", "plugin_version": b"1", **extra}
    assert attrs(after["EgestGate"]) == {"width": WIDTH, "half": int(dtype == "fp16"), **common}
    assert attrs(after["FuseEgest"]) == {"width": GATE, "half": 0, **common}
    # the gate branch's 3x3 convs between them stay TensorRT's own
    assert [n.op_type for n in got.graph.node if n.domain != ak.NAMESPACE] == \
        [n.op_type for n in src.graph.node if n.domain != ak.NAMESPACE]


def test_prepare_refuses_a_graph_missing_its_tail(recurrent_onnx):
    import onnx

    m = onnx.load(str(recurrent_onnx))
    fuse = next(n for n in m.graph.node if n.op_type == "FuseEgest")
    fuse.op_type = "Egest"  # the fusion's inputs under the framewise tail's name
    with pytest.raises(KernelsError, match="Egest has 6 inputs, the plugin takes 4"):
        graph.prepare_onnx(m.SerializeToString(), "fp32", "ipluginv3")
    m.graph.node.remove(fuse)  # Ingest + EgestGate alone: neither graph
    with pytest.raises(KernelsError, match="has egest_gate, ingest: not the nodes of a framewise.*or recurrent"):
        graph.prepare_onnx(m.SerializeToString(), "fp32", "ipluginv3")


# ---------------------------------------------------------------- IPluginV3 against a stand-in tensorrt


def fake_tensorrt():
    """The parts of the tensorrt module the IPluginV3 classes use, as plain Python."""
    names = ("IPluginV3", "IPluginV3OneCore", "IPluginV3OneBuild", "IPluginV3OneRuntime", "IPluginCreatorV3One")
    bases = {n: type(n, (), {"__init__": lambda self, *a: None}) for n in names}

    class DimsExprs(list):
        def __init__(self, x):
            super().__init__([None] * x if isinstance(x, int) else x)

    enum = types.SimpleNamespace
    return types.SimpleNamespace(
        **bases, DimsExprs=DimsExprs,
        DataType=enum(HALF="HALF", FLOAT="FLOAT", UINT8="UINT8"),
        TensorFormat=enum(LINEAR="LINEAR", HWC8="HWC8", HWC="HWC"),
        DimensionOperation=enum(PROD="PROD", CEIL_DIV="CEIL_DIV"),
        PluginFieldType=enum(INT32="INT32"),
        PluginField=lambda name, data, type: types.SimpleNamespace(name=name, data=data, type=type),
        PluginFieldCollection=list, TensorRTPhase=enum(BUILD="BUILD", RUNTIME="RUNTIME"))


class IntExprs:
    """IExprBuilder over plain integers."""

    def constant(self, v):
        return v

    def operation(self, op, a, b):
        return a * b if op == "PROD" else -(-a // b)


class FakeDriver:
    """cuModuleLoadData / cuModuleGetFunction / cuLaunchKernel, recording what they are given;
    each launch's arguments are read back through the kernelParams pointers."""

    class CUfunction_attribute:
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8

    def __init__(self):
        self.loaded, self.launches, self.arg_types = [], [], None

    def cuModuleLoadData(self, image):
        self.loaded.append(bytes(image))
        return 0, f"module{len(self.loaded)}"

    def cuModuleGetFunction(self, module, name):
        return 0, (module, name.decode())

    def cuLaunchKernel(self, f, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        args = [np.frombuffer((ctypes.c_char * np.dtype(t).itemsize).from_address(int(a)), dtype=t)[0].item()
                for a, t in zip(params, self.arg_types)]
        self.launches.append((f, (gx, gy, gz), (bx, by, bz), shared, stream, args))
        return (0,)


def desc(dims=None, type=None, format=None):
    return types.SimpleNamespace(dims=dims, desc=types.SimpleNamespace(type=type, format=format))


def test_ipluginv3_plugins_with_a_stand_in_tensorrt(aot_dir, monkeypatch):
    trt = fake_tensorrt()
    drv = FakeDriver()
    monkeypatch.setitem(plugins._STATE, "kernels", lp.KernelSet(aot_dir, "8.7", driver=drv))
    classes = ipluginv3.v3_classes(trt, plugins.registered_kernels)
    IngestCreator, EgestCreator = classes["ingest"][1], classes["egest"][1]
    ic, ec = IngestCreator(), EgestCreator()
    assert (ic.name, ic.plugin_namespace, ec.name) == ("Ingest", "edgedenoise", "Egest")
    assert [f.name for f in ic.field_names] == ["multiple", "width", "half"]
    def field(k, v):
        return trt.PluginField(k, np.array([v], np.int32), "INT32")

    ing = ic.create_plugin("Ingest", [field("multiple", 16), field("width", WIDTH), field("half", 1)], "BUILD")
    eg = ec.create_plugin("Egest", [field("width", WIDTH), field("half", 1)], "BUILD")
    # serialized fields come back as the same plugin (the runtime path)
    ing = ic.create_plugin("Ingest", list(ing.get_fields_to_serialize()), "RUNTIME").clone()
    assert ing.fields == {"multiple": 16, "width": WIDTH, "half": 1} and ing.get_capability_interface(0) is ing
    with pytest.raises(KernelsError, match="missing plugin field"):
        ic.create_plugin("Ingest", [field("width", WIDTH)], "BUILD")

    n, h, w = 2, 45, 71
    hh, wh = lp.half_grid(h, w, 16)
    (shape,) = ing.get_output_shapes([trt.DimsExprs([n, h, w, 3]), [WIDTH, 9 * 13], [WIDTH], [n]], [], IntExprs())
    assert list(shape) == [n, WIDTH, hh, wh]
    assert list(eg.get_output_shapes([[n, WIDTH, hh, wh], [], [], [n, h, w, 3]], [], IntExprs())[0]) == [n, h, w, 3]
    assert ing.get_output_data_types(["UINT8", "HALF", "FLOAT", "FLOAT"]) == ["HALF"]
    assert eg.get_output_data_types(["HALF", "HALF", "FLOAT", "UINT8"], [4, 2, 1, 4]) == ["UINT8"]

    io = [desc(type=t, format=f) for t, f in [("UINT8", "LINEAR"), ("HALF", "LINEAR"), ("FLOAT", "LINEAR"),
                                               ("FLOAT", "LINEAR"), ("HALF", "HWC8")]]
    assert all(ing.supports_format_combination(i, io, 4) for i in range(5))
    io[4] = desc(type="HALF", format="LINEAR")  # NCHW features: not what the kernel writes
    assert not ing.supports_format_combination(4, io, 4)
    io = [desc(type=t, format=f) for t, f in [("HALF", "HWC8"), ("HALF", "LINEAR"), ("FLOAT", "LINEAR"),
                                               ("UINT8", "LINEAR"), ("UINT8", "LINEAR")]]
    assert all(eg.supports_format_combination(i, io, 4) for i in range(5))

    k_in, k_eg = kernel(aot_dir, "ingest"), kernel(aot_dir, "egest")
    ptrs = dict(zip((*ak.PLUGIN_IO["ingest"][0], "out_ptr"), (0x1100, 0x1200, 0x1300, 0x1400, 0x1500)))
    want_in = lp.ingest_launch(k_in, n, h, w, 16, ptrs)
    drv.arg_types = [v.dtype for v in want_in.kernel_params()[0]]
    ing.attach_to_context(None).enqueue([desc((n, h, w, 3)), desc((9 * 13, WIDTH)), desc((WIDTH,)), desc((n,))],
                                        [desc((n, WIDTH, hh, wh))], [0x1100, 0x1200, 0x1300, 0x1400], [0x1500], 0, 77)
    ptrs = dict(zip((*ak.PLUGIN_IO["egest"][0], "out_ptr"), (0x2100, 0x2200, 0x2300, 0x2400, 0x2500)))
    want_eg = lp.egest_launch(k_eg, n, h, w, hh, wh, ptrs)
    drv.arg_types = [v.dtype for v in want_eg.kernel_params()[0]]
    eg.enqueue([desc((n, WIDTH, hh, wh)), desc((9 * WIDTH, 12)), desc((12,)), desc((n, h, w, 3))],
               [desc((n, h, w, 3))], [0x2100, 0x2200, 0x2300, 0x2400], [0x2500], 0, 77)
    for (fn, grid, block, shared, stream, args), want, k in zip(drv.launches, (want_in, want_eg), (k_in, k_eg)):
        assert fn[1] == k.function and (grid, block, shared, stream) == (want.grid, want.block, want.shared, 77)
        assert args == [v for _, _, v in want.args]
    assert drv.loaded == [k_in.cubin(), k_eg.cubin()]  # the sm_87 cubins, each loaded once
    ing.enqueue([desc((1, 64, 64, 3))] * 4, [desc((1, WIDTH, 32, 32))], [0x100, 0x200, 0x300, 0x400], [0x500], 0, 0)
    assert len(drv.loaded) == 2
    with pytest.raises(KernelsError, match="does not match the frame"):
        ing.enqueue([desc((1, 64, 64, 3))] * 4, [desc((1, WIDTH, 16, 16))], [0x100, 0x200, 0x300, 0x400], [0x500], 0, 0)


def test_ipluginv3_recurrent_tail_with_a_stand_in_tensorrt(aot_dir, monkeypatch):
    """EgestGate (two FP32 HWC outputs) and FuseEgest: fields, shapes, types, formats, and the
    launches their enqueue makes (the planned grid and arguments, the sm_87 cubins)."""
    trt = fake_tensorrt()
    drv = FakeDriver()
    monkeypatch.setitem(plugins._STATE, "kernels", lp.KernelSet(aot_dir, "8.7", driver=drv))
    classes = ipluginv3.v3_classes(trt, plugins.registered_kernels)
    gc, fc = classes["egest_gate"][1](), classes["fuse_egest"][1]()
    assert (gc.name, fc.name) == ("EgestGate", "FuseEgest")

    def field(k, v):
        return trt.PluginField(k, np.array([v], np.int32), "INT32")

    eg = gc.create_plugin("EgestGate", [field("width", WIDTH), field("half", 1)], "BUILD")
    fu = fc.create_plugin("FuseEgest", [field("width", GATE), field("half", 0)], "BUILD")
    assert (eg.num_outputs, fu.num_outputs) == (2, 1)
    n, h, w = 2, 45, 71
    hh, wh = lp.half_grid(h, w, 16)
    frame = [n, h, w, 3]
    shapes = eg.get_output_shapes([[n, WIDTH, hh, wh], [], [], frame, frame, [n]], [], IntExprs())
    assert [list(x) for x in shapes] == [[n, 12, hh, wh], [n, 3, hh, wh]]
    assert eg.get_output_data_types(["HALF", "HALF", "FLOAT", "UINT8", "UINT8", "FLOAT"]) == ["FLOAT", "FLOAT"]
    assert list(fu.get_output_shapes([[n, GATE, hh, wh], [], [], [n, 12, hh, wh], frame, frame], [],
                                     IntExprs())[0]) == frame
    io = [desc(type=t, format=f) for t, f in [("HALF", "HWC8"), ("HALF", "LINEAR"), ("FLOAT", "LINEAR"),
                                               ("UINT8", "LINEAR"), ("UINT8", "LINEAR"), ("FLOAT", "LINEAR"),
                                               ("FLOAT", "HWC"), ("FLOAT", "HWC")]]
    assert all(eg.supports_format_combination(i, io, 6) for i in range(8))
    io[7] = desc(type="HALF", format="HWC8")  # the gate branch's input stays FP32 dense channel-last
    assert not eg.supports_format_combination(7, io, 6)
    io = [desc(type=t, format=f) for t, f in [("FLOAT", "HWC"), ("FLOAT", "LINEAR"), ("FLOAT", "LINEAR"),
                                               ("FLOAT", "HWC"), ("UINT8", "LINEAR"), ("UINT8", "LINEAR"),
                                               ("UINT8", "LINEAR")]]
    assert all(fu.supports_format_combination(i, io, 6) for i in range(7))

    k_g, k_f = kernel(aot_dir, "egest_gate"), kernel(aot_dir, "fuse_egest")
    ptrs = dict(zip(ak.PLUGIN_IO["egest_gate"][0] + ak.PLUGIN_IO["egest_gate"][1], range(0x3100, 0x3900, 0x100)))
    want_g = lp.egest_launch(k_g, n, h, w, hh, wh, ptrs)
    drv.arg_types = [v.dtype for v in want_g.kernel_params()[0]]
    eg.attach_to_context(None).enqueue(
        [desc((n, WIDTH, hh, wh)), desc((9 * WIDTH, 12)), desc((12,)), desc(tuple(frame)), desc(tuple(frame)),
         desc((n,))], [desc((n, 12, hh, wh)), desc((n, 3, hh, wh))], list(range(0x3100, 0x3700, 0x100)),
        [0x3700, 0x3800], 0, 77)
    ptrs = dict(zip(ak.PLUGIN_IO["fuse_egest"][0] + ak.PLUGIN_IO["fuse_egest"][1], range(0x4100, 0x4800, 0x100)))
    want_f = lp.egest_launch(k_f, n, h, w, hh, wh, ptrs)
    drv.arg_types = [v.dtype for v in want_f.kernel_params()[0]]
    fu.enqueue([desc((n, GATE, hh, wh)), desc((GATE, 12)), desc((12,)), desc((n, 12, hh, wh)), desc(tuple(frame)),
                desc(tuple(frame))], [desc(tuple(frame))], list(range(0x4100, 0x4700, 0x100)), [0x4700], 0, 77)
    for (fn, grid, block, shared, stream, args), want, k in zip(drv.launches, (want_g, want_f), (k_g, k_f)):
        assert fn[1] == k.function and (grid, block, shared, stream) == (want.grid, want.block, want.shared, 77)
        assert args == [v for _, _, v in want.args]
    assert drv.loaded == [k_g.cubin(), k_f.cubin()]
    with pytest.raises(KernelsError, match="FuseEgest features have 16 channels, the kernel 12"):
        fu.enqueue([desc((n, 16, hh, wh)), None, None, desc((n, 12, hh, wh)), desc(tuple(frame))], [None],
                   [0] * 6, [0], 0, 0)
    with pytest.raises(KernelsError, match="FuseEgest: the noise .* is not on the features' grid"):
        fu.enqueue([desc((n, GATE, hh, wh)), None, None, desc((n, 12, hh + 1, wh)), desc(tuple(frame))], [None],
                   [0] * 6, [0], 0, 0)


def fake_trtp():
    """The parts of tensorrt.plugin qdp.py uses; its decorators keep the functions by (kind, id)."""

    class TensorDesc:
        def __init__(self, shape=None, dtype=None):
            self.shape_expr, self.dtype = list(shape or ()), dtype

        def like(self):
            return TensorDesc(self.shape_expr, self.dtype)

    class SymExprs(list):
        pass

    class SymIntExprs(SymExprs):
        @classmethod
        def from_tuple(cls, xs):
            return cls(xs)

    found = {}

    def decorator(kind):
        return lambda pid: lambda f: found.setdefault((kind, pid), f)

    return found, types.SimpleNamespace(
        TensorDesc=TensorDesc, SymExprs=SymExprs, SymIntExprs=SymIntExprs, SymInt32=int,
        KernelLaunchParams=type("KernelLaunchParams", (), {}), cdiv=lambda a, b: -(-a // b),
        from_shape_expr=lambda shape, dtype: TensorDesc(shape, dtype), AutoTuneCombination=lambda t, f: (t, f),
        register=decorator("register"), autotune=decorator("autotune"), aot_impl=decorator("aot_impl"))


def test_qdp_plugins_follow_the_tensorrt_plugin_schema(aot_dir, monkeypatch):
    """Against a stand-in for tensorrt.plugin, the rules its validation applies (read in TensorRT's
    tensorrt/plugin/_validate.py): tensors then attributes; one TensorDesc or a tuple of them out;
    autotune and aot_impl take the tensors, some attributes in order, `outputs` (and `tactic`);
    aot_impl is annotated (name, PTX, KernelLaunchParams, SymExprs). And what each aot_impl returns
    for a 45x71 frame pair: the launch the IPluginV3 path plans and the kernel's int32 scalars."""
    import inspect
    import typing

    from edgedenoise.trt import qdp

    found, trtp = fake_trtp()
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(plugin=trtp))
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setitem(plugins._STATE, "kernels", lp.KernelSet(aot_dir, "8.7"))
    trt = types.SimpleNamespace(float16="float16", float32="float32")
    qdp.register(trt, plugins.registered_kernels)
    n, h, w = 2, 45, 71
    hh, wh = lp.half_grid(h, w, 16)
    fr = (n, h, w, 3)
    shapes = {"ingest": [fr, (117, WIDTH), (WIDTH,), (n,)],
              "egest": [(n, WIDTH, hh, wh), (9 * WIDTH, 12), (12,), fr],
              "egest_gate": [(n, WIDTH, hh, wh), (9 * WIDTH, 12), (12,), fr, fr, (n,)],
              "fuse_egest": [(n, GATE, hh, wh), (GATE, 12), (12,), (n, 12, hh, wh), fr, fr]}
    attrs = {"ingest": {"multiple": 16, "width": WIDTH, "half": 1}, "egest": {"width": WIDTH, "half": 1},
             "egest_gate": {"width": WIDTH, "half": 1}, "fuse_egest": {"width": GATE, "half": 0}}
    out_shapes = {"ingest": [(n, WIDTH, hh, wh)], "egest": [fr], "egest_gate": [(n, 12, hh, wh), (n, 3, hh, wh)],
                  "fuse_egest": [fr]}
    for kind, name in ak.PLUGIN_NAMES.items():
        pid = f"{ak.NAMESPACE}::{name}"
        desc_fn, tune, aot = (found[(k, pid)] for k in ("register", "autotune", "aot_impl"))
        n_in, n_out = (len(x) for x in ak.PLUGIN_IO[kind])
        sig = inspect.signature(desc_fn)
        params = list(sig.parameters.values())
        assert [p.annotation for p in params[:n_in]] == [trtp.TensorDesc] * n_in, kind
        assert [p.annotation for p in params[n_in:]] == [int] * len(attrs[kind]), kind
        tensors, registered = [p.name for p in params[:n_in]], [p.name for p in params[n_in:]]
        assert registered == list(attrs[kind])
        ret = sig.return_annotation
        assert (ret is trtp.TensorDesc and n_out == 1) or \
            (typing.get_origin(ret) is tuple and typing.get_args(ret) == (trtp.TensorDesc,) * n_out), kind
        for fn, tail in ((tune, ["outputs"]), (aot, ["outputs", "tactic"])):
            names = list(inspect.signature(fn).parameters)
            assert names[:n_in] == tensors and names[-len(tail):] == tail, (kind, names)
            used = names[n_in:-len(tail)]
            assert used == [a for a in registered if a in used], (kind, names)
        ret = inspect.signature(aot).return_annotation
        args = typing.get_args(ret)
        assert typing.get_origin(ret) is tuple and len(args) == 4 and args[2] is trtp.KernelLaunchParams
        assert issubclass(args[3], trtp.SymExprs)

        ins = [trtp.TensorDesc(s) for s in shapes[kind]]
        outs = desc_fn(*ins, **attrs[kind])
        outs = list(outs) if isinstance(outs, tuple) else [outs]
        assert [o.shape_expr for o in outs] == [list(s) for s in out_shapes[kind]], kind
        (types_, formats), = tune(*ins, **{a: attrs[kind][a] for a in inspect.signature(tune).parameters
                                           if a in attrs[kind]}, outputs=outs)
        assert len(types_.split(",")) == len(formats.split(",")) == n_in + n_out, kind
        fn_name, ptx, launch, extra = aot(*ins, **attrs[kind], outputs=outs, tactic=0)
        k = plugins.registered_kernels().kernel(kind, attrs[kind]["width"], "fp16" if attrs[kind]["half"] else "fp32")
        ptrs = dict.fromkeys(ak.PLUGIN_IO[kind][0] + ak.PLUGIN_IO[kind][1], 0)
        want = lp.ingest_launch(k, n, h, w, 16, ptrs) if kind == "ingest" else lp.egest_launch(k, n, h, w, hh, wh, ptrs)
        assert fn_name == k.function.encode() and ptx == k.qdp_ptx()
        assert (launch.grid_x, launch.grid_y, launch.grid_z) == want.grid, kind
        assert (launch.block_x, launch.shared_mem) == (want.block[0], want.shared)
        assert list(extra) == [v for _, t, v in want.args if t in ("i32", "i64", "u32", "fp32")], kind


# ---------------------------------------------------------------- the build's pure-Python parts
# (--kernels auto's comparison and choice: tests/test_engine.py, which needs no triton)


def test_triton_build_finds_or_exports_the_frame_native_graph(frame_native_onnx, tmp_path):
    from edgedenoise.modelfile import resolve
    from edgedenoise.trt import EngineError
    from edgedenoise.trt.build import frame_native_onnx as find

    assert find(frame_native_onnx, tmp_path, log=lambda m: None) == frame_native_onnx
    said = []
    got = find(resolve("default").onnx, tmp_path, log=said.append)  # the float graph, weights beside it: export
    assert got == tmp_path / "small.frame.onnx" and graph.onnx_variant(got) == "frame-native" and "exporting" in said[0]
    alone = tmp_path / "alone" / "m.onnx"  # a float graph without weights beside it
    alone.parent.mkdir()
    shutil.copy(resolve("default").onnx, alone)
    with pytest.raises(EngineError, match=r"needs the frame-native graph of .*m\.onnx.*--out .*m\.frame\.onnx"):
        find(alone, tmp_path)
    shutil.copy(frame_native_onnx, alone.with_name("m.frame.onnx"))
    assert find(alone, tmp_path, log=lambda m: None) == alone.with_name("m.frame.onnx")


# ---------------------------------------------------------------- with TensorRT


def test_build_triton_without_tensorrt_says_so(tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here: the real build tests cover it")
    except ImportError:
        pass
    p = subprocess.run([sys.executable, "-m", "edgedenoise.cli", "build", "m.onnx", "--out", str(tmp_path / "m.engine"),
                        "--kernels", "triton"], capture_output=True, text=True)
    assert p.returncode == 2 and "TensorRT is not installed here" in p.stderr and "not built yet" not in p.stderr


def test_plugin_flavour_follows_the_tensorrt_version():
    old = types.SimpleNamespace(__version__="10.3.0.30")
    assert plugins.plugin_flavour(old) == "ipluginv3" == plugins.plugin_flavour(old, "ipluginv3")
    with pytest.raises(KernelsError, match=r"need TensorRT >= 10.9 \(this is 10.3.0.30\)"):
        plugins.plugin_flavour(old, "qdp")
    with pytest.raises(KernelsError, match="unknown plugin flavour"):
        plugins.plugin_flavour(old, "cpp")


def gpu_cc() -> int:
    try:
        return cuda.device_cc()
    except Exception as e:  # no cuda-python, no driver, no GPU
        pytest.skip(f"no CUDA GPU reachable through cuda-python: {e}")


def test_register_plugins_with_tensorrt(aot_dir):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installable on this machine")
    flavour = plugins.register_plugins(trt, aot_dir, cc=87)
    qdp = version_tuple(trt.__version__) >= plugins.QDP_MIN_VERSION and plugins.has_qdp_aot()
    assert flavour == ("qdp" if qdp else "ipluginv3")
    if flavour == "ipluginv3":
        registry = trt.get_plugin_registry()
        assert registry.get_creator("Ingest", "1", "edgedenoise") is not None
        assert registry.get_creator("Egest", "1", "edgedenoise") is not None


@pytest.fixture(scope="module")
def device_kernels(tmp_path_factory):
    pytest.importorskip("tensorrt", reason="TensorRT is not installable on this machine")
    cc = gpu_cc()
    out = tmp_path_factory.mktemp("kernels")
    p = subprocess.run([sys.executable, "-m", "edgedenoise.cli", "kernels", "build", "--target", f"sm_{cc}",
                        "--sizes", "small", "--out", str(out)], capture_output=True, text=True, env=COMPILE_ENV)
    assert p.returncode == 0, p.stderr[-2000:]
    return out


@pytest.mark.slow
def test_triton_engine_matches_onnxruntime(device_kernels, frame_native_onnx, tmp_path, kodak_rgb):
    from edgedenoise import Denoiser
    from edgedenoise.noise import protocol_noisy
    from edgedenoise.trt.build import build_engine
    from edgedenoise.trt.sidecar import read_sidecar

    eng = tmp_path / "fn.engine"
    meta = build_engine(frame_native_onnx, eng, "fp32", profile={"min": (64, 64), "opt": (512, 512), "max": (512, 768)},
                        kernels="triton", kernels_dir=device_kernels)
    assert meta["kernels"] == "triton" and meta["plugins"] in ("qdp", "ipluginv3")
    assert read_sidecar(eng)["plugins"] == meta["plugins"]
    frame = protocol_noisy(np.ascontiguousarray(kodak_rgb[:, :, ::-1]), 25, 0, "camera")
    for crop in (frame, frame[:301, :509]):  # an odd size: the kernels pad by reflection
        a = Denoiser.load(eng).denoise(np.ascontiguousarray(crop), 25)
        b = Denoiser.load("default").denoise(np.ascontiguousarray(crop), 25)
        assert a.shape == crop.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.slow
def test_recurrent_triton_engine_matches_onnxruntime_over_frames(device_kernels, recurrent_onnx, tmp_path, kodak_rgb):
    """default-video's frame-native engine (Ingest, EgestGate, the gate convs, FuseEgest) over three
    frames of a still scene, each given the engine's own last output: ONNX Runtime's float graph on
    the same inputs to one level on few pixels (fp32)."""
    from edgedenoise import Denoiser
    from edgedenoise.noise import protocol_noisy
    from edgedenoise.trt.build import build_engine

    eng = tmp_path / "video.engine"
    meta = build_engine(recurrent_onnx, eng, "fp32", profile={"min": (64, 64), "opt": (512, 512), "max": (512, 768)},
                        kernels="triton", kernels_dir=device_kernels)
    assert meta["recurrent"] is True and meta["widths"] == {"ingest": WIDTH, "egest_gate": WIDTH, "fuse_egest": GATE}
    trt_den, ort_den = Denoiser.load(eng), Denoiser.load("default-video", backend="onnxruntime")
    clean = np.ascontiguousarray(kodak_rgb[:301, :509, ::-1])  # an odd size: the kernels pad by reflection
    prev = None
    for i in range(3):
        frame = protocol_noisy(clean, 25, i, "camera")
        a, b = trt_den.denoise(frame, 25, prev), ort_den.denoise(frame, 25, prev)
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"frame {i}: max {diff.max()}"
        prev = a


@pytest.mark.slow
def test_auto_keeps_one_engine_and_says_which(device_kernels, tmp_path):
    from edgedenoise.engine import build_engine  # kernels auto: the facade chooses, trt.build builds one
    from edgedenoise.modelfile import resolve
    from edgedenoise.trt.auto import TOLERANCE
    from edgedenoise.trt.sidecar import read_sidecar

    said = []
    eng = tmp_path / "auto.engine"
    meta = build_engine(resolve("default").onnx, eng, "fp16", kernels="auto", kernels_dir=device_kernels,
                        log=said.append)
    assert meta["auto"]["kept"] in ("native", "triton") and meta["kernels"] == meta["auto"]["kept"]
    assert set(meta["auto"]["ms"]) | set(meta["auto"]["refused"]) == {"native", "triton"}
    kept = meta["auto"]["vs_onnxruntime"][meta["kernels"]]  # checked against ONNX Runtime before it was kept
    assert kept["max_abs"] <= TOLERANCE["fp16"].max_abs and kept["psnr"] >= TOLERANCE["fp16"].min_psnr
    assert said[-1].startswith(f"build auto: kept {meta['kernels']}")
    assert read_sidecar(eng)["auto"]["kept"] == meta["kernels"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("auto.engine")) == \
        ["auto.engine", "auto.engine.json"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="launching the AOT cubins needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["ingest", "egest"])
def test_aot_cubin_launched_by_the_driver_equals_the_triton_launcher(aot_dir, kind):
    """The IPluginV3 path without TensorRT: this GPU's ahead-of-time cubin, loaded and launched
    through cuda-python with the planned grid and packed arguments, computes what the JIT-compiled
    kernel launched by kernels/boundary.py computes (fp16 features: within the boundary kernels'
    fp16 tolerance, tests/test_kernels_boundary.py)."""
    from edgedenoise_kernels import boundary

    from .test_kernels_boundary import EGEST_SHARE, INGEST_TOL

    cc = gpu_cc()
    if cc not in TARGETS:
        pytest.skip(f"the AOT fixture builds {TARGETS}, not sm_{cc}")
    ks = lp.KernelSet(aot_dir, cc)
    k = ks.kernel(kind, WIDTH, "fp16")
    g = torch.Generator().manual_seed(0)
    n, h, w = 2, 45, 71  # odd sizes: reflect padding and partial tiles
    frame = torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8).cuda()
    hh, wh = lp.half_grid(h, w, 16)
    if kind == "ingest":
        wp = (torch.randn(9 * 13, WIDTH, generator=g) / 11).half().cuda()
        bias, smap = (torch.randn(WIDTH, generator=g) * 0.1).cuda(), torch.rand(n, generator=g).cuda()
        want = boundary.ingest(frame, wp, bias, smap, 16)
        got = torch.full_like(want, float("nan"))
        launch = lp.ingest_launch(k, n, h, w, 16, {"frame_ptr": frame.data_ptr(), "wp_ptr": wp.data_ptr(),
                                                    "b_ptr": bias.data_ptr(), "smap_ptr": smap.data_ptr(),
                                                    "out_ptr": got.data_ptr()})
    else:
        feats = torch.randn(n, hh, wh, WIDTH, generator=g).relu().half().cuda()
        wp = (torch.randn(9 * WIDTH, 12, generator=g) * 0.02).half().cuda()
        bias = (torch.randn(12, generator=g) * 0.01).cuda()
        want = boundary.egest(feats, wp, bias, frame)
        got = torch.zeros_like(want)
        launch = lp.egest_launch(k, n, h, w, hh, wh, {"h_ptr": feats.data_ptr(), "wp_ptr": wp.data_ptr(),
                                                       "b_ptr": bias.data_ptr(), "frame_ptr": frame.data_ptr(),
                                                       "out_ptr": got.data_ptr()})
    torch.cuda.synchronize()
    ks.launch(k, launch, torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    if kind == "ingest":
        atol, rtol = INGEST_TOL["fp16"]
        err = (got.float() - want.float()).abs()
        bad = ~(err <= atol + rtol * want.float().abs())  # NaN (an element never written) counts as bad
        assert not bad.any(), f"{int(bad.sum())} of {err.numel()} features differ; max error {err.max():.3g}"
    else:
        diff = (got.int() - want.int()).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < EGEST_SHARE["fp16"], \
            f"max {diff.max()}, {int((diff > 0).sum())} differ"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="launching the AOT cubins needs a CUDA GPU")
def test_aot_recurrent_tail_launched_by_the_driver_equals_the_triton_launchers(aot_dir):
    """EgestGate's and FuseEgest's cubins, launched through cuda-python as the IPluginV3 plugins
    launch them, against the JIT kernels through kernels/boundary.py: the noise within float error,
    the gate branch's input within fp16 rounding (the JIT launcher writes it in the features'
    dtype, the plugin in FP32), the fused frame to one level on few pixels."""
    from edgedenoise_kernels import boundary

    cc = gpu_cc()
    if cc not in TARGETS:
        pytest.skip(f"the AOT fixture builds {TARGETS}, not sm_{cc}")
    ks = lp.KernelSet(aot_dir, cc)
    g = torch.Generator().manual_seed(1)
    n, h, w = 2, 45, 71
    hh, wh = lp.half_grid(h, w, 16)
    frame = torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8).cuda()
    prev = (frame.int() + torch.randint(-6, 7, frame.shape, generator=g).cuda()).clamp(0, 255).to(torch.uint8)
    feats = torch.randn(n, hh, wh, WIDTH, generator=g).relu().half().cuda()
    wp = (torch.randn(9 * WIDTH, 12, generator=g) * 0.02).half().cuda()
    bias, smap = (torch.randn(12, generator=g) * 0.01).cuda(), torch.rand(n, generator=g).cuda()
    noise_want, gin_want = boundary.egest_gate(feats, wp, bias, frame, prev, smap)
    noise, gin = torch.full_like(noise_want, float("nan")), torch.full(gin_want.shape, float("nan")).cuda()
    k = ks.kernel("egest_gate", WIDTH, "fp16")
    ptrs = {"h_ptr": feats, "wp_ptr": wp, "b_ptr": bias, "frame_ptr": frame, "prev_ptr": prev, "smap_ptr": smap,
            "noise_ptr": noise, "gin_ptr": gin}
    torch.cuda.synchronize()
    ks.launch(k, lp.egest_launch(k, n, h, w, hh, wh, {a: t.data_ptr() for a, t in ptrs.items()}),
              torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    torch.testing.assert_close(noise, noise_want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gin, gin_want.float(), atol=2e-3, rtol=2.0**-10)

    gfeat = torch.randn(n, hh, wh, GATE, generator=g).relu().cuda()
    wg, bg = (torch.randn(GATE, 12, generator=g) * 0.3).cuda(), (torch.randn(12, generator=g) * 0.3).cuda()
    want = boundary.fuse_egest(gfeat, wg, bg, noise_want, frame, prev)
    got = torch.zeros_like(want)
    k = ks.kernel("fuse_egest", GATE, "fp32")
    ptrs = {"g_ptr": gfeat, "wp_ptr": wg, "b_ptr": bg, "noise_ptr": noise_want, "frame_ptr": frame,
            "prev_ptr": prev, "out_ptr": got}
    ks.launch(k, lp.egest_launch(k, n, h, w, hh, wh, {a: t.data_ptr() for a, t in ptrs.items()}),
              torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    diff = (got.int() - want.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01, f"max {diff.max()}, {int((diff > 0).sum())} differ"
