"""The summary as the literature prints it: a row per data set, a column per regularizer (or
whatever else the groups vary in), with the mean rank of each column over data sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from dropbench.analysis.labels import data_set_label, group_label
from dropbench.analysis.metrics import summary_metric
from dropbench.analysis.taxonomy import DATA_SET_KEYS, FILE_LABEL, key_str, sort_key

# What a wide record carries of each group, every spread at full precision.
WIDE_STATS = ("n_seeds", "failed", "test_mean", "test_std", "test_se", "test_ci", "test_interval", "rank",
              "paired_diff", "paired_std", "paired_se", "paired_ci", "paired_interval", "n_pairs", "selected_on", "test_selected",
              "grid_points", "at_grid_edge", "n_tuned")


@dataclass
class Wide:
    """Rows data sets, columns the other groups (regularizers): what papers print."""

    row_head: str
    rows: list[str]  # data set labels
    cols: list[str]  # group labels
    cells: dict[tuple[str, str], dict[str, Any]]  # (row, col) -> the summary row


def wide(summary: Sequence[dict[str, Any]], keys: Sequence[str], reference: Mapping[str, str] | None = None) -> Wide:
    """Pivot the summary: a row per data set (DATA_SET_KEYS among the keys), a column per
    value of the other keys (the reference group first, then in key order)."""
    data_keys = [k for k in keys if k in DATA_SET_KEYS]
    other = [k for k in keys if k not in DATA_SET_KEYS]
    row_of = lambda r: data_set_label({k: key_str(r.get(k)) for k in [*data_keys, FILE_LABEL] if k in r}) or "all runs"  # noqa: E731

    def col_of(r: dict[str, Any]) -> str:
        if len(other) == 1:
            return key_str(r[other[0]]) or f"{other[0]}=(unset)"
        return group_label({k: key_str(r[k]) for k in other})

    is_ref = lambda r: bool(reference) and all(key_str(r.get(k)) == v for k, v in (reference or {}).items())  # noqa: E731
    ordered = sorted(summary, key=lambda r: (not is_ref(r), [sort_key(r[k]) for k in other]))
    cols = list(dict.fromkeys(col_of(r) for r in ordered))
    rows = list(dict.fromkeys(row_of(r) for r in summary))  # the summary's data set order
    return Wide("data set", rows, cols, {(row_of(r), col_of(r)): r for r in summary})


def wide_keys(rows: Sequence[Mapping[str, Any]], keys: list[str]) -> tuple[list[str], list[str]]:
    """The wide table's keys: the data set's, then the others, less those that only follow the
    data set (the 2016 UCI protocol's per-data-set p and tau), which would give each data set a
    column of its own; `reg` names the columns even where it does not vary. Also those left out."""
    data_keys = [k for k in keys if k in DATA_SET_KEYS]
    by_set: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        by_set.setdefault(tuple(key_str(r.get(k)) for k in data_keys), []).append(r)
    follows = [k for k in keys if k not in DATA_SET_KEYS and len(by_set) > 1
               and all(len({key_str(r.get(k)) for r in rs}) == 1 for rs in by_set.values())
               and len({key_str(r.get(k)) for r in rows}) > 1]
    kept = [k for k in keys if k not in follows]
    if "reg" not in kept and any(key_str(r.get("reg")) for r in rows):
        kept.append("reg")
    return kept, follows


def mean_ranks(w: Wide) -> list[float | None]:
    """Each column's mean rank over the data sets that rank it (None where none does)."""
    out: list[float | None] = []
    for c in w.cols:
        ranks = [w.cells[(r, c)]["rank"] for r in w.rows if (r, c) in w.cells and w.cells[(r, c)]["rank"] is not None]
        out.append(sum(ranks) / len(ranks) if ranks else None)
    return out


def tuning_footer(w: Wide) -> list[list[str]]:
    """For tuned runs (analysis.budgets.annotate): each column's grid points per split and how many
    of its tuned runs chose an end of a grid, as rows under the table; [] for plain runs."""
    if not any("grid_points" in r for r in w.cells.values()):
        return []
    points, edges = ["grid points"], ["at grid edge"]
    for c in w.cols:
        cells = [w.cells[(r, c)] for r in w.rows if "grid_points" in w.cells.get((r, c), {})]
        points.append("/".join(dict.fromkeys(str(x["grid_points"]) for x in cells)))
        edges.append(f"{sum(x['at_grid_edge'] for x in cells)}/{sum(x['n_tuned'] for x in cells)}" if cells else "")
    return [points, edges]


def wide_records(summary: Sequence[dict[str, Any]], keys: Sequence[str], reference: Mapping[str, str] | None,
                 interval: str) -> list[dict[str, Any]]:
    """One record per data set: per group its statistics (WIDE_STATS), every spread at full precision."""
    w = wide(summary, keys, reference)
    out = []
    for row in w.rows:
        first = next(r for (rr, _), r in w.cells.items() if rr == row)
        rec: dict[str, Any] = {k: first[k] for k in keys if k in DATA_SET_KEYS}
        if FILE_LABEL in first:
            rec[FILE_LABEL] = first[FILE_LABEL]
        rec.update(metric=summary_metric(summary).name, interval=interval)
        for c in w.cols:
            r = w.cells.get((row, c))
            if r is not None:
                for k in WIDE_STATS:
                    if k in r:
                        rec[f"{c} {k}"] = r[k]
        out.append(rec)
    return out
