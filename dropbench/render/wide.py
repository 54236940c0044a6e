"""The summary in the wide layout, as the literature prints it (analysis.wide): a row per data
set, a column per group with mean ± interval (rank), the mean rank, and a second table of paired
differences to the reference; rich and markdown."""

from __future__ import annotations

import math
from typing import Any, Sequence

from rich.table import Table

from dropbench.analysis import plugins
from dropbench.analysis.metrics import summary_metric
from dropbench.analysis.spread import INTERVALS
from dropbench.analysis.wide import mean_ranks, tuning_footer, wide
from dropbench.render.text import INTERVAL_TEXT, fmt, has_paired, markdown_lines, note_markup, over, pm, ref_label


def wide_grid(summary: Sequence[dict[str, Any]], keys: Sequence[str], reference: dict[str, str] | None, interval: str,
              bold: str = "**") -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """The main table (head, rows: mean ± interval (rank), best bold) and the paired one (head,
    rows: difference to the reference ± interval, * where its 95% t-interval excludes 0)."""
    w = wide(summary, keys, reference)
    field_ = INTERVALS[interval]
    head = [w.row_head, *w.cols]
    rows = []
    for row in w.rows:
        cells = [row]
        for c in w.cols:
            r = w.cells.get((row, c))
            if r is None:
                cells.append("")
                continue
            text = pm(r["test_mean"], r[f"test_{field_}"]) + ("" if r["rank"] is None else f" ({r['rank']})")
            cells.append(f"{bold}{text}{bold}" if r["rank"] == 1 and bold else text)
        rows.append(cells)
    if len(w.rows) > 1:
        rows.append(["mean rank", *("" if m is None else f"{m:.2g}" for m in mean_ranks(w))])
    rows += tuning_footer(w)
    p_head: list[str] = []
    p_rows: list[list[str]] = []
    if has_paired(summary):
        p_cols = [c for c in w.cols if any(w.cells.get((row, c), {}).get("n_pairs") for row in w.rows)]
        p_head = [w.row_head, *[f"{c} − {ref_label(reference)}" for c in p_cols]]
        for row in w.rows:
            cells = [row]
            for c in p_cols:
                r = w.cells.get((row, c))
                if not r or not r.get("n_pairs"):
                    cells.append("")
                    continue
                ci = r["paired_ci"]
                sig = "*" if not math.isnan(ci) and abs(r["paired_diff"]) > ci else ""
                cells.append(f"{r['paired_diff']:+.4g} ± {fmt(r[f'paired_{field_}'], 2)}{sig}")
            p_rows.append(cells)
    return head, rows, p_head, p_rows


def _captions(summary: Sequence[dict[str, Any]], reference: dict[str, str] | None, interval: str,
              notes: Sequence[str]) -> tuple[str, str]:
    m = summary_metric(summary)
    _, over_, per = over(summary)
    what = INTERVAL_TEXT[interval][1]
    best = "highest" if m.higher else "lowest"
    main = (f"{m.label}: mean ± {what} over {over_}; (k): rank within the data set, bold: the best ({best} mean); "
            "mean rank: over data sets")
    paired = (f"paired: {per} difference of {m.label} to {ref_label(reference)}, mean ± {what}; "
              "*: its 95% t-interval excludes 0")
    return "\n\n".join([main, *plugins.notes(r.get("reg") for r in summary), *notes]), paired


def wide_markdown(summary: Sequence[dict[str, Any]], keys: Sequence[str], reference: dict[str, str] | None = None,
                  notes: Sequence[str] = (), interval: str = "ci95") -> str:
    head, rows, p_head, p_rows = wide_grid(summary, keys, reference, interval)
    main, paired = _captions(summary, reference, interval, notes)
    out = "\n".join(markdown_lines(head, rows, 1)) + "\n\n" + main + "\n"
    if p_head:
        out += "\n" + "\n".join(markdown_lines(p_head, p_rows, 1)) + "\n\n" + paired + "\n"
    return out


def wide_tables(summary: Sequence[dict[str, Any]], keys: Sequence[str], title: str, reference: dict[str, str] | None = None,
                notes: Sequence[str] = (), interval: str = "ci95") -> Any:
    """The main table, and the paired one under it where any group pairs (a rich Group)."""
    from rich.console import Group

    head, rows, p_head, p_rows = wide_grid(summary, keys, reference, interval, bold="")
    main, paired = _captions(summary, reference, interval, notes)
    w = wide(summary, keys, reference)
    t = Table(title=title, header_style="bold", caption="\n".join(note_markup(c) for c in main.split("\n\n")))
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i == 0 else "right")
    for cells in rows:
        styled = [c if i == 0 or (cells[0], head[i]) not in w.cells or w.cells[(cells[0], head[i])]["rank"] != 1
                  else f"[bold green]{c}[/bold green]" for i, c in enumerate(cells)]
        t.add_row(*styled)
    if not p_head:
        return t
    pt = Table(title="paired differences", header_style="bold", caption=note_markup(paired))
    for i, h in enumerate(p_head):
        pt.add_column(h, justify="left" if i == 0 else "right")
    for cells in p_rows:
        pt.add_row(*cells)
    return Group(t, pt)
