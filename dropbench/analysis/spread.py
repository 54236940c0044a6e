"""The spreads a summary gives after ±, for the test metric and for paired differences.

- ci: the half-width of the 95% Student-t interval, t(0.975, n-1) · s / √n, s the sample SD (ddof=1);
- se: the standard error as the UCI literature computes it, SD / √n with numpy's population SD
  (ddof=0; docs/uci-protocol.md): so dropbench's ± equals the published tables' for the
  same numbers. It is √((n-1)/n) times the sample-SD version (2.5% smaller at n = 20);
- std: the sample SD (ddof=1).
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from dropbench.analysis.tdist import t_ppf
from dropbench.errors import UserError

NAN = float("nan")
# The spreads a report can show after ± (--interval), each with its summary field's suffix:
# test_ci, paired_se, ...
INTERVALS = {"ci95": "ci", "se": "se", "std": "std"}


def mean(v: Sequence[float]) -> float:
    """The mean; NaN for no values."""
    return statistics.fmean(v) if v else NAN


def std(v: Sequence[float]) -> float:
    """Sample standard deviation; NaN for fewer than 2 values or any non-finite one (Python 3.11's
    statistics.stdev raises on NaN instead)."""
    if len(v) < 2 or not all(map(math.isfinite, v)):
        return NAN
    return statistics.stdev(v)


def t_halfwidth(values: Sequence[float], level: float = 0.95) -> float:
    """Half-width of the Student-t confidence interval of the mean (NaN for fewer than 2 values)."""
    n = len(values)
    if n < 2:
        return NAN
    return t_ppf(0.5 + level / 2.0, n - 1) * std(values) / math.sqrt(n)


def std_error(values: Sequence[float]) -> float:
    """The literature's standard error: population SD (ddof=0) / √n. NaN for fewer than 2 values
    (one split says nothing of the spread) or any non-finite one."""
    n = len(values)
    if n < 2 or not all(map(math.isfinite, values)):
        return NAN
    return statistics.pstdev(values) / math.sqrt(n)


def spread(values: Sequence[float]) -> dict[str, float]:
    """All three spreads of values: std (ddof=1), se (ddof=0, /√n) and ci (95% t half-width)."""
    return {"std": std(values), "se": std_error(values), "ci": t_halfwidth(values)}


def check_interval(interval: str) -> str:
    """An --interval as given, once known (ci95, se or std)."""
    if interval not in INTERVALS:
        raise UserError(f"unknown --interval {interval!r}: choose from {', '.join(INTERVALS)}")
    return interval
