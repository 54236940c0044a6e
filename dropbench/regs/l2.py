"""L2 through the optimizer's weight decay (seed 003). decoupled=false: torch.optim.Adam/SGD
weight_decay (adds wd*w to the gradient; with Adam the decay is rescaled by the adaptive step).
decoupled=true: AdamW-style, w <- w*(1-lr*wd). Both engines apply it in their optimizer step.
biases=false: the decay acts on the weights only, as papers define L2 (e.g. Goodfellow et al.
2016, section 7.1: biases are left unregularized); biases=true (default, seed 003) on every
parameter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dropbench.regs.base import NONNEG, RegConfig, Regularizer, param


@dataclass(frozen=True)
class Config(RegConfig):
    weight_decay: float = param(1e-3, NONNEG)
    decoupled: bool = False
    # Added after run ids were pinned: out of the run id at its default (config.ID_OMITS_DEFAULT).
    biases: bool = field(default=True, metadata={"range": None, "id_omits_default": True})


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
