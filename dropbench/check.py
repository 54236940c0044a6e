"""Regression checks for CI: a sweep against a committed baseline, and claims about group order.

A group is WORSE when its mean final metric (test MSE unless the baseline records another, as
`report --metric` names them) got worse by more than `rtol` (relative to the baseline's mean)
*and* Welch's one-sided t-test says the change is beyond seed noise (p < alpha). Both are
needed: the test alone flags tiny but consistent shifts (a different CPU's rounding), the
tolerance alone ignores noise. Groups with fewer than 2 seeds on either side cannot be tested;
for them the tolerance decides. Worse is higher for most metrics, lower for a log-likelihood
(analysis.metrics.higher_is_better, or --better).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from dropbench.columns import BASELINE_META, BASELINE_METRIC, BASELINE_STATS
from dropbench.errors import UserError
from dropbench.provenance import IDENTITY_COLUMNS
from dropbench.analysis.grouping import by_keys, members, repeated_over
from dropbench.analysis.labels import file_labels, group_label
from dropbench.analysis.metrics import DEFAULT_METRIC, MSE, Metric, canonical_metric, higher_is_better, resolve_metric
from dropbench.analysis.platforms import UNRECORDED, platform_counts, platform_note
from dropbench.analysis.significance import paired_greater, welch_greater
from dropbench.analysis.summary import summarize
from dropbench.analysis.taxonomy import FILE_KEY, FILE_LABEL, columns_of, config_columns, key_str, repetition, sort_key
from dropbench.readback import Wording, float_cell, read_csv

CHOICE_COLUMNS = ("data", "model", "optim", "reg")  # RunConfig.choices(): what key_default needs
HOW_TO_CREATE = "create it with: dropbench check DIR --baseline FILE --update-baseline"
OLD_BASELINE_NOTE = ("note: baseline {path} records no config (written by an older dropbench), so the sweep's config "
                     "was not compared with it; re-record it with --update-baseline")


@dataclass(frozen=True)
class Verdict:
    group: dict[str, str]
    verdict: str  # ok | better | new | WORSE | missing | failed runs
    base: Mapping[str, Any] | None
    new: Mapping[str, Any] | None
    p: float  # Welch one-sided p-value of "new is worse" (NaN where untestable)
    detail: str
    files: Mapping[str, str] = field(default_factory=dict)  # data.sha256 -> the file's name (labels.file_labels)

    @property
    def passed(self) -> bool:
        return self.verdict in ("ok", "better", "new")

    @property
    def label(self) -> str:
        return group_label(self.group, self.files)


@dataclass(frozen=True)
class Expectation:
    text: str
    passed: bool
    p: float
    detail: str


# --- the baseline file -------------------------------------------------------------------------

def group_config(runs: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    """The config of a group: each column's value where its runs share it, else the sorted list
    of their values."""
    out: dict[str, Any] = {}
    for c in columns:
        values = sorted({key_str(r.get(c)) for r in runs}, key=sort_key)
        out[c] = values[0] if len(values) == 1 else values
    return out


def _platforms(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{**dict(zip(IDENTITY_COLUMNS, i)), "runs": n} for i, n in platform_counts(runs).items() if i != UNRECORDED]


def baseline_rows(runs: Sequence[Mapping[str, Any]], by: Sequence[str] | None = None,
                  metric: Metric = MSE) -> tuple[list[str], list[dict[str, Any]]]:
    """Per group: its keys, the number of seeds, mean and std of the final metric (test) and its
    train counterpart (NaN where the runs have none, as for test_ll), the metric, its config and
    its platforms. Refuses what could not be read back or compared."""
    keys = by_keys(runs, by)
    _keys_present(runs, keys, "--by")
    summary = summarize(runs, keys, metric=metric)
    files = _files(runs, keys)
    bad = [s for s in summary if s["failed"] or not s["n_seeds"]]
    if bad:
        s = bad[0]
        raise UserError(
            f"cannot record a baseline: group {group_label({k: s[k] for k in keys}, files)} has {s['failed']} failed run(s); "
            "fix or re-run them (dropbench run --resume DIR) first"
        )
    columns = [c for c in config_columns(runs) if c not in keys]
    rows = []
    for s in summary:
        group = {k: s[k] for k in keys}
        mine = [r for r in members(runs, group) if r.get("status") == "ok"]
        _finite(s, group, mine, metric, files)
        rows.append({**group, **{c: s[c] for c in BASELINE_STATS}, "metric": canonical_metric(metric.name),
                     "better": "higher" if metric.higher else "lower", "config": group_config(mine, columns), "platform": _platforms(mine)})
    rows.sort(key=lambda r: [sort_key(r[k]) for k in keys])
    return keys, rows


def _files(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, str]:
    """Names of the csv files a grouping by data.sha256 splits on, for labels (labels.file_labels)."""
    return file_labels(runs) if FILE_KEY in keys else {}


def _finite(s: Mapping[str, Any], group: Mapping[str, str], runs: Sequence[Mapping[str, Any]], metric: Metric = MSE,
            files: Mapping[str, str] | None = None) -> None:
    """A baseline holds finite statistics only (a NaN mean could not be compared, nor read back);
    the train ones only where the metric has a train counterpart."""
    sides = ("test", "train") if metric.train else ("test",)
    stats = [f"{side}_{stat}" for side in sides for stat in (("mean", "std") if s["n_seeds"] > 1 else ("mean",))]
    if all(math.isfinite(s[c]) for c in stats):
        return
    test_ok = all(math.isfinite(s[c]) for c in stats if c.startswith("test"))
    col, label = (metric.train, metric.train_label) if test_ok and metric.train else (metric.test, metric.label)
    run = next((r for r in runs if not math.isfinite(_number(r.get(col)))), None)
    which = f" (run {run['run_id']}: {col}={_number(run.get(col))})" if run is not None else ""
    raise UserError(f"cannot record a baseline: group {group_label(group, files)} has a non-finite {label}{which}; "
                    "its training diverged: fix that config (e.g. a lower optim.lr) or leave the group out of the sweep")


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def baseline_csv(keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*keys, *BASELINE_STATS, *BASELINE_METRIC, *BASELINE_META], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else json.dumps(v, sort_keys=True) if k in BASELINE_META else v)
                    for k, v in r.items()})
    return buf.getvalue()


# A baseline's own wording of read_csv's damages: the file named as the baseline, the fix how to
# create one (and no "the file is damaged": a hand-edited baseline is the usual cause).
BASELINE_WORDING = Wording(
    missing="{file} not found; {fix}",
    lacks="{file} lacks column(s) {columns}; it is not a dropbench baseline ({fix})",
    width="{file} line {line} has {fields} fields where the header has {width}",
    not_number="{file} line {line}: {column}={value!r} is not a number",
)
BASELINE_CELLS = {c: int if c == "n_seeds" else float_cell for c in BASELINE_STATS}  # n_seeds may not be empty


def read_baseline(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The group keys and rows of a baseline CSV; any damage is a one-line UserError."""
    header, lines = read_csv(path, BASELINE_STATS, HOW_TO_CREATE, BASELINE_CELLS, f"baseline {path}", BASELINE_WORDING)
    keys = [c for c in header if c not in BASELINE_STATS and c not in BASELINE_META and c not in BASELINE_METRIC]
    rows, seen = [], set()
    for line, row in lines:
        if row["n_seeds"] < 1 or not math.isfinite(row["test_mean"]):
            raise UserError(f"baseline {path} line {line}: a group needs at least one seed and a finite test_mean")
        _metric_cells(row, path, line)
        row["config"] = _json_cell(row, "config", dict, path, line)
        row["platform"] = _json_cell(row, "platform", list, path, line)
        key = tuple(row[k] for k in keys)
        if key in seen:
            raise UserError(f"baseline {path} line {line}: group {group_label(dict(zip(keys, key)))} appears twice")
        seen.add(key)
        rows.append(row)
    if not rows:
        raise UserError(f"baseline {path} lists no groups; {HOW_TO_CREATE}")
    recorded = {(r["metric"], r["better"]) for r in rows}
    if len(recorded) > 1:
        spelled = " and ".join(f"{m} ({b} is better)" for m, b in sorted(recorded))
        raise UserError(f"baseline {path} mixes metrics: {spelled}; re-record it with one --metric ({HOW_TO_CREATE})")
    return keys, rows


def _metric_cells(row: dict[str, Any], path: Path, line: int) -> None:
    """The row's metric and direction: test_mse, lower, where the baseline predates them; a
    metric without a direction goes by its name (higher_is_better)."""
    metric = canonical_metric((row.get("metric") or "").strip()) or DEFAULT_METRIC
    better = (row.get("better") or "").strip() or ("higher" if higher_is_better(metric) else "lower")
    if better not in ("higher", "lower"):
        raise UserError(f"baseline {path} line {line}: better={better!r} must be higher or lower; "
                        f"re-record the baseline ({HOW_TO_CREATE})")
    row["metric"], row["better"] = metric, better


def baseline_metric(rows: Sequence[Mapping[str, Any]]) -> tuple[str, bool]:
    """The metric a baseline's rows record (read_baseline made them agree) and whether higher is
    better."""
    first = rows[0] if rows else {}
    return str(first.get("metric") or DEFAULT_METRIC), first.get("better") == "higher"


def _json_cell(row: Mapping[str, Any], column: str, kind: type, path: Path, line: int) -> Any:
    """A JSON column of the baseline (None where the baseline predates it)."""
    if column not in row:
        return None
    try:
        value = json.loads(row[column])
    except (json.JSONDecodeError, TypeError):
        value = None
    if not isinstance(value, kind) or (kind is list and not all(isinstance(p, dict) for p in value)):
        raise UserError(f"baseline {path} line {line}: {column} is not a JSON {'object' if kind is dict else 'list'}; "
                        f"re-record the baseline ({HOW_TO_CREATE})")
    return value


# --- comparing -----------------------------------------------------------------------------------

def _check_params(alpha: float, rtol: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise UserError(f"invalid --alpha {alpha}: must be in (0, 1), e.g. 0.01")
    if not rtol >= 0.0:
        raise UserError(f"invalid --rtol {rtol}: must be >= 0, e.g. 0.05 for 5%")


def _keys_present(runs: Sequence[Mapping[str, Any]], keys: Sequence[str], source: str) -> None:
    cols = columns_of(runs)
    missing = [k for k in keys if k not in cols]
    if missing:
        raise UserError(f"the runs have no column {', '.join(missing)} that {source} groups by; compare sweeps of the same kind")


def _same_config(runs: Sequence[Mapping[str, Any]], group: Mapping[str, str], recorded: Mapping[str, Any], source: str,
                 files: Mapping[str, str] | None = None) -> None:
    """Refuse to compare a group with a baseline recorded for another config (other epochs,
    another model): its numbers would differ for that reason alone. A key only one side has (a
    baseline recorded before batch_size, model.init, eval.* or reg.l2.biases existed, or a sweep
    run before) is compared with its default on the other side: that side's runs ran the default.
    Only a key this dropbench does not know (another version's) goes uncompared."""
    mine_runs = members(runs, group)
    columns = [c for c in config_columns(runs) if c not in group]
    mine = group_config(mine_runs, columns)
    base = {c: v for c, v in recorded.items() if c not in group}
    predates: dict[str, str] = {}  # key -> which side did not record it
    for c in columns:
        if c not in base and (d := _defaults(mine_runs, c)) is not None:
            base[c], predates[c] = d, source
    for c in list(base):
        if c not in mine and (d := _defaults(mine_runs, c)) is not None:
            mine[c], predates[c] = d, "this sweep"
    spell = lambda v: ",".join(v) if isinstance(v, list) else (v if v != "" else "null")  # noqa: E731
    for c, b in base.items():
        if c not in mine or mine[c] == b:
            continue
        label = group_label(dict(group), files)
        if predates.get(c) == source:
            why = f"{source} predates {c} (its runs ran the default, {c}={spell(b)})"
        else:
            why = f"{source} recorded {c}={spell(b)}"
        ran = f"{c}={spell(mine[c])}" + (" (the default: this sweep predates the key)" if predates.get(c) == "this sweep" else "")
        raise UserError(f"group {label} ran {ran} but {why}; run the sweep as recorded, or re-record the baseline with --update-baseline")


def _defaults(runs: Sequence[Mapping[str, Any]], column: str) -> Any:
    """A config column's default for each run's group choices, as group_config spells a group's
    value (dropbench.config.key_default); None where this dropbench knows no default for it."""
    from dropbench.config import key_default

    try:
        spelled = [{column: key_str(key_default(column, {g: key_str(r.get(g)) for g in CHOICE_COLUMNS}))} for r in runs]
    except KeyError:
        return None
    return group_config(spelled, [column])[column] if spelled else None


def compare(runs: Sequence[Mapping[str, Any]], keys: Sequence[str], baseline: Sequence[Mapping[str, Any]],
            alpha: float = 0.01, rtol: float = 0.05, source: str = "the baseline", metric: Metric = MSE) -> list[Verdict]:
    """A verdict per group of the baseline (and per group the baseline lacks, as `new`), on
    `metric` (the one the baseline records: see run_check).

    A baseline that records its groups' config must match the sweep's (see _same_config)."""
    _check_params(alpha, rtol)
    _keys_present(runs, keys, "the baseline")
    new = {tuple(s[k] for k in keys): s for s in summarize(runs, keys, metric=metric)}
    files = _files(runs, keys)
    verdicts = []
    for b in baseline:
        key = tuple(key_str(b[k]) for k in keys)
        group = dict(zip(keys, key))
        if key in new and b.get("config"):
            _same_config([r for r in runs if r.get("status") == "ok"] or runs, group, b["config"], source, files)
    for b in baseline:
        key = tuple(key_str(b[k]) for k in keys)
        group = dict(zip(keys, key))
        n = new.pop(key, None)
        if n is None:
            verdicts.append(Verdict(group, "missing", b, None, math.nan, "no runs of this group in the sweep", files))
            continue
        if n["failed"] or not n["n_seeds"]:
            verdicts.append(Verdict(group, "failed runs", b, n, math.nan, f"{n['failed']} run(s) failed", files))
            continue
        verdicts.append(replace(_judge(group, b, n, alpha, rtol, metric), files=files))
    verdicts += [Verdict(dict(zip(keys, k)), "new", None, n, math.nan, "not in the baseline", files) for k, n in new.items()]
    return verdicts


def _judge(group: dict[str, str], b: Mapping[str, Any], n: Mapping[str, Any], alpha: float, rtol: float,
           metric: Metric = MSE) -> Verdict:
    """The verdict on one group: the change of its mean relative to the baseline's, and Welch's
    one-sided tests of a rise and of a fall; which of them is worse, the metric says."""
    bm, nm = float(b["test_mean"]), float(n["test_mean"])
    rel = (nm - bm) / abs(bm) if bm else (math.inf if nm > bm else -math.inf if nm < bm else 0.0)
    rise = welch_greater(nm, n["test_std"], n["n_seeds"], bm, b["test_std"], b["n_seeds"])
    fall = welch_greater(bm, b["test_std"], b["n_seeds"], nm, n["test_std"], n["n_seeds"])
    worse, better = (fall, rise) if metric.higher else (rise, fall)
    worse_rel = -rel if metric.higher else rel  # > 0: worse
    testable = not math.isnan(worse.p)
    what, change, tol = metric.label, f"{rel:+.1%}", f"{rtol * 100:g}%"
    beyond = lambda r: f"more than +{tol}" if r > 0 else f"lower by more than {tol}"  # noqa: E731
    if worse_rel > rtol and (not testable or worse.p < alpha):
        why = f"Welch p={worse.p:.2g} < {alpha:g}" if testable else "fewer than 2 seeds: tolerance only"
        return Verdict(group, "WORSE", b, n, worse.p, f"{what} {change} ({beyond(rel)}), {why}")
    if worse_rel < -rtol and (not testable or better.p < alpha):
        return Verdict(group, "better", b, n, worse.p, f"{what} {change}; consider --update-baseline")
    if rel > rtol:
        return Verdict(group, "ok", b, n, worse.p, f"{what} {change}, beyond +{tol} but within seed noise (Welch p={rise.p:.2g} >= {alpha:g})")
    if rel < -rtol:
        return Verdict(group, "ok", b, n, worse.p, f"{what} {change}, lower by more than {tol} but within seed noise "
                       f"(Welch p={fall.p:.2g} >= {alpha:g})")
    return Verdict(group, "ok", b, n, worse.p, f"{what} {change}, within ±{tol}")


# --- claims: --expect "dropout < none" -----------------------------------------------------------

def _select(side: str, summary: Sequence[Mapping[str, Any]], keys: Sequence[str], text: str,
            files: Mapping[str, str] | None = None) -> Mapping[str, Any]:
    """The one group a side of an expectation names: a key value (dropout) or key=value pairs;
    a csv file also by the name the labels give it (data.file=a.csv, or a.csv)."""
    terms = [t for t in side.replace(",", " ").split() if t]
    if not terms:
        raise UserError(f"--expect {text!r}: a side is empty; write e.g. \"dropout < none\" or \"reg=dropout,p=0.5 < reg=none\"")
    named = [*keys, *([FILE_LABEL] if files else [])]
    matches = list(summary)
    for t in terms:
        if "=" in t:
            k, v = t.split("=", 1)
            if k not in named:
                raise UserError(f"--expect {text!r}: {k} is not a group key (keys: {', '.join(named)})")
            matches = [s for s in matches if s.get(k) == v]
        else:
            matches = [s for s in matches if any(s.get(k) == t for k in named)]
    labels = [group_label({k: s[k] for k in keys}, files) for s in matches]
    if not matches:
        every = "; ".join(group_label({k: s[k] for k in keys}, files) for s in summary)
        raise UserError(f"--expect {text!r}: no group matches {side.strip()!r}; groups: {every}")
    if len(matches) > 1:
        raise UserError(f"--expect {text!r}: {side.strip()!r} matches {len(matches)} groups ({'; '.join(labels)}); add key=value terms")
    return matches[0]


def _paired_greater(hi: Mapping[str, Any], lo: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], keys: Sequence[str],
                    column: str = "final_test_mse") -> tuple[float, int]:
    """One-sided paired t-test of H1: hi's metric (`column`) exceeds lo's, repetition by
    repetition (seed, and split where the runs span several; NaN if the repetitions differ)."""
    def per_seed(g: Mapping[str, Any]) -> dict[Any, float]:
        ok = members((r for r in runs if r.get("status") == "ok"), {k: g[k] for k in keys})
        seeds = {repetition(r) for r in ok}
        return {repetition(r): float(r[column]) for r in ok} if len(seeds) == len(ok) else {}

    a, b = per_seed(hi), per_seed(lo)
    if len(a) < 2 or set(a) != set(b):
        return math.nan, 0
    d = [a[s] - b[s] for s in a]
    return paired_greater(d), len(d)


def expect(runs: Sequence[Mapping[str, Any]], keys: Sequence[str], text: str, alpha: float = 0.01, metric: Metric = MSE) -> Expectation:
    """"A < B": group A's mean final metric (test MSE unless told) is below B's, significantly at
    alpha; "<" and ">" compare values, whichever way the metric is better.

    Where both groups ran the same seeds (same data per seed), a one-sided paired t-test on the
    per-seed differences, as in the summary's paired column: noise shared by a seed cancels.
    Otherwise Welch's one-sided t-test on the two means.
    """
    ops = [op for op in ("<", ">") if op in text]
    if len(ops) != 1 or text.count(ops[0]) != 1:
        raise UserError(f"--expect {text!r}: write one comparison, e.g. \"dropout < none\" (lower test MSE is better)")
    left, right = text.split(ops[0])
    _keys_present(runs, keys, "the check")
    summary = summarize(runs, keys, metric=metric)
    files = _files(runs, keys)
    a, b = _select(left, summary, keys, text, files), _select(right, summary, keys, text, files)
    if a is b:
        raise UserError(f"--expect {text!r}: both sides name the same group")
    lo, hi = (a, b) if ops[0] == "<" else (b, a)
    means = f"{a['test_mean']:.4g} vs {b['test_mean']:.4g}"
    p, pairs = _paired_greater(hi, lo, runs, keys, metric.test)
    over = repeated_over([r for r in runs if r.get("status") == "ok"], keys)
    word = {(): "seeds", ("seed",): "seeds", ("data.split",): "splits"}.get(tuple(over), "runs (" + " × ".join(over) + ")")
    test = f"paired t-test over {pairs} {word}"
    if math.isnan(p):
        p = welch_greater(hi["test_mean"], hi["test_std"], hi["n_seeds"], lo["test_mean"], lo["test_std"], lo["n_seeds"]).p
        test = "Welch t-test"
    if math.isnan(p):
        return Expectation(text, False, p, f"{means}: needs at least 2 successful seeds per group")
    ok = p < alpha
    return Expectation(text, ok, p, f"{means}, {test} p={p:.2g} {'<' if ok else '>='} {alpha:g}")


# --- JUnit -----------------------------------------------------------------------------------------

def junit_xml(verdicts: Sequence[Verdict], expectations: Sequence[Expectation], baseline: str) -> str:
    """One testcase per group and per expectation, so CI systems list them."""
    import xml.etree.ElementTree as ET

    cases = [(f"dropbench.check.{Path(baseline).stem}", v.label, v.passed, f"{v.verdict}: {v.detail}") for v in verdicts]
    cases += [("dropbench.expect", e.text, e.passed, e.detail) for e in expectations]
    failures = sum(not ok for *_, ok, _ in cases)
    suites = ET.Element("testsuites", tests=str(len(cases)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name="dropbench check", tests=str(len(cases)), failures=str(failures), errors="0")
    for classname, name, ok, detail in cases:
        case = ET.SubElement(suite, "testcase", classname=classname, name=name)
        if ok:
            ET.SubElement(case, "system-out").text = detail
        else:
            ET.SubElement(case, "failure", message=detail).text = detail
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


@dataclass
class CheckResult:
    keys: list[str]
    verdicts: list[Verdict]
    expectations: list[Expectation]
    updated: bool
    notes: list[str] = field(default_factory=list)  # an old baseline, mixed platforms
    metric: Metric = MSE  # what the statistics are of
    files: dict[str, str] = field(default_factory=dict)  # data.sha256 -> the file's name, where the groups split on it

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts) and all(e.passed for e in self.expectations)

    def message(self, baseline: str) -> str | None:
        """The verdict line `dropbench check` ends with: "check failed: ..." (exit 1) or "check
        passed: ..."; None for a baseline just written (update), which says so in its table."""
        failed = [v for v in self.verdicts if not v.passed]
        broken = [e for e in self.expectations if not e.passed]
        if failed or broken:
            parts = [f"{len(failed)} of {len(self.verdicts)} group(s) failed ({', '.join(f'{v.label}: {v.verdict}' for v in failed[:3])})"] if failed else []
            parts += [f"{len(broken)} expectation(s) do not hold ({'; '.join(e.text for e in broken)})"] if broken else []
            return "check failed: " + "; ".join(parts)
        if self.updated:
            return None
        return (f"check passed: {len(self.verdicts)} group(s) within seed noise and tolerance of {baseline}"
                + (f", {len(self.expectations)} expectation(s) hold" if self.expectations else ""))


def run_check(folder: Path, baseline: Path, update: bool = False, by: Sequence[str] | None = None, alpha: float = 0.01,
              rtol: float = 0.05, expectations: Sequence[str] = (), junit: Path | None = None,
              metric: str | None = None, better: str | None = None,
              runs: Sequence[Mapping[str, Any]] | None = None) -> CheckResult:
    """What `dropbench check` does: everything is validated before any file is written.

    metric / better: as `report --metric/--better`. A new baseline records them (default test
    MSE); a check uses the metric its baseline records, and refuses another one named here.
    runs: the folder's runs.csv rows where the caller has read them already (the API's Sweep)."""
    from dropbench.oserrors import writing
    from dropbench.readback import read_runs, read_tuning
    from dropbench.results import atomic_writes

    _check_params(alpha, rtol)
    runs = read_runs(folder) if runs is None else runs
    counts: dict[tuple[str, ...], dict[str, int]] = {i: {"runs of the sweep": n} for i, n in platform_counts(runs).items()}
    notes = []
    if update:
        chosen = resolve_metric(runs, metric or DEFAULT_METRIC, better)
        keys, rows = baseline_rows(runs, by, chosen)
        verdicts: list[Verdict] = []
    else:
        if by is not None:
            raise UserError("--by only applies with --update-baseline; a check groups as its baseline does")
        keys, rows = read_baseline(baseline)
        chosen = _recorded_metric(runs, rows, baseline, metric, better)
        verdicts = compare(runs, keys, rows, alpha, rtol, f"baseline {baseline}", chosen)
        if any(r["config"] is None for r in rows):
            notes.append(OLD_BASELINE_NOTE.format(path=baseline))
        for r in rows:
            for p in r["platform"] or []:
                ident = tuple(key_str(p.get(c)) for c in IDENTITY_COLUMNS)
                by_source = counts.setdefault(ident, {})
                by_source["baseline runs"] = by_source.get("baseline runs", 0) + int(p.get("runs") or 0)
    if note := platform_note(counts):
        notes.append(note)
    if (tuning := read_tuning(folder)) is not None:  # a tune's final runs: each method's budget and edge hits
        from dropbench.analysis import budgets

        notes += budgets.notes(budgets.by_method(budgets.tallies(runs, [tuning], keys), keys),
                               [tuning.source] if tuning.source else [])
    claims = [expect(runs, keys, e, alpha, chosen) for e in expectations]
    files = {baseline: baseline_csv(keys, rows)} if update else {}
    if junit is not None:
        files[junit] = junit_xml(verdicts, claims, str(baseline))
    options = {baseline: "--baseline FILE", **({junit: "--junit FILE"} if junit is not None else {})}
    with writing(options):
        atomic_writes(files)  # both or neither
    return CheckResult(keys, verdicts, claims, update, notes, chosen, _files(runs, keys))


def _recorded_metric(runs: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]], path: Path,
                     metric: str | None, better: str | None) -> Metric:
    """The metric a check compares: the baseline's. A --metric or --better that says otherwise
    is refused in one line naming both, rather than comparing numbers of another kind."""
    name, higher = baseline_metric(rows)
    way = "higher" if higher else "lower"
    if metric is not None and canonical_metric(metric) != name:
        raise UserError(f"baseline {path} was recorded with --metric {name} but this check asks for --metric {canonical_metric(metric)}; "
                        f"drop --metric (a check compares its baseline's {name}), or re-record the baseline with --update-baseline --metric {canonical_metric(metric)}")
    if better is not None and resolve_metric(runs, name, better).higher != higher:
        raise UserError(f"baseline {path} was recorded with --metric {name} --better {way} but this check asks for --better {better}; "
                        f"drop --better, or re-record the baseline with --update-baseline --better {better}")
    return resolve_metric(runs, name, way)
