"""How fairly the methods of a table were tuned: each method's search budget and how often its
choice sat at an edge of its grid, read from a tuning's tuned.csv (dropbench/tune.py).

A method searched over more grid points wins more often on validation through selection alone, so
a table of tuned runs says each method's budget, and says so plainly where they differ. A choice
at an end of its grid may be where the grid stopped rather than where the data pointed: counted per
method. reg=none is the untuned baseline: listed, never counted as an unequal budget.

Standard library only (report and check read it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from dropbench.analysis.labels import group_label
from dropbench.analysis.taxonomy import DATA_SET_KEYS, key_str

UNTUNED = "none"  # reg=none: nothing of its own to tune


@dataclass
class Tuning:
    """The tuning a folder of final runs came from: tuned.csv's rows and tune.yaml's source."""

    rows: list[dict[str, Any]]  # tuned.csv
    source: str | None = None  # "the published grids of ...": said in every caption
    folder: str = ""


@dataclass
class Tally:
    """One group's (or method's) tuning: the grid points of each of its tuned runs, and how many
    of them chose a value at an end of a grid."""

    points: list[int] = field(default_factory=list)
    at_edge: int = 0

    @property
    def n(self) -> int:
        return len(self.points)

    def points_text(self) -> str:
        lo, hi = min(self.points), max(self.points)
        return str(lo) if lo == hi else f"{lo}–{hi}"


def _int(v: Any) -> int | None:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


def tallies(rows: Sequence[Mapping[str, Any]], tunings: Sequence[Tuning], keys: Sequence[str]) -> dict[tuple[str, ...], Tally]:
    """Per group of `keys` (as the summary forms them), the tuned.csv rows of its runs, joined on
    the final run's id."""
    by_id: dict[str, Mapping[str, Any]] = {}
    for t in tunings:
        for r in t.rows:
            if r.get("run_id"):
                by_id[str(r["run_id"])] = r
    out: dict[tuple[str, ...], Tally] = {}
    seen: set[str] = set()
    for r in rows:
        rid = str(r.get("run_id", ""))
        tr = by_id.get(rid)
        if tr is None or rid in seen or (points := _int(tr.get("grid_points"))) is None:
            continue
        seen.add(rid)
        t = out.setdefault(tuple(key_str(r.get(k)) for k in keys), Tally())
        t.points.append(points)
        t.at_edge += bool(key_str(tr.get("at_edge")))
    return out


def annotate(summary: list[dict[str, Any]], groups: Mapping[tuple[str, ...], Tally], keys: Sequence[str]) -> None:
    """Each summary group's grid_points (its runs' grid points, "4–12" where they differ),
    at_grid_edge (its tuned runs that chose an end of a grid) and n_tuned."""
    for s in summary:
        t = groups.get(tuple(key_str(s.get(k)) for k in keys))
        if t is not None and t.n:
            s.update(grid_points=t.points[0] if len(set(t.points)) == 1 else t.points_text(), at_grid_edge=t.at_edge, n_tuned=t.n)


def method_of(group: Mapping[str, Any], keys: Sequence[str]) -> str:
    """The method a group belongs to: its values of the keys that are not the data set's (the wide
    table's column)."""
    other = [k for k in keys if k not in DATA_SET_KEYS and k != "sweep"]
    if len(other) == 1:
        return key_str(group.get(other[0]))
    return group_label({k: key_str(group.get(k)) for k in other}) or "all runs"


def by_method(groups: Mapping[tuple[str, ...], Tally], keys: Sequence[str]) -> dict[str, Tally]:
    out: dict[str, Tally] = {}
    for values, t in groups.items():
        m = out.setdefault(method_of(dict(zip(keys, values)), keys), Tally())
        m.points += t.points
        m.at_edge += t.at_edge
    return out


def unequal(methods: Mapping[str, Tally]) -> bool:
    """Whether the tuned methods (reg=none aside) were given different numbers of grid points."""
    sizes = {p for name, t in methods.items() if name != UNTUNED for p in t.points}
    return len(sizes) > 1


def notes(methods: Mapping[str, Tally], sources: Sequence[str]) -> list[str]:
    """The caption lines: each method's budget (and whether they were equal), a published grid's
    provenance, and the edge hits per method."""
    if not methods:
        return []
    budget = ", ".join(f"{name} {t.points_text()}" + (" (nothing to tune)" if name == UNTUNED else "")
                       for name, t in methods.items())
    out = []
    if sources:
        out.append(f"tuned on {' and '.join(dict.fromkeys(sources))}, not on an equal budget per method: "
                   f"grid points per split {budget}")
    elif unequal(methods):
        out.append(f"warning: unequal tuning budgets, grid points per split {budget}; a method searched over more points "
                   "wins more often on validation through selection alone (dropbench tune --budget N gives each the same)")
    else:
        out.append(f"tuned per split with equal budgets: grid points {budget}")
    edges = ", ".join(f"{name} {t.at_edge}/{t.n}" for name, t in methods.items() if name != UNTUNED or t.at_edge)
    out.append(f"chosen at an end of its grid (the best value may lie beyond it), per method: {edges}")
    return out
