"""`dropbench report`: results folders -> runs -> a summary (analysis) -> a Report, rendered as a
table, markdown, CSV or JSON (render). CSVs alone: no training, and nothing heavier than rich."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dropbench.analysis.grouping import by_keys, pooled_configs, pooled_note
from dropbench.analysis.metrics import DEFAULT_METRIC, resolve_metric
from dropbench.analysis.pairing import default_reference
from dropbench.analysis.platforms import summary_platforms
from dropbench.analysis.selection import at_epoch, selection_note, test_chosen_metric_note
from dropbench.analysis.spread import INTERVALS, check_interval
from dropbench.analysis.summary import summarize
from dropbench.analysis.taxonomy import DATA_SET_KEYS, Row, columns_of, key_str, sort_key
from dropbench.analysis.wide import wide_keys
from dropbench.errors import AllRunsFailed, UserError

LAYOUTS = ("long", "wide")
FORMATS = ("table", "markdown", "csv", "json")
SORT_ALIASES = {"test": "test_mean", "train": "train_mean", "std": "test_std", "ci": "test_ci", "se": "test_se", "seeds": "n_seeds",
                "paired": "paired_diff"}


@dataclass
class Report:
    summary: list[dict[str, Any]]
    keys: list[str]
    reference: dict[str, str] | None
    title: str
    notes: list[str] = field(default_factory=list)  # caption lines: pooled configs, mixed platforms
    interval: str = "ci95"
    layout: str = "long"


def build_report(folders: Sequence[Path], by: Sequence[str] | None = None, sort: str | None = None,
                 descending: bool = False, epoch: int | str = "final", interval: str = "ci95", layout: str = "long",
                 metric: str = DEFAULT_METRIC, better: str | None = None, select_on: str | None = None) -> Report:
    """The sweep summary from CSVs alone; several folders become one table with a `sweep` column.

    interval: what follows ± (ci95, se, std); the JSON and CSV carry all three and the chosen
    one as test_interval. layout: long (a line per group) or wide (a row per data set, a
    column per regularizer). metric: the result column the test statistics and ranks use.
    epoch "best" chooses each run's epoch on select_on, else on its validation rows where it
    has them (val_mse), else on the metric itself (the test set: flagged as optimistic in the
    caption and in each group's selected_on / test_selected).
    """
    from dropbench import results

    check_interval(interval)
    if layout not in LAYOUTS:
        raise UserError(f"unknown --layout {layout!r}: choose from {', '.join(LAYOUTS)}")
    rows, labels = read_folders(folders)
    running = [str(f) for f in folders if results.is_being_written(Path(f))]
    chosen = resolve_metric(rows, metric, better)
    if epoch != "final" or select_on is not None:
        by_label: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_label.setdefault(r["sweep"], []).append(r)
        rows = [r for folder, label in zip(folders, labels)
                for r in at_epoch(by_label.get(label, []), results.read_curves(Path(folder)), epoch, chosen, select_on)]
    keys = by_keys(rows, by)
    if len(folders) > 1 and "sweep" not in keys:
        keys.append("sweep")
    per_data_set: list[str] = []
    if layout == "wide":  # a row names its data set even where the sweep has only one
        keys += [k for k in DATA_SET_KEYS if k not in keys and any(key_str(r.get(k)) for r in rows)
                 and len({key_str(r.get(k)) for r in rows}) == 1]
        keys, per_data_set = wide_keys(rows, keys)
        # one folder per data set (dropbench bench): the folder names nothing the row does not
        per_data_set = [k for k in per_data_set if k != "sweep"]
    reference = default_reference(rows, keys)
    summary = summarize(rows, keys, reference, chosen)
    field_ = INTERVALS[interval]
    for s in summary:
        s.update(interval=interval, test_interval=s[f"test_{field_}"])
        if "paired_diff" in s:
            s["paired_interval"] = s[f"paired_{field_}"]
    if chosen.test.startswith("best_test"):  # the metric is an oracle's already
        for s in summary:
            s.update(selected_on=chosen.test.removeprefix("best_"), test_selected=True)
    notes = [n for n in (pooled_note(pooled_configs(rows, keys), keys), summary_platforms(rows, summary, keys),
                         selection_note(summary, keys) if epoch == "best" else None, test_chosen_metric_note(chosen)) if n]
    if per_data_set:
        notes.append(f"set per data set (as configured): {', '.join(per_data_set)}")
    notes += tuning_notes(folders, rows, summary, keys)
    if running:
        notes.append(f"note: {', '.join(running)} is still being written by a running dropbench; this reports the runs "
                     f"its {results.RUNS_CSV} listed when last written")
    if sort is not None:
        summary = sorted_by(summary, sort, descending, keys, reference)
    elif len(folders) > 1:  # the same group from each folder on adjacent lines
        summary = sorted(summary, key=lambda r: [sort_key(r[k]) for k in keys])
    at = {"final": "final epoch", "best": "each run's best epoch"}.get(str(epoch), f"epoch {epoch}")
    title = f"dropbench report: {', '.join(labels)} ({at})"
    return Report(summary, keys, reference, title, notes, interval, layout)


def tuning_notes(folders: Sequence[Path], rows: Sequence[Row], summary: list[dict[str, Any]], keys: Sequence[str]) -> list[str]:
    """For the final runs of dropbench tune: each group's grid points and edge hits (into the
    summary) and the caption lines on budgets (analysis.budgets); nothing for plain runs."""
    from dropbench import results
    from dropbench.analysis import budgets

    tunings = [t for f in folders if (t := results.read_tuning(Path(f))) is not None]
    if not tunings:
        return []
    groups = budgets.tallies(rows, tunings, keys)
    budgets.annotate(summary, groups, keys)
    return budgets.notes(budgets.by_method(groups, keys), [t.source for t in tunings if t.source])


def read_folders(folders: Sequence[Path]) -> tuple[list[Row], list[str]]:
    """Every run of the folders, each with its folder's label in a `sweep` column, and the
    labels: the folders' names, or their paths where two share a name."""
    from dropbench import results

    if not folders:
        raise UserError("give at least one results folder: dropbench report results/DIR")
    resolved = [Path(f).resolve() for f in folders]
    if len(set(resolved)) < len(resolved):
        twice = next(f for f, r in zip(folders, resolved) if resolved.count(r) > 1)
        raise UserError(f"{twice} is given twice; give each results folder once")
    labels = [Path(f).name or str(f) for f in folders]
    if len(set(labels)) < len(labels):
        labels = [str(f) for f in folders]
    rows: list[Row] = []
    for folder, label in zip(folders, labels):
        mine = results.read_runs(Path(folder))
        if not any(r.get("status") == "ok" for r in mine):
            raise AllRunsFailed(all_failed(folder, mine))
        rows += [{**r, "sweep": label} for r in mine]
    return rows, labels


def sorted_by(summary: list[Row], sort: str, descending: bool, keys: Sequence[str], reference: dict[str, str] | None) -> list[Row]:
    """The summary ordered by --sort (an alias such as test, or a column); numbers numerically
    with undefined ones last, key values as sort_key orders them."""
    col = SORT_ALIASES.get(sort, sort)
    if col not in columns_of(summary):
        choices = ", ".join(["rank", "test", "train", "gap", "std", "se", "ci", "seeds"] + (["paired"] if reference else []) + list(keys))
        raise UserError(f"unknown --sort {sort!r}: choose from {choices}")
    numeric = lambda v: v is None or isinstance(v, (int, float))  # noqa: E731
    if all(numeric(r[col]) for r in summary):
        missing = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
        present = sorted((r for r in summary if not missing(r[col])), key=lambda r: r[col], reverse=descending)
        return present + [r for r in summary if missing(r[col])]
    return sorted(summary, key=lambda r: sort_key(r[col]), reverse=descending)


def all_failed(folder: Path, rows: Sequence[dict[str, Any]], shown: int = 5) -> str:
    """Why a folder has nothing to summarize: every run failed. The reasons, most frequent first,
    each with its count and a run id to look at."""
    by_reason: dict[str, list[str]] = {}
    for r in rows:
        by_reason.setdefault(key_str(r.get("reason")) or f"status {key_str(r.get('status')) or 'unknown'}, no reason recorded", []).append(r["run_id"])
    ranked = sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    lines = [f"every run in {folder} failed ({len(rows)} of {len(rows)}), so there is nothing to summarize; why:"]
    lines += [f"  {len(ids)} run(s), e.g. {ids[0]}: {reason}" for reason, ids in ranked[:shown]]
    if len(ranked) > shown:
        from dropbench.results import RUNS_CSV

        lines.append(f"  and {len(ranked) - shown} other reason(s): see the reason column of {Path(folder) / RUNS_CSV}")
    return "\n".join(lines)


def render_report(rep: Report, fmt: str) -> "str | Any":
    """The report as text (markdown, csv, json) or as a rich renderable (table)."""
    from dropbench.render import long, records, wide

    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}: choose from {', '.join(FORMATS)}")
    if rep.layout == "wide":
        if fmt == "table":
            return wide.wide_tables(rep.summary, rep.keys, rep.title, rep.reference, rep.notes, rep.interval)
        if fmt == "markdown":
            return wide.wide_markdown(rep.summary, rep.keys, rep.reference, rep.notes, rep.interval)
        from dropbench.analysis.wide import wide_records

        wide_rows = wide_records(rep.summary, rep.keys, rep.reference, rep.interval)
        return records.summary_csv(wide_rows) if fmt == "csv" else records.summary_json(wide_rows)
    if fmt == "table":
        return long.summary_table(rep.summary, rep.keys, rep.title, rep.reference, rep.notes, rep.interval)
    if fmt == "markdown":
        return long.summary_markdown(rep.summary, rep.keys, rep.reference, rep.notes, rep.interval)
    if fmt == "csv":
        return records.summary_csv(rep.summary)
    return records.summary_json(rep.summary)
