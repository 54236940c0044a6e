"""Inverted dropout (torch.nn.Dropout; Srivastava et al. 2014): while training, zero each
activation with prob p and scale survivors by 1/(1-p); identity in eval mode."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
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
    counter_masks = True
    excludes = {"vanilla_dropout": "two scalings of the same dropout"}

    def torch_layer(self, conf: Config) -> Any:
        return torch_dropout()(conf.p, inplace=conf.inplace)

    def torch_forward(self, x: Any, conf: Config, training: bool) -> Any:
        return fast_dropout(x, conf.p, training, conf.inplace)

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        return MASK_COST * n_train * model.hidden * model.depth

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)


def fast_dropout(x: Any, p: float, training: bool = True, inplace: bool = False) -> Any:
    """Inverted dropout on x: x * (mask / keep), the mask from the run's fast stream where it
    draws from it (dropbench/masks.py), else F.dropout's, from torch's generator."""
    import torch.nn.functional as F

    from dropbench import masks

    if training and masks.current() is not None:
        keep = masks.effective_keep(1.0 - p) if masks.training_fast() else 1.0 - p  # as regs.base.keep64
        return x * masks.torch_mask(x.shape, 1.0 - p, x.dtype, x.device, masks.inverse_keep(keep, x.dtype))
    return F.dropout(x, p, training, inplace)


@cache
def torch_dropout() -> type:
    """torch.nn.Dropout, drawing from the run's fast stream where it does (dropbench/masks.py);
    elsewhere torch's own forward, bit for bit. Named Dropout: it prints as torch's."""
    from torch import nn

    class Dropout(nn.Dropout):
        def forward(self, x: Any) -> Any:
            return fast_dropout(x, self.p, self.training, self.inplace)

    return Dropout


class _Batched(Piece):
    windowed = True  # the chunk's dropout alone reads its columns

    def __init__(self, chunk: ChunkView, confs: Sequence[Config]) -> None:
        self.chunk, self.keep64 = chunk, keep64(confs, chunk.masks)
        self.keep = self.keep64.to(dtype=chunk.dtype, device=chunk.device)

    def forward(self, z: Any, train: bool) -> tuple[Any, Any]:
        if not train:
            return z, None
        return self.chunk.dropout(z, self.keep64, self.keep)

    def backward(self, grad: Any, f: Any) -> Any:
        return grad if f is None else self.chunk.dropout_backward(grad, f)


REGULARIZER = Dropout()
