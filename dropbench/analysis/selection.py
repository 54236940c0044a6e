"""Which point of its curve a run is reported at (`report --epoch final|best|N`, `--select-on`),
and what that choice was measured on: an epoch chosen on the test set is an optimistic number,
and the report says so."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from dropbench.analysis.labels import group_label
from dropbench.analysis.metrics import NOT_METRICS, Metric, higher_is_better
from dropbench.analysis.taxonomy import Row, columns_of, key_str, ok
from dropbench.errors import UserError

# Where a curve column is measured, by its prefix: what `report --epoch best` says it chose on.
MEASURED_ON = {"val_": "the validation rows", "train_": "the training rows", "test_": "the test set"}
VALIDATION_METRIC = "val_mse"  # what --epoch best chooses on where a run has validation rows


def parse_epoch(epoch: str) -> int | str:
    """An --epoch as given: final, best or an epoch number."""
    if epoch in ("final", "best"):
        return epoch
    try:
        n = int(epoch)
    except ValueError:
        n = -1
    if n < 0:
        raise UserError(f"invalid --epoch {epoch!r}: give final, best or an epoch number such as 100")
    return n


def measured_on(column: str) -> str:
    return next((where for prefix, where in MEASURED_ON.items() if column.startswith(prefix)), "its own rows")


def _finite(curve: Sequence[Mapping[str, Any]], column: str) -> bool:
    """Whether a run's curve records a number in `column` (old folders lack val_mse: empty)."""
    for c in curve:
        try:
            if not math.isnan(float(c.get(column, math.nan))):
                return True
        except (TypeError, ValueError):
            return False
    return False


def at_epoch(rows: Sequence[Mapping[str, Any]], curves: Sequence[Mapping[str, Any]], epoch: int | str,
             metric: Metric | None = None, select_on: str | None = None) -> list[Row]:
    """Runs with their final_X columns taken at another point of their curves (every curve
    column X that the runs also carry as final_X: train_mse, test_mse, ...).

    epoch: "final" (as stored), "best", or an epoch number that every successful run recorded.
    "best" takes each run at its best recorded value of a selection metric: `select_on` (a
    curve column) where given; else val_mse where the run has validation rows (early stopping's
    hold-out), else the reported metric itself (default test MSE: early stopping with an oracle,
    an optimistic number). Each run then carries `selected_on` (the column) and
    `test_selected` (whether it was measured on the test set).
    """
    if epoch == "final":
        if select_on is not None:
            raise UserError(f"--select-on {select_on} chooses each run's epoch: use it with --epoch best (not --epoch final)")
        return [dict(r) for r in rows]
    if select_on is not None and epoch != "best":
        raise UserError(f"--select-on {select_on} chooses each run's epoch: use it with --epoch best (not --epoch {epoch})")
    reported = metric.curve if metric else "test_mse"
    by_run: dict[str, list[Mapping[str, Any]]] = {}
    for c in curves:
        by_run.setdefault(str(c["run_id"]), []).append(c)
    recorded = [c for c in columns_of(curves[:1]) if c not in NOT_METRICS and c != "epoch"]
    if select_on is not None:
        select_on = select_on.removeprefix("final_")
        if curves and select_on not in recorded:
            raise UserError(f"--select-on {select_on}: curves.csv records no such metric; choose from {', '.join(recorded)}")
    elif curves and reported not in curves[0]:
        raise UserError(f"--epoch {epoch}: curves.csv records no {reported}; use --epoch final with --metric {metric.name if metric else reported}")
    copied = [c for c in columns_of(curves[:1]) if f"final_{c}" in columns_of(rows[:1])]
    out = []
    for r in rows:
        r = dict(r)
        if ok(r):
            curve = by_run.get(str(r["run_id"]), [])
            if epoch == "best":
                pick_by = select_on or (VALIDATION_METRIC if _finite(curve, VALIDATION_METRIC) else reported)
                if select_on is not None and curve and not _finite(curve, pick_by):
                    why = " (only runs with validation rows record it: reg=early_stopping)" if pick_by.startswith("val_") else ""
                    raise UserError(f"--select-on {pick_by}: run {r['run_id']} recorded none{why}; "
                                    "leave --select-on out to choose each run's epoch on its validation rows where it has them")
                higher = metric.higher if metric and pick_by == reported else higher_is_better(pick_by)
                sign = -1.0 if higher else 1.0
                # NaN last: a plain min() keeps a NaN it meets first (NaN < x is False).
                pick = min(curve, key=lambda c: (math.isnan(float(c[pick_by])), sign * float(c[pick_by])), default=None)
                r.update(selected_on=pick_by, test_selected=pick_by.startswith("test_"))
            else:
                pick = next((c for c in curve if int(c["epoch"]) == epoch), None)
            if pick is None:
                recorded = ", ".join(str(c["epoch"]) for c in curve[:12]) or "none"
                raise UserError(
                    f"--epoch {epoch}: run {r['run_id']} has no curve point there (recorded epochs: {recorded}); "
                    "choose a recorded epoch, final or best"
                )
            for c in copied:  # numbers as numbers; text (learned_p) as written
                r[f"final_{c}"] = pick[c] if c in NOT_METRICS else float(pick[c])
        out.append(r)
    return out


def test_chosen_metric_note(metric: Metric) -> str | None:
    """A WARNING where the compared metric itself was chosen on the test set (best_test_mse:
    each run's lowest test MSE over its evaluations)."""
    if not metric.test.startswith("best_test"):
        return None
    return (f"WARNING: {metric.test} is each run's best test value over its evaluations, chosen on the test set "
            "(optimistic); compare final_ metrics for honest numbers")


def selection_note(summary: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str | None:
    """What `--epoch best` chose each group's epochs on (at_epoch); a WARNING where that was the
    test set, naming the groups when only some were."""
    chosen = [s for s in summary if s.get("selected_on")]
    if not chosen:
        return None
    by = lambda cols: " and ".join(f"by {c} on {measured_on(c)}" for c in cols)  # noqa: E731
    honest = sorted({c for s in chosen if not s.get("test_selected") for c in str(s["selected_on"]).split("+")})
    tested = [s for s in chosen if s.get("test_selected")]
    if not tested:
        return f"each run's epoch chosen {by(honest)}, never on the test rows"
    cols = sorted({c for s in tested for c in str(s["selected_on"]).split("+") if c.startswith("test_")})
    what = f"WARNING: epoch chosen on the test set (optimistic): each run at its best {' and '.join(cols)}"
    if len(tested) == len(chosen):
        return what
    names = "; ".join(group_label({k: key_str(s.get(k)) for k in keys}) for s in tested)
    return f"{what} in {names}; the other groups' chosen {by(honest)} (column selected_on)"
