"""TensorRT engines. Building and running need TensorRT and a GPU (skipped elsewhere, with the
reason); what decides without them runs everywhere: the sidecar checks that refuse an engine from
another machine, the INT8 graph an engine is built from, and how `--kernels auto` compares an
engine's output with ONNX Runtime's and chooses."""
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgedenoise.engine import EngineError, check_sidecar, read_sidecar, sidecar_path
from edgedenoise.trt import auto, int8
from edgedenoise.trt.sidecar import write_sidecar

META = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "precision": "fp16", "onnx": "m.onnx"}


def test_engine_from_another_tensorrt_or_gpu_is_refused(tmp_path):
    eng = tmp_path / "m.engine"
    check_sidecar(META, {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}, eng)  # same: fine
    with pytest.raises(EngineError, match="built with TensorRT 10.3.0, this machine has 10.7.0: rebuild it here"):
        check_sidecar(META, {"tensorrt": "10.7.0", "gpu": "Orin", "compute_capability": "8.7"}, eng)
    with pytest.raises(EngineError, match=r"built for Orin \(sm 8.7\), this is NVIDIA H100 \(sm 9.0\)"):
        check_sidecar(META, {"tensorrt": "10.3.0", "gpu": "NVIDIA H100", "compute_capability": "9.0"}, eng)


def test_rebuild_command_names_the_calibration_images(tmp_path):
    meta = {**META, "precision": "int8", "calib": "/data/CBSD432"}
    with pytest.raises(EngineError, match="--precision int8 --calib /data/CBSD432$"):
        check_sidecar(meta, {"tensorrt": "10.7.0", "gpu": "Orin", "compute_capability": "8.7"}, tmp_path / "m.engine")


def test_sidecar_carries_the_results_stamp(tmp_path):
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"plan")
    written = write_sidecar(eng, {**META, "kernels": "native"})
    meta = read_sidecar(eng)
    assert meta == written and meta["precision"] == "fp16" and meta["tensorrt"] == "10.3.0"
    assert {"date", "command", "machine", "versions"} <= set(meta)  # runtime.stats.stamp, as every results file
    assert "edgedenoise" in meta["versions"] and "host" in meta["machine"]
    check_sidecar(meta, {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}, eng)


def test_missing_or_corrupt_sidecar_and_engine(tmp_path):
    eng = tmp_path / "m.engine"
    with pytest.raises(EngineError, match="engine not found"):
        read_sidecar(eng)
    eng.write_bytes(b"plan")
    with pytest.raises(EngineError, match="has no sidecar"):
        read_sidecar(eng)
    sidecar_path(eng).write_text("{truncated")
    with pytest.raises(EngineError, match="not valid JSON"):
        read_sidecar(eng)
    sidecar_path(eng).write_text("[1, 2]")
    with pytest.raises(EngineError, match="holds a JSON list, not an object"):
        read_sidecar(eng)
    sidecar_path(eng).write_text(json.dumps(META))
    assert read_sidecar(eng)["precision"] == "fp16"


def test_build_without_tensorrt_says_so(tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here: the real build test covers it")
    except ImportError:
        pass
    p = subprocess.run([sys.executable, "-m", "edgedenoise.cli", "build", "m.onnx", "--out",
                        str(tmp_path / "m.engine")], capture_output=True, text=True)
    assert p.returncode == 2 and "TensorRT is not installed here" in p.stderr


def test_a_qdq_graph_builds_int8_only(tmp_path):
    """`build tiny.trt.int8.onnx --precision fp16` would give an INT8 engine whose sidecar says fp16:
    refused in one line (exit 2) naming the float model beside it, before TensorRT is asked for, so
    the same here and on a device; the same for the CPU's uint8 graph."""
    from edgedenoise.modelfile import resolve

    models = resolve("tiny").onnx.parent
    for graph in ("tiny.trt.int8.onnx", "tiny.int8.onnx"):
        for kernels in ("native", "auto"):
            p = subprocess.run([sys.executable, "-m", "edgedenoise.cli", "build", str(models / graph), "--out",
                                str(tmp_path / "m.engine"), "--precision", "fp16", "--kernels", kernels],
                               capture_output=True, text=True)
            assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
            assert "INT8 (Q/DQ) graph" in p.stderr and f"float model {models / 'tiny.onnx'}" in p.stderr
    assert not (tmp_path / "m.engine").exists()
    int8.refuse_float_build_of_qdq(models / "tiny.onnx", "fp16")  # the float graph: no objection
    int8.refuse_float_build_of_qdq(models / "tiny.trt.int8.onnx", "int8")


def test_build_and_run_matches_onnxruntime(tmp_path, kodak_rgb):
    pytest.importorskip("tensorrt", reason="TensorRT is not installable on this machine")
    from edgedenoise import Denoiser
    from edgedenoise.engine import build_engine
    from edgedenoise.modelfile import resolve
    from edgedenoise.noise import protocol_noisy

    onnx = resolve("default").onnx
    eng = tmp_path / "m.engine"
    build_engine(onnx, eng, "fp32", profile={"min": (64, 64), "opt": (512, 512), "max": (512, 512)})
    frame = protocol_noisy(np.ascontiguousarray(kodak_rgb[:, :, ::-1]), 25, 0, "camera")
    a = Denoiser.load(eng).denoise(frame, 25)
    b = Denoiser.load("default").denoise(frame, 25)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


# ---------------------------------------------------------------- INT8: which graph, which flow


def test_int8_builds_from_the_qdq_graph_and_keeps_the_calibrator_for_tensorrt_10_only():
    assert int8.int8_flow("10.3.0.30", have_qdq=True) == "strongly-typed"
    assert int8.int8_flow("11.0.0", have_qdq=True) == "strongly-typed"
    assert int8.int8_flow("10.3.0.30", have_qdq=False) == "calibrator"  # no Q/DQ graph to be had here
    with pytest.raises(EngineError, match=r"no INT8 calibrator \(removed in TensorRT 11\).*--for tensorrt"):
        int8.int8_flow("11.0.0", have_qdq=False)


def test_int8_graph_is_found_made_or_refused(tmp_path, train_subset):
    import onnx

    from edgedenoise.modelfile import resolve
    from edgedenoise.quantize import qdq_problems

    src = resolve("tiny")
    model = tmp_path / "tiny.onnx"
    for f in (src.onnx, src.onnx.with_suffix(".json")):
        shutil.copy(f, tmp_path / f.name)
    eng = tmp_path / "m.engine"
    with pytest.raises(EngineError, match="--calib DIR.*--for tensorrt"):  # a float graph, nothing to build int8 from
        int8.qdq_graph(model, eng, None, log=lambda m: None)
    # today's CPU INT8 (uint8 activations): refused, saying what to build from instead
    with pytest.raises(EngineError, match=r"not a Q/DQ graph TensorRT takes .*need int8 0.*--for tensorrt"):
        int8.qdq_graph(src.onnx_int8, eng, None, log=lambda m: None)
    fake = tmp_path / "tiny.trt.int8.onnx"  # beside the float graph: used (it is checked like any Q/DQ graph)
    shutil.copy(src.onnx_int8, fake)
    with pytest.raises(EngineError, match="not a Q/DQ graph TensorRT takes"):
        int8.qdq_graph(model, eng, None, log=lambda m: None)
    said = []  # with calibration images: made now, beside the engine, symmetric
    made = int8.qdq_graph(model, eng, train_subset, log=said.append)
    assert made == tmp_path / "m.engine.qdq.onnx" and "calibrating" in said[0]
    assert qdq_problems(onnx.load(str(made))) == [] and int8.qdq_graph(made, eng, None) == made


class FakeTensorRT:
    """The parts of the tensorrt module build_engine uses, recording what it is asked for."""

    __version__ = "10.3.0.30"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=0)
    MemoryPoolType = SimpleNamespace(WORKSPACE="workspace")
    BuilderFlag = SimpleNamespace(FP16="FP16", INT8="INT8")

    def __init__(self):
        self.seen = {"flags": set(), "calibrator": None, "profile": {}}
        seen = self.seen

        class Network:
            inputs: list = []  # the parsed graph's input names

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, i):
                return SimpleNamespace(shape=(1, 3, -1, -1), name=self.inputs[i])

        class Config:
            def set_memory_pool_limit(self, pool, size): pass
            def add_optimization_profile(self, p): pass
            def set_flag(self, flag): seen["flags"].add(flag)
            def create_timing_cache(self, data): return b""
            def set_timing_cache(self, cache, ignore_mismatch): pass
            def get_timing_cache(self): return SimpleNamespace(serialize=lambda: b"cache")

            def __setattr__(self, name, value):
                seen["calibrator"] = value

        class Builder:
            def __init__(self, logger): pass
            def create_network(self, flags):
                seen["network_flags"] = flags
                return Network()
            def create_builder_config(self): return Config()
            def create_optimization_profile(self):
                return SimpleNamespace(set_shape=lambda name, *shapes: seen["profile"].update({name: shapes}))
            def build_serialized_network(self, network, config): return b"plan"

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                self.network = network

            def parse(self, data):
                import onnx

                seen["parsed"] = data
                self.network.inputs = [i.name for i in onnx.load_from_string(data).graph.input]
                return True

        self.Builder, self.OnnxParser = Builder, OnnxParser


@pytest.mark.parametrize("case", ["fp16", "int8 from a Q/DQ graph", "int8, the Q/DQ graph given",
                                  "int8, no Q/DQ graph to be had"])
def test_build_flow_per_precision_with_a_stand_in_tensorrt(monkeypatch, tmp_path, train_subset, case):
    """What build_engine asks of TensorRT: fp16 a weakly typed network with the FP16 flag; int8 the
    symmetric Q/DQ graph in a strongly typed network, no precision flag and no calibrator; the
    calibrator (INT8 flag) only where no Q/DQ graph can be made (TensorRT 10.x)."""
    from edgedenoise.modelfile import resolve
    from edgedenoise.trt import build

    trt = FakeTensorRT()
    monkeypatch.setattr(build, "load_tensorrt", lambda: trt)
    monkeypatch.setattr(build, "this_machine", lambda: {"tensorrt": trt.__version__, "gpu": "Orin",
                                                        "compute_capability": "8.7"})
    monkeypatch.setattr(int8, "calibrator", lambda *a: "the calibrator")
    if case.endswith("to be had"):
        monkeypatch.setattr(int8, "can_quantize", lambda: False)
    src = resolve("tiny")
    for f in (src.onnx, src.onnx.with_suffix(".json")):
        shutil.copy(f, tmp_path / f.name)
    precision = "fp16" if case == "fp16" else "int8"
    model, calib = tmp_path / "tiny.onnx", train_subset
    if case.endswith("given"):  # made beforehand: edgedenoise quantize --for tensorrt, beside the model
        from edgedenoise.quantize import quantize_model

        model = Path(quantize_model(model, train_subset, count=4, progress=False, target="tensorrt")["path"])
        calib = None
    said = []
    meta = build.build_engine(model, tmp_path / "m.engine", precision, calib, log=said.append)
    assert read_sidecar(tmp_path / "m.engine") == meta and (tmp_path / "m.engine").read_bytes() == b"plan"
    if case == "fp16":
        assert trt.seen["network_flags"] == 0 and trt.seen["flags"] == {"FP16"} and "int8" not in meta
    elif case.startswith("int8 from") or case.endswith("given"):
        qdq = tmp_path / ("m.engine.qdq.onnx" if calib else "tiny.trt.int8.onnx")
        assert trt.seen["network_flags"] == 1 << 0 and trt.seen["flags"] == set() and trt.seen["calibrator"] is None
        assert trt.seen["parsed"] == qdq.read_bytes() and meta["int8"]["qdq_onnx"] == str(qdq.resolve())
        assert meta["int8"]["flow"] == "explicit Q/DQ, strongly typed" and meta.get("calib") == (calib and str(calib))
        assert meta["onnx"] == str((tmp_path / "tiny.onnx").resolve())  # the float model: its config, a rebuild
    else:
        assert trt.seen["network_flags"] == 0 and trt.seen["flags"] == {"FP16", "INT8"}
        assert trt.seen["calibrator"] == "the calibrator" and "not checked" in " ".join(said)


def test_build_of_a_recurrent_model_profiles_its_previous_frame(monkeypatch, tmp_path, train_subset):
    """A recurrent model's graph (tiny-video): `previous` gets the frame's profile, the sidecar says
    recurrent; INT8 without a Q/DQ graph is refused in one line (the legacy calibrator cannot feed
    the model its own outputs), before TensorRT builds anything."""
    from edgedenoise.modelfile import resolve
    from edgedenoise.trt import EngineError, build

    trt = FakeTensorRT()
    monkeypatch.setattr(build, "load_tensorrt", lambda: trt)
    monkeypatch.setattr(build, "this_machine", lambda: {"tensorrt": trt.__version__, "gpu": "Orin",
                                                        "compute_capability": "8.7"})
    monkeypatch.setattr(int8, "calibrator", lambda *a: "the calibrator")
    monkeypatch.setattr(int8, "can_quantize", lambda: False)
    src = resolve("tiny-video")
    for f in (src.onnx, src.onnx.with_suffix(".json")):
        shutil.copy(f, tmp_path / f.name)
    profile = {"min": (64, 64), "opt": (480, 640), "max": (720, 1280)}
    meta = build.build_engine(tmp_path / src.onnx.name, tmp_path / "v.engine", "fp16", profile=profile)
    want = tuple((1, 3, *profile[k]) for k in ("min", "opt", "max"))
    assert trt.seen["profile"] == {"noisy": want, "previous": want, "sigma": ((1,), (1,), (1,))}
    assert meta["recurrent"] is True and read_sidecar(tmp_path / "v.engine")["recurrent"] is True
    with pytest.raises(EngineError, match="recurrent model: its INT8 engine is built from the symmetric Q/DQ") as e:
        build.build_engine(tmp_path / src.onnx.name, tmp_path / "v8.engine", "int8", train_subset)
    assert "\n" not in str(e.value) and not (tmp_path / "v8.engine").exists()


def test_recurrent_engine_matches_onnxruntime_over_frames(tmp_path, kodak_rgb):
    """tiny-video as a TensorRT engine (fp32, native kernels) over three frames of a still scene,
    each given the engine's own last output: ONNX Runtime's output on the same inputs to one level."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installable on this machine")
    from edgedenoise import Denoiser
    from edgedenoise.engine import build_engine
    from edgedenoise.modelfile import resolve
    from edgedenoise.noise import protocol_noisy

    eng = tmp_path / "v.engine"
    meta = build_engine(resolve("tiny-video").onnx, eng, "fp32",
                        profile={"min": (64, 64), "opt": (512, 512), "max": (512, 768)})
    assert meta["recurrent"] is True
    trt_den, ort_den = Denoiser.load(eng), Denoiser.load("tiny-video", backend="onnxruntime")
    clean = np.ascontiguousarray(kodak_rgb[:, :, ::-1])
    prev = None
    for i in range(3):
        frame = protocol_noisy(clean, 25, i, "camera")
        a, b = trt_den.denoise(frame, 25, prev), ort_den.denoise(frame, 25, prev)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, f"frame {i}"
        prev = a


# ---------------------------------------------------------------- --kernels auto: compare, refuse, choose


@pytest.fixture(scope="module")
def auto_reference(kodak_rgb):
    """A real noisy frame and ONNX Runtime's output for it (tiny, float graph, fp32)."""
    from edgedenoise.modelfile import resolve
    from edgedenoise.noise import protocol_noisy

    noisy = protocol_noisy(np.ascontiguousarray(kodak_rgb[:256, :384, ::-1]), auto.CHECK_SIGMA, 0, "camera")
    return noisy, auto.reference_output(resolve("tiny").onnx, noisy)


def test_auto_passes_fp16_output(auto_reference):
    """The whole network in fp16 (PyTorch on the CPU: weights and features rounded to fp16) is
    within the tolerance, as an fp16 engine that computes the model must be."""
    torch = pytest.importorskip("torch")
    from edgedenoise.frames import to_uint8
    from edgedenoise.modelfile import load_model

    noisy, ref = auto_reference
    x = torch.from_numpy(np.ascontiguousarray(noisy[:, :, ::-1].transpose(2, 0, 1))[None] / np.float32(255))
    with torch.inference_mode():
        y = load_model("tiny").eval().half()(x.half(), torch.tensor([auto.CHECK_SIGMA / 255]).half())
    half = to_uint8(np.ascontiguousarray(y.float().clamp(0, 1)[0].numpy().transpose(1, 2, 0)[:, :, ::-1]))
    diff = auto.compare_outputs(half, ref)
    assert 0 < diff["max_abs"] <= 2 and diff["psnr"] > 58, diff  # what fp16 costs: about one level, here and there
    assert auto.accuracy_problem(diff, "fp16") is None and auto.accuracy_problem(diff, "fp32") is None


@pytest.mark.parametrize("fault", ["sigma doubled", "channels swapped", "rounding bias", "shape"])
def test_auto_refuses_an_engine_that_computes_something_else(auto_reference, fault):
    from edgedenoise.modelfile import resolve

    noisy, ref = auto_reference
    if fault == "sigma doubled":  # a wrong noise-map scale
        from edgedenoise import Denoiser

        out = Denoiser.load(resolve("tiny").onnx, backend="onnxruntime").denoise(noisy, 2 * auto.CHECK_SIGMA)
    elif fault == "channels swapped":  # RGB where BGR belongs
        out = np.ascontiguousarray(ref[:, :, ::-1])
    elif fault == "rounding bias":  # truncation instead of rounding: half the values one level low
        low = np.random.default_rng(0).random(ref.shape) < 0.5
        out = np.where(low & (ref > 0), ref - 1, ref).astype(np.uint8)
    else:
        out = ref[:-16]
    problem = auto.accuracy_problem(auto.compare_outputs(out, ref), "fp16")
    assert problem is not None and ("differs from ONNX Runtime" in problem or "shape" in problem), problem


def test_auto_chooses_the_faster_of_those_that_passed():
    frame = "1280x720"
    assert auto.choose({"native": 5.0, "triton": 3.0}, {}, {}, frame) == \
        ("triton", "3.00 ms against 5.00 ms for native per 1280x720 frame")
    keep, why = auto.choose({"triton": 9.0}, {"native": "its output differs"}, {}, frame)
    assert keep == "triton" and why == "the native engine was refused: its output differs"  # slower, but right
    keep, why = auto.choose({"native": 2.0}, {}, {"triton": "no AOT kernels"}, frame)
    assert keep == "native" and why == "the triton build failed (no AOT kernels)"
    with pytest.raises(EngineError, match=r"no engine to keep, none was written \(native: its output differs; "
                                          r"triton: no AOT kernels\)"):
        auto.choose({}, {"native": "its output differs"}, {"triton": "no AOT kernels"}, frame)


@pytest.mark.parametrize("native_ms,triton_ms,triton_fails,native_wrong,kept", [
    (5.0, 3.0, False, False, "triton"), (2.0, 3.0, False, False, "native"), (5.0, None, True, False, "native"),
    (2.0, 3.0, False, True, "triton")], ids=["triton faster", "native faster", "triton fails", "native wrong"])
def test_auto_keeps_the_faster_and_says_why(monkeypatch, tmp_path, native_ms, triton_ms, triton_fails, native_wrong,
                                            kept):
    from edgedenoise.modelfile import resolve
    from edgedenoise.trt.aot_kernels import KernelsError

    ms = {"native": native_ms, "triton": triton_ms}
    ref = np.full((8, 8, 3), 100, np.uint8)

    def fake_build(onnx, out, precision, calib, profile, cache, ws, kind, kdir, plugins, log):
        if kind == "triton" and triton_fails:
            raise KernelsError("no AOT kernels in build/kernels (no manifest.json): run edgedenoise kernels build")
        out.write_text(kind)
        meta = {"kernels": kind, "precision": precision}
        sidecar_path(out).write_text("{}")
        return meta

    def fake_output(path, noisy, files, previous=None):
        wrong = native_wrong and Path(path).suffix == ".native"
        return ref + np.uint8(30) if wrong else ref.copy()

    timed = []
    monkeypatch.setattr(auto, "build_engine", fake_build)
    monkeypatch.setattr(auto, "time_engine", lambda path, hw: timed.append(hw) or ms[Path(path).suffix[1:]])
    monkeypatch.setattr(auto, "check_frame", lambda hw, seed=0: ref)
    monkeypatch.setattr(auto, "reference_output", lambda onnx, noisy, previous=None: ref)
    monkeypatch.setattr(auto, "engine_output", fake_output)
    said = []
    out = tmp_path / "m.engine"
    meta = auto.build_auto(resolve("default").onnx, out, "fp16", None, None, None, 1.0, None, "auto", said.append)
    assert meta["kernels"] == meta["auto"]["kept"] == kept and out.read_text() == kept
    assert read_sidecar(out)["auto"]["kept"] == kept
    assert set(timed) == {(720, 1280)}  # the default profile holds 1280x720
    assert said[-1].startswith(f"build auto: kept {kept}: ")
    assert ("triton build failed" in said[-1]) == triton_fails
    assert ("native engine was refused" in said[-1]) == native_wrong
    assert (meta["auto"]["refused"] != {}) == native_wrong
    if native_wrong:
        assert meta["auto"]["vs_onnxruntime"]["native"]["max_abs"] == 30 and "native" not in meta["auto"]["ms"]
    elif not triton_fails:
        assert f"{min(native_ms, triton_ms):.2f} ms against {max(native_ms, triton_ms):.2f} ms" in said[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json"]  # no leftovers
    with pytest.raises(EngineError, match="int8"):
        auto.build_auto(resolve("default").onnx, out, "int8", None, None, None, 1.0, None, "auto", said.append)


def test_auto_checks_a_recurrent_engine_on_a_second_frame(monkeypatch, tmp_path):
    """A recurrent model's engines are compared with ONNX Runtime on a frame whose previous output
    is ONNX Runtime's own on the frame before (new noise): the fusion runs, not only the first-frame
    path; both are given the same previous frame."""
    from edgedenoise.modelfile import resolve
    from edgedenoise.trt import auto
    from edgedenoise.trt.sidecar import sidecar_path

    frames = {0: np.full((8, 8, 3), 90, np.uint8), 1: np.full((8, 8, 3), 110, np.uint8)}
    first_out = np.full((8, 8, 3), 100, np.uint8)
    calls = []

    def reference(onnx, noisy, previous=None):
        calls.append(("onnxruntime", noisy, previous))
        return first_out if previous is None else noisy.copy()

    def engine(path, noisy, files, previous=None):
        calls.append((Path(path).suffix, noisy, previous))
        return noisy.copy()

    def build(onnx, out, precision, calib, profile, cache, ws, kind, kdir, plugins, log):
        out.write_text(kind)
        sidecar_path(out).write_text("{}")
        return {"kernels": kind, "precision": precision}

    monkeypatch.setattr(auto, "build_engine", build)
    monkeypatch.setattr(auto, "time_engine", lambda path, hw: 1.0 if path.suffix == ".native" else 2.0)
    monkeypatch.setattr(auto, "check_frame", lambda hw, seed=0: frames[seed])
    monkeypatch.setattr(auto, "reference_output", reference)
    monkeypatch.setattr(auto, "engine_output", engine)
    meta = auto.build_auto(resolve("tiny-video").onnx, tmp_path / "v.engine", "fp16", None, None, None, 1.0, None,
                           "auto", lambda m: None)
    assert meta["auto"]["kept"] == "native"
    (_, n0, p0), (_, n1, p1), *engines = calls
    assert n0 is frames[0] and p0 is None  # the first frame: its output is the previous of the checked one
    assert n1 is frames[1] and p1 is first_out
    assert [(k, n is frames[1], p is first_out) for k, n, p in engines] == [(".native", True, True),
                                                                             (".triton", True, True)]


def test_stamp_names_the_program_that_ran():
    from edgedenoise.runtime.stats import program

    assert program("/venv/bin/edgedenoise") == "edgedenoise"
    assert program("/src/edgedenoise/cli.py") == "edgedenoise"  # python -m edgedenoise.cli
    assert program("") == "edgedenoise"
    assert program("tools/explain_figures.py") == "python tools/explain_figures.py"
    assert program("/usr/bin/pytest") == "pytest"
