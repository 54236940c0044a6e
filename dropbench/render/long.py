"""The summary in the long layout, a line per group: a rich table for the terminal and a
markdown table; the caption says what the statistics are."""

from __future__ import annotations

from typing import Any, Sequence

from rich.table import Table

from dropbench.analysis import plugins
from dropbench.analysis.metrics import DEFAULT_METRIC, summary_metric
from dropbench.analysis.spread import INTERVALS
from dropbench.analysis.taxonomy import DATA_SET_KEYS, FILE_KEY, FILE_LABEL, data_set, key_str
from dropbench.render.text import INTERVAL_TEXT, fmt, has_paired, markdown_lines, note_markup, over, pm, ref_label

RANK_CAPTION = "; ranks within each data set"


def shown_keys(summary: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[str]:
    """The key columns a table shows: data.file (labels.file_labels) in place of data.sha256,
    where the summary names the files; the grouping stays by sha256."""
    named = any(FILE_LABEL in r for r in summary)
    return [FILE_LABEL if k == FILE_KEY and named else k for k in keys]


def summary_columns(summary: Sequence[dict[str, Any]], interval: str = "ci95") -> list[str]:
    m = summary_metric(summary)
    n = over(summary)[0]
    train = [f"{m.train_label} (mean ± std)"] if m.train else []
    return [n, *train, f"{m.label} (mean ± {INTERVAL_TEXT[interval][0]})", *(["gap"] if m.train else []), "rank"]


def _paired_header(reference: dict[str, str] | None, interval: str) -> str:
    return f"vs {ref_label(reference)} (paired, {INTERVAL_TEXT[interval][0]})"


def captions(summary: Sequence[dict[str, Any]], paired: bool, notes: Sequence[str] = (), interval: str = "ci95") -> list[str]:
    """The summary's caption lines: what the statistics are, the notes of its regularizers
    (plugins.notes: DropPath's residual blocks), and notes (pooled configs, mixed platforms)."""
    keys = [k for k in DATA_SET_KEYS if any(k in r for r in summary)]
    ranks = RANK_CAPTION if len({data_set(r, keys) for r in summary}) > 1 else ""
    m = summary_metric(summary)
    _, over_, per = over(summary)
    what = INTERVAL_TEXT[interval][1]
    first = f"{'test' if m.name == DEFAULT_METRIC else m.label}: mean ± {what} over {over_}"
    if paired:
        first += f"; paired: {per} difference to the reference group, {what}"
    if m.higher:
        first += "; higher is better (rank 1: the highest mean)"
    return [first + ranks, *plugins.notes(r.get("reg") for r in summary), *notes]


def summary_cells(r: dict[str, Any], keys: Sequence[str], paired: bool, markup: bool = True, interval: str = "ci95",
                  train: bool = True) -> list[str]:
    """A summary row as display strings (rich markup optional, for markdown)."""
    failed = f" ({r['failed']} failed)" if r["failed"] else ""
    if markup and failed:
        failed = f" [red]{failed.strip()}[/red]"
    field_ = INTERVALS[interval]
    cells = [key_str(r[k]) for k in keys] + [f"{r['n_seeds']}{failed}"]
    if train:
        cells.append(pm(r["train_mean"], r["train_std"]))
    cells.append(pm(r["test_mean"], r[f"test_{field_}"]))
    if train:
        cells.append(fmt(r["gap"]))
    cells.append("-" if r["rank"] is None else str(r["rank"]))
    if paired:
        cells.append(f"{r['paired_diff']:+.4g} ± {fmt(r[f'paired_{field_}'], 2)}" if r.get("n_pairs") else "")
    return cells


def summary_table(summary: Sequence[dict[str, Any]], keys: Sequence[str], title: str = "dropbench sweep summary",
                  reference: dict[str, str] | None = None, notes: Sequence[str] = (), interval: str = "ci95") -> Table:
    """One line per group (see analysis.summary.summarize); the best group (rank 1) of each data
    set is highlighted. A note that starts with WARNING is shown in bold yellow."""
    paired = has_paired(summary)
    lines = [note_markup(c) for c in captions(summary, paired, notes, interval)]
    t = Table(title=title, header_style="bold", caption="\n".join(lines))
    keys = shown_keys(summary, keys)
    for k in keys:
        t.add_column(k)
    for c in summary_columns(summary, interval):
        t.add_column(c, justify="right")
    if paired:
        t.add_column(_paired_header(reference, interval), justify="right")
    train = bool(summary_metric(summary).train)
    for r in summary:
        t.add_row(*summary_cells(r, keys, paired, interval=interval, train=train), style="bold green" if r["rank"] == 1 else None)
    return t


def summary_markdown(summary: Sequence[dict[str, Any]], keys: Sequence[str], reference: dict[str, str] | None = None,
                     notes: Sequence[str] = (), interval: str = "ci95") -> str:
    """A GitHub-flavoured markdown table; the best group in bold."""
    paired = has_paired(summary)
    keys = shown_keys(summary, keys)
    head = [*keys, *summary_columns(summary, interval)] + ([_paired_header(reference, interval)] if paired else [])
    train = bool(summary_metric(summary).train)
    rows = []
    for r in summary:
        cells = summary_cells(r, keys, paired, markup=False, interval=interval, train=train)
        rows.append([f"**{c}**" if c else c for c in cells] if r["rank"] == 1 else cells)
    return "\n".join(markdown_lines(head, rows, len(keys))) + "\n\n" + "\n\n".join(captions(summary, paired, notes, interval)) + "\n"
