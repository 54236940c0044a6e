"""What an engine gives back for one run: its curve, its scores and how it ended.

RunResult holds what the run measured, as the CSV contract (dropbench/columns.py) lays it out;
results.py stores it, the engines fill it (engines/loop.py keeps the rules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from dropbench.columns import CURVE_COLUMNS, SCORE_COLUMNS, TEXT_COLUMNS

if TYPE_CHECKING:
    from dropbench.config import RunConfig


@dataclass
class RunResult:
    """One finished run: its eval curve and how it ended."""

    cfg: "RunConfig"
    curve: list[tuple[int, float, float, float]] = field(default_factory=list)  # CURVE_REQUIRED
    scores: list[tuple] = field(default_factory=list)  # SCORE_COLUMNS of each curve row (add_eval)
    fit: list[tuple[float, float]] = field(default_factory=list)  # (x, y_pred) on FIT_POINTS, 1-D data only
    status: str = "ok"  # ok | failed
    reason: str = ""
    seconds: float = 0.0
    # A loop-slot regularizer's decisions (engines/loop.py): the curve row the run is reported at
    # (None: the last; its final_* are that row's, as if its weights were restored there) and the
    # epoch it stopped at (None: it trained every epoch).
    kept: int | None = None
    stopped: int | None = None

    @property
    def run_id(self) -> str:
        return self.cfg.run_id

    def add_eval(self, epoch: int, train_mse: float, test_mse: float, train_loss: float, y_std: float,
                 mc_mse: float | None = None, ll: float | None = None, learned: Sequence[float] | None = None,
                 val_mse: float | None = None) -> None:
        """Record one evaluation: the RMSEs are sqrt(MSE) in the target's original units."""
        row = curve_row(epoch, train_mse, test_mse, train_loss, y_std, mc_mse, ll, learned, val_mse)
        self.curve.append(row[:4])
        self.scores.append(row[4:])

    def column(self, name: str) -> list[Any]:
        """One curve column's values, oldest evaluation first."""
        i = CURVE_COLUMNS.index(name)
        return [row[i] for row in self.rows()]

    def rows(self) -> list[tuple]:
        """The curve as CURVE_COLUMNS rows (scores not recorded are None)."""
        blank = (None,) * len(SCORE_COLUMNS)
        return [(*c, *(self.scores[i] if i < len(self.scores) else blank)) for i, c in enumerate(self.curve)]

    def summary(self) -> dict[str, float | int | None]:
        """The final_<column> of the curve row the run is reported at (the last, or the one a
        loop-slot regularizer kept), best test MSE and its epoch (over every evaluation), and the
        epochs a loop-slot regularizer stopped at and kept (None without one). A metric the run
        does not compute (no eval.mc_samples, no eval.tau, no validation rows) is None; one it
        computes but never reached (no finite evaluation) is NaN."""
        nan = float("nan")
        rows = self.rows()
        at = rows[self.kept if self.kept is not None and self.kept < len(rows) else -1] if rows else ()
        last = dict(zip(CURVE_COLUMNS, at))
        wanted = computed(self.cfg)
        out: dict[str, float | int | None] = {
            f"final_{c}": nan if wanted[c] and last.get(c) is None else last.get(c) if wanted[c] else None
            for c in CURVE_COLUMNS[1:] if c != "train_loss" and c not in TEXT_COLUMNS
        }
        out.update({f"final_{c}": last.get(c) for c in TEXT_COLUMNS})
        stops = {"stopped_epoch": self.stopped, "kept_epoch": last.get("epoch") if self.kept is not None else None}
        if not self.curve:
            return {**out, "best_test_mse": nan, "best_epoch": -1, **stops}
        best = min(self.curve, key=lambda r: (r[2] != r[2], r[2]))  # NaN sorts last
        return {**out, "best_test_mse": best[2], "best_epoch": best[0], **stops}


def computed(cfg: "RunConfig") -> dict[str, bool]:
    """Which curve columns a run fills: MC ones with eval.mc_samples > 0, test_ll with eval.tau,
    val_mse with validation rows (a loop-slot regularizer's hold-out)."""
    ev = getattr(cfg, "eval", None)
    mc = bool(ev is not None and ev.mc_samples > 0)
    ll = bool(ev is not None and ev.tau is not None)
    val = bool(getattr(cfg, "reg", None) is not None and _holds_out(cfg))
    return {c: (mc if "_mc_" in c else ll if c == "test_ll" else val if c == "val_mse" else True) for c in CURVE_COLUMNS}


def _holds_out(cfg: "RunConfig") -> bool:
    from dropbench import regs

    return regs.holdout_fraction(cfg.reg) > 0


def curve_row(epoch: int, train_mse: float, test_mse: float, train_loss: float, y_std: float,
              mc_mse: float | None = None, ll: float | None = None, learned: Sequence[float] | None = None,
              val_mse: float | None = None) -> tuple:
    """One curve row (CURVE_COLUMNS): the RMSEs are sqrt(MSE) in the target's original units."""
    to_rmse = lambda m: math.sqrt(m) * y_std if m == m and m >= 0 else float("nan")  # noqa: E731
    mc_rmse = None if mc_mse is None else to_rmse(mc_mse)
    text = None if not learned else " ".join(repr(float(v)) for v in learned)
    return (epoch, train_mse, test_mse, train_loss, to_rmse(train_mse), to_rmse(test_mse), mc_mse, mc_rmse, ll, text, val_mse)
