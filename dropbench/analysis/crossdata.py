"""Which group wins across data sets: the tests the field uses, with the data sets as repetitions.

Each data set contributes one score per group: its mean over splits and seeds (the wide table's
cell). On that data sets x groups table:

- Friedman's test (Demšar, JMLR 2006): do the groups' ranks differ at all? chi-square with its
  degrees of freedom and p (with scipy's correction for ties), and the Iman-Davenport F, which
  Demšar recommends as less conservative.
- Pairwise Wilcoxon signed-rank tests with Holm's step-down correction: the default post-hoc.
  Benavoli, Corani & Mangili (JMLR 2016) show that post-hoc tests on mean ranks (Nemenyi) make
  "A against B" depend on which other groups are in the pool; a signed-rank test of A and B
  looks at A and B only.
- Nemenyi's critical difference, on request: two groups differ where their mean ranks are more
  than CD = q_alpha * sqrt(k(k+1)/(6n)) apart, q_alpha the studentized range quantile / sqrt(2).
- Cliques: the maximal runs of groups, in mean-rank order, that the chosen test cannot tell apart
  pairwise (the bars of a critical-difference diagram, as aeon and autorank draw them).

Standard library at import; scipy (friedmanchisquare, wilcoxon, studentized_range, chi2, f) is
imported inside the functions that need it, so `dropbench report` starts as fast as before.
Bad input is a one-line UserError: too few data sets (saying how many the test needs), groups
that tie on every data set, a data set without a group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from dropbench.errors import UserError

POSTHOCS = ("wilcoxon", "nemenyi")
DEFAULT_POSTHOC = "wilcoxon"
DEFAULT_ALPHA = 0.05
POSTHOC_TEXT = {"wilcoxon": "Wilcoxon signed-rank, Holm-corrected", "nemenyi": "Nemenyi critical difference"}


@dataclass(frozen=True)
class Friedman:
    statistic: float  # chi-square_F, corrected for ties as scipy.stats.friedmanchisquare does
    df: int  # k - 1
    p: float
    f: float  # Iman-Davenport's F_F = (n-1) chi2 / (n(k-1) - chi2)
    f_df: tuple[int, int]  # (k-1, (k-1)(n-1))
    f_p: float


@dataclass(frozen=True)
class Pair:
    """Two groups compared over the data sets. `a` is the better by mean rank."""

    a: str
    b: str
    a_rank: float  # mean ranks
    b_rank: float
    wins: tuple[int, int, int]  # data sets where a is better, tie, b is better
    statistic: float | None  # Wilcoxon's T (the smaller signed-rank sum); None for Nemenyi
    p: float  # unadjusted: Wilcoxon's, or Nemenyi's from the studentized range
    p_adjusted: float  # Holm's for Wilcoxon; Nemenyi's p is already family-wise
    different: bool  # the chosen test separates them at alpha

    @property
    def rank_diff(self) -> float:
        return self.b_rank - self.a_rank


@dataclass
class CrossStats:
    """The tests across data sets, for one metric."""

    metric: str
    higher: bool
    posthoc: str
    alpha: float
    data_sets: list[str]
    groups: list[str]
    scores: list[list[float]]  # [data set][group]: the mean over splits and seeds
    mean_ranks: list[float]  # Friedman's: 1 the best, ties share the mean of their ranks
    friedman: Friedman
    pairs: list[Pair]
    cd: float | None = None  # Nemenyi's critical difference, where it is the chosen test
    cliques: list[list[str]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.data_sets)

    @property
    def k(self) -> int:
        return len(self.groups)

    def ordered(self) -> list[tuple[str, float]]:
        """(group, mean rank), best first."""
        return sorted(zip(self.groups, self.mean_ranks), key=lambda gr: gr[1])

    def records(self) -> list[dict[str, Any]]:
        """Flat records for CSV and JSON: one `table: friedman`, one `table: rank` per group,
        one `table: pair` per pair, one `table: clique` per clique."""
        f = self.friedman
        base = {"metric": self.metric, "posthoc": self.posthoc, "alpha": self.alpha, "n_data_sets": self.n}
        out: list[dict[str, Any]] = [{"table": "friedman", **base, "statistic": f.statistic, "df": f.df, "p": f.p,
                                      "iman_davenport_f": f.f, "f_df1": f.f_df[0], "f_df2": f.f_df[1], "f_p": f.f_p,
                                      "cd": self.cd}]
        out += [{"table": "rank", **base, "group": g, "mean_rank": r} for g, r in self.ordered()]
        out += [{"table": "pair", **base, "a": p.a, "b": p.b, "a_rank": p.a_rank, "b_rank": p.b_rank, "a_better": p.wins[0], "ties": p.wins[1],
                 "b_better": p.wins[2], "statistic": p.statistic, "p": p.p, "p_adjusted": p.p_adjusted, "different": p.different}
                for p in self.pairs]
        out += [{"table": "clique", **base, "groups": " ".join(c)} for c in self.cliques]
        return out


# ---- the numbers ------------------------------------------------------------------------------

def mid_ranks(values: Sequence[float], higher: bool = False) -> list[float]:
    """Ranks 1..k, 1 the best (lowest, or highest where higher is better); ties share the mean
    of the ranks they span."""
    sign = -1.0 if higher else 1.0
    order = sorted(range(len(values)), key=lambda i: sign * values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: the i-th smallest of m is multiplied by m - i + 1
    (i from 1), made non-decreasing in that order, and capped at 1."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (m - step) * pvalues[i]))
        out[i] = running
    return out


def nemenyi_q(k: int, alpha: float = DEFAULT_ALPHA) -> float:
    """Demšar's q_alpha: the studentized range's 1 - alpha quantile for k groups, infinite
    degrees of freedom, over sqrt(2) (2.569 for k = 4 at alpha 0.05)."""
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(1 - alpha, k, math.inf)) / math.sqrt(2)


def critical_difference(k: int, n: int, alpha: float = DEFAULT_ALPHA) -> float:
    """Nemenyi's CD = q_alpha sqrt(k(k+1)/(6n)) for k groups over n data sets."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n))


def friedman_min_data_sets(k: int, alpha: float) -> int:
    """The fewest data sets at which Friedman's test can reach p < alpha with k groups: its
    largest statistic, n(k-1) (every data set ranks the groups alike), must pass the chi-square
    quantile."""
    from scipy.stats import chi2

    q = float(chi2.ppf(1 - alpha, k - 1))
    return max(2, math.floor(q / (k - 1)) + 1)


def wilcoxon_min_data_sets(alpha: float) -> int:
    """The fewest data sets at which a two-sided signed-rank test can reach p < alpha: its
    smallest exact p is 2 / 2^n."""
    n = 1
    while 2.0 / 2**n >= alpha:
        n += 1
    return n


def nemenyi_min_data_sets(k: int, alpha: float) -> int:
    """The fewest data sets at which Nemenyi can separate two of k groups: the largest mean-rank
    difference, k - 1, must exceed the CD."""
    n = 2
    while critical_difference(k, n, alpha) >= k - 1:
        n += 1
    return n


def min_data_sets(k: int, posthoc: str, alpha: float) -> int:
    """How many data sets the tests need with k groups: Friedman's and the post-hoc's minimum."""
    post = wilcoxon_min_data_sets(alpha) if posthoc == "wilcoxon" else nemenyi_min_data_sets(k, alpha)
    return max(friedman_min_data_sets(k, alpha), post)


def check_posthoc(posthoc: str, alpha: float) -> None:
    if posthoc not in POSTHOCS:
        raise UserError(f"unknown --posthoc {posthoc!r}: choose from {', '.join(POSTHOCS)}")
    if not 0.0 < alpha < 1.0:
        raise UserError(f"--alpha {alpha} is not a significance level: give a number between 0 and 1, such as 0.05")


def cross_stats(data_sets: Sequence[str], groups: Sequence[str], scores: Sequence[Sequence[float | None]], metric: str,
                higher: bool, posthoc: str = DEFAULT_POSTHOC, alpha: float = DEFAULT_ALPHA) -> CrossStats:
    """Friedman's test, the chosen post-hoc and its cliques over a data sets x groups table of
    scores (None or NaN: a missing cell, refused)."""
    check_posthoc(posthoc, alpha)
    data_sets, groups = list(data_sets), list(groups)
    k, n = len(groups), len(data_sets)
    if k < 3:
        raise UserError(f"cross-data-set tests compare 3 or more groups, these runs have {k} ({', '.join(groups)}); "
                        "with two, read the paired differences")
    for ds, row in zip(data_sets, scores):
        missing = [g for g, v in zip(groups, row) if v is None or math.isnan(v)]
        if missing:
            raise UserError(f"cross-data-set tests need every group on every data set: {ds} has no {metric} for "
                            f"{', '.join(missing)}; run them, or leave the group or data set out (--by, or fewer folders)")
    need = min_data_sets(k, posthoc, alpha)
    if n < need:
        raise UserError(f"cross-data-set tests ({POSTHOC_TEXT[posthoc]} at alpha {alpha:g}) need at least {need} data sets "
                        f"for {k} groups; these runs have {n}")
    table = [[float(v) for v in row] for row in scores]  # type: ignore[arg-type]
    if all(len(set(row)) == 1 for row in table):
        raise UserError(f"every data set ties all {k} groups on {metric}: there is nothing to rank")
    ranks = [mid_ranks(row, higher) for row in table]
    mean_ranks = [sum(r[j] for r in ranks) / n for j in range(k)]
    fr = friedman(table)
    if posthoc == "wilcoxon":
        pairs = wilcoxon_holm(groups, table, mean_ranks, higher, alpha)
        cd = None
    else:
        cd = critical_difference(k, n, alpha)
        pairs = nemenyi_pairs(groups, table, mean_ranks, higher, n, alpha)
    stats = CrossStats(metric, higher, posthoc, alpha, data_sets, groups, table, mean_ranks, fr, pairs, cd)
    stats.cliques = cliques(stats)
    return stats


def friedman(table: Sequence[Sequence[float]]) -> Friedman:
    """scipy's friedmanchisquare over the columns, and Iman and Davenport's F from it."""
    from scipy.stats import f as f_dist
    from scipy.stats import friedmanchisquare

    n, k = len(table), len(table[0])
    res = friedmanchisquare(*[[row[j] for row in table] for j in range(k)])
    chi = float(res.statistic)
    df1, df2 = k - 1, (k - 1) * (n - 1)
    denom = n * (k - 1) - chi
    f = (n - 1) * chi / denom if denom > 0 else math.inf
    f_p = float(f_dist.sf(f, df1, df2)) if math.isfinite(f) else 0.0
    return Friedman(chi, k - 1, float(res.pvalue), f, (df1, df2), f_p)


def _pair_order(i: int, j: int, mean_ranks: Sequence[float]) -> tuple[int, int]:
    return (i, j) if mean_ranks[i] <= mean_ranks[j] else (j, i)


def _wins(table: Sequence[Sequence[float]], a: int, b: int, higher: bool) -> tuple[int, int, int]:
    sign = -1.0 if higher else 1.0
    better = sum(1 for row in table if sign * row[a] < sign * row[b])
    tie = sum(1 for row in table if row[a] == row[b])
    return better, tie, len(table) - better - tie


def wilcoxon_holm(groups: Sequence[str], table: Sequence[Sequence[float]], mean_ranks: Sequence[float], higher: bool,
                  alpha: float) -> list[Pair]:
    """Every pair by scipy's two-sided Wilcoxon signed-rank test (zero differences dropped, as
    Wilcoxon did and scipy does by default; exact p where scipy can), Holm over all pairs. A
    pair equal on every data set has p = 1: no evidence either way."""
    from scipy.stats import wilcoxon

    raw: list[tuple[int, int, float | None, float]] = []
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            a, b = _pair_order(i, j, mean_ranks)
            x, y = [row[a] for row in table], [row[b] for row in table]
            if all(u == v for u, v in zip(x, y)):
                raw.append((a, b, None, 1.0))
                continue
            res = wilcoxon(x, y)
            raw.append((a, b, float(res.statistic), float(res.pvalue)))
    adjusted = holm([p for *_, p in raw])
    return [Pair(groups[a], groups[b], mean_ranks[a], mean_ranks[b], _wins(table, a, b, higher), t, p, pa, pa < alpha)
            for (a, b, t, p), pa in zip(raw, adjusted)]


def nemenyi_pairs(groups: Sequence[str], table: Sequence[Sequence[float]], mean_ranks: Sequence[float], higher: bool,
                  n: int, alpha: float) -> list[Pair]:
    """Every pair by Nemenyi's test: different where the mean ranks are more than CD apart; p
    from the studentized range of the difference (as scikit-posthocs' posthoc_nemenyi_friedman)."""
    from scipy.stats import studentized_range

    k = len(groups)
    se = math.sqrt(k * (k + 1) / (6 * n))
    cd = critical_difference(k, n, alpha)
    out = []
    for i in range(k):
        for j in range(i + 1, k):
            a, b = _pair_order(i, j, mean_ranks)
            diff = mean_ranks[b] - mean_ranks[a]
            p = float(studentized_range.sf(diff * math.sqrt(2) / se, k, math.inf)) if diff > 0 else 1.0
            out.append(Pair(groups[a], groups[b], mean_ranks[a], mean_ranks[b], _wins(table, a, b, higher), None, min(p, 1.0), min(p, 1.0), diff > cd))
    return out


def cliques(stats: CrossStats) -> list[list[str]]:
    """The maximal runs of consecutive groups in mean-rank order that the chosen test does not
    separate pairwise, each of two or more: the bars of a critical-difference diagram."""
    order = [g for g, _ in stats.ordered()]
    apart = {frozenset((p.a, p.b)) for p in stats.pairs if p.different}
    runs: list[list[str]] = []
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and all(frozenset((order[t], order[j + 1])) not in apart for t in range(i, j + 1)):
            j += 1
        if j > i and not any(set(order[i:j + 1]) <= set(r) for r in runs):
            runs.append(order[i:j + 1])
    return runs


def from_summary(summary: Sequence[dict[str, Any]], keys: Sequence[str], reference: Mapping[str, str] | None = None,
                 posthoc: str = DEFAULT_POSTHOC, alpha: float = DEFAULT_ALPHA) -> CrossStats:
    """The tests over the wide table of a summary: its rows the data sets, its columns the groups,
    each cell the group's mean over splits and seeds on that data set."""
    from dropbench.analysis.metrics import summary_metric
    from dropbench.analysis.wide import wide

    w = wide(summary, keys, reference)
    m = summary_metric(summary)
    if len(w.rows) < 2:
        raise UserError(f"cross-data-set tests need several data sets; these runs have {len(w.rows)} ({', '.join(w.rows)})")
    scores = [[w.cells[(r, c)]["test_mean"] if (r, c) in w.cells else None for c in w.cols] for r in w.rows]
    return cross_stats(w.rows, w.cols, scores, m.name, m.higher, posthoc, alpha)
