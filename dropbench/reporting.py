"""Rich tables for the terminal."""

from __future__ import annotations

import math
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def _config_label(row: dict[str, Any], varying: Sequence[str]) -> str:
    return " ".join(f"{k}={_fmt(row.get(k, ''))}" for k in varying)


def varying_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Config columns whose value differs between rows (what distinguishes the runs)."""
    from dropbench.results import RESULT_COLUMNS

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys and k not in RESULT_COLUMNS and k != "run_id"]
    return [k for k in keys if len({str(r.get(k)) for r in rows}) > 1]


def runs_table(rows: Sequence[dict[str, Any]], title: str = "dropbench runs") -> Table:
    """One line per run: what was run, final train/test MSE, the gap and the best epoch."""
    varying = varying_keys(rows) or ["reg"]
    t = Table(title=title, header_style="bold")
    t.add_column("run_id", style="dim")
    t.add_column("config")
    for c in ("train MSE", "test MSE", "gap (test-train)", "best test MSE", "best epoch"):
        t.add_column(c, justify="right")
    t.add_column("status")
    for r in rows:
        gap = r["final_test_mse"] - r["final_train_mse"]
        status = r["status"] if r["status"] == "ok" else f"[red]{r['status']}[/red]"
        t.add_row(
            r["run_id"],
            _config_label(r, varying),
            _fmt(r["final_train_mse"]),
            _fmt(r["final_test_mse"]),
            _fmt(gap),
            _fmt(r["best_test_mse"]),
            str(r["best_epoch"]),
            status,
        )
    return t


def print_runs(rows: Sequence[dict[str, Any]], console: Console | None = None) -> None:
    (console or Console()).print(runs_table(rows))
