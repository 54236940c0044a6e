"""Gaussian dropout (Srivastava et al. 2014, section 10): while training, multiply each activation
by noise drawn from N(1, alpha), alpha = p/(1-p): the mean and variance of inverted dropout's
factor, without zeros. Identity in eval mode and at p=0 (no draws)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from dropbench.grids import LogRange
from dropbench.regs.base import MASK_COST, PROB, ChunkView, Piece, Regularizer, param


@dataclass(frozen=True)
class Config:
    p: float = param(0.5, PROB)  # alpha = p/(1-p): the variance of the noise


def std(conf: Config) -> float:
    return math.sqrt(conf.p / (1.0 - conf.p))


class GaussianDropout(Regularizer):
    name = "gaussian_dropout"
    order = 25  # after dropout and vanilla dropout, in the activation slot
    slot = "activation"
    Config = Config
    tune = {"p": LogRange(0.01, 0.5)}  # what tune --budget N spreads N points over
    shares_p = True  # p follows the top-level p, as the other dropout-family members'

    def torch_forward(self, x: Any, conf: Config, training: bool) -> Any:
        import torch

        if not training or conf.p == 0.0:
            return x
        return x * (1 + std(conf) * torch.randn_like(x))

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        return MASK_COST * n_train * model.hidden * model.depth  # one draw per activation

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)


class _Batched(Piece):
    def __init__(self, chunk: ChunkView, confs: Sequence[Config]) -> None:
        self.chunk, self.active = chunk, [c.p > 0 for c in confs]
        self.std = chunk.column([std(c) for c in confs])

    def forward(self, z: Any, train: bool) -> tuple[Any, Any]:
        if not train:
            return z, None
        import torch

        noise = self.chunk.draws(self.active, tuple(z.shape[1:]), self.chunk.dtype, torch.randn).to(z.device)
        f = 1 + self.std * noise  # members at p=0: std 0, noise 0, f = 1
        return z * f, f

    def backward(self, grad: Any, f: Any) -> Any:
        return grad if f is None else grad * f


REGULARIZER = GaussianDropout()
