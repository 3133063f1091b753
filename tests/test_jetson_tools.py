"""tools/jetson_deploy.py (the bundle made on the development machine) and tools/jetson_setup.sh
(the set-up on the device). No Jetson here: the bundle is checked for everything the device
needs from it (the runtime without torch, the frame-native graph where `build --kernels triton`
looks, cubins for the target), and the set-up script's reading of the L4T release and its plan
are checked with release files written as JetPack writes them (`--dry-run`: nothing installed)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "tools" / "jetson_setup.sh"
R36_4 = "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13 04:36:44 UTC 2024\n"  # noqa: E501 - the file as L4T writes it
R36_3 = "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024\n"  # noqa: E501 - the file as L4T writes it
R35_5 = "# R35 (release), REVISION: 5.0, GCID: 35550185, BOARD: t186ref, EABI: aarch64, DATE: Tue Feb 20 04:46:31 UTC 2024\n"  # noqa: E501 - the file as L4T writes it


def setup(tmp_path, release: str | None, *args):
    env = dict(os.environ, PYTHON=sys.executable, TEGRA_RELEASE=str(tmp_path / "nv_tegra_release"))
    if release is not None:
        (tmp_path / "nv_tegra_release").write_text(release)
    return subprocess.run(["bash", str(SETUP), *args], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_setup_script_parses():
    assert subprocess.run(["bash", "-n", str(SETUP)], check=False).returncode == 0


def test_setup_refuses_a_machine_that_is_not_a_jetson(tmp_path):
    p = setup(tmp_path, None, "--dry-run")
    assert p.returncode == 2
    assert "not a Jetson" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_setup_refuses_jetpack_5(tmp_path):
    p = setup(tmp_path, R35_5, "--dry-run")
    assert p.returncode == 2
    assert "L4T R35.5 is JetPack 5" in p.stderr and "JetPack >= 6.1" in p.stderr


def setup_trt(tmp_path, *args):
    """jetson_setup.sh --dry-run on JetPack 6.1 with TensorRT's bindings stood in for by a module that
    only has a version: the plan is printed, nothing runs."""
    fake = tmp_path / "fake" / "tensorrt"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "__init__.py").write_text('__version__ = "10.3.0.30"\n')
    (tmp_path / "nv_tegra_release").write_text(R36_4)
    env = dict(os.environ, PYTHON=sys.executable, TEGRA_RELEASE=str(tmp_path / "nv_tegra_release"),
               PYTHONPATH=str(tmp_path / "fake"))
    return subprocess.run(["bash", str(SETUP), "--dry-run", "--venv", str(tmp_path / "venv"), *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_setup_int8_builds_from_the_qdq_graph_beside_the_model_else_needs_calibration_images(tmp_path):
    """--precision int8: a model with its Q/DQ graph beside it (NAME.trt.int8.onnx, as every shipped
    model and the bundle's have) is built from it without --calib, on TensorRT's own kernels (an INT8
    engine has no triton flavour, so auto is not chosen); one without it needs --calib DIR, said in
    one line; asking for the triton kernels in int8 is refused."""
    models = tmp_path / "models"
    models.mkdir()
    for f in ("m.onnx", "m.trt.int8.onnx", "bare.onnx"):
        (models / f).write_bytes(b"")  # --dry-run reads none of them
    p = setup_trt(tmp_path, "--precision", "int8", "--model", str(models / "m.onnx"))
    assert p.returncode == 0, p.stdout + p.stderr
    builds = [line[2:].split() for line in p.stdout.splitlines() if line.startswith("+ ") and " build " in line]
    assert builds and builds[0][2:] == [str(models / "m.onnx"), "--out", "engines/m.int8.engine", "--precision",
                                        "int8", "--kernels", "native"]
    p = setup_trt(tmp_path, "--precision", "int8", "--model", str(models / "bare.onnx"))
    assert p.returncode == 2 and "--calib DIR" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = setup_trt(tmp_path, "--precision", "int8", "--model", str(models / "bare.onnx"), "--calib", str(tmp_path))
    assert p.returncode == 0 and f"--calib {tmp_path}" in p.stdout
    p = setup_trt(tmp_path, "--precision", "int8", "--kernels", "auto")
    assert p.returncode == 2 and "--kernels native" in p.stderr


def test_setup_plan_keeps_the_system_opencv_and_numpy_1(tmp_path):
    """On JetPack 6.0 (TensorRT 8.6) the plan is the runtime without an engine; the venv sees
    the system's packages, and neither an OpenCV wheel nor NumPy 2 is installed over them."""
    p = setup(tmp_path, R36_3, "--dry-run", "--venv", str(tmp_path / "venv"))
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "JetPack 6.0 (TensorRT 8.6)" in out
    cmds = [line[2:] for line in out.splitlines() if line.startswith("+ ")]
    assert any("-m venv --system-site-packages" in c for c in cmds)
    assert any("numpy>=1.23,<2" in c and f"-e {ROOT}" in c for c in cmds)
    assert any("onnxruntime>=1.16" in c for c in cmds)
    assert not any("opencv" in c for c in cmds)
    assert not any(" build " in c for c in cmds)  # no TensorRT 10: no engine
    assert "skipping the engine" in out
    assert not (tmp_path / "venv").exists()  # --dry-run ran nothing


def test_setup_plan_builds_the_model_and_its_recurrent_variant(tmp_path):
    """On JetPack 6.1 (TensorRT's bindings stood in for by a module that only has a version: the
    plan is printed, nothing runs) the engine of the model and of its recurrent variant beside it
    (the package's small.onnx and small-video.onnx here, as a bundle's NAME.onnx and
    NAME-video.onnx), with the same precision and kernels; the run hint points the runtime at the
    engines so that --temporal auto finds the variant's."""
    p = setup_trt(tmp_path, "--kernels", "native")
    assert p.returncode == 0, p.stdout + p.stderr
    builds = [line[2:].split() for line in p.stdout.splitlines() if line.startswith("+ ") and " build " in line]
    assert [(b[2], b[4]) for b in builds] == [("edgedenoise/models/small.onnx", "engines/small.fp16.engine"),
                                              ("edgedenoise/models/small-video.onnx",
                                               "engines/small-video.fp16.engine")]
    assert builds[0][5:] == builds[1][5:] == ["--precision", "fp16", "--kernels", "native"]
    assert f"EDGEDENOISE_ENGINES={ROOT}/engines " in p.stdout and not (tmp_path / "venv").exists()


def test_setup_check_names_what_is_missing(tmp_path):
    """This machine has no TensorRT and a pip OpenCV without GStreamer: --check says both, exit 1."""
    import cv2

    p = setup(tmp_path, R36_4, "--check")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "L4T R36.4: JetPack 6.1 or newer" in p.stdout
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert "missing: TensorRT's Python bindings" in p.stdout
    if "GStreamer:                   NO" in cv2.getBuildInformation():
        assert "missing: GStreamer in OpenCV" in p.stdout


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("jetson") / "bundle"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the AOT build compiles for real
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "jetson_deploy.py"), "--model", "tiny", "--target",
                        "sm_87", "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return out


@pytest.mark.slow
def test_bundle_holds_what_the_device_needs(bundle):
    info = json.loads((bundle / "BUNDLE.json").read_text())
    assert info["model"] == "tiny" and info["target"] == "sm_87" and info["widths"] == [16, 32, 64]
    for f in ("pyproject.toml", "README.md", "edgedenoise/cli.py", "edgedenoise/models/small.onnx", "kernels/aot.py",
              "tools/jetson_setup.sh", info["onnx"], info["frame_onnx"], "models/tiny.json",
              "models/tiny.trt.int8.onnx", "models/tiny-video.trt.int8.onnx"):
        assert (bundle / f).is_file(), f
    # build --precision int8 on the device takes the model's Q/DQ graph from beside it: no --calib needed
    from edgedenoise.trt.int8 import qdq_graph

    assert qdq_graph(bundle / "models" / "tiny.onnx", bundle / "e.engine", None, log=lambda *_: None) == \
        bundle / "models" / "tiny.trt.int8.onnx"
    assert not (bundle / "tests").exists() and not (bundle / ".venv").exists()


@pytest.mark.slow
def test_bundle_kernels_and_graph_are_what_build_triton_reads(bundle):
    """`edgedenoise build models/tiny.onnx --kernels triton` on the device: the frame-native graph
    is found beside the model (no torch there, no weights in the bundle), the plugins' graph
    preparation takes it, and the manifest has the ingest/egest cubins for sm_87."""
    from edgedenoise.trt.aot_kernels import load_manifest, pick_kernel
    from edgedenoise.trt.build import frame_native_onnx
    from edgedenoise.trt.graph import prepare_onnx

    frame = frame_native_onnx(bundle / "models" / "tiny.onnx", bundle, log=lambda s: None)
    assert frame == bundle / "models" / "tiny.frame.onnx"
    _, widths = prepare_onnx(frame.read_bytes(), "fp16", "ipluginv3")
    assert widths == {"ingest": 16, "egest": 16}
    manifest = load_manifest(bundle / "build" / "kernels")
    assert {k["target"] for k in manifest["kernels"]} == {"sm_87"}
    for kind in ("ingest", "egest"):
        for dtype in ("fp16", "fp32"):
            k = pick_kernel(manifest, bundle / "build" / "kernels", kind, 16, dtype, 87)
            assert k.cubin_path.stat().st_size > 0 and k.ptx_path.is_file()


@pytest.mark.slow
def test_bundle_carries_the_recurrent_variant_and_its_tail_kernels(bundle):
    """`--model tiny` bundles tiny-video beside it (models/tiny-video.*): its frame-native graph ends
    in EgestGate and FuseEgest, the plugins' preparation takes it, and the manifest holds their
    cubins (the tail at tiny's width, fp16 and fp32; the fusion at the gate's width, fp32)."""
    from edgedenoise.trt.aot_kernels import load_manifest, pick_kernel
    from edgedenoise.trt.build import frame_native_onnx
    from edgedenoise.trt.graph import prepare_onnx

    info = json.loads((bundle / "BUNDLE.json").read_text())
    assert info["recurrent"] is False and info["variant"] == "models/tiny-video.onnx"
    assert json.loads((bundle / "models" / "tiny-video.json").read_text())["recurrent"] is True
    frame = frame_native_onnx(bundle / info["variant"], bundle, log=lambda s: None)
    assert frame == bundle / "models" / "tiny-video.frame.onnx"
    _, widths = prepare_onnx(frame.read_bytes(), "fp16", "ipluginv3")
    assert widths == {"ingest": 16, "egest_gate": 16, "fuse_egest": 12}
    manifest = load_manifest(bundle / "build" / "kernels")
    for kind, width, dtypes in (("egest_gate", 16, ("fp16", "fp32")), ("fuse_egest", 12, ("fp32",))):
        for dtype in dtypes:
            k = pick_kernel(manifest, bundle / "build" / "kernels", kind, width, dtype, 87)
            assert k.cubin_path.stat().st_size > 0 and k.ptx_path.is_file()


@pytest.mark.slow
def test_bundled_runtime_denoises_without_torch(bundle, data_root):
    """The bundle's own package, imported from the bundle with torch made unimportable (a Jetson
    without it), denoises a real image with the bundled model: PSNR gained."""
    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['triton'] = None\n"
        "import cv2, numpy as np, edgedenoise\n"
        "from edgedenoise import Denoiser\n"
        "from edgedenoise.evaluate import psnr_u8\n"
        "from edgedenoise.noise import protocol_noisy\n"
        f"assert edgedenoise.__file__.startswith({str(bundle)!r}), edgedenoise.__file__\n"
        f"clean = cv2.imread({str(data_root / 'test' / 'Kodak24' / 'kodim01.png')!r})[:256, :256]\n"
        "noisy = protocol_noisy(clean, 25, 0, 'camera')\n"
        "out = Denoiser.load('models/tiny.onnx').denoise(noisy, sigma=25)\n"
        "print(psnr_u8(noisy, clean), psnr_u8(out, clean))\n"
    )
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=bundle,
                       env=dict(os.environ, PYTHONPATH=str(bundle)), check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    before, after = map(float, p.stdout.split())
    assert after > before + 5.0


def test_unpack_refreshes_a_bundle_keeps_its_venv_and_engines_and_spares_other_folders(tmp_path):
    """The command jetson_deploy.py runs on the device over ssh, run here by bash on a real tar stream."""
    import importlib.util
    import tarfile

    spec = importlib.util.spec_from_file_location("jetson_deploy", ROOT / "tools" / "jetson_deploy.py")
    deploy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy)
    unpack_command = deploy.unpack_command

    src = tmp_path / "bundle"
    (src / "models").mkdir(parents=True)
    (src / "BUNDLE.json").write_text("{}")
    (src / "models" / "m.onnx").write_bytes(b"new")
    stream = tmp_path / "b.tgz"
    with tarfile.open(stream, "w:gz") as t:
        t.add(src, arcname=".")

    def unpack(dest):
        with open(stream, "rb") as f:
            return subprocess.run(["bash", "-c", unpack_command(str(dest))], stdin=f, capture_output=True, text=True,
                                  check=False)

    dest = tmp_path / "device" / "edgedenoise"
    assert unpack(dest).returncode == 0 and (dest / "models" / "m.onnx").read_bytes() == b"new"
    (dest / ".venv").mkdir()
    (dest / "engines").mkdir()
    (dest / "engines" / "m.fp16.engine").write_bytes(b"plan")
    (dest / "stale.txt").write_text("from an older bundle")
    assert unpack(dest).returncode == 0
    assert (dest / ".venv").is_dir() and (dest / "engines" / "m.fp16.engine").read_bytes() == b"plan"
    assert not (dest / "stale.txt").exists() and (dest / "BUNDLE.json").exists()

    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    p = unpack(home)
    assert p.returncode == 3 and "not an edgedenoise bundle" in p.stderr
    assert [f.name for f in home.iterdir()] == ["notes.txt"]
