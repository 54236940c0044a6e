"""Significance tests between groups of one sweep, from the numbers a summary holds: Welch's
t-test of two means, and the paired t-test of per-repetition differences (`dropbench check`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from dropbench.analysis.tdist import t_sf

NAN = float("nan")


@dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance t-test of H1: mean(a) > mean(b), from summary statistics."""

    t: float
    df: float
    p: float  # one-sided p-value; NaN where a group has fewer than 2 seeds


def welch_greater(a_mean: float, a_std: float, a_n: int, b_mean: float, b_std: float, b_n: int) -> Welch:
    if a_n < 2 or b_n < 2 or any(math.isnan(v) for v in (a_mean, a_std, b_mean, b_std)):
        return Welch(NAN, NAN, NAN)
    va, vb = a_std**2 / a_n, b_std**2 / b_n
    diff = a_mean - b_mean
    if va + vb == 0.0:  # deterministic results on both sides: any increase is certain
        return Welch(math.copysign(math.inf, diff) if diff else 0.0, NAN, 0.0 if diff > 0 else 1.0)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a_n - 1) + vb**2 / (b_n - 1))
    return Welch(t, df, t_sf(t, df))


def paired_greater(d: Sequence[float]) -> float:
    """One-sided p-value of the paired t-test of H1: mean(d) > 0, d the per-repetition
    differences (at least 2); differences without spread are certain either way."""
    mean, sd = sum(d) / len(d), (sum((x - sum(d) / len(d)) ** 2 for x in d) / (len(d) - 1)) ** 0.5
    if sd == 0.0:
        return 0.0 if mean > 0 else 1.0
    return t_sf(mean / (sd / math.sqrt(len(d))), len(d) - 1)
