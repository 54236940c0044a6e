"""The regularizers of the source documents, each as its definition says.

Inverted dropout is torch.nn.Dropout itself. The others are small modules whose train/eval
behaviour follows the seeds exactly: vanilla dropout (000/003), DropPath (001), DropConnect (004),
L1 as an explicit loss term and L2 as the optimizer's weight decay (003).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_p(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop probability must be in [0, 1), got {p}")
    return float(p)


class VanillaDropout(nn.Module):
    """Original dropout: train = x * Bernoulli(1-p) mask, no rescaling; eval = x * (1-p)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_p(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x * (1.0 - self.p)
        if self.p == 0.0:
            return x
        mask = torch.empty_like(x).bernoulli_(1.0 - self.p)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Seed 001 verbatim: one draw per sample, x / keep * floor(keep + U)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = keep + torch.rand(shape, dtype=x.dtype, device=x.device)
    random_tensor.floor_()
    return x.div(keep) * random_tensor


class DropPath(nn.Module):
    """Stochastic depth for a residual branch: zeroes whole samples, survivors scaled by 1/keep."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_p(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DropConnectLinear(nn.Linear):
    """Seed 004's MyLinear: inverted dropout applied to the weight matrix, not the activations.

    The bias is kept; in eval mode the plain weights are used (inverted scaling keeps the
    expected weight equal to W while training).
    """

    def __init__(self, in_features: int, out_features: int, p: float = 0.5, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.p = check_p(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.dropout(self.weight, self.p, self.training)
        return F.linear(x, w, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", p={self.p}"


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over every parameter, as seed 003's manual L1 loop."""
    return sum(torch.sum(torch.abs(p)) for p in model.parameters())  # type: ignore[return-value]
