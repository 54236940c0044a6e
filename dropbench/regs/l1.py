"""L1 (seed 003): adds weight * sum(|w|) over every parameter, biases included, to the loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from dropbench.grids import LogRange
from dropbench.regs.base import NONNEG, ChunkView, Piece, Regularizer, param

L1_COST = 0.25  # L1's sign and add, per parameter


@dataclass(frozen=True)
class Config:
    weight: float = param(1e-4, NONNEG)


def l1_penalty(params: Any) -> Any:
    """Sum of |w| over every parameter, as seed 003's manual L1 loop."""
    import torch

    return sum(torch.sum(torch.abs(p)) for p in params)


class L1(Regularizer):
    name = "l1"
    order = 50
    slot = "loss"
    Config = Config
    tune = {"weight": LogRange(1e-6, 1e-2)}
    strength = "weight"
    draws = False

    def penalty(self, params: Sequence[Any], conf: Config) -> Any:
        return conf.weight * l1_penalty(params)

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        return L1_COST * n_params

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)


class _Batched(Piece):
    def __init__(self, chunk: ChunkView, confs: Sequence[Config]) -> None:
        self.weight = chunk.column([c.weight for c in confs])

    def penalty(self, params: Sequence[Any]) -> Any:
        return self.weight.view(-1) * sum(p.abs().sum(dim=(1, 2)) for p in params)

    def add_grad(self, grads: list[Any], params: Sequence[Any]) -> None:
        # The gradient of l1*sum|w| is l1*sign(w), the value autograd's abs backward gives;
        # adding it directly saves three passes over every parameter.
        import torch

        torch._foreach_addcmul_(grads, torch._foreach_sign(params), [self.weight] * len(grads))


REGULARIZER = L1()
