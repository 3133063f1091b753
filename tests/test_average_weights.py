"""tools/average_weights.py: a run averaged with the model it started from, in weight space."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(folder: Path, size: str, seed: int) -> Path:
    """A run folder as `edgedenoise train` leaves it: model.safetensors/.json and config.json."""
    from edgedenoise.model import build_model
    from edgedenoise.modelfile import save_model

    torch.manual_seed(seed)
    net = build_model(size)
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    save_model(net, folder / "model")
    (folder / "config.json").write_text(json.dumps({"model": size, "init": "tiny", "steps": 10, "lr": 1e-4}))
    return folder


def test_the_average_lies_between_its_ends_and_keeps_the_run_record(tmp_path):
    from edgedenoise.modelfile import load_model

    tool = _tool("average_weights")
    run, other = _run(tmp_path / "run", "tiny", 1), _run(tmp_path / "other", "tiny", 2)
    a, b = load_model(run).state_dict(), load_model(other).state_dict()
    for w in (0.0, 0.5, 1.0):
        out = tmp_path / f"avg{w}"
        assert tool.main([str(run), "--with", str(other), "--weight", str(w), "--out", str(out)]) == 0
        got = load_model(out).state_dict()
        for k in a:  # exact at the ends, the mean half way (float32 rounding)
            torch.testing.assert_close(got[k], w * a[k] + (1 - w) * b[k], rtol=0, atol=1e-7)
    config = json.loads((tmp_path / "avg0.5" / "config.json").read_text())
    assert config["lr"] == 1e-4 and config["average"] == {"with": str(other), "weight": 0.5}
    ship = _tool("ship_model")
    assert ship.training_record(tmp_path / "avg0.5")["average"]["weight"] == 0.5


def test_another_network_a_weight_outside_0_1_and_an_output_onto_an_input_are_refused(tmp_path, capsys):
    tool = _tool("average_weights")
    run, nano = _run(tmp_path / "run", "tiny", 1), _run(tmp_path / "nano", "nano", 2)
    before = (run / "model.safetensors").read_bytes()
    assert tool.main([str(run), "--with", str(nano), "--weight", "0.5", "--out", str(tmp_path / "x")]) == 2
    assert "not the network" in capsys.readouterr().err
    assert tool.main([str(run), "--with", "tiny", "--weight", "1.5", "--out", str(tmp_path / "x")]) == 2
    assert "outside 0..1" in capsys.readouterr().err
    assert tool.main([str(run), "--with", "tiny", "--weight", "0.5", "--out", str(run)]) == 2
    assert "one of the inputs" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == before and not (tmp_path / "x").exists()
