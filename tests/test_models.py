"""The network matches the seed's nets; dropout placement relative to the activation."""

import pytest
import torch
from torch import nn

from dropbench.config import load
from dropbench.models import build_model
from dropbench.models.layers import Residual
from dropbench.regs import REGISTRY
from dropbench.regs.base import reg_layer, reg_linear

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
    assert len(blocks) == 2 and all(b.drop_path[0].reg is REGISTRY["droppath"] for b in blocks)
    assert blocks[0].drop_path[0].conf.p == 0.2


def test_dropconnect_and_vanilla_layers():
    m = build_model(load(["reg=dropconnect"]), 1)
    masked = [x for x in m.modules() if isinstance(x, nn.Linear) and getattr(x, "regs", None)]
    assert len(masked) == 2 and all(x.regs[0][0] is REGISTRY["dropconnect"] for x in masked)
    assert type(m[-1]) is nn.Linear, "the output layer keeps its weights"
    m = build_model(load(["reg=vanilla_dropout", "p=0.1"]), 1)
    assert sum(getattr(x, "reg", None) is REGISTRY["vanilla_dropout"] for x in m.modules()) == 2


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


# ---- the whole network against a forward pass written out by hand -----------------------------
# The masks are drawn here explicitly, in the order the layers run, from the same global generator
# state the model starts from: a model that places, scales or draws a regularizer differently fails.
ACT = {"relu": torch.relu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu}


def hand_forward(model: nn.Module, x: torch.Tensor, reg: str, p: float, act: str, placement: str, train: bool,
                 residual: bool = False) -> torch.Tensor:
    """Linear layers from `model`'s weights; everything else (masks, scaling, order) written here."""
    f, keep = ACT[act], 1.0 - p
    lins = [m for m in model.modules() if isinstance(m, nn.Linear)]

    def linear(h: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
        W = lin.weight
        if reg == "dropconnect" and train and p > 0:  # seed 004: mask W (one mask for all samples), not the bias
            W = W * (torch.empty_like(W).bernoulli_(keep) / keep)
        return h @ W.T + lin.bias

    def drop(z: torch.Tensor) -> torch.Tensor:
        if reg == "dropout":  # inverted: x * mask / keep while training, identity in eval
            return z * (torch.empty_like(z).bernoulli_(keep) / keep) if train and p > 0 else z
        if reg == "vanilla_dropout":  # vanilla: x * mask while training, x * keep in eval
            return (z * torch.empty_like(z).bernoulli_(keep) if p > 0 else z) if train else z * keep
        return z

    def hidden(h: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
        z = linear(h, lin)
        return f(drop(z)) if placement == "before" else drop(f(z))

    h = hidden(x, lins[0])
    for lin in lins[1:-1]:
        branch = hidden(h, lin)
        if not residual:
            h = branch
        elif reg == "droppath" and train and p > 0:  # seed 001: per sample, U >= p keeps branch / keep
            u = torch.rand((h.shape[0], 1), dtype=h.dtype)
            h = h + torch.where(u >= p, branch / keep, torch.zeros_like(branch))
        else:
            h = h + branch
    return h @ lins[-1].weight.T + lins[-1].bias


CASES = [
    ("dropout", 0.5, "relu", "before"), ("dropout", 0.3, "tanh", "after"), ("dropout", 0.0, "relu", "before"),
    ("vanilla_dropout", 0.4, "gelu", "before"), ("vanilla_dropout", 0.25, "relu", "after"),
    ("dropconnect", 0.5, "relu", "before"), ("droppath", 0.4, "tanh", "before"), ("none", 0.5, "relu", "before"),
]


@pytest.mark.parametrize("reg, p, act, placement", CASES)
@pytest.mark.parametrize("train", [True, False])
def test_model_is_the_hand_written_forward(reg, p, act, placement, train):
    depth = 3
    cfg = load([f"reg={reg}", f"p={p}", f"model.activation={act}", f"model.placement={placement}",
                "model.hidden=16", f"model.depth={depth}"])
    model = build_model(cfg, 1).double().train(train)
    x = torch.linspace(-1, 1, 20, dtype=torch.float64).unsqueeze(1)
    torch.manual_seed(7)
    got = model(x)
    got_next = torch.rand(4, dtype=torch.float64)
    torch.manual_seed(7)
    with torch.no_grad():
        want = hand_forward(model, x, reg, p, act, placement, train, residual=cfg.model.residual)
    assert torch.equal(torch.rand(4, dtype=torch.float64), got_next), "the same draws, no more, no fewer"
    torch.testing.assert_close(got.detach(), want, rtol=1e-12, atol=1e-12)


def test_inplace_dropout_changes_no_value_of_the_model():
    x = torch.linspace(-1, 1, 20).unsqueeze(1)
    outs = []
    for flag in ("false", "true"):
        model = build_model(load(["reg=dropout", f"reg.dropout.inplace={flag}", "model.hidden=16"]), 1).train()
        torch.manual_seed(3)
        outs.append(model(x))
    assert torch.equal(*outs)
