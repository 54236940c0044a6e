"""Input noise (Bishop 1995, "Training with noise is equivalent to Tikhonov regularization"):
while training, add N(0, sigma^2) noise to each input feature, drawn afresh every step; the
inputs as they are in eval mode and at sigma=0 (no draws)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from dropbench.grids import LogRange
from dropbench.regs.base import MASK_COST, NONNEG, ChunkView, Piece, Regularizer, param


@dataclass(frozen=True)
class Config:
    sigma: float = param(0.1, NONNEG)  # the noise's standard deviation, in the inputs' units


class InputNoise(Regularizer):
    name = "input_noise"
    order = 46  # in the input slot after input_dropout: sigma stays the std of what layer 1 sees
    slot = "input"
    Config = Config
    tune = {"sigma": LogRange(0.01, 1.0)}  # inputs are standardised: up to one SD
    strength = "sigma"

    def torch_forward(self, x: Any, conf: Config, training: bool) -> Any:
        import torch

        if not training or conf.sigma == 0.0:
            return x
        return x + conf.sigma * torch.randn_like(x)

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        return MASK_COST * n_train * n_in  # one draw per input feature per sample

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)


class _Batched(Piece):
    def __init__(self, chunk: ChunkView, confs: Sequence[Config]) -> None:
        self.chunk, self.active = chunk, [c.sigma > 0 for c in confs]
        self.sigma = chunk.column([c.sigma for c in confs])

    def forward(self, x: Any, train: bool) -> tuple[Any, Any]:
        if not train or not any(self.active):
            return x, None
        import torch

        noise = self.chunk.draws(self.active, tuple(x.shape[1:]), self.chunk.dtype, torch.randn).to(x.device)
        return x + self.sigma * noise, None  # members at sigma=0: x + 0*0, x exactly

    def backward(self, grad: Any, saved: Any) -> Any:
        return grad  # d(x + noise)/dx = 1 (the engine takes no gradient of the data anyway)


REGULARIZER = InputNoise()
