"""The values a tuning tries: a regularizer's declared strength ranges, spread over a budget.

Every regularizer declares, in its module, the knob(s) that set its strength and a sensible range
for each (`Regularizer.tune`, e.g. `{"p": LogRange(0.01, 0.5)}`), so that `dropbench tune
--budget N` gives every method N grid points of its own without a grid written by hand. A scale
parameter (a rate, a decay, a noise level, a norm bound) is spread evenly on a log scale, anything
else evenly on a linear one; an integer knob is rounded (and may then give fewer distinct points).

A method with several knobs (reg=[dropout,l2]) shares its budget between them: N is split into the
most even product of whole numbers (8 = 4 x 2, 9 = 3 x 3, a prime N tunes its first knob only, the
others keeping their configured values), so that every method gets exactly N points where N allows.

Standard library only: regularizer modules import it, and they must stay quick to import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

SIGNIFICANT = 3  # digits a spread value keeps: 0.0178, not 0.017782794100389229


def _round(x: float) -> float:
    return float(f"{x:.{SIGNIFICANT}g}")


@dataclass(frozen=True)
class Spread:
    """A range a knob is tuned over, [lo, hi]; `points(n)` spreads n values evenly over it."""

    lo: float
    hi: float
    integer: bool = False

    scale = "linear"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or self.lo > self.hi:
            raise ValueError(f"a tuning range needs finite lo <= hi, got [{self.lo}, {self.hi}]")

    def _at(self, t: float) -> float:
        return self.lo + (self.hi - self.lo) * t

    def points(self, n: int) -> list[float]:
        """n values from lo to hi, both ends included (one value: the middle), evenly on the range's
        scale, each to 3 significant digits; an integer knob's rounded, duplicates dropped."""
        if n < 1:
            raise ValueError(f"a grid needs at least one point, got {n}")
        ts = [0.5] if n == 1 else [i / (n - 1) for i in range(n)]
        values = [self._at(t) for t in ts]
        values = [float(round(v)) for v in values] if self.integer else [_round(v) for v in values]
        return list(dict.fromkeys(values))

    def describe(self) -> str:
        return f"{self.scale} [{self.lo:g}, {self.hi:g}]" + (" (integers)" if self.integer else "")


@dataclass(frozen=True)
class LinearRange(Spread):
    """Evenly spaced values: a knob whose effect is additive (a patience, a fraction)."""

    scale = "linear"


@dataclass(frozen=True)
class LogRange(Spread):
    """Evenly spaced on a log scale: a scale parameter (a rate, a decay, a noise level), whose
    useful values span orders of magnitude. Both ends must be > 0."""

    scale = "log"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lo <= 0:
            raise ValueError(f"a log-spaced range needs lo > 0, got {self.lo}")

    def _at(self, t: float) -> float:
        return math.exp(math.log(self.lo) + (math.log(self.hi) - math.log(self.lo)) * t)


def split_budget(n: int, k: int) -> list[int]:
    """How many points each of k knobs gets of a method's budget n: the k whole numbers whose
    product is exactly n and which are most even (the largest first): split_budget(8, 2) = [4, 2],
    split_budget(12, 2) = [4, 3], split_budget(7, 2) = [7, 1]."""
    if n < 1 or k < 0:
        raise ValueError(f"cannot split a budget of {n} between {k} knobs")
    if k == 0:
        return []
    best: list[int] | None = None
    for f in _factorizations(n, k, n):
        if best is None or (min(f), -max(f)) > (min(best), -max(best)):
            best = f
    assert best is not None
    return best


def _factorizations(n: int, k: int, most: int) -> list[list[int]]:
    """Every way to write n as k factors, each at most `most`, in non-increasing order."""
    if k == 1:
        return [[n]] if n <= most else []
    out = []
    for f in range(min(n, most), 0, -1):
        if n % f == 0:
            out += [[f, *rest] for rest in _factorizations(n // f, k - 1, f)]
    return out


def parse_range(text: str) -> tuple[float, float] | None:
    """`LO..HI` as a user writes a range to spread over the budget (None: not a range)."""
    if ".." not in text or "," in text:
        return None
    lo, _, hi = text.partition("..")
    try:
        a, b = float(lo), float(hi)
    except ValueError:
        return None
    return a, b


def value_text(v: float, integer: bool = False) -> str:
    """A grid value as an override writes it: 0.0178, 1e-05, 3.0 (an integer knob's: 3)."""
    if integer:
        return str(int(v))
    return repr(float(v)) if float(v).is_integer() else f"{v:.{SIGNIFICANT}g}"


def values_text(values: Sequence[float], integer: bool = False) -> str:
    return ",".join(value_text(v, integer) for v in values)
