"""The MLP of the seed experiment, built from plain torch.nn modules.

With reg=none it is seed 003's net_overfitting, with reg=dropout (placement=before) its
net_dropped, layer for layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from dropbench.regularizers import DropConnectLinear, DropPath, VanillaDropout

if TYPE_CHECKING:
    from dropbench.config import MLP, Reg

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _linear(n_in: int, n_out: int, reg: "Reg") -> nn.Linear:
    if reg.dropconnect is not None:
        return DropConnectLinear(n_in, n_out, p=reg.dropconnect.p)
    return nn.Linear(n_in, n_out)


def _drop(reg: "Reg") -> list[nn.Module]:
    if reg.dropout is not None:
        return [nn.Dropout(reg.dropout.p, inplace=reg.dropout.inplace)]
    if reg.vanilla_dropout is not None:
        return [VanillaDropout(reg.vanilla_dropout.p)]
    return []


def hidden_layer(n_in: int, n_out: int, cfg: "MLP", reg: "Reg") -> list[nn.Module]:
    """Linear, then the dropout-family layer before or after the activation."""
    act = ACTIVATIONS[cfg.activation]()
    drop = _drop(reg)
    tail = [*drop, act] if cfg.placement == "before" else [act, *drop]
    return [_linear(n_in, n_out, reg), *tail]


class Residual(nn.Module):
    """x + drop_path(f(x)): the residual block DropPath is defined on (seed 001)."""

    def __init__(self, branch: nn.Module, drop_path_p: float = 0.0) -> None:
        super().__init__()
        self.branch = branch
        self.drop_path = DropPath(drop_path_p) if drop_path_p > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.branch(x))


def build_mlp(n_in: int, n_out: int, cfg: "MLP", reg: "Reg") -> nn.Sequential:
    """Layer 1 maps the input to `hidden`; layers 2..depth are plain or residual blocks."""
    layers: list[nn.Module] = hidden_layer(n_in, cfg.hidden, cfg, reg)
    dp = reg.droppath.p if reg.droppath is not None else 0.0
    for _ in range(cfg.depth - 1):
        block = hidden_layer(cfg.hidden, cfg.hidden, cfg, reg)
        layers += [Residual(nn.Sequential(*block), dp)] if cfg.residual else block
    layers.append(nn.Linear(cfg.hidden, n_out))
    return nn.Sequential(*layers)
