"""Which platforms computed the runs: the same config and seed give other last bits on another
torch build, CPU or device, so a table whose numbers mix platforms says so."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from dropbench.analysis.grouping import members
from dropbench.analysis.taxonomy import ok
from dropbench.provenance import IDENTITY_COLUMNS, describe, identity

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
        if ok(r):
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


def summary_platforms(rows: Sequence[Mapping[str, Any]], summary: list[dict[str, Any]], keys: Sequence[str]) -> str | None:
    """The note for a summary whose runs come from several platforms (platform_note); where any
    run records its platform, each group also gets a `platform` column (csv and json carry it)."""
    counts = platform_counts(rows)
    if any(i != UNRECORDED for i in counts):
        good = [r for r in rows if ok(r)]
        for s in summary:
            mine = platform_counts(members(good, {k: s[k] for k in keys}))
            s["platform"] = "; ".join(f"{describe_platform(i).split(' (')[0]}" + (f" ({n})" if len(mine) > 1 else "")
                                      for i, n in mine.items())
    return platform_note({i: {"runs": n} for i, n in counts.items()})
