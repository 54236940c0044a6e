"""Multiplicative Gaussian weight noise: while training, each hidden layer's weight W is used as
W * (1 + std * eps), eps ~ N(0, 1) drawn afresh every step (Gaussian DropConnect; Wan et al. 2013
and Kingma et al. 2015 use its variational form). Identity in eval mode and at std=0 (no draws).

Written only in its torch form: dropbench's batched engine runs it through its generic path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dropbench.grids import LogRange
from dropbench.regs.base import NONNEG, Regularizer, param


@dataclass(frozen=True)
class Config:
    std: float = param(0.1, NONNEG)  # the noise's standard deviation, relative to each weight


class WeightNoise(Regularizer):
    name = "weight_noise"
    order = 200  # after every built-in, in labels and within the weight slot
    slot = "weight"
    Config = Config
    strength = "std"
    tune = {"std": LogRange(0.01, 0.5)}  # what `dropbench tune --budget N` spreads N points over

    def torch_forward(self, w: Any, conf: Config, training: bool) -> Any:
        import torch

        if not training or conf.std == 0.0:
            return w
        return w * (1 + conf.std * torch.randn_like(w))


REGULARIZER = WeightNoise()
