"""The running best and worst groups of a sweep being trained: the line `dropbench run` shows
under its progress bar on a terminal, so a long sweep says early which way it is going.

Groups are the report's (the swept keys but the seed, analysis.grouping), known from the plan;
each stored run's score is read from its result.json, the row runs.csv will hold. No torch:
the line is built in the process that draws the bar, not in the workers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from dropbench.analysis.grouping import group_keys
from dropbench.analysis.labels import group_label
from dropbench.analysis.taxonomy import key_str
from dropbench.results import config_row

if TYPE_CHECKING:
    from dropbench.config import RunConfig

METRIC = "final_test_mse"  # lower is better, as the report's default


class Leaderboard:
    """Mean final test MSE per group over the runs stored so far; `line()` names the best and the
    worst once two groups have a finished run."""

    def __init__(self, cfgs: Sequence["RunConfig"], out: Path | None = None) -> None:
        rows = [config_row(c) for c in cfgs]
        keys = group_keys(rows)
        self.out = None if out is None else Path(out)
        self.group = {r["run_id"]: group_label({k: key_str(r.get(k)) for k in keys}) for r in rows}
        self.scores: dict[str, list[float]] = {}

    def into(self, out: Path) -> None:
        """The folder the runs are stored in (runner.execute's on_folder: known once made)."""
        self.out = Path(out)

    def add(self, run_id: str, status: str) -> None:
        """A run was stored: its score joins its group's (a failed run's does not)."""
        if status != "ok" or run_id not in self.group or self.out is None:
            return
        try:
            value = json.loads((self.out / "runs" / run_id / "result.json").read_text()).get(METRIC)
        except (OSError, ValueError):
            return  # the line is a glimpse; the report reads the folder properly
        if isinstance(value, (int, float)) and math.isfinite(value):
            self.scores.setdefault(self.group[run_id], []).append(float(value))

    def line(self) -> str:
        if len(self.scores) < 2:
            return ""
        means = sorted((sum(v) / len(v), g, len(v)) for g, v in self.scores.items())
        (best, b, nb), (worst, w, nw) = means[0], means[-1]
        return f"test MSE so far: best {b} {best:.4g} (n={nb}), worst {w} {worst:.4g} (n={nw})"
