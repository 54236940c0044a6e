"""Inverted dropout (torch.nn.Dropout; Srivastava et al. 2014): while training, zero each
activation with prob p and scale survivors by 1/(1-p); identity in eval mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from dropbench.grids import LogRange
from dropbench.regs.base import MASK_COST, PROB, ChunkView, Piece, Regularizer, keep64, param


@dataclass(frozen=True)
class Config:
    p: float = param(0.5, PROB)
    inplace: bool = False


class Dropout(Regularizer):
    name = "dropout"
    order = 10
    slot = "activation"
    Config = Config
    tune = {"p": LogRange(0.01, 0.5)}
    shares_p = True
    excludes = {"vanilla_dropout": "two scalings of the same dropout"}

    def torch_layer(self, conf: Config) -> Any:
        from torch import nn

        return nn.Dropout(conf.p, inplace=conf.inplace)

    def torch_forward(self, x: Any, conf: Config, training: bool) -> Any:
        return self.torch_layer(conf).train(training)(x)

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        return MASK_COST * n_train * model.hidden * model.depth

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)


class _Batched(Piece):
    def __init__(self, chunk: ChunkView, confs: Sequence[Config]) -> None:
        self.chunk, self.keep64 = chunk, keep64(confs)
        self.keep = self.keep64.to(dtype=chunk.dtype, device=chunk.device)

    def forward(self, z: Any, train: bool) -> tuple[Any, Any]:
        if not train:
            return z, None
        f = self.chunk.bernoulli(self.keep64, tuple(z.shape[1:])) / self.keep
        return z * f, f

    def backward(self, grad: Any, f: Any) -> Any:
        return grad if f is None else grad * f


REGULARIZER = Dropout()
