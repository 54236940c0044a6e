"""A tuning as typed (`dropbench tune`, the API's tune()): its base overrides, grid, selection
metric and budget (Spec), and which runs.csv column the metric selects by."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dropbench.errors import UserError

# The metrics a selection can use: those the search runs measure on the validation rows (their
# "test" set). val_X is accepted for test_X.
METRICS = ("test_mse", "test_rmse", "test_mc_mse", "test_mc_rmse", "test_ll")


@dataclass(frozen=True)
class Spec:
    """A tuning as typed: the base overrides (out= aside), the grid, the selection metric, the
    per-method budget (--budget) and, for a published protocol, whose grids these are (`source`,
    said in every table of its final runs)."""

    overrides: tuple[str, ...]
    over: tuple[str, ...]
    metric: str
    better: str | None = None
    multirun: bool = False
    cwd: str = field(default_factory=os.getcwd)
    budget: int | None = None
    source: str | None = None  # e.g. "the published grids of uci_mc_dropout_2018"

    def to_dict(self) -> dict[str, Any]:
        d = {"overrides": list(self.overrides), "multirun": self.multirun, "over": list(self.over),
             "metric": self.metric, "better": self.better, "cwd": self.cwd}
        # Only where set: a tuning without them records what it always did.
        return {**d, **({"budget": self.budget} if self.budget is not None else {}),
                **({"source": self.source} if self.source else {})}

    def describe(self) -> str:
        over = " ".join(f"--over {o}" for o in self.over)
        budget = f" --budget {self.budget}" if self.budget is not None else ""
        better = f" --better {self.better}" if self.better else ""
        return " ".join(["dropbench tune", *(["-m"] if self.multirun else []), *self.overrides, *([over] if over else []),
                         f"--metric {self.metric}{budget}{better}"])

    def same_as(self, other: "Spec") -> bool:
        return (self.overrides, self.over, self.metric, self.better, self.multirun, self.budget) == \
               (other.overrides, other.over, other.metric, other.better, other.multirun, other.budget)


def make_spec(overrides: Sequence[str], over: Sequence[str], metric: str, better: str | None, multirun: bool,
              budget: int | None = None, source: str | None = None) -> tuple[Spec, Path | None]:
    """The spec and the out= folder given (None: a new results/<timestamp>)."""
    from dropbench.config import out_override

    outs = [out_override(o) for o in overrides if o.startswith("out=")]
    if len(outs) > 1:
        raise UserError("out= is given twice; give one folder")
    rest = tuple(o for o in overrides if not o.startswith("out="))
    return (Spec(rest, tuple(over), metric, better, multirun, budget=budget, source=source),
            (Path(outs[0]) if outs and outs[0] is not None else None))


def metric_column(metric: str, better: str | None) -> tuple[str, str, bool]:
    """(name, the runs.csv column, higher is better) of a selection metric."""
    from dropbench.analysis.metrics import higher_is_better

    name = metric.removeprefix("final_")
    if name.startswith("val_"):
        name = "test_" + name.removeprefix("val_")
    if name not in METRICS:
        raise UserError(f"unknown --metric {metric!r}: choose from {', '.join(METRICS)} (measured on the validation rows "
                        "in the search; val_ll is accepted for test_ll)")
    if better not in (None, "higher", "lower"):
        raise UserError(f"unknown --better {better!r}: choose higher or lower (default: by the metric's name)")
    return name, f"final_{name}", higher_is_better(name) if better is None else better == "higher"

