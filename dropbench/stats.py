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
from dropbench.provenance import IDENTITY_COLUMNS, PLATFORM_COLUMNS, describe, identity

Row = dict[str, Any]
NAN = float("nan")
RESULT_COLUMNS = ("final_train_mse", "final_test_mse", "best_test_mse", "best_epoch", "status", "reason", "seconds")
# Columns that are not part of a run's config: its id, its seed, its results, the folder label
# of a multi-folder report and the platform that computed it (reported, never grouped by).
NOT_KEYS = {"run_id", "seed", "sweep", *RESULT_COLUMNS, *PLATFORM_COLUMNS}
# Config values that a group choice sets by itself: reg=droppath turns model.residual on.
SET_BY = {"model.residual": "reg"}
# Group choices whose options have parameters of their own by nature (noisy_sine has freq,
# friedman1 n_features; their defaults differ): a sub-key that only changes along with the
# choice says nothing the choice does not. Regularizers combine, so reg.* is judged by values.
OWN_PARAMETERS = ("data", "model", "optim")


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


# Where a csv data set lies: not its config once its contents are recorded (data.sha256), so
# the same file under another path (another machine, a relative path) is the same data.
LOCATION_COLUMNS = {"data.path": "data.sha256"}
# Where a UCI set's verified files were read from: never part of what was computed.
WHERE_COLUMNS = ("data.root",)
# What makes two runs' data different data sets, whose MSEs are not comparable: ranks restart
# and plots get a panel for each. A split, a data seed or a size is not among them: runs over
# those compare (and pair) like seeds.
DATA_SET_KEYS = ("data", "data.dataset", "data.path", "data.sha256", "data.target", "data.features")


def config_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every column that is part of a run's config (all but NOT_KEYS), in column order."""
    cols = columns_of(rows)
    return [c for c in cols if c not in NOT_KEYS and c not in WHERE_COLUMNS and LOCATION_COLUMNS.get(c) not in cols]


def data_set(values: Mapping[str, Any], keys: Sequence[str]) -> tuple[str, ...]:
    """A group's data set, as far as the grouping keys tell data sets apart."""
    return tuple(key_str(values.get(k)) for k in keys if k in DATA_SET_KEYS)


def _has_droppath(reg: object) -> bool:
    return "droppath" in key_str(reg).split("+")


def _owner(c: str) -> str | None:
    """The group choice a column belongs to: reg.dropout.p and p to reg, data.noise to data."""
    return SET_BY.get(c) or (c.split(".", 1)[0] if "." in c else ("reg" if c == "p" else None))


def _implied(c: str, keys: Sequence[str], groups: Sequence[Mapping[str, Any]]) -> bool:
    """Whether column c, constant within each group, adds nothing to the displayed keys.

    It does not where it merely mirrors a key (reg.dropout.p is p), only exists for one
    option of a displayed choice (reg.l1.weight, empty for the other regs), is a parameter of a
    displayed data set or optimizer, or is what reg=droppath sets (model.residual). Anything
    else that differs between groups (epochs that co-vary with reg in a folder that mixes two
    sweeps) is shown: the groups would otherwise look alike.
    """
    values = [key_str(g.get(c)) for g in groups]
    present = {v for v in values if v != ""}
    owner = _owner(c)
    if c in SET_BY and owner in keys:
        # model.residual: explained by reg only where the groups without droppath agree on it.
        return len({v for g, v in zip(groups, values) if not _has_droppath(g.get("reg"))}) <= 1
    if owner in keys and (len(present) <= 1 or owner in OWN_PARAMETERS):
        return True
    return any(all(v == "" or v == key_str(g.get(k)) for g, v in zip(groups, values)) for k in keys)


def group_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The keys that name a sweep's groups (the seed aside): one group per distinct config.

    First the config columns that split the runs further, in column order (a column that only
    varies along with an earlier one adds no group). Then every other config column whose
    value differs between those groups, unless it is implied by the keys (see _implied): runs
    that differ in a config value are never shown as if they did not.
    """
    columns = config_columns(rows)
    keys: list[str] = []
    n_groups = 1
    for c in columns:
        n = len({tuple(key_str(r.get(k)) for k in [*keys, c]) for r in rows})
        if n > n_groups:
            keys.append(c)
            n_groups = n
    first: dict[tuple[str, ...], Mapping[str, Any]] = {}
    for r in rows:
        first.setdefault(tuple(key_str(r.get(k)) for k in keys), r)
    groups = list(first.values())
    shown = [c for c in columns if c not in keys and len({key_str(g.get(c)) for g in groups}) > 1
             and not _implied(c, keys, groups)]
    return [c for c in columns if c in keys or c in shown]


def pooled_configs(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, list[str]]:
    """Config columns that differ within a group (a --by coarser than the config) and their
    values: such groups pool runs of different configs."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(key_str(r.get(k)) for k in keys), []).append(r)
    out: dict[str, set[str]] = {}
    for c in config_columns(rows):
        if c in keys:
            continue
        for members_ in groups.values():
            values = {key_str(r.get(c)) for r in members_}
            if len(values) > 1:
                out.setdefault(c, set()).update(values)
    return {c: sorted(v, key=sort_key) for c, v in out.items()}


def pooled_note(pooled: Mapping[str, Sequence[str]], keys: Sequence[str]) -> str | None:
    """The caption that says a group pools different configs, and how to separate them."""
    if not pooled:
        return None
    what = "; ".join(f"{c} ({', '.join(v or '(unset)' for v in vals[:4])}{', ...' if len(vals) > 4 else ''})"
                     for c, vals in list(pooled.items())[:4])
    more = f" and {len(pooled) - 4} more" if len(pooled) > 4 else ""
    sep = ",".join([*[k for k in keys if k != "sweep"], *list(pooled)[:2]])
    return (f"groups pool runs of different configs: {what}{more} differ within a group (--by {sep} separates them); "
            "paired differences still compare runs of equal config")


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
    seeds, equal config but for the reference key) also get the mean paired test-MSE difference
    and its 95% interval: seed-to-seed noise shared by both groups cancels, so it is much tighter
    than comparing two means.
    Ranks restart for each data set where the groups span several (a `data` key).
    Rows come sorted by data set, then rank (best test MSE first), ties and unranked groups by key.
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
    # Ranks compare groups of one data set only: MSEs of two data sets are not comparable.
    part = lambda s: data_set(s, keys)  # noqa: E731
    for s in out:
        ranked = sorted(o["test_mean"] for o in out if part(o) == part(s) and not math.isnan(o["test_mean"]))
        s["rank"] = None if math.isnan(s["test_mean"]) else 1 + ranked.index(s["test_mean"])
    if reference and all(k in keys for k in reference):
        _paired(out, [r for r in rows if _ok(r)], keys, reference)
    out.sort(key=lambda s: ([sort_key(v) for v in part(s)], s["rank"] is None, s["rank"] or 0, [sort_key(s[k]) for k in keys]))
    return out


def _twin(run: Mapping[str, Any], ref: Mapping[str, Any], columns: Sequence[str], reference: Mapping[str, str]) -> bool:
    """Whether `ref` is the reference run of the same config as `run`: equal in every config
    value (and folder) but the reference keys, those that do not apply to the reference (empty
    there: p for reg=none) and what the run's regularizer sets itself (model.residual)."""
    for c in columns:
        if c in reference:
            continue
        rv = key_str(ref.get(c))
        if rv == key_str(run.get(c)):
            continue
        if _owner(c) in reference and (rv == "" or (c in SET_BY and _has_droppath(run.get("reg")))):
            continue  # p of reg=none; model.residual, which reg=droppath turns on
        return False
    return True


def _paired(out: list[Row], ok: list[Mapping[str, Any]], keys: list[str], reference: Mapping[str, str]) -> None:
    """Add paired_diff / paired_ci / n_pairs (a group minus its reference, seed by seed).

    Each run is paired with the reference run of its seed and its config (_twin); a run
    without one is left unpaired, so a group never borrows a reference that ran, say, other
    epochs. Where a group pools several runs of one seed (a --by coarser than the config), their
    differences are averaged per seed: the seeds are the independent samples.
    """
    refs = members(ok, reference)
    columns = [*config_columns(ok), *(["sweep"] if any("sweep" in r for r in ok) else [])]
    for s in out:
        s.update(paired_diff=NAN, paired_ci=NAN, n_pairs=0)
        if all(s[k] == v for k, v in reference.items()):
            continue
        per_seed: dict[Any, list[float]] = {}
        for r in members(ok, {k: s[k] for k in keys}):
            twins = [float(t["final_test_mse"]) for t in refs if t["seed"] == r["seed"] and _twin(r, t, columns, reference)]
            if twins:
                per_seed.setdefault(r["seed"], []).append(float(r["final_test_mse"]) - _mean(twins))
        d = [_mean(v) for v in per_seed.values()]
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
                # NaN last: a plain min() keeps a NaN it meets first (NaN < x is False).
                pick = min(curve, key=lambda c: (math.isnan(float(c["test_mse"])), float(c["test_mse"])), default=None)
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


# --- platforms ---------------------------------------------------------------------------------

UNRECORDED = ("",) * len(IDENTITY_COLUMNS)


def platform_of(row: Mapping[str, Any]) -> tuple[str, ...]:
    """A run's platform identity; UNRECORDED for rows written before dropbench recorded it."""
    ident = identity(row)
    torch_v, cap = ident[IDENTITY_COLUMNS.index("torch_version")], ident[IDENTITY_COLUMNS.index("cpu_capability")]
    return ident if torch_v or cap else UNRECORDED


def platform_counts(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, ...], int]:
    """How many of the (ok) rows each platform computed."""
    counts: dict[tuple[str, ...], int] = {}
    for r in rows:
        if _ok(r):
            counts[platform_of(r)] = counts.get(platform_of(r), 0) + 1
    return counts


def describe_platform(ident: Sequence[str]) -> str:
    return describe(dict(zip(IDENTITY_COLUMNS, ident)))


def platform_note(counts: Mapping[tuple[str, ...], Mapping[str, int]]) -> str | None:
    """A warning where the runs come from several recorded platforms (their numbers are not
    comparable to the last bits: other kernels); a note where some runs do not record theirs.

    counts: platform identity -> {source (e.g. "sweep", "baseline", "runs"): number of runs}.
    """
    if len(counts) < 2:
        return None
    parts = "; ".join(f"{'unrecorded' if i == UNRECORDED else describe_platform(i)}: " + ", ".join(f"{n} {src}" for src, n in by.items())
                      for i, by in sorted(counts.items(), key=lambda kv: -sum(kv[1].values())))
    recorded = [i for i in counts if i != UNRECORDED]
    if len(recorded) > 1:
        return (f"WARNING: these numbers come from {len(recorded)} platforms ({parts}); "
                "the same config and seed give other numbers on another platform")
    return f"note: some runs do not record their platform ({parts})"
