"""L2 through the optimizer's weight decay (seed 003). decoupled=false: torch.optim.Adam/SGD
weight_decay (adds wd*w to the gradient; with Adam the decay is rescaled by the adaptive step).
decoupled=true: AdamW-style, w <- w*(1-lr*wd). Both engines apply it in their optimizer step.
biases=false: the decay acts on the weights only, as papers define L2 (e.g. Goodfellow et al.
2016, section 7.1: biases are left unregularized); biases=true (default, seed 003) on every
parameter.

prior_length_scale=l (Gal & Ghahramani 2016, the MC-dropout UCI protocol): the decay is derived,
not given. The loss term reg * sum(W**2) with reg = l**2 (1 - p) / (2 N tau) has the gradient of
torch's coupled weight_decay = 2 reg = l**2 (1 - p) / (N tau), with p the drop probability in
effect (0 without dropout), tau = eval.tau and N the rows actually trained on (after a
data.holdout=validation split). dropbench.derive derives it before runs are planned, so the saved
config and the run id hold the number that was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dropbench.grids import LogRange
from dropbench.params import NONNEG, POSITIVE, Rule, param
from dropbench.regs.base import Regularizer


def prior_weight_decay(length_scale: float, p: float, n_train: int, tau: float) -> float:
    """torch's coupled weight_decay for the prior length-scale l: 2 * l**2 (1-p) / (2 N tau)."""
    return length_scale**2 * (1.0 - p) / (n_train * tau)


@dataclass(frozen=True)
class Config:
    # null: derived from prior_length_scale (which must then be set).
    weight_decay: float | None = param(1e-3, NONNEG)
    decoupled: bool = False
    # Added after run ids were pinned: out of the run id at their defaults.
    biases: bool = param(True, id_omits_default=True)
    prior_length_scale: float | None = param(None, POSITIVE, id_omits_default=True)

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(lambda c: c.weight_decay is not None or c.prior_length_scale is not None,
             lambda c, k: f"{k}.weight_decay=null needs {k}.prior_length_scale to derive it from: set one of them"),
        Rule(lambda c: c.prior_length_scale is None or not c.decoupled,
             lambda c, k: f"{k}.prior_length_scale derives torch's coupled weight decay; it does not apply with "
                          f"{k}.decoupled=true: drop one of them"),
    )


class L2(Regularizer):
    name = "l2"
    order = 60
    slot = "optimizer"
    Config = Config
    tune = {"weight_decay": LogRange(1e-6, 1e-2)}
    strength = "weight_decay"
    draws = False

    def decay(self, conf: Config) -> tuple[float, bool]:
        assert conf.weight_decay is not None, "derived by dropbench.derive"
        return conf.weight_decay, conf.decoupled


REGULARIZER = L2()
