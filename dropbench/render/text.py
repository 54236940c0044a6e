"""How every table spells numbers and states what its statistics are."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from dropbench.analysis.labels import group_label
from dropbench.analysis.taxonomy import REPETITION_KEYS

# interval (--interval) -> (its header text, its caption text)
INTERVAL_TEXT = {
    "ci95": ("95% CI", "95% t-interval"),
    "se": ("SE", "standard error (SD with ddof=0 / √n, as the UCI literature's tables)"),
    "std": ("std", "sample standard deviation"),
}


def fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def pm(mean: float, spread: float) -> str:
    """mean ± spread, the spread to 2 significant digits."""
    return f"{fmt(mean)} ± {fmt(spread, 2)}"


def _esc(c: str) -> str:
    return c.replace("|", "\\|")


def markdown_lines(head: Sequence[str], rows: Sequence[Sequence[str]], n_left: int) -> list[str]:
    """A GitHub-flavoured markdown table: the first n_left columns left-aligned, the others right."""
    lines = ["| " + " | ".join(map(_esc, head)) + " |", "|" + "|".join("---" if i < n_left else "---:" for i in range(len(head))) + "|"]
    return lines + ["| " + " | ".join(map(_esc, r)) + " |" for r in rows]


def note_markup(note: str) -> str:
    """A caption line as rich markup: escaped (values may hold brackets), warnings in yellow."""
    from rich.markup import escape

    return f"[bold yellow]{escape(note)}[/bold yellow]" if note.startswith("WARNING") else escape(note)


def _repeats(summary: Sequence[Mapping[str, Any]]) -> list[str]:
    """The repetition keys any group's runs span (seed, data.split, ...)."""
    found = {k for r in summary for k in str(r.get("repeats") or "").split("+") if k}
    return [k for k in REPETITION_KEYS if k in found] or ["seed"]


def over(summary: Sequence[Mapping[str, Any]]) -> tuple[str, str, str]:
    """(the n column's header, "over ..." for the caption, "per-... difference") from what the
    groups repeat over: seeds, splits, or runs of both."""
    rep = _repeats(summary)
    if rep == ["seed"]:
        return "seeds", "seeds", "per-seed"
    if rep == ["data.split"]:
        return "splits", "splits", "per-split"
    if rep == ["data.seed"]:
        return "data seeds", "data seeds", "per-data-seed"
    both = " × ".join(rep)
    return "runs", f"runs ({both})", f"per-run ({both})"


def has_paired(summary: Sequence[Mapping[str, Any]]) -> bool:
    return any(r.get("n_pairs") for r in summary)


def ref_label(reference: Mapping[str, str] | None) -> str:
    return group_label(reference or {"reg": "none"})
