"""`--backend auto` (backends/choice.py): the decision as a pure function of what a machine has,
this machine's probe, the precisions each backend takes, and the warm-up before a stream's clock."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from edgedenoise.backends.choice import Capabilities, choose, cuda_devices, decide, find_engines
from edgedenoise.errors import ModelError
from edgedenoise.modelfile import resolve

CPU = Capabilities(onnxruntime=True, torch=True)
GPU = Capabilities(gpu=1, onnxruntime=True, torch=True, torch_cuda=True, triton=True)


def test_the_cpu_runs_onnx_runtime_and_torch_without_it():
    files = resolve("default")
    c = decide(files, "fp32", CPU)
    assert (c.backend, c.precision, c.engine) == ("onnxruntime", "fp32", None) and "CPU" in c.why
    assert decide(files, "auto", CPU).precision == "fp32"  # auto is fp32 on the CPU
    assert decide(files, "int8", CPU).backend == "onnxruntime"
    c = decide(files, "fp32", Capabilities(torch=True))  # no ONNX Runtime installed
    assert (c.backend, c.precision) == ("torch", "fp32")
    with pytest.raises(ModelError, match="fp16 needs a CUDA GPU"):
        decide(files, "fp16", CPU)


def test_a_gpu_runs_the_engine_then_triton_then_torch(tmp_path):
    files = resolve("default")
    c = decide(files, "auto", GPU)
    assert (c.backend, c.precision) == ("triton", "fp16") and "GPU" in c.why
    assert decide(files, "fp32", GPU)[:2] == ("triton", "fp32")  # fp32 asked: the kernels in fp32
    no_triton = Capabilities(gpu=1, onnxruntime=True, torch=True, torch_cuda=True)
    assert decide(files, "auto", no_triton)[:2] == ("torch", "fp16")
    cpu_torch = Capabilities(gpu=1, onnxruntime=True, torch=True)  # a GPU, but torch is a CPU build
    assert decide(files, "auto", cpu_torch)[:2] == ("onnxruntime", "fp32")
    engine = tmp_path / "default.fp16.engine"
    with_engine = Capabilities(gpu=1, onnxruntime=True, torch=True, torch_cuda=True, triton=True, tensorrt=True,
                               engines=((engine, "fp16"),))
    c = decide(files, "auto", with_engine)
    assert (c.backend, c.precision, c.engine) == ("tensorrt", "fp16", engine) and engine.name in c.why
    assert decide(files, "fp32", with_engine).backend == "triton"  # not the precision asked: not that engine
    # int8 without an int8 engine: ONNX Runtime on the CPU, which is where int8 runs here
    assert decide(files, "int8", with_engine)[:2] == ("onnxruntime", "int8")


def test_what_a_model_cannot_run_on_is_passed_over():
    video = resolve("tiny-video")  # recurrent: triton runs it, and an engine built from its graph
    assert decide(video, "auto", GPU)[:2] == ("triton", "fp16")
    engines = Capabilities(gpu=1, torch=True, torch_cuda=True, tensorrt=True, triton=True,
                           engines=(("x.engine", "fp16"),))
    assert decide(video, "auto", engines)[:2] == ("tensorrt", "fp16")
    # a recurrent model whose gate comes from its tail (no gate branch): not one the fused kernels compute
    tailed = dataclasses.replace(video, config={**video.config, "gate": 0})
    c = decide(tailed, "auto", GPU)
    assert c[:2] == ("torch", "fp16") and "not triton: triton runs recurrent models with a gate branch" in c.why


def test_a_named_backend_is_taken_as_named_and_its_auto_precision_resolved():
    files = resolve("tiny")
    assert choose("triton", files, "auto", CPU)[:2] == ("triton", "fp16")
    assert choose("torch", files, "auto", CPU)[:2] == ("torch", "fp32")
    assert choose("torch", files, "auto", GPU)[:2] == ("torch", "fp16")
    assert choose("onnxruntime", files, "int8", CPU)[:2] == ("onnxruntime", "int8")
    with pytest.raises(ModelError, match="needs an engine: no engine built for tiny"):
        choose("tensorrt", files, "auto", CPU)


def test_this_machine_is_probed_without_importing_torch_when_it_has_no_gpu():
    if cuda_devices():
        pytest.skip("this machine has a CUDA device: torch is imported to ask it")
    code = ("import sys; from edgedenoise.backends.choice import choose, probe; from edgedenoise.modelfile import "
            "resolve; c = probe(resolve('tiny')); print(c.gpu, c.torch_cuda, c.onnxruntime, 'torch' in sys.modules, "
            "choose('auto', resolve('tiny'), 'fp32').backend)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["0", "False", "True", "False", "onnxruntime"], out.stderr


def test_an_engine_of_another_model_is_not_taken_and_one_of_this_model_is_checked(tmp_path, monkeypatch):
    files = resolve("tiny")
    folder = tmp_path / "engines"
    folder.mkdir()
    from edgedenoise.modelfile import file_sha256

    sha = file_sha256(files.onnx, n=64)
    # the third: built from the frame-native graph (--kernels triton), which names the float model it came from
    for name, extra in (("other.engine", {"onnx_sha256": "0" * 64}), ("tiny.engine", {"onnx_sha256": sha}),
                        ("tiny.frame.engine", {"onnx_sha256": "1" * 64, "model_onnx_sha256": sha})):
        (folder / name).write_bytes(b"not an engine")
        meta = {"onnx": str(files.onnx), **extra, "precision": "fp16", "tensorrt": "0.0", "compute_capability": "0.0"}
        (folder / (name + ".json")).write_text(json.dumps(meta))
    monkeypatch.setenv("EDGEDENOISE_ENGINES", str(folder))
    found, notes = find_engines(files)
    # this machine cannot say its TensorRT and GPU (or they differ from the sidecar's): passed over, with why
    assert found == () and [n.split(" passed over")[0] for n in notes] == ["tiny.engine", "tiny.frame.engine"]


def test_precisions_are_refused_by_the_backend_that_cannot_run_them():
    from edgedenoise import Denoiser

    with pytest.raises(ModelError, match="onnxruntime backend runs fp32 or int8, not fp16: fp16 runs on torch"):
        Denoiser.load("tiny", backend="onnxruntime", precision="fp16")
    pytest.importorskip("torch")
    if cuda_devices():
        pytest.skip("this machine has a CUDA device: fp16 on torch runs")
    with pytest.raises(ModelError, match="fp16 on the torch backend needs a CUDA GPU"):
        Denoiser.load("tiny", backend="torch", precision="fp16")


def test_warm_up_runs_once_per_size_and_the_stream_records_it(tmp_path):
    from edgedenoise import Denoiser
    from edgedenoise.runtime.pipeline import Pipeline
    from edgedenoise.runtime.sinks import NullSink
    from edgedenoise.runtime.sources import DemoSource

    den = Denoiser.load("tiny", backend="onnxruntime")
    assert "onnxruntime" in den.why
    assert den.warm_up(64, 48) > 0 and den.warm_up(64, 48) == 0.0 and (48, 64) in den.warmed
    src = DemoSource(size=(96, 64))
    src.open()
    stats = Pipeline(src, NullSink(), den, mode="offline", sigma=25, max_frames=3, status=False).run()
    assert stats.info["warm_up"].startswith("96x64, ") and stats.frames_out == 3
    # tiled: the warm-up runs at the tile's size
    src = DemoSource(size=(96, 64))
    src.open()
    stats = Pipeline(src, NullSink(), den, mode="offline", sigma=25, max_frames=2, tile=(48, 64),
                     overlap=8, status=False).run()
    assert stats.info["warm_up"].startswith("64x48, ")


def test_torch_fp16_on_cuda_matches_fp32():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: fp16 on the torch backend runs on CUDA only")
    from edgedenoise import Denoiser
    from edgedenoise.frames import psnr_u8

    rng = np.random.default_rng(0)
    frame = np.clip(128 + rng.normal(0, 25, (240, 320, 3)), 0, 255).astype(np.uint8)
    a = Denoiser.load("default", backend="torch", precision="fp32").denoise(frame, 25.0)
    b = Denoiser.load("default", backend="torch", precision="fp16").denoise(frame, 25.0)
    assert psnr_u8(a, b) > 45  # half precision: a level here and there
