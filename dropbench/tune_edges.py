"""A choice at the edge of its grid: which end of a key's grid a group chose (tuned.csv's
at_edge), counted per setting (EdgeHit) and warned where half of a setting's groups chose it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dropbench.tune_grid import value_of

if TYPE_CHECKING:
    from dropbench.config import RunConfig
    from dropbench.tune_grid import Group, Plan
    from dropbench.tuning import TuneOutcome

# ---- a choice at the edge of its grid --------------------------------------------------------
# A value chosen at the lowest or highest point of a numeric grid may have been stopped by the grid,
# not chosen by the data: the best value can lie beyond it. Counted in tuned.csv (at_edge) and the
# tune's summary; warned where it is the choice of at least half of a setting's groups. A grid of
# one or two values (or of words) has no inside, so no edge: every choice would sit on one.
MIN_EDGED_GRID = 3
EDGE_SHARE = 0.5


def _number(v: str) -> float | None:
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def edge_of(p: "Plan | Group", key: str, value: str) -> str | None:
    """"lowest" or "highest" where `value` is that end of `key`'s grid, else None (inside it, the
    key not used by the run, or a grid without an inside: fewer than 3 numbers, or words)."""
    nums = [_number(v) for v in p.grid.get(key, [])]
    v = _number(value) if value != "" else None
    if v is None or any(n is None for n in nums) or len(set(nums)) < MIN_EDGED_GRID:
        return None
    return "lowest" if v == min(nums) else "highest" if v == max(nums) else None  # type: ignore[type-var]


def at_edge(g: Group, chosen: "RunConfig | None") -> str:
    """tuned.csv's at_edge: key=lowest / key=highest for each key of the group's grid chosen at an end of it."""
    if chosen is None:
        return ""
    return " ".join(f"{k}={side}" for k in g.grid if (side := edge_of(g, k, value_of(chosen, k))))


@dataclass(frozen=True)
class EdgeHit:
    """How many of a setting's groups chose one end of a key's grid."""

    setting: dict[str, str]  # the swept base keys but seeds and splits (data set, regularizer, ...)
    key: str
    value: str
    side: str  # lowest | highest
    count: int
    of: int  # the setting's groups that chose a value of this key (tuned, and using the key)
    over: str  # what the groups are: splits, seeds or groups

    @property
    def warned(self) -> bool:
        return self.count >= EDGE_SHARE * self.of

    def message(self) -> str:
        where = f" of {' '.join(f'{k}={v}' for k, v in self.setting.items())}" if self.setting else ""
        beyond = "below" if self.side == "lowest" else "above"
        return (f"{self.key}={self.value} is the {self.side} value of its grid and was chosen in {self.count} of {self.of} "
                f"{self.over}{where}; extend the grid {beyond} it")



def setting_keys(t: TuneOutcome) -> list[str]:
    from dropbench.analysis.taxonomy import REPETITION_KEYS

    return [k for k in t.plan.swept if k not in REPETITION_KEYS]


def edge_hits(t: TuneOutcome) -> list[EdgeHit]:
    """Per setting, key and end of its grid, how many groups chose that end (only ends some group
    chose), in setting, key and grid order."""
    from dropbench.analysis.taxonomy import REPETITION_KEYS, sort_key

    keys = setting_keys(t)
    reps = [k for k in t.plan.swept if k in REPETITION_KEYS]
    over = {("data.split",): "splits", ("seed",): "seeds"}.get(tuple(reps), "groups")
    tally: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}
    # each row's grid: its group's, or the plan's where the groups are not at hand (a folder loaded from disk)
    choices = getattr(t, "choices", [])
    grids = [c.group for c in choices] if len(choices) == len(t.rows) else [t.plan] * len(t.rows)
    for r, g in zip(t.rows, grids):
        if not r.get("search_run_id"):  # no choice made
            continue
        setting = tuple(str(r[k]) for k in keys)
        for k in t.plan.over_keys:
            side = edge_of(g, k, str(r[k]))
            if r[k] == "" or (side is None and not _in_grid(g, k)):
                continue
            s = tally.setdefault((setting, k), {"of": 0, "hits": {}})
            s["of"] += 1
            if side is not None:
                s["hits"][(side, str(r[k]))] = s["hits"].get((side, str(r[k])), 0) + 1
    out = []
    for (setting, k), s in sorted(tally.items(), key=lambda kv: ([sort_key(v) for v in kv[0][0]], t.plan.over_keys.index(kv[0][1]))):
        for (side, value), n in sorted(s["hits"].items(), key=lambda kv: kv[0][0] != "lowest"):  # lowest end first
            out.append(EdgeHit(dict(zip(keys, setting)), k, value, side, n, s["of"], over))
    return out


def _in_grid(p: "Plan | Group", key: str) -> bool:
    """Whether the key's grid has ends at all (edge_of can say lowest or highest)."""
    nums = [_number(v) for v in p.grid.get(key, [])]
    return all(n is not None for n in nums) and len(set(nums)) >= MIN_EDGED_GRID


def edge_warnings(t: TuneOutcome) -> list[str]:
    """One line per key and end of its grid chosen in at least half of a setting's groups."""
    return [h.message() for h in edge_hits(t) if h.warned]

