"""Training: it learns, it resumes exactly, it splits over processes, it refuses bad input."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from edgedenoise.errors import DataError, ModelError
from edgedenoise.train import load_checkpoint, train
from edgedenoise.trainconfig import TrainConfig


def cfg(data, out, **kw):
    base = dict(data=str(data), out=str(out), model="tiny", steps=20, batch=4, patch=32, val_count=2,
                val_every=10, ckpt_every=10, workers=0, warmup=5, seed=1, sigma_min=10, sigma_max=40)
    base.update(kw)
    return TrainConfig(**base)


def rows(run):
    return list(csv.DictReader(open(run / "metrics.csv")))


def test_short_run_lowers_validation_loss(train_subset, tmp_path):
    run = tmp_path / "run"
    train(cfg(train_subset, run, steps=150, batch=8, val_every=25, ckpt_every=75, lr=2e-3), progress=False)
    val = [float(r["val_loss"]) for r in rows(run) if r["val_loss"]]
    assert len(val) == 6
    assert val[-1] < 0.8 * val[0], val
    for f in ("config.json", "model.safetensors", "model.json", "checkpoint.pt", "metrics.csv", "curves.png"):
        assert (run / f).exists(), f
    assert json.loads((run / "model.json").read_text())["name"] == "tiny"


def test_resume_continues_the_same_run(train_subset, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(cfg(train_subset, a), progress=False)
    train(cfg(train_subset, b, stop_at=10), progress=False)
    ck = load_checkpoint(b / "checkpoint.pt")  # weights_only=True
    assert ck["step"] == 10 and "optimizer" in ck and "scheduler" in ck and "rng" in ck
    train(cfg(train_subset, b), progress=False)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k}: max diff {(wa[k] - wb[k]).abs().max():.3g}"


def test_a_run_resumes_only_with_its_own_settings(train_subset, tmp_path):
    """A resumed run may run longer, elsewhere, on more workers, validated more often; any other setting
    (a learning rate, a noise mixture) would make it two trainings under one record: refused in one line,
    nothing written. Its output folder is never its training images' folder."""
    from edgedenoise.trainconfig import resume_changes

    run = tmp_path / "run"
    train(cfg(train_subset, run, stop_at=10), progress=False)
    record = (run / "config.json").read_text()
    with pytest.raises(DataError, match=r"other settings \(lr 0.001 -> 0.0001; camera-sim 0.0 -> 0.5\)"):
        train(cfg(train_subset, run, lr=1e-4, camera_sim=0.5), progress=False)
    assert (run / "config.json").read_text() == record and load_checkpoint(run / "checkpoint.pt")["step"] == 10
    train(cfg(train_subset, run, steps=30, val_every=15, ckpt_every=15), progress=False)  # longer: fine
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 30
    assert resume_changes({"lr": 1e-3, "workers": 1}, {"lr": 1e-3, "workers": 4, "camera_optics_from": 0.5}) == []
    with pytest.raises(DataError, match="is the input folder"):
        cfg(train_subset, train_subset).check()


def test_metrics_say_how_long_the_loop_waited_for_data_and_an_old_file_is_upgraded_on_resume(train_subset, tmp_path):
    run = tmp_path / "run"
    train(cfg(train_subset, run, stop_at=10), progress=False)
    first = rows(run)
    # --workers 0: the batches are made in the loop itself, a measurable share of its time
    assert first and all(0.0 < float(r["data_wait"]) < 1.0 for r in first), first
    # the file as a version without the column wrote it: resuming rewrites it with the new header
    with open(run / "metrics.csv", newline="") as f:
        old = list(csv.DictReader(f))
    keep = [k for k in old[0] if k != "data_wait"]
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keep, extrasaction="ignore")
        w.writeheader()
        w.writerows(old)
    train(cfg(train_subset, run), progress=False)
    after = rows(run)
    assert [r["step"] for r in after] == ["10", "20"]
    assert after[0]["data_wait"] == "" and after[0]["val_psnr"] == first[0]["val_psnr"]
    assert 0.0 < float(after[1]["data_wait"]) < 1.0 and float(after[1]["val_psnr"]) > 10


def test_checkpoint_of_another_model_is_refused(train_subset, tmp_path):
    run = tmp_path / "run"
    train(cfg(train_subset, run, steps=2, ckpt_every=2, val_every=2), progress=False)
    with pytest.raises(ModelError, match="checkpoint .* is for widths"):
        train(cfg(train_subset, run, model="small", patch=32), progress=False)
    (run / "checkpoint.pt").write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(ModelError, match="cannot load checkpoint"):
        train(cfg(train_subset, run), progress=False)


def test_fine_tuning_starts_from_given_weights(train_subset, tmp_path):
    from edgedenoise.modelfile import resolve

    run = tmp_path / "ft"
    train(cfg(train_subset, run, steps=2, ckpt_every=2, val_every=2, lr=0.0, init="tiny"), progress=False)
    shipped, tuned = load_file(resolve("tiny").weights), load_file(run / "model.safetensors")
    assert shipped.keys() == tuned.keys()
    for k in shipped:  # learning rate 0: the weights are the shipped ones, untouched
        assert torch.equal(shipped[k], tuned[k]), k
    assert json.loads((run / "config.json").read_text())["init"] == "tiny"
    with pytest.raises(ModelError, match="not those of model small"):
        train(cfg(train_subset, tmp_path / "x", model="small", init="tiny"), progress=False)


def test_a_deeper_model_grows_from_trained_weights(train_subset, tmp_path):
    """--depths with --init: the added convolutions start as the identity, so before any
    step the grown network computes exactly what the trained one does."""
    from edgedenoise.model import ModelConfig, build_model, grow_from
    from edgedenoise.modelfile import load_model

    src = load_model("tiny").eval()  # depths (1, 2, 2): its first encoder level is empty
    for depths in [(1, 3, 4), (2, 2, 2)]:
        dst = build_model(ModelConfig("tiny", widths=(16, 32, 64), depths=depths)).eval()
        grow_from(dst, src)
        x, s = torch.rand(2, 3, 48, 40), torch.tensor([10 / 255, 40 / 255])
        with torch.no_grad():
            assert torch.equal(dst(x, s), src(x, s)), depths
    flat = build_model(ModelConfig("t", widths=(16, 32), depths=(0, 1)))  # decoder level of depth 0
    with pytest.raises(ValueError, match="decoder level of depth 0"):
        grow_from(build_model(ModelConfig("t", widths=(16, 32), depths=(1, 1))), flat)
    run = tmp_path / "grown"
    train(cfg(train_subset, run, steps=2, ckpt_every=2, val_every=2, depths="1,3,4", init="tiny"), progress=False)
    assert json.loads((run / "model.json").read_text())["depths"] == [1, 3, 4]
    with pytest.raises(ModelError, match="no level shallower"):
        train(cfg(train_subset, tmp_path / "y", depths="1,1,2", init="tiny"), progress=False)
    with pytest.raises(ModelError, match="one integer per level"):
        train(cfg(train_subset, tmp_path / "z", depths="1,x,2"), progress=False)


def test_bad_training_settings_are_refused(train_subset, tmp_path):
    with pytest.raises(DataError, match="multiple of 16"):
        train(cfg(train_subset, tmp_path / "r", model="small", patch=40), progress=False)
    with pytest.raises(DataError, match="no usable training images"):
        train(cfg(train_subset, tmp_path / "r", patch=4096), progress=False)


def test_adversarial_loss_trains_a_discriminator(train_subset, tmp_path):
    run = tmp_path / "gan"
    train(cfg(train_subset, run, steps=6, ckpt_every=6, val_every=6, adv_weight=0.01, loss="charbonnier"),
          progress=False)
    ck = load_checkpoint(run / "checkpoint.pt")
    assert "disc" in ck and "disc_optimizer" in ck
    d = [float(r["d_loss"]) for r in rows(run)]
    assert d and all(0 < x < 10 for x in d)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(train_subset, tmp_path):
    """torchrun, 2 CPU processes, gloo: each rank takes half of every batch; the averaged
    gradients equal the single-process ones, so the weights agree to float rounding."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    args = ["--data", str(train_subset), "--model", "tiny", "--steps", "6", "--batch", "4", "--patch", "32",
            "--val-count", "2", "--val-every", "6", "--ckpt-every", "6", "--workers", "0", "--warmup", "2",
            "--threads", "1", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "edgedenoise.cli", "train", "--out", str(single), *args], check=True, env=env)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                    "-m", "edgedenoise.cli", "train", "--out", str(ddp), *args], check=True, env=env)
    ws, wd = load_file(single / "model.safetensors"), load_file(ddp / "model.safetensors")
    for k in ws:
        assert torch.allclose(ws[k], wd[k], atol=2e-5, rtol=1e-4), f"{k}: max diff {(ws[k] - wd[k]).abs().max():.3g}"


def test_pad_to_multiple_lives_with_the_model():
    """The model's padding helper: bottom/right to the size multiple, reflection where the image
    allows it, replication where it is too small to reflect; train and export use this one."""
    import edgedenoise.train as T
    from edgedenoise.model import pad_to_multiple

    assert T.pad_to_multiple is pad_to_multiple
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    y, h, w = pad_to_multiple(x, 4)
    assert (h, w) == (5, 7) and y.shape == (2, 3, 8, 8)
    assert torch.equal(y[..., :5, :7], x)
    assert torch.equal(y[..., 5, :7], x[..., 3, :7]) and torch.equal(y[..., :5, 7], x[..., :5, 5])  # reflected
    tiny = torch.rand(1, 1, 2, 2)
    z, _, _ = pad_to_multiple(tiny, 8)  # a 2x2 image cannot reflect 6 rows: replicated
    assert z.shape == (1, 1, 8, 8) and torch.equal(z[..., 7, 7], tiny[..., 1, 1])
    same = torch.rand(1, 3, 8, 16)
    assert pad_to_multiple(same, 8)[0] is same


def test_camera_simulation_in_training_is_validated_too(train_subset, tmp_path):
    run = tmp_path / "cam"
    train(cfg(train_subset, run, steps=10, camera_sim=0.5), progress=False)
    r = rows(run)
    assert r[-1]["val_camera_psnr"] and 10 < float(r[-1]["val_camera_psnr"]) < 50
    assert json.loads((run / "config.json").read_text())["camera_sim"] == 0.5


def test_camera_level_estimate_tells_training_and_validation_blind_modes_level(train_subset, tmp_path):
    """--camera-level estimate: camera-simulated patches tell the model blind mode's estimate, and the
    camera validation tells each image its estimate too (what blind mode at run time will tell);
    an unknown value is refused in one line."""
    from edgedenoise import data as D
    from edgedenoise.estimate import estimate_sigma
    from edgedenoise.noise import camera_sim_validation
    from edgedenoise.train import ValSet

    run = tmp_path / "est"
    train(cfg(train_subset, run, steps=4, val_every=4, ckpt_every=4, camera_sim=0.5, camera_level="estimate"),
          progress=False)
    assert json.loads((run / "config.json").read_text())["camera_level"] == "estimate"
    assert 10 < float(rows(run)[-1]["val_camera_psnr"]) < 50
    imgs = D.scan_images(train_subset)[:1]
    vs = ValSet(imgs, 3, 25.0, camera_sim=True, camera_level="estimate")
    clean = D.read_image(imgs[0].path, 3)
    noisy, _, true = camera_sim_validation(clean, 0)
    assert vs.camera_items[0][2] == pytest.approx(estimate_sigma(noisy) / 255.0)
    assert ValSet(imgs, 3, 25.0, camera_sim=True).camera_items[0][2] == pytest.approx(true / 255.0)
    with pytest.raises(DataError, match="--camera-level 'rms'"):
        cfg(train_subset, run, camera_level="rms").check()


def test_loader_workers_share_the_steps(train_subset, tmp_path):
    """--workers 2 makes each step once, in order: the same run, bit for bit, as --workers 0 (each
    loader process once yielded every step, so --steps 12 --workers 2 trained 24 steps)."""
    one, two = tmp_path / "w0", tmp_path / "w2"
    train(cfg(train_subset, one, steps=12, val_every=6, ckpt_every=6, camera_sim=0.5), progress=False)
    train(cfg(train_subset, two, steps=12, val_every=6, ckpt_every=6, camera_sim=0.5, workers=2), progress=False)
    assert [r["step"] for r in rows(two)] == ["6", "12"]
    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in rows(one)] == [r["loss"] for r in rows(two)]


def test_keep_every_keeps_the_weights_of_those_checkpoints(train_subset, tmp_path):
    """--keep-every N: besides the latest model, RUN/keep/step_N holds the weights of every N-th
    checkpoint step, each loadable as a model (a slice's best step is then still there to ship)."""
    from edgedenoise.modelfile import load_model

    run = tmp_path / "keep"
    train(cfg(train_subset, run, steps=6, ckpt_every=2, val_every=2, keep_every=4), progress=False)
    assert sorted(p.name for p in (run / "keep").iterdir()) == ["step_4"]
    kept, last = load_file(run / "keep" / "step_4" / "model.safetensors"), load_file(run / "model.safetensors")
    assert any(not torch.equal(kept[k], last[k]) for k in kept)  # step 4's weights, not step 6's
    assert load_model(str(run / "keep" / "step_4")).config.name == "tiny"
