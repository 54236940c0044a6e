"""The torch.nn pieces models are built from: hidden layers with their regularizers, residual
blocks, the input-slot regularizers, and the initialisations model.init names.

Every selected regularizer of a slot acts, in registry order (dropbench/regs/): weight-slot ones
on each hidden Linear's weight, activation-slot ones before or after the activation
(model.placement), residual-slot ones on each residual branch. Imports torch: only a model's
build imports this module.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from dropbench import regs
from dropbench.models import acts_after
from dropbench.regs.base import reg_linear

if TYPE_CHECKING:
    from dropbench.config import Reg
    from dropbench.models.mlp import Config as MLP

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "selu": nn.SELU}


def hidden_layer(n_in: int, n_out: int, cfg: "MLP", reg: "Reg") -> list[nn.Module]:
    """Linear (its weight through the weight-slot regularizers), then the activation-slot
    regularizers before or after the activation."""
    act = ACTIVATIONS[cfg.activation]()
    on_act = regs.active(reg, "activation")
    pre = [r.torch_layer(c) for r, c in on_act if not acts_after(r, cfg)]
    post = [r.torch_layer(c) for r, c in on_act if acts_after(r, cfg)]
    return [reg_linear(n_in, n_out, regs.active(reg, "weight")), *pre, act, *post]


def lecun_normal_(model: nn.Module) -> None:
    """Every Linear's weight from N(0, 1/fan_in), its bias 0 (Klambauer et al. 2017, the init under
    which SELU networks self-normalize; torch's SELU docs: kaiming_normal_ with nonlinearity='linear').
    Drawn from the global generator after construction, layer by layer, so both engines (the batched
    one copies these weights) start from the same numbers."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0, 1 / math.sqrt(m.in_features))
                m.bias.zero_()


def glorot_uniform_(model: nn.Module) -> None:
    """Every Linear's weight from U(-a, a), a = sqrt(6 / (fan_in + fan_out)), its bias 0: Keras'
    default (glorot_uniform, zeros), the init of the MC-dropout UCI code (the protocol of the
    split files, docs/uci-protocol.md). Drawn from the global generator after construction, layer
    by layer, as lecun_normal_."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                a = math.sqrt(6 / (m.in_features + m.out_features))
                m.weight.uniform_(-a, a)
                m.bias.zero_()


class Residual(nn.Module):
    """x + g(f(x)), g the residual-slot regularizers (DropPath, seed 001) or the identity."""

    def __init__(self, branch: nn.Module, on_branch: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.branch = branch
        self.drop_path = nn.Sequential(*on_branch) if on_branch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.branch(x))


class InputRegs(nn.Module):
    """The input-slot regularizers, in order, on the input features."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
