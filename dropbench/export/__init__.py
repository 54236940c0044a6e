"""Export a results folder to where researchers look: MLflow (export/mlflow.py) and TensorBoard
(export/tensorboard.py), one module per tracker, each a plain function of a folder.

The trackers are optional extras imported only inside the export functions, so `dropbench
--help` and `report` never load them. What the trackers share, reading the folder (a sweep still
running included: what has finished so far), lives here. A later export adds what an earlier
one lacked, matched by run_id, never anything twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dropbench.analysis.taxonomy import config_columns, key_str
from dropbench.columns import PLATFORM_COLUMNS
from dropbench.errors import UserError

Row = dict[str, Any]


@dataclass
class Folder:
    """A results folder as the exporters read it."""

    path: Path
    rows: list[Row]  # runs.csv (or, while a sweep runs, its run folders): every run, failed ones too
    curves: dict[str, list[Row]]  # run_id -> its evaluated epochs
    partial: str | None = None  # readback.Progress.note while a dropbench still writes the folder
    configs: dict[str, str] = field(default_factory=dict)  # run_id -> its config.yaml text, where stored

    @property
    def name(self) -> str:
        return self.path.resolve().name


@dataclass
class ExportResult:
    """What an export did: runs added, runs found already exported (skipped), and where."""

    added: list[str]
    skipped: list[str]
    where: str
    partial: str | None = None


def read_folder(folder: Path | str, rows: Sequence[Row] | None = None, curves: Sequence[Row] | None = None) -> Folder:
    """The folder's runs and curves (given, where the caller already read them: Sweep objects)."""
    from dropbench import locks, readback, results

    path = Path(folder)
    if rows is None:
        rows = readback.read_runs(path, partial=True)
    if curves is None:
        curves = readback.read_curves(path, partial=True)
    by_run: dict[str, list[Row]] = {}
    for c in curves:
        by_run.setdefault(c["run_id"], []).append(c)
    configs = {}
    for r in rows:
        f = path / results.RUNS_DIR / r["run_id"] / "config.yaml"
        try:
            configs[r["run_id"]] = f.read_text()
        except OSError:
            pass  # a folder written by hand, or copied without its run folders: runs.csv has the config's columns
    partial = readback.progress(path).note(path) if locks.is_partial(path) else None
    return Folder(path, list(rows), by_run, partial, configs)


def number(v: Any) -> float | None:
    """A finite float, or None (an empty cell, a metric the run does not compute, NaN)."""
    if isinstance(v, bool) or v is None or v == "":
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _flatten(d: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(d, dict):
        out: dict[str, str] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: "" if d is None else str(d)}


def params(folder: Folder, row: Row) -> dict[str, str]:
    """A run's flattened resolved config: the config columns runs.csv records (its group choices,
    reg=l2, and every dotted key), then what else its config.yaml holds."""
    import yaml

    out = {c: key_str(row.get(c)) for c in ["seed", *config_columns(folder.rows)] if key_str(row.get(c)) != ""}
    text = folder.configs.get(row["run_id"])
    if text is not None:
        try:
            flat = _flatten(yaml.safe_load(text))
        except yaml.YAMLError:
            flat = {}
        out.update({k: v for k, v in flat.items() if k not in out and v != ""})
    return out


def run_tags(row: Row) -> dict[str, str]:
    """run_id, status (and why a run failed) and the platform that computed it."""
    tags = {"run_id": row["run_id"], "status": key_str(row.get("status"))}
    if key_str(row.get("reason")):
        tags["reason"] = key_str(row["reason"])
    tags.update({c: key_str(row.get(c)) for c in PLATFORM_COLUMNS if key_str(row.get(c))})
    return tags


def final_metrics(row: Row) -> dict[str, float]:
    """The run's results that are numbers: final_*, best_*, seconds, kept epochs."""
    from dropbench.analysis.taxonomy import is_result

    return {k: x for k, v in row.items() if is_result(k) and k not in ("status", "reason") and (x := number(v)) is not None}


def curve_metrics(points: Sequence[Row]) -> list[tuple[str, float, int]]:
    """(metric, value, epoch) for every number a run's curve recorded."""
    out = []
    for p in points:
        for k, v in p.items():
            if k not in ("run_id", "epoch") and (x := number(v)) is not None:
                out.append((k, x, int(p["epoch"])))
    return out


def missing_extra(tracker: str, extra: str, e: ImportError) -> UserError:
    return UserError(f"exporting to {tracker} needs the {extra} extra ({e.name or extra} is not installed): "
                     f"pip install 'dropbench[{extra}]'")
