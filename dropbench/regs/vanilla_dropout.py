"""Vanilla dropout (seeds 000/003; Hinton et al. 2012): while training, zero each activation with
prob p, no rescaling; in eval mode multiply by 1-p."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from dropbench.grids import LogRange
from dropbench.regs.base import MASK_COST, PROB, ChunkView, Piece, Regularizer, keep64, param


@dataclass(frozen=True)
class Config:
    p: float = param(0.5, PROB)


class VanillaDropout(Regularizer):
    name = "vanilla_dropout"
    order = 20
    slot = "activation"
    Config = Config
    tune = {"p": LogRange(0.01, 0.5)}
    shares_p = True
    counter_masks = True

    def torch_forward(self, x: Any, conf: Config, training: bool) -> Any:
        import torch

        from dropbench import masks

        if not training:  # the keep probability in force (the fast stream's where training drew from it)
            return x * (masks.effective_keep(1.0 - conf.p) if masks.training_fast() else 1.0 - conf.p)
        mask = masks.torch_mask(x.shape, 1.0 - conf.p, x.dtype, x.device)
        if mask is not None:
            return x * mask
        if conf.p == 0.0:
            return x
        return x * torch.empty_like(x).bernoulli_(1.0 - conf.p)

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        return MASK_COST * n_train * model.hidden * model.depth

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)


class _Batched(Piece):
    def __init__(self, chunk: ChunkView, confs: Sequence[Config]) -> None:
        self.chunk, self.keep64 = chunk, keep64(confs, chunk.masks)
        self.keep = self.keep64.to(dtype=chunk.dtype, device=chunk.device)

    def forward(self, z: Any, train: bool) -> tuple[Any, Any]:
        f = self.chunk.bernoulli(self.keep64, tuple(z.shape[1:])) if train else self.keep
        return z * f, f

    def backward(self, grad: Any, f: Any) -> Any:
        return grad * f


REGULARIZER = VanillaDropout()
