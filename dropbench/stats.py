"""Statistics across seeds: group summaries, confidence intervals, paired differences, Welch tests.

Runs are plain rows (dicts, as in runs.csv) and everything here is standard library, so
`dropbench report` and `dropbench check` answer at once: importing scipy.stats alone takes
~1.6 s on a 2-core machine, pandas ~0.6 s. The Student-t distribution is computed from the
regularized incomplete beta function (Numerical Recipes' continued fraction); tests pin it to
scipy.stats.t to 1e-9.

Intervals are 95% Student-t intervals over seeds: mean ± t(0.975, n-1) · s / √n, with s the
sample standard deviation (ddof=1).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

from dropbench.errors import UserError

Row = dict[str, Any]
NAN = float("nan")
RESULT_COLUMNS = ("final_train_mse", "final_test_mse", "best_test_mse", "best_epoch", "status", "reason", "seconds")
NOT_KEYS = {"run_id", "seed", "sweep", *RESULT_COLUMNS}


# --- the Student-t distribution ------------------------------------------------------------

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((a - 1 + m2) * (a + m2)), -(a + m) * (a + b + m) * x / ((a + m2) * (a + 1 + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom (df may be fractional, as in Welch)."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


@lru_cache(maxsize=4096)  # a sweep's groups mostly share n, hence df
def t_ppf(q: float, df: float) -> float:
    """The q-quantile of Student's t (bisection on t_sf: slow by scipy's standards, exact enough)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile q={q} must be in (0, 1)")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > 1.0 - q:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if t_sf(mid, df) > 1.0 - q else (lo, mid)
    return 0.5 * (lo + hi)


# --- summaries -------------------------------------------------------------------------------

def _mean(v: Sequence[float]) -> float:
    return statistics.fmean(v) if v else NAN


def _std(v: Sequence[float]) -> float:
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
    return t_ppf(0.5 + level / 2.0, n - 1) * _std(values) / math.sqrt(n)


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


def key_str(v: object) -> str:
    """A key value as text; "" where the key does not apply to the run (None/NaN/empty cell)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def sort_key(v: object) -> tuple[int, float, str]:
    """Order key values numerically where they are numbers (p=0.1 < p=0.5 < p=10), else as text."""
    s = key_str(v)
    try:
        return (0, float(s), s)
    except ValueError:
        return (1 if s else 2, 0.0, s)


def columns_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    seen: set[str] = set()
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return cols


def group_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """What a sweep swept (the seed aside): config columns that split the runs further.

    A column that only varies along with an earlier one (reg.dropout.p appears whenever
    reg=dropout does) adds nothing and is left out; p swept within reg=dropout is kept.
    """
    keys: list[str] = []
    n_groups = 1
    for c in (c for c in columns_of(rows) if c not in NOT_KEYS):
        n = len({tuple(key_str(r.get(k)) for k in [*keys, c]) for r in rows})
        if n > n_groups:
            keys.append(c)
            n_groups = n
    return keys


def by_keys(rows: Sequence[Mapping[str, Any]], by: Sequence[str] | None) -> list[str]:
    """The grouping keys: `by` when given (every key checked against the runs' config columns,
    the seed and sweep included), else the swept keys."""
    if by is None:
        return group_keys(rows)
    results = NOT_KEYS - {"seed", "sweep"}  # run_id and the result columns
    columns = columns_of(rows)
    unknown = [k for k in by if k not in columns or k in results]
    if unknown:
        known = ", ".join(c for c in columns if c not in results)
        raise UserError(f"unknown --by key {', '.join(unknown)}: choose from {known}")
    return list(by)


def group_label(group: Mapping[str, str]) -> str:
    """reg=dropout p=0.5: the group's key values, empty ones left out."""
    return " ".join(f"{k}={v}" for k, v in group.items() if v != "") or "all runs"


def _ok(r: Mapping[str, Any]) -> bool:
    return r.get("status") == "ok"


def members(rows: Iterable[Mapping[str, Any]], group: Mapping[str, str]) -> list[Any]:
    """The rows of a group: those whose key values (as key_str spells them) are the group's."""
    return [r for r in rows if all(key_str(r.get(k)) == v for k, v in group.items())]


def summarize(rows: Sequence[Mapping[str, Any]], by: Sequence[str] | None = None, reference: Mapping[str, str] | None = None) -> list[Row]:
    """One row per group: seeds, train/test mean and std, the test CI, the gap and a rank.

    Failed runs are left out of the statistics and counted in `failed`. With `reference` (e.g.
    {"reg": "none"}), groups whose seeds pair up with the reference group (same other keys, same
    seeds) also get the mean paired test-MSE difference and its 95% interval: seed-to-seed noise
    shared by both groups cancels, so it is much tighter than comparing two means.
    Rows come sorted by rank (best test MSE first), ties and unranked groups by key.
    """
    keys = list(by) if by is not None else group_keys(rows)
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(key_str(r.get(k)) for k in keys), []).append(r)
    out: list[Row] = []
    for key, members in groups.items():
        good = [r for r in members if _ok(r)]
        test = [float(r["final_test_mse"]) for r in good]
        train = [float(r["final_train_mse"]) for r in good]
        out.append({
            **dict(zip(keys, key)),
            "n_seeds": len(good), "failed": len(members) - len(good),
            "train_mean": _mean(train), "train_std": _std(train),
            "test_mean": _mean(test), "test_std": _std(test), "test_ci": t_halfwidth(test),
            "gap": _mean(test) - _mean(train),
        })
    ranked = sorted((s["test_mean"] for s in out if not math.isnan(s["test_mean"])))
    for s in out:
        s["rank"] = None if math.isnan(s["test_mean"]) else 1 + ranked.index(s["test_mean"])
    if reference and all(k in keys for k in reference):
        _paired(out, [r for r in rows if _ok(r)], keys, reference)
    out.sort(key=lambda s: (s["rank"] is None, s["rank"] or 0, [sort_key(s[k]) for k in keys]))
    return out


def _paired(out: list[Row], ok: list[Mapping[str, Any]], keys: list[str], reference: Mapping[str, str]) -> None:
    """Add paired_diff / paired_ci / n_pairs (a group minus its reference group, seed by seed)."""
    refs = members(ok, reference)
    for s in out:
        s.update(paired_diff=NAN, paired_ci=NAN, n_pairs=0)
        if all(s[k] == v for k, v in reference.items()):
            continue
        mine = [(r["seed"], float(r["final_test_mse"])) for r in members(ok, {k: s[k] for k in keys})]
        # Match the reference on the other keys, except those that do not apply to it (reg=none
        # has no p): its runs then serve every p. A coarser grouping may leave several reference
        # runs per seed: they are averaged.
        ref: dict[Any, list[float]] = {}
        for r in refs:
            if all(key_str(r.get(k)) in ("", s[k]) for k in keys if k not in reference):
                ref.setdefault(r["seed"], []).append(float(r["final_test_mse"]))
        d = [v - _mean(ref[seed]) for seed, v in mine if seed in ref]
        if d:
            s.update(paired_diff=_mean(d), paired_ci=t_halfwidth(d), n_pairs=len(d))


def default_reference(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, str] | None:
    """{"reg": "none"} where the runs are grouped by reg and include unregularized runs."""
    if "reg" in keys and any(key_str(r.get("reg")) == "none" for r in rows):
        return {"reg": "none"}
    return None


def at_epoch(rows: Sequence[Mapping[str, Any]], curves: Sequence[Mapping[str, Any]], epoch: int | str) -> list[Row]:
    """Runs with final_train_mse / final_test_mse taken at another point of their curves.

    epoch: "final" (as stored), "best" (each run at its lowest recorded test MSE: early
    stopping with an oracle), or an epoch number that every successful run recorded.
    """
    if epoch == "final":
        return [dict(r) for r in rows]
    by_run: dict[str, list[Mapping[str, Any]]] = {}
    for c in curves:
        by_run.setdefault(str(c["run_id"]), []).append(c)
    out = []
    for r in rows:
        r = dict(r)
        if _ok(r):
            curve = by_run.get(str(r["run_id"]), [])
            if epoch == "best":
                pick = min(curve, key=lambda c: float(c["test_mse"]), default=None)
            else:
                pick = next((c for c in curve if int(c["epoch"]) == epoch), None)
            if pick is None:
                recorded = ", ".join(str(c["epoch"]) for c in curve[:12]) or "none"
                raise UserError(
                    f"--epoch {epoch}: run {r['run_id']} has no curve point there (recorded epochs: {recorded}); "
                    "choose a recorded epoch, final or best"
                )
            r["final_train_mse"], r["final_test_mse"] = float(pick["train_mse"]), float(pick["test_mse"])
        out.append(r)
    return out
