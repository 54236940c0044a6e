"""The network matches the seed's nets; dropout placement relative to the activation."""

import pytest
import torch
from torch import nn

from dropbench.config import load
from dropbench.engines.torch_engine import build_model
from dropbench.models import Residual
from dropbench.regularizers import DropConnectLinear, DropPath, VanillaDropout

N_HIDDEN = 300


def seed_net(which: int) -> nn.Sequential:
    """Seed 003's two networks, verbatim (0: net_overfitting, 1: net_dropped)."""
    if which == 0:
        return torch.nn.Sequential(
            torch.nn.Linear(1, N_HIDDEN), torch.nn.ReLU(),
            torch.nn.Linear(N_HIDDEN, N_HIDDEN), torch.nn.ReLU(),
            torch.nn.Linear(N_HIDDEN, 1),
        )
    return torch.nn.Sequential(
        torch.nn.Linear(1, N_HIDDEN), torch.nn.Dropout(0.5), torch.nn.ReLU(),
        torch.nn.Linear(N_HIDDEN, N_HIDDEN), torch.nn.Dropout(0.5), torch.nn.ReLU(),
        torch.nn.Linear(N_HIDDEN, 1),
    )


@pytest.mark.parametrize("reg, which", [("none", 0), ("dropout", 1)])
def test_default_networks_are_the_seeds(reg, which):
    ours = build_model(load([f"reg={reg}", "p=0.5"]), 1)
    torch.manual_seed(1)
    theirs = seed_net(which)
    assert repr(ours) == repr(theirs)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b), "same seed, same modules: same initial weights"


def test_droppath_turns_residual_on_and_wraps_branches():
    cfg = load(["reg=droppath", "p=0.2", "model.depth=3"])
    assert cfg.model.residual is True
    model = build_model(cfg, 1)
    blocks = [m for m in model if isinstance(m, Residual)]
    assert len(blocks) == 2 and all(isinstance(b.drop_path, DropPath) for b in blocks)
    assert blocks[0].drop_path.p == 0.2


def test_dropconnect_and_vanilla_layers():
    m = build_model(load(["reg=dropconnect"]), 1)
    assert sum(isinstance(x, DropConnectLinear) for x in m.modules()) == 2
    assert type(m[-1]) is nn.Linear, "the output layer keeps its weights"
    m = build_model(load(["reg=vanilla_dropout", "p=0.1"]), 1)
    assert sum(isinstance(x, VanillaDropout) for x in m.modules()) == 2


def _shared_mask_outputs(act: str, seed: int = 0):
    """Run before- and after-placement networks with identical weights and identical masks."""
    outs = []
    for placement in ("before", "after"):
        cfg = load(["reg=dropout", "p=0.5", f"model.activation={act}", f"model.placement={placement}", "model.hidden=64"])
        model = build_model(cfg, 1).double()
        x = torch.linspace(-1, 1, 20, dtype=torch.float64).unsqueeze(1)
        torch.manual_seed(seed)  # the dropout masks: same draws, same shapes, same order
        outs.append(model(x))
    return outs


def test_placement_commutes_for_relu():
    before, after = _shared_mask_outputs("relu")
    assert torch.equal(before, after)


@pytest.mark.parametrize("act", ["tanh", "gelu"])
def test_placement_matters_for_tanh_and_gelu(act):
    before, after = _shared_mask_outputs(act)
    assert not torch.allclose(before, after)
