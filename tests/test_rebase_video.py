"""tools/rebase_video.py: a recurrent model given its framewise model's weights as shipped now."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("rebase_video", ROOT / "tools" / "rebase_video.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rebasing_on_its_own_base_changes_nothing_and_on_another_keeps_the_gate():
    from edgedenoise.model import build_model
    from edgedenoise.modelfile import load_model, resolve

    tool = _tool()
    shipped = load_model("tiny-video").state_dict()
    same = tool.rebased("tiny-video", "tiny").state_dict()  # tiny-video is tiny, untouched, plus its gate
    assert same.keys() == shipped.keys() and all(torch.equal(same[k], shipped[k]) for k in same)

    other = build_model(resolve("tiny").config)  # a "new" tiny: other weights, the same network
    torch.manual_seed(0)
    for p in other.parameters():
        p.data.normal_(0, 0.01)
    net = tool._rebase(load_model("tiny-video"), other)
    state, theirs = net.state_dict(), other.state_dict()
    assert all(torch.equal(state[k], shipped[k]) for k in state if k.startswith("gate."))
    assert all(torch.equal(state[k], theirs[k]) for k in theirs if state[k].shape == theirs[k].shape)
    assert net.config.name == "tiny-video" and net.config.recurrent and net.config.gate == 12

    with pytest.raises(SystemExit, match="not the network"):
        tool.rebased("tiny-video", "nano")
