"""Early stopping on validation rows (Prechelt 1998, "Early stopping - but when?"; as Keras'
EarlyStopping(monitor="val_loss", patience, min_delta, restore_best_weights=True)).

The last `fraction` of the training rows (in the split's order, as data.holdout cuts them; for the
noisy 1-D sets, whose rows lie in x order, rows drawn from the data seed) are held out as the
stopping set: the run trains on the rest, and every evaluation (eval_every) records their eval-mode
MSE as val_mse. An evaluation improves when its val_mse is below the best so far by more than
`min_delta`; the run stops at the `patience`-th evaluation in a row that does not improve, and is
reported at its last improving evaluation (its final_* are that row's: the weights restored, in
Keras' words), with the epochs it stopped at and kept in runs.csv (stopped_epoch, kept_epoch).
A run that never stops is still reported at its best stopping-set evaluation.

patience counts evaluations, not epochs: eval_every sets how often the stopping set is looked at.
patience=0 is off: no rows held out, no number changed (the registry's strength 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from dropbench.grids import LinearRange
from dropbench.regs.base import NONNEG, Range, Regularizer, param

FRACTION = Range(0.0, 1.0, lo_open=True, hi_open=True, why="the share of the training rows held out to validate on")


@dataclass(frozen=True)
class Config:
    patience: int = param(5, NONNEG)  # evaluations in a row without improvement before stopping; 0: off
    min_delta: float = param(0.0, NONNEG)  # an improvement is a drop of the validation MSE by more than this
    fraction: float = param(0.2, FRACTION)  # of the training rows, held out as the stopping set


def stopping(val: Sequence[float], patience: int, min_delta: float) -> tuple[int | None, int | None]:
    """(the index of the evaluation kept: the last that improved, None if none did; the index at
    which the run stops, None if it goes on). NaN never improves."""
    best, kept, wait = math.inf, None, 0
    for i, v in enumerate(val):
        if v is not None and v < best - min_delta:
            best, kept, wait = v, i, 0
            continue
        wait += 1
        if wait >= patience:
            return kept, i
    return kept, None


class EarlyStopping(Regularizer):
    name = "early_stopping"
    order = 80  # last: it acts on the loop, after every other regularizer's step
    slot = "loop"
    Config = Config
    tune = {"patience": LinearRange(2, 20, integer=True)}  # evaluations
    strength = "patience"
    draws = False

    def holdout(self, conf: Config) -> float:
        return conf.fraction if conf.patience > 0 else 0.0

    def watch(self, val: Sequence[float], conf: Config) -> tuple[int | None, bool]:
        kept, stop = stopping(val, conf.patience, conf.min_delta)
        # Before any improvement (a NaN first evaluation): the newest, as a run without it would be.
        return kept, stop is not None


REGULARIZER = EarlyStopping()
