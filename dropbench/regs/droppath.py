"""DropPath / stochastic depth (seed 001; Huang et al. 2016): while training, drop a residual
branch for whole samples with prob p, survivors scaled by 1/(1-p); identity in eval mode.
Turns model.residual on (it means nothing without residual branches)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from dropbench.grids import LogRange
from dropbench.errors import UserError
from dropbench.regs.base import MASK_COST, PROB, ChunkView, Piece, Regularizer, keep64, param


@dataclass(frozen=True)
class Config:
    p: float = param(0.5, PROB)


class DropPath(Regularizer):
    name = "droppath"
    order = 30
    slot = "residual"
    Config = Config
    tune = {"p": LogRange(0.01, 0.5)}
    shares_p = True
    sets = ("model.residual",)
    note = "reg=droppath runs use residual blocks (it turns model.residual on: DropPath drops residual branches)"

    def adjust_model(self, model: Any, conf: Config) -> Any:
        if model.depth < 2:
            raise UserError(f"reg=droppath needs residual blocks, which need model.depth >= 2 (got {model.depth})")
        # DropPath only means something on residual branches: make that visible in the config.
        return model if model.residual else dataclasses.replace(model, residual=True)

    def torch_forward(self, x: Any, conf: Config, training: bool) -> Any:
        """Seed 001 verbatim: one draw per sample, x / keep * floor(keep + U)."""
        import torch

        p = conf.p
        if p == 0.0 or not training:
            return x
        keep = 1.0 - p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        random_tensor = keep + torch.rand(shape, dtype=x.dtype, device=x.device)
        random_tensor.floor_()
        return x.div(keep) * random_tensor

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        return MASK_COST * n_train * (model.depth - 1)

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)


class _Batched(Piece):
    def __init__(self, chunk: ChunkView, confs: Sequence[Config]) -> None:
        k64 = keep64(confs)
        self.chunk, self.active = chunk, [k < 1 for k in k64.view(-1).tolist()]
        self.keep = k64.to(dtype=chunk.dtype, device=chunk.device)

    def forward(self, z: Any, train: bool) -> tuple[Any, Any]:
        if not train:
            return z, None
        u = self.chunk.draws(self.active, (z.shape[1], 1), self.chunk.dtype).to(self.chunk.device)
        rt = (self.keep + u).floor_()
        return z.div(self.keep) * rt, rt

    def backward(self, grad: Any, rt: Any) -> Any:
        return grad if rt is None else grad * rt / self.keep


REGULARIZER = DropPath()
