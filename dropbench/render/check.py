"""The tables of `dropbench check`: each group's verdict against the baseline, each expectation,
and a baseline's groups."""

from __future__ import annotations

import math
from typing import Any, Sequence

from rich.table import Table

from dropbench.analysis.metrics import DEFAULT_METRIC, MSE, Metric
from dropbench.analysis.selection import test_chosen_metric_note
from dropbench.analysis.taxonomy import FILE_KEY, FILE_LABEL, key_str
from dropbench.render.text import fmt, note_markup

VERDICT_STYLE = {"ok": "green", "better": "bold green", "new": "cyan", "WORSE": "bold red", "missing": "bold red", "failed runs": "bold red"}


def check_tables(result: Any, baseline: str) -> list[Any]:
    """Every group of a check (baseline, new, change, p, verdict) and every expectation; the
    check's notes (an old baseline, mixed platforms) under the first table, or alone."""
    from rich.text import Text

    tables: list[Any] = []
    notes = list(getattr(result, "notes", []))
    m = getattr(result, "metric", None) or MSE
    if (oracle := test_chosen_metric_note(m)) is not None:
        notes.append(oracle)
    if result.verdicts:
        caption = (f"final {m.label}, mean ± std (seeds); p: Welch's one-sided t-test that the new mean is "
                   + ("lower (higher is better)" if m.higher else "higher"))
        t = Table(title=f"dropbench check against {baseline}", header_style="bold",
                  caption="\n".join([caption, *map(note_markup, notes)]))
        notes = []
        for c in ("group", "baseline", "new", "change", "p", "verdict", "why"):
            t.add_column(c, justify="right" if c in ("baseline", "new", "change", "p") else "left", overflow="fold")
        for v in result.verdicts:
            cell = lambda s: "" if s is None else f"{fmt(s['test_mean'])} ± {fmt(s['test_std'], 2)} ({s['n_seeds']})"  # noqa: E731
            change = ""
            if v.base is not None and v.new is not None and v.new["n_seeds"]:
                change = f"{v.new['test_mean'] - v.base['test_mean']:+.3g} ({(v.new['test_mean'] - v.base['test_mean']) / abs(v.base['test_mean']):+.1%})"
            style = VERDICT_STYLE.get(v.verdict, "")
            t.add_row(v.label, cell(v.base), cell(v.new), change, fmt(v.p, 2), f"[{style}]{v.verdict}[/{style}]", v.detail)
        tables.append(t)
    if result.expectations:
        t = Table(title=f"expectations ({'higher' if m.higher else 'lower'} {m.label} is better; < and > compare means)"
                  if m.higher else f"expectations (lower {m.label} is better)", header_style="bold")
        for c in ("expectation", "verdict", "why"):
            t.add_column(c)
        for e in result.expectations:
            verdict = "[green]holds[/green]" if e.passed else "[bold red]FAILS[/bold red]"
            t.add_row(e.text, verdict, e.detail)
        tables.append(t)
    tables += [Text.from_markup(note_markup(n)) for n in notes]
    return tables


def baseline_table(keys: Sequence[str], rows: Sequence[dict[str, Any]], title: str, files: dict[str, str] | None = None) -> Table:
    """A baseline's groups: seeds, and mean ± std of its metric (and the train counterpart,
    where the metric has one); a csv file's sha256 by the file's name where `files` has it."""
    name = next((str(r["metric"]) for r in rows if r.get("metric")), DEFAULT_METRIC)
    m = Metric(name, f"final_{name}", None, False)
    train = any(isinstance(r.get("train_mean"), float) and not math.isnan(r["train_mean"]) for r in rows)
    t = Table(title=title, header_style="bold")
    for k in keys:
        t.add_column(FILE_LABEL if k == FILE_KEY and files else k)
    for c in ("seeds", *([f"{m.train_label} (mean ± std)"] if train else []), f"{m.label} (mean ± std)"):
        t.add_column(c, justify="right")
    shown = lambda k, v: (files or {}).get(v, v) if k == FILE_KEY else v  # noqa: E731
    for r in rows:
        cells = [f"{fmt(r['train_mean'])} ± {fmt(r['train_std'], 2)}"] if train else []
        t.add_row(*[key_str(shown(k, r[k])) for k in keys], str(r["n_seeds"]), *cells, f"{fmt(r['test_mean'])} ± {fmt(r['test_std'], 2)}")
    return t
