"""The edgedenoise command as a user runs it."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgedenoise.model import MAC_BUDGETS


def run(*args, cwd=None, check=True):
    p = subprocess.run([sys.executable, "-m", "edgedenoise.cli", *args], capture_output=True, text=True, cwd=cwd)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def test_denoise_without_arguments_writes_the_demo_picture(tmp_path):
    p = run("denoise", cwd=tmp_path)
    pic = cv2.imread(str(tmp_path / "edgedenoise_demo.png"))
    assert pic is not None and pic.shape[1] > 3 * 500  # noisy | denoised | clean
    noisy_db, den_db = [float(x) for x in p.stdout.split("noisy ")[1].split(" dB -> denoised ")[0:1]
                        + [p.stdout.split("denoised ")[1].split(" dB")[0]]]
    assert den_db > noisy_db + 6
    from edgedenoise.runtime.autoselect import best_model

    # --model auto (the default) takes the model best on camera noise and says so first
    assert p.stdout.startswith(f"model {best_model()[0]} (auto): the best shipped model on camera noise"), p.stdout


def test_denoise_a_file_keeps_its_size(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (45, 67, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "in.png"), img)
    p = run("denoise", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--sigma", "20")
    assert cv2.imread(str(tmp_path / "out.png")).shape == img.shape
    assert "sigma given 20.0" in p.stdout


def test_denoise_says_the_level_it_estimated_and_what_it_told(tmp_path, data_root):
    from edgedenoise.data import list_images, read_image
    from edgedenoise.estimate import estimate_sigma
    from edgedenoise.noise import protocol_noisy

    noisy = protocol_noisy(read_image(list_images(data_root / "test" / "Kodak24")[0])[:96, :128], 25, 0, "camera")
    cv2.imwrite(str(tmp_path / "n.png"), noisy[:, :, ::-1])
    est = estimate_sigma(noisy[:, :, ::-1])
    p = run("denoise", str(tmp_path / "n.png"), str(tmp_path / "a.png"), "--model", "tiny")
    assert f"sigma estimated {est:.1f}" in p.stdout, p.stdout
    p = run("denoise", str(tmp_path / "n.png"), str(tmp_path / "b.png"), "--model", "tiny", "--sigma-scale", "1.5")
    assert f"sigma estimated {est:.1f}, told {1.5 * est:.1f}" in p.stdout, p.stdout
    grey = [cv2.imread(str(tmp_path / f"{f}.png"), cv2.IMREAD_GRAYSCALE) for f in "ab"]
    rough = [cv2.Laplacian(g, cv2.CV_32F).var() for g in grey]
    assert rough[1] < rough[0]  # told more noise, it removes more


@pytest.mark.parametrize("args,msg", [
    (["denoise", "/nonexistent/x.png"], "image not found"),
    (["denoise", "--model", "/nonexistent/m.onnx"], "model file not found"),
    (["eval", "--data", "/nonexistent"], "image folder not found"),
    (["train", "--data", "/nonexistent", "--out", "/tmp/x", "--steps", "1"], "image folder not found"),
])
def test_bad_input_gives_one_clear_line(args, msg):
    p = run(*args, check=False)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert lines[-1].startswith("edgedenoise: error:") and msg in lines[-1], p.stderr
    assert "Traceback" not in p.stderr


def test_the_command_alone_lists_what_it_can_do():
    p = run(check=False)
    assert p.returncode == 2 and "denoise an image or a folder" in p.stdout and "edgedenoise run" in p.stdout


def test_an_unquoted_glob_is_named_as_one(tmp_path):
    """`denoise DIR/*.png` or `run --source DIR/*.png` unquoted: the shell hands over a list of files,
    refused before anything is written, with what to do; other unknown arguments as argparse says."""
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    files = [str(tmp_path / f"{i}.png") for i in range(3)]
    for args in (["denoise", *files], ["run", "--source", *files, "--sink", str(tmp_path / "out")]):
        p = run(*args, check=False)
        last = p.stderr.strip().splitlines()[-1]
        assert p.returncode == 2 and "a shell expands an unquoted glob, so quote it" in last, p.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["0.png", "1.png", "2.png"]  # nothing written
    p = run("run", "--bogus", "3", check=False)
    assert p.returncode == 2 and p.stderr.strip().endswith("unrecognized arguments: --bogus 3")


@pytest.mark.parametrize("cmd,value", [("denoise", "0"), ("run", "x"), ("run", "11")])
def test_a_bad_sigma_scale_is_refused_before_anything_runs(cmd, value):
    p = run(cmd, "--sigma-scale", value, check=False)
    assert p.returncode == 2 and "--sigma-scale takes a number in (0, 10]" in p.stderr.strip().splitlines()[-1]


def test_eval_writes_json_and_markdown(tmp_path, data_root):
    out = tmp_path / "ev.json"
    run("eval", "--data", str(data_root / "test" / "Kodak24"), "--sigma", "25", "--protocol", "both",
        "--limit", "2", "--json", str(out), "--save", str(tmp_path / "pics"))
    reps = json.loads(out.read_text())
    assert [r["protocol"] for r in reps] == ["camera", "paper"]
    for r in reps:
        res = r["results"][0]
        assert r["n_images"] == 2 and len(res["images"]) == 2 and res["psnr"] > res["psnr_noisy"] + 6
        assert 0.5 < res["ssim"] <= 1
    assert "| Kodak24 | camera | 25 |" in out.with_suffix(".md").read_text()
    assert len(list((tmp_path / "pics" / "camera_sigma25").glob("*.png"))) == 2


def test_eval_of_a_named_int8_file_says_int8(tmp_path, data_root):
    """eval --model X.int8.onnx runs INT8 (Denoiser.load): the report says so, with that file's hash, and
    scores as --model X --precision int8 does."""
    from edgedenoise.modelfile import file_sha256, resolve

    int8 = resolve("tiny").onnx_int8
    reps = {}
    for name, args in (("file", ["--model", str(int8)]), ("asked", ["--model", "tiny", "--precision", "int8"])):
        out = tmp_path / f"{name}.json"
        run("eval", *args, "--data", str(data_root / "test" / "Kodak24"), "--sigma", "25", "--limit", "1",
            "--json", str(out))
        reps[name] = json.loads(out.read_text())[0]
    assert reps["file"]["precision"] == "int8" and reps["file"]["model_hash"] == file_sha256(int8)
    assert reps["file"]["results"][0]["psnr"] == reps["asked"]["results"][0]["psnr"]
    img = sorted((data_root / "test" / "Kodak24").glob("*.png"))[0]
    p = run("denoise", str(img), str(tmp_path / "d.png"), "--model", str(int8), "--sigma", "20")
    assert "ms, tiny int8, onnxruntime)" in p.stdout, p.stdout  # what ran, in denoise's line too


def test_info_names_every_file_and_sums_up_the_training_in_one_line():
    """`info tiny` lists the weights, the ONNX and both INT8 graphs (the CPU's and TensorRT's), and
    gives the training record, a chain of fine-tunes nested many levels deep, as one line per key
    (the whole record stays in --json)."""
    out = run("info", "tiny").stdout
    lines = out.splitlines()
    for what in ("weights:", "onnx:", "onnx int8 (CPU):", "onnx int8 for TensorRT"):
        assert any(line.strip().startswith(what) for line in lines), (what, out)
    (training,) = [line for line in lines if line.strip().startswith("training:")]
    assert "steps in all" in training and len(training) < 300 and "init_training" not in out
    doc = json.loads(run("info", "tiny", "--json").stdout)
    assert doc["onnx_trt_int8"].endswith("tiny.trt.int8.onnx") and "init_training" in doc["trained"]["training"]


@pytest.mark.parametrize("size", ["nano", "tiny", "small", "base"])
def test_info_measures_macs_within_budget(size):
    info = json.loads(run("info", size, "--json").stdout)
    assert 0 < info["macs_per_pixel"] <= MAC_BUDGETS[size]
    assert info["parameters"] > 0


# Ops the exported graph may hold: the network's own (Conv, Relu, pixel (un)shuffle as
# DepthToSpace or Reshape/Transpose, Add, Concat, Clip, Sub) and the shape arithmetic the
# exporter writes for the noise-level map. All are in TensorRT 10's ONNX parser.
ALLOWED_OPS = {"Conv", "Relu", "DepthToSpace", "SpaceToDepth", "Reshape", "Transpose", "Add", "Sub", "Mul", "Concat",
               "Clip", "Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Cast", "Expand", "ConstantOfShape",
               "Equal", "Where"}


def test_export_matches_pytorch_and_uses_only_portable_ops(tmp_path):
    import onnx

    p = run("export", "--model", "default", "--out", str(tmp_path / "m.onnx"))
    assert "ok" in p.stdout  # export_onnx compared ONNX Runtime with PyTorch to 1e-4
    m = onnx.load(str(tmp_path / "m.onnx"))
    ops = {n.op_type for n in m.graph.node}
    assert ops <= ALLOWED_OPS, f"unexpected ops: {ops - ALLOWED_OPS}"
    assert not any(n.op_type == "ConvTranspose" for n in m.graph.node)
    # the input's pixel-unshuffle is a Conv of one-hot weights, not a 6-D Transpose (model.unshuffle:
    # ONNX Runtime's Transpose took 10 % of tiny's time)
    assert "Transpose" not in ops
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["size_multiple"] == "16" and json.loads(meta["config"])["widths"] == [24, 48, 96, 192]
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17


def test_doctor_reports_every_backend():
    out = run("doctor").stdout
    for name in ("onnxruntime", "torch", "triton", "tensorrt", "opencv"):
        assert f"  {name}" in out
    assert "onnxruntime  ok" in out and "backends usable now: onnxruntime" in out


def test_doctor_says_what_cpu_int8_is_worth(tmp_path, monkeypatch):
    """x86 without VNNI: int8 is no faster and loses more (saturating u8 x s8 products): said; with VNNI: fast."""
    import platform

    from edgedenoise.doctor import int8_note

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse2 avx2 fma\n")
    assert "no VNNI" in int8_note(str(info)) and "prefer fp32" in int8_note(str(info))
    info.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_vnni\n")
    assert int8_note(str(info)) == "; CPU int8: VNNI (fast)"
    assert int8_note(str(tmp_path / "missing")) == ""
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert int8_note(str(info)) == ""
