"""`dropbench report`: results folders -> runs -> a summary (analysis) -> a Report, rendered as a
table, markdown, CSV or JSON (render). CSVs alone: no training, and nothing heavier than rich."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from dropbench.analysis.crossdata import DEFAULT_ALPHA, CrossStats, check_posthoc
from dropbench.analysis.grouping import by_keys, pooled_configs, pooled_note
from dropbench.analysis.metrics import DEFAULT_METRIC, resolve_metric
from dropbench.analysis.pairing import default_reference
from dropbench.analysis.platforms import summary_platforms
from dropbench.analysis.selection import at_epoch, selection_note, test_chosen_metric_note
from dropbench.analysis.spread import INTERVALS, check_interval
from dropbench.analysis.summary import summarize
from dropbench.analysis.taxonomy import DATA_SET_KEYS, Row, columns_of, key_str, ok, sort_key
from dropbench.analysis.wide import wide_keys
from dropbench.errors import AllRunsFailed, UserError

if TYPE_CHECKING:
    from dropbench.analysis.budgets import Tuning
    from dropbench.analysis.reference import Reference

LAYOUTS = ("long", "wide")
FORMATS = ("table", "markdown", "csv", "json")  # and html: dropbench.html_report, a layer above (it draws the plots)
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
    stats: CrossStats | None = None  # the tests across data sets (wide layout)
    comparison: list[dict[str, Any]] | None = None  # against --reference, a record per matching cell
    citation: str = ""  # the reference's
    # What the HTML report draws and lists beside the tables: the runs (each with its `sweep`
    # label), the folders they were read from and those folders' labels.
    rows: list[dict[str, Any]] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    by: list[str] | None = None


def cross_data_set_stats(summary: list[dict[str, Any]], keys: list[str], reference: dict[str, str] | None,
                         posthoc: str | None, alpha: float) -> tuple[CrossStats | None, str | None]:
    """The tests across data sets of a wide report, or why there are none: asked for (--posthoc),
    a refusal is the error; by default it is a caption line, and a table of one data set or one
    group says nothing."""
    from dropbench.analysis import crossdata
    from dropbench.analysis.wide import wide

    w = wide(summary, keys, reference)
    try:
        return crossdata.from_summary(summary, keys, reference, posthoc or crossdata.DEFAULT_POSTHOC, alpha), None
    except UserError as e:
        if posthoc is not None:
            raise
        return None, (None if len(w.rows) < 2 or len(w.cols) < 2 else f"no tests across data sets: {e}")


def check_options(interval: str, layout: str, posthoc: str | None, alpha: float) -> None:
    """The report's options, checked before any folder is read."""
    check_interval(interval)
    if layout not in LAYOUTS:
        raise UserError(f"unknown --layout {layout!r}: choose from {', '.join(LAYOUTS)}")
    check_posthoc(posthoc or "wilcoxon", alpha)
    if posthoc is not None and layout != "wide":
        raise UserError("--posthoc compares groups across data sets, which the wide layout shows: add --layout wide")


def build_report(folders: Sequence[Path], by: Sequence[str] | None = None, sort: str | None = None,
                 descending: bool = False, epoch: int | str = "final", interval: str = "ci95", layout: str = "long",
                 metric: str = DEFAULT_METRIC, better: str | None = None, select_on: str | None = None,
                 posthoc: str | None = None, alpha: float = DEFAULT_ALPHA, reference_table: str | Path | None = None) -> Report:
    """The sweep summary from CSVs alone; several folders become one table with a `sweep` column.

    interval: what follows ± (ci95, se, std); the JSON and CSV carry all three and the chosen
    one as test_interval. layout: long (a line per group) or wide (a row per data set, a
    column per regularizer). metric: the result column the test statistics and ranks use.
    epoch "best" chooses each run's epoch on select_on, else on its validation rows where it
    has them (val_mse), else on the metric itself (the test set: flagged as optimistic in the
    caption and in each group's selected_on / test_selected).
    The wide layout adds the tests across data sets (analysis.crossdata): Friedman's, and the
    post-hoc `posthoc` (wilcoxon, the default, or nemenyi) at `alpha`; naming a posthoc makes a
    refusal (too few data sets, a missing cell, ties everywhere) an error rather than a caption
    line. reference_table: a shipped reference's name or a CSV (analysis.reference) set beside ours.
    """
    from dropbench import locks, readback

    check_options(interval, layout, posthoc, alpha)
    ref_table = None
    if reference_table is not None:
        from dropbench.analysis.reference import read_reference

        ref_table = read_reference(reference_table)
    rows, labels = read_folders(folders)
    curves = {label: (lambda folder=Path(folder): readback.read_curves(folder, partial=True)) for folder, label in zip(folders, labels)}
    running = [Path(f) for f in folders if locks.is_partial(Path(f))]
    tunings = [t for f in folders if (t := readback.read_tuning(Path(f))) is not None]  # a tune's final runs
    return report_of(rows, labels, curves, by, sort, descending, epoch, interval, layout, metric, better, select_on, running,
                     posthoc=posthoc, alpha=alpha, ref_table=ref_table, folders=folders, tunings=tunings)


def report_of(rows: Sequence[Row], labels: Sequence[str], curves: Mapping[str, Callable[[], list[Row]]],
              by: Sequence[str] | None = None, sort: str | None = None, descending: bool = False, epoch: int | str = "final",
              interval: str = "ci95", layout: str = "long", metric: str = DEFAULT_METRIC, better: str | None = None,
              select_on: str | None = None, running: Sequence[Path] = (), reference: Mapping[str, str] | None = None,
              posthoc: str | None = None, alpha: float = DEFAULT_ALPHA, ref_table: "Reference | None" = None,
              folders: Sequence[Path] = (), tunings: "Sequence[Tuning]" = ()) -> Report:
    """build_report on runs already read (read_folders: each with its folder's label in `sweep`):
    the library API's Sweep computes its summaries here, as the command does. curves: per label,
    a function reading that folder's curves (only --epoch other than final reads them).
    running: the folders a live dropbench is still writing (read partially: locks.is_partial).
    reference: the group paired differences are taken against (default: reg=none where present).
    ref_table: a published table (analysis.reference.read_reference) set beside ours.
    tunings: the tunings whose final runs these are (readback.read_tuning): their budgets."""
    from dropbench import readback

    check_options(interval, layout, posthoc, alpha)
    chosen = resolve_metric(rows, metric, better)
    if epoch != "final" or select_on is not None:
        by_label: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_label.setdefault(r["sweep"], []).append(r)
        rows = [r for label in labels for r in at_epoch(by_label.get(label, []), curves[label](), epoch, chosen, select_on)]
    keys = by_keys(rows, by)
    if len(labels) > 1 and "sweep" not in keys:
        keys.append("sweep")
    per_data_set: list[str] = []
    if layout == "wide":  # a row names its data set even where the sweep has only one
        keys += [k for k in DATA_SET_KEYS if k not in keys and any(key_str(r.get(k)) for r in rows)
                 and len({key_str(r.get(k)) for r in rows}) == 1]
        keys, per_data_set = wide_keys(rows, keys)
        # one folder per data set (dropbench bench): the folder names nothing the row does not
        per_data_set = [k for k in per_data_set if k != "sweep"]
    if reference is None:
        reference = default_reference(rows, keys)
    else:
        reference = check_reference(rows, keys, reference)
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
    notes += tuning_notes(tunings, rows, summary, keys)
    notes += [readback.progress(f).note(f) for f in running]  # what is shown so far, and how much is to come
    stats = None
    if layout == "wide":
        stats, why_not = cross_data_set_stats(summary, keys, reference, posthoc, alpha)
        if why_not:
            notes.append(why_not)
    comparison = None
    if ref_table is not None:
        from dropbench.analysis.reference import compare

        comparison = compare(summary, keys, reference, ref_table)
    if sort is not None:
        summary = sorted_by(summary, sort, descending, keys, reference)
    elif len(labels) > 1:  # the same group from each folder on adjacent lines
        summary = sorted(summary, key=lambda r: [sort_key(r[k]) for k in keys])
    at = {"final": "final epoch", "best": "each run's best epoch"}.get(str(epoch), f"epoch {epoch}")
    title = f"dropbench report: {', '.join(labels)} ({at})"
    return Report(summary, keys, reference, title, notes, interval, layout, stats, comparison,
                  ref_table.citation if ref_table is not None else "", rows=rows, folders=[Path(f) for f in folders],
                  labels=labels, by=None if by is None else list(by))


def check_reference(rows: Sequence[Row], keys: Sequence[str], reference: Mapping[str, str]) -> dict[str, str]:
    """A reference group as given (the API's paired(reference=...)): grouping keys, and a group the runs have."""
    ref = {k: key_str(v) for k, v in reference.items()}
    unknown = [k for k in ref if k not in keys]
    if unknown:
        raise UserError(f"reference key {', '.join(unknown)} is not a grouping key; choose from {', '.join(keys)} (or group by it with by=)")
    if not any(ok(r) and all(key_str(r.get(k)) == v for k, v in ref.items()) for r in rows):
        raise UserError(f"no finished run has {' '.join(f'{k}={v}' for k, v in ref.items())}; choose a reference group the runs have")
    return ref


def tuning_notes(tunings: "Sequence[Tuning]", rows: Sequence[Row], summary: list[dict[str, Any]], keys: Sequence[str]) -> list[str]:
    """For the final runs of dropbench tune (readback.read_tuning): each group's grid points and edge
    hits (into the summary) and the caption lines on budgets (analysis.budgets); nothing for plain runs."""
    from dropbench.analysis import budgets

    if not tunings:
        return []
    groups = budgets.tallies(rows, tunings, keys)
    budgets.annotate(summary, groups, keys)
    return budgets.notes(budgets.by_method(groups, keys), [t.source for t in tunings if t.source])


def read_folders(folders: Sequence[Path], require_ok: bool = True) -> tuple[list[Row], list[str]]:
    """Every run of the folders, each with its folder's label in a `sweep` column, and the
    labels: the folders' names, or their paths where two share a name. require_ok: a folder
    whose runs all failed is an error (AllRunsFailed), as there is nothing to summarize."""
    from dropbench import readback

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
        mine = readback.read_runs(Path(folder), partial=True)
        if require_ok:
            some_ok(folder, mine)
        rows += [{**r, "sweep": label} for r in mine]
    return rows, labels


def some_ok(folder: Path, rows: Sequence[Row]) -> None:
    """A folder's runs have something to summarize: not every one failed (AllRunsFailed says why)."""
    if not any(r.get("status") == "ok" for r in rows):
        raise AllRunsFailed(all_failed(folder, rows))


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
    """The report as text (markdown, csv, json) or as a rich renderable (table). The tests across
    data sets and the reference comparison follow the tables; in CSV and JSON they are further
    records after the summary's, told apart by their `table` field (friedman, rank, pair, clique,
    reference)."""
    if fmt not in FORMATS:
        if fmt == "html":  # not text render/ can build: it draws plots
            raise UserError("the html page is built by dropbench.html_report.report_html(report)")
        raise UserError(f"unknown --format {fmt!r}: choose from {', '.join(FORMATS)}, html")
    main = _render_main(rep, fmt)
    if rep.stats is None and not rep.comparison:
        return main
    from dropbench.render import crossdata, records

    extra: list[dict[str, Any]] = (rep.stats.records() if rep.stats else []) + (rep.comparison or [])
    if fmt in ("csv", "json"):
        from dropbench.analysis.wide import wide_records

        rows = wide_records(rep.summary, rep.keys, rep.reference, rep.interval) if rep.layout == "wide" else rep.summary
        return records.summary_csv([*rows, *extra]) if fmt == "csv" else records.summary_json([*rows, *extra])
    if fmt == "markdown":
        parts = [main] + ([crossdata.stats_markdown(rep.stats)] if rep.stats else [])
        parts += [crossdata.reference_markdown(rep.comparison, rep.citation)] if rep.comparison else []
        return "\n".join(parts)
    from rich.console import Group

    tables = [main] + ([crossdata.stats_table(rep.stats)] if rep.stats else [])
    tables += [crossdata.reference_table(rep.comparison, rep.citation)] if rep.comparison else []
    return Group(*tables)


def _render_main(rep: Report, fmt: str) -> "str | Any":
    from dropbench.render import long, records, wide

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


def as_text(rendered: "str | Any", width: int = 200) -> str:
    """A rendered report as text: a rich table drawn without colours, `width` columns wide
    (report -o FILE, the API's Sweep.report); text formats as they are."""
    if isinstance(rendered, str):
        return rendered
    from rich.console import Console

    with open(os.devnull, "w") as devnull:
        con = Console(record=True, width=width, file=devnull)
        con.print(rendered)
        return con.export_text()
