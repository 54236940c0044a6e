"""Max-norm (Srivastava et al. 2014, section 5.1): after each optimizer step, rescale each hidden
unit's incoming weight vector w to norm at most c: w <- w * min(1, c/||w||_2). The paper
constrains hidden units; the output layer (a regression output here, whose scale is the
targets') and every bias are left alone. c=0 turns the constraint off, as strength 0 does for
every regularizer (a zero norm bound would zero the network)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from dropbench.grids import LogRange
from dropbench.regs.base import NONNEG, ChunkView, Piece, Regularizer, param


@dataclass(frozen=True)
class Config:
    c: float = param(3.0, NONNEG)  # the norm bound (the paper uses 3 to 4); 0: no constraint


def rescale(W: Any, c: Any, dim: int) -> None:
    """W *= min(1, c/||unit's weights||) in place, the norm taken over `dim` (c may be a tensor)."""
    import torch

    norms = torch.linalg.vector_norm(W, dim=dim, keepdim=True)
    W.mul_((c / norms).clamp_(max=1.0))  # a zero norm: c/0 = inf, factor 1


class MaxNorm(Regularizer):
    name = "max_norm"
    order = 70
    slot = "after_step"
    Config = Config
    tune = {"c": LogRange(0.5, 8.0)}  # the paper uses 3 to 4
    strength = "c"
    draws = False

    def after_step(self, params: Sequence[Any], conf: Config) -> None:
        """params: [W1, b1, ..., W_out, b_out], each W [out, in]: a unit's incoming vector is a row."""
        if conf.c == 0.0:
            return
        for W in params[:-2:2]:
            rescale(W, conf.c, dim=1)

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        return 2.0 * (n_in * model.hidden + (model.depth - 1) * model.hidden * model.hidden)  # norm, then scale

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)


class _Batched(Piece):
    """The batched engine stores W transposed, [C, in, out]: a unit's incoming vector is a column
    (the norm is over dim 1). Members at c=0 get c=inf: a factor of exactly 1."""

    def __init__(self, chunk: ChunkView, confs: Sequence[Config]) -> None:
        self.any = any(c.c > 0 for c in confs)
        self.c = chunk.column([c.c if c.c > 0 else math.inf for c in confs])

    def after_step(self, params: Sequence[Any]) -> None:
        if not self.any:
            return
        for W in params[:-2:2]:
            rescale(W, self.c, dim=1)


REGULARIZER = MaxNorm()
