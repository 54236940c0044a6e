"""Statistics across seeds: group summaries, confidence intervals, paired differences, Welch tests.

Runs are plain rows (dicts, as in runs.csv) and everything here is standard library, so
`dropbench report` and `dropbench check` answer at once: importing scipy.stats alone takes
~1.6 s on a 2-core machine, pandas ~0.6 s. The Student-t distribution is computed from the
regularized incomplete beta function (Numerical Recipes' continued fraction); tests pin it to
scipy.stats.t to 1e-9.

A group's repetitions are its runs over the REPETITION_KEYS (seed, data.split, data.seed):
a UCI sweep over 20 splits and one seed has 20 repetitions per group, which pair with the
reference group's run of the same seed and split. Three spreads are computed for the test metric
(and the paired differences):
- ci: the half-width of the 95% Student-t interval, t(0.975, n-1) · s / √n, s the sample SD (ddof=1);
- se: the standard error as the UCI literature computes it, SD / √n with numpy's population SD
  (ddof=0; PROTOCOL.md of the UCI splits): so dropbench's ± equals the published tables' for the
  same numbers. It is √((n-1)/n) times the sample-SD version (2.5% smaller at n = 20);
- std: the sample SD (ddof=1).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath
from typing import Any, Iterable, Mapping, Sequence

from dropbench.columns import PLATFORM_COLUMNS, TEXT_COLUMNS
from dropbench.errors import UserError
from dropbench.provenance import IDENTITY_COLUMNS, describe, identity

Row = dict[str, Any]
NAN = float("nan")
RESULT_COLUMNS = ("final_train_mse", "final_test_mse", "best_test_mse", "best_epoch", "status", "reason", "seconds",
                  "stopped_epoch", "kept_epoch")
# What `report --epoch best` adds to each run and group: the curve column its epoch was chosen by,
# and whether that was measured on the test rows (an optimistic number).
SELECTION_COLUMNS = ("selected_on", "test_selected")
# Columns that are not part of a run's config: its id, its seed, its results, the folder label
# of a multi-folder report and the platform that computed it (reported, never grouped by).
NOT_KEYS = {"run_id", "seed", "sweep", *RESULT_COLUMNS, *PLATFORM_COLUMNS, *SELECTION_COLUMNS}
# Result columns beyond RESULT_COLUMNS (final_test_rmse, final_test_ll, best_val_ll, ...) are
# known by their prefix, so a new metric never becomes a grouping key.
RESULT_PREFIXES = ("final_", "best_")


def is_result(column: str) -> bool:
    """Whether a runs.csv column is a result (not config, not the seed or the sweep label)."""
    return (column in NOT_KEYS and column not in ("seed", "sweep")) or column.startswith(RESULT_PREFIXES)
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


def std_error(values: Sequence[float]) -> float:
    """The literature's standard error: population SD (ddof=0) / √n. NaN for fewer than 2 values
    (one split says nothing of the spread) or any non-finite one."""
    n = len(values)
    if n < 2 or not all(map(math.isfinite, values)):
        return NAN
    return statistics.pstdev(values) / math.sqrt(n)


# The spreads a report can show after ±: summary field suffix and wording.
INTERVALS = {"ci95": "ci", "se": "se", "std": "std"}


def spread(values: Sequence[float]) -> dict[str, float]:
    """All three spreads of values: std (ddof=1), se (ddof=0, /√n) and ci (95% t half-width)."""
    return {"std": _std(values), "se": std_error(values), "ci": t_halfwidth(values)}


# --- metrics -----------------------------------------------------------------------------------

# A metric whose name ends so is better when higher (log-likelihood, R², accuracy); every
# other one (MSE, RMSE, NLL, ...) when lower.
HIGHER_IS_BETTER_SUFFIXES = ("_ll", "loglik", "log_likelihood", "_r2", "_acc", "accuracy")
WORDS = {"mc": "MC", "mse": "MSE", "rmse": "RMSE", "mae": "MAE", "ll": "log-likelihood", "nll": "NLL", "r2": "R²"}
# Columns that are never metrics, whatever they hold.
NOT_METRICS = {"run_id", "seed", "sweep", "status", "reason", "seconds", "best_epoch", "stopped_epoch", "kept_epoch",
               *SELECTION_COLUMNS, *PLATFORM_COLUMNS,
               *TEXT_COLUMNS, *(f"final_{c}" for c in TEXT_COLUMNS)}  # learned rates: text, one value per layer


@dataclass(frozen=True)
class Metric:
    """What the summary's test statistics are computed from, and which way is better."""

    name: str  # as given: test_mse
    test: str  # its runs.csv column: final_test_mse
    train: str | None  # the train counterpart's column (final_train_mse), None where runs lack one
    higher: bool  # higher is better (log-likelihood)

    @property
    def label(self) -> str:
        return metric_label(self.name)

    @property
    def train_label(self) -> str:
        return metric_label(self.name.replace("test", "train", 1))

    @property
    def curve(self) -> str:
        """Its column in curves.csv: test_mse for final_test_mse."""
        return self.test.removeprefix("final_")


def metric_label(name: str) -> str:
    """test_mse -> "test MSE", test_ll -> "test log-likelihood"."""
    return " ".join(WORDS.get(w, w) for w in name.removeprefix("final_").split("_"))


def higher_is_better(name: str) -> bool:
    return name.lower().endswith(HIGHER_IS_BETTER_SUFFIXES)


DEFAULT_METRIC = "test_mse"


def metric_choices(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metrics the rows carry: final_X as X, other numeric result columns as they are."""
    config = set(config_columns(rows)) | set(WHERE_COLUMNS) | set(LOCATION_COLUMNS)
    out = []
    for c in columns_of(rows):
        if c in NOT_METRICS or c in config:
            continue
        out.append(c.removeprefix("final_"))
    return out


def _metric_column(rows: Sequence[Mapping[str, Any]], name: str) -> str | None:
    cols = set(columns_of(rows))
    for c in (f"final_{name}", name):
        if c in cols and c not in NOT_METRICS and c not in config_columns(rows):
            return c
    return None


MSE = Metric(DEFAULT_METRIC, "final_test_mse", "final_train_mse", False)  # what a summary compares unless told


def canonical_metric(name: str) -> str:
    """A metric as a baseline records it and options compare it: final_test_ll is test_ll."""
    return name.removeprefix("final_")


def resolve_metric(rows: Sequence[Mapping[str, Any]], name: str = DEFAULT_METRIC, better: str | None = None) -> Metric:
    """The metric `name` (test_mse, test_rmse, test_ll, best_test_mse, ...) as the rows carry it:
    column final_NAME, else NAME. better: "higher", "lower" or None (by the name: a log-likelihood
    is better higher, see HIGHER_IS_BETTER_SUFFIXES)."""
    if better not in (None, "higher", "lower"):
        raise UserError(f"unknown --better {better!r}: choose higher or lower (default: by the metric's name)")
    column = _metric_column(rows, name)
    if column is None:
        raise UserError(f"unknown --metric {name!r}: these runs carry {', '.join(metric_choices(rows)) or 'no metric'}")
    train = _metric_column(rows, name.replace("test", "train", 1)) if "test" in name else None
    for r in rows:
        if r.get("status") == "ok":
            try:
                float(r.get(column))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise UserError(f"--metric {name}: run {r.get('run_id')} has {column}={r.get(column)!r}, not a number; choose a numeric column") from None
    values = [float(r[column]) for r in rows if r.get("status") == "ok"]
    if values and all(math.isnan(v) for v in values):
        how = "the log-likelihood needs eval.tau=VALUE" if "_ll" in column else "MC metrics need eval.mc_samples=T" if "_mc_" in column else ""
        raise UserError(f"--metric {name}: no run computed {column} (empty in runs.csv)" + (f"; {how} when the runs are trained" if how else ""))
    return Metric(name, column, train, higher_is_better(name) if better is None else better == "higher")


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
# A csv data set is identified by its contents (data.sha256, a grouping key) but a person knows it
# by its file: reports name such a group by the file (file_labels) in a column of its own.
FILE_KEY, FILE_LABEL = "data.sha256", "data.file"
# Where a UCI set's verified files were read from: never part of what was computed.
WHERE_COLUMNS = ("data.root",)
# What makes two runs' data different data sets, whose MSEs are not comparable: ranks restart
# and plots get a panel for each. A split, a data seed or a size is not among them: runs over
# those compare (and pair) like seeds.
DATA_SET_KEYS = ("data", "data.dataset", "data.path", "data.sha256", "data.target", "data.features")
# Keys whose values repeat one experiment rather than make another: runs that differ only in
# them pool into one group (its n counts them) and pair with the reference run of the same
# values. `--by data.split` still groups by a split explicitly.
REPETITION_KEYS = ("seed", "data.split", "data.seed")


def repetition(row: Mapping[str, Any]) -> tuple[str, ...]:
    """A run's repetition: its (seed, data.split, data.seed) values."""
    return tuple(key_str(row.get(k)) for k in REPETITION_KEYS)


def repeated_over(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[str]:
    """The repetition keys that vary within some group of `rows` grouped by `keys`: what a
    group's n counts ("seed", "data.split" or both)."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(key_str(r.get(k)) for k in keys), []).append(r)
    return [k for k in REPETITION_KEYS if k not in keys
            and any(len({key_str(r.get(k)) for r in g}) > 1 for g in groups.values())]


def config_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every column that is part of a run's config (all but NOT_KEYS), in column order."""
    cols = columns_of(rows)
    return [c for c in cols if c not in NOT_KEYS and not is_result(c) and c not in WHERE_COLUMNS and LOCATION_COLUMNS.get(c) not in cols]


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
    columns = [c for c in config_columns(rows) if c not in REPETITION_KEYS]
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
        if c in keys or c in REPETITION_KEYS:
            continue
        for members_ in groups.values():
            values = {key_str(r.get(c)) for r in members_}
            if len(values) > 1:
                out.setdefault(c, set()).update(values)
    files = file_labels(rows) if FILE_KEY in out else {}
    return {c: sorted((files.get(x, x) for x in v) if c == FILE_KEY else v, key=sort_key) for c, v in out.items()}


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
    columns = columns_of(rows)
    unknown = [k for k in by if k not in columns or is_result(k)]
    if unknown:
        known = ", ".join(c for c in columns if not is_result(c))
        raise UserError(f"unknown --by key {', '.join(unknown)}: choose from {known}")
    return list(by)


def group_label(group: Mapping[str, str], files: Mapping[str, str] | None = None) -> str:
    """reg=dropout p=0.5: the group's key values, empty ones left out. With `files` (file_labels
    of the runs at hand) a csv file's sha256 is data.file=NAME, or its first 12 hex digits where
    no run at hand names it (a baseline's group missing from the sweep)."""
    def named(k: str, v: str) -> str:
        if k != FILE_KEY or files is None:
            return f"{k}={v}"
        return f"{FILE_LABEL}={files[v]}" if v in files else f"{k}={v[:12]}"
    return " ".join(named(k, v) for k, v in group.items() if v != "") or "all runs"


def file_labels(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """A name for each csv file's contents (data.sha256) the rows hold, for people to read: its
    path (data.path; the one most of its runs name, where a copy sat under two) cut to the
    shortest trailing part that no other path of the rows ends with (the basename, unless two
    files share it); where one path held several contents (a file edited between sweeps), each
    also gets @ and the first 7 (or more, until they differ) hex digits of its sha256. Contents
    whose runs record no path are named by 12 hex digits. Display only: groups stay by sha256."""
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        sha = key_str(r.get(FILE_KEY))
        if sha:
            by_path = counts.setdefault(sha, {})
            if path := key_str(r.get("data.path")):
                by_path[path] = by_path.get(path, 0) + 1
    where = {sha: min(c, key=lambda p: (-c[p], p)) if c else "" for sha, c in counts.items()}
    parts = {p: PurePath(p).parts for p in set(where.values()) if p}
    short = {}
    for p, mine in parts.items():
        k = 1
        while k < len(mine) and any(q != p and theirs[-k:] == mine[-k:] for q, theirs in parts.items()):
            k += 1
        short[p] = str(PurePath(*mine[-k:]))
    named: dict[str, list[str]] = {}
    for sha, p in where.items():
        named.setdefault(short.get(p, ""), []).append(sha)
    labels = {}
    for name, shas in named.items():
        if name and len(shas) == 1:
            labels[shas[0]] = name
            continue
        n = 7 if name else 12
        while n < 64 and len({sha[:n] for sha in shas}) < len(shas):
            n += 1
        labels.update({sha: f"{name}@{sha[:n]}" if name else sha[:n] for sha in shas})
    return labels


def _ok(r: Mapping[str, Any]) -> bool:
    return r.get("status") == "ok"


def members(rows: Iterable[Mapping[str, Any]], group: Mapping[str, str]) -> list[Any]:
    """The rows of a group: those whose key values (as key_str spells them) are the group's."""
    return [r for r in rows if all(key_str(r.get(k)) == v for k, v in group.items())]


def summarize(rows: Sequence[Mapping[str, Any]], by: Sequence[str] | None = None, reference: Mapping[str, str] | None = None,
              metric: Metric | None = None) -> list[Row]:
    """One row per group: its repetitions, train/test mean and spreads, the gap and a rank.

    Failed runs are left out of the statistics and counted in `failed`; `n_seeds` counts the
    group's successful runs, its repetitions (seeds, or (seed, split) pairs: REPETITION_KEYS).
    test_std / test_se / test_ci are the three spreads (see the module docstring). With
    `reference` (e.g. {"reg": "none"}), groups whose repetitions pair up with the reference
    group's (same seed and split, equal config but for the reference key) also get the mean
    paired difference and its spreads: noise shared by a seed or a split cancels, so it is much
    tighter than comparing two means.
    metric (default test MSE) says which columns are "test" and "train" and which way is better:
    rank 1 is the lowest mean, or the highest for a higher-is-better metric.
    Ranks restart for each data set where the groups span several (DATA_SET_KEYS).
    Rows come sorted by data set, then rank, ties and unranked groups by key.
    """
    metric = metric or MSE
    keys = list(by) if by is not None else group_keys(rows)
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(key_str(r.get(k)) for k in keys), []).append(r)
    files = file_labels(rows) if FILE_KEY in keys else {}
    out: list[Row] = []
    for key, members in groups.items():
        good = [r for r in members if _ok(r)]
        test = [float(r[metric.test]) for r in good]
        train = [float(r[metric.train]) for r in good] if metric.train else []
        sp = spread(test)
        named = dict(zip(keys, key))
        out.append({
            **named, **({FILE_LABEL: files.get(named[FILE_KEY], "")} if files else {}),
            "n_seeds": len(good), "failed": len(members) - len(good),
            "train_mean": _mean(train), "train_std": _std(train),
            "test_mean": _mean(test), "test_std": sp["std"], "test_ci": sp["ci"],
            "gap": _mean(test) - _mean(train),
        })
        repeats = [k for k in REPETITION_KEYS if k not in keys and len({key_str(r.get(k)) for r in good}) > 1]
        out[-1].update(test_se=sp["se"], metric=metric.name, higher_is_better=metric.higher, repeats="+".join(repeats))
        chosen = sorted({str(r["selected_on"]) for r in good if r.get("selected_on")})
        if chosen:  # report --epoch best: what the group's epochs were chosen on (stats.at_epoch)
            out[-1].update(selected_on="+".join(chosen), test_selected=any(r.get("test_selected") for r in good))
    # Ranks compare groups of one data set only: MSEs of two data sets are not comparable.
    part = lambda s: data_set(s, keys)  # noqa: E731
    sign = -1.0 if metric.higher else 1.0
    for s in out:
        ranked = sorted(sign * o["test_mean"] for o in out if part(o) == part(s) and not math.isnan(o["test_mean"]))
        s["rank"] = None if math.isnan(s["test_mean"]) else 1 + ranked.index(sign * s["test_mean"])
    if reference and all(k in keys for k in reference):
        _paired(out, [r for r in rows if _ok(r)], keys, reference, metric.test)
    # Files in the order of their names, not of their hashes.
    shown = lambda s: [sort_key(s.get(FILE_LABEL, s[k]) if k == FILE_KEY else s[k]) for k in keys if k in DATA_SET_KEYS]  # noqa: E731
    out.sort(key=lambda s: (shown(s), s["rank"] is None, s["rank"] or 0, [sort_key(s[k]) for k in keys]))
    return out


def _twin(run: Mapping[str, Any], ref: Mapping[str, Any], columns: Sequence[str], reference: Mapping[str, str]) -> bool:
    """Whether `ref` is the reference run of the same config as `run`: equal in every config
    value (and folder) but the reference keys, those that do not apply to the reference (empty
    there: p for reg=none) and what the run's regularizer sets itself (model.residual). The
    split (data.split) is a config value: runs pair within a split."""
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


def _varying(runs: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> set[str]:
    return {c for c in columns if len({key_str(r.get(c)) for r in runs}) > 1}


def _paired(out: list[Row], ok: list[Mapping[str, Any]], keys: list[str], reference: Mapping[str, str],
            column: str = "final_test_mse") -> None:
    """Add paired_diff / paired_ci / paired_se / paired_std / n_pairs (a group minus its
    reference, repetition by repetition).

    Each run is paired with the reference run of its seed and its config (_twin), split
    included, so a group never borrows a reference that ran, say, other epochs. Only where it
    has no such twin, the values that vary within the group or within its reference runs (what a
    --by coarser than the config pools, such as the values `dropbench tune` chose split by split)
    are left out of the match; the repetition (seed, split) never is. A run still without a
    reference is left unpaired. Where a group pools several runs of one repetition, their
    differences are averaged per repetition: the (seed, split) pairs are the independent samples.
    """
    refs = members(ok, reference)
    columns = [*config_columns(ok), *(["sweep"] if any("sweep" in r for r in ok) else [])]
    for s in out:
        s.update(paired_diff=NAN, paired_ci=NAN, n_pairs=0, paired_se=NAN, paired_std=NAN)
        if all(s[k] == v for k, v in reference.items()):
            continue
        mine = members(ok, {k: s[k] for k in keys})
        # The reference runs of this group's other key values (p does not apply to reg=none).
        candidates = [t for t in refs if mine and _twin(mine[0], t, [k for k in keys if k not in reference], reference)]
        pooled = (_varying(mine, columns) | _varying(candidates, columns)) - set(keys) - set(REPETITION_KEYS)
        loose = [c for c in columns if c not in pooled]
        per_rep: dict[tuple[str, ...], list[float]] = {}
        for r in mine:
            same_rep = [t for t in candidates if t["seed"] == r["seed"]]
            twins = [float(t[column]) for t in same_rep if _twin(r, t, columns, reference)]
            if not twins and pooled:
                twins = [float(t[column]) for t in same_rep if _twin(r, t, loose, reference)]
            if twins:
                per_rep.setdefault(repetition(r), []).append(float(r[column]) - _mean(twins))
        d = [_mean(v) for v in per_rep.values()]
        if d:
            sp = spread(d)
            s.update(paired_diff=_mean(d), paired_ci=sp["ci"], n_pairs=len(d), paired_se=sp["se"], paired_std=sp["std"])


def default_reference(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, str] | None:
    """{"reg": "none"} where the runs are grouped by reg and include unregularized runs."""
    if "reg" in keys and any(key_str(r.get("reg")) == "none" for r in rows):
        return {"reg": "none"}
    return None


# Where a curve column is measured, by its prefix: what `report --epoch best` says it chose on.
MEASURED_ON = {"val_": "the validation rows", "train_": "the training rows", "test_": "the test set"}
VALIDATION_METRIC = "val_mse"  # what --epoch best chooses on where a run has validation rows


def measured_on(column: str) -> str:
    return next((where for prefix, where in MEASURED_ON.items() if column.startswith(prefix)), "its own rows")


def _finite(curve: Sequence[Mapping[str, Any]], column: str) -> bool:
    """Whether a run's curve records a number in `column` (old folders lack val_mse: empty)."""
    for c in curve:
        try:
            if not math.isnan(float(c.get(column, NAN))):
                return True
        except (TypeError, ValueError):
            return False
    return False


def at_epoch(rows: Sequence[Mapping[str, Any]], curves: Sequence[Mapping[str, Any]], epoch: int | str,
             metric: Metric | None = None, select_on: str | None = None) -> list[Row]:
    """Runs with their final_X columns taken at another point of their curves (every curve
    column X that the runs also carry as final_X: train_mse, test_mse, ...).

    epoch: "final" (as stored), "best", or an epoch number that every successful run recorded.
    "best" takes each run at its best recorded value of a selection metric: `select_on` (a
    curve column) where given; else val_mse where the run has validation rows (early stopping's
    hold-out), else the reported metric itself (default test MSE: early stopping with an oracle,
    an optimistic number). Each run then carries `selected_on` (the column) and
    `test_selected` (whether it was measured on the test set).
    """
    if epoch == "final":
        if select_on is not None:
            raise UserError(f"--select-on {select_on} chooses each run's epoch: use it with --epoch best (not --epoch final)")
        return [dict(r) for r in rows]
    if select_on is not None and epoch != "best":
        raise UserError(f"--select-on {select_on} chooses each run's epoch: use it with --epoch best (not --epoch {epoch})")
    reported = metric.curve if metric else "test_mse"
    by_run: dict[str, list[Mapping[str, Any]]] = {}
    for c in curves:
        by_run.setdefault(str(c["run_id"]), []).append(c)
    recorded = [c for c in columns_of(curves[:1]) if c not in NOT_METRICS and c != "epoch"]
    if select_on is not None:
        select_on = select_on.removeprefix("final_")
        if curves and select_on not in recorded:
            raise UserError(f"--select-on {select_on}: curves.csv records no such metric; choose from {', '.join(recorded)}")
    elif curves and reported not in curves[0]:
        raise UserError(f"--epoch {epoch}: curves.csv records no {reported}; use --epoch final with --metric {metric.name if metric else reported}")
    copied = [c for c in columns_of(curves[:1]) if f"final_{c}" in columns_of(rows[:1])]
    out = []
    for r in rows:
        r = dict(r)
        if _ok(r):
            curve = by_run.get(str(r["run_id"]), [])
            if epoch == "best":
                pick_by = select_on or (VALIDATION_METRIC if _finite(curve, VALIDATION_METRIC) else reported)
                if select_on is not None and curve and not _finite(curve, pick_by):
                    why = " (only runs with validation rows record it: reg=early_stopping)" if pick_by.startswith("val_") else ""
                    raise UserError(f"--select-on {pick_by}: run {r['run_id']} recorded none{why}; "
                                    "leave --select-on out to choose each run's epoch on its validation rows where it has them")
                higher = metric.higher if metric and pick_by == reported else higher_is_better(pick_by)
                sign = -1.0 if higher else 1.0
                # NaN last: a plain min() keeps a NaN it meets first (NaN < x is False).
                pick = min(curve, key=lambda c: (math.isnan(float(c[pick_by])), sign * float(c[pick_by])), default=None)
                r.update(selected_on=pick_by, test_selected=pick_by.startswith("test_"))
            else:
                pick = next((c for c in curve if int(c["epoch"]) == epoch), None)
            if pick is None:
                recorded = ", ".join(str(c["epoch"]) for c in curve[:12]) or "none"
                raise UserError(
                    f"--epoch {epoch}: run {r['run_id']} has no curve point there (recorded epochs: {recorded}); "
                    "choose a recorded epoch, final or best"
                )
            for c in copied:  # numbers as numbers; text (learned_p) as written
                r[f"final_{c}"] = pick[c] if c in NOT_METRICS else float(pick[c])
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
