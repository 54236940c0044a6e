"""L2 through the optimizer's weight decay (seed 003). decoupled=false: torch.optim.Adam/SGD
weight_decay (adds wd*w to the gradient; with Adam the decay is rescaled by the adaptive step).
decoupled=true: AdamW-style, w <- w*(1-lr*wd). Both engines apply it in their optimizer step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dropbench.regs.base import NONNEG, RegConfig, Regularizer, param


@dataclass(frozen=True)
class Config(RegConfig):
    weight_decay: float = param(1e-3, NONNEG)
    decoupled: bool = False


class L2(Regularizer):
    name = "l2"
    order = 60
    slot = "optimizer"
    Config = Config
    strength = "weight_decay"
    draws = False

    def decay(self, conf: Config) -> tuple[float, bool]:
        return conf.weight_decay, conf.decoupled


REGULARIZER = L2()
