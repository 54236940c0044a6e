"""Rich tables for the terminal."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def _cell(v: Any) -> str:
    """A key's value; empty where the column does not apply to the group (NaN in the CSV)."""
    from dropbench.stats import key_str

    return key_str(v)


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


def summary_table(summary: "pd.DataFrame", keys: Sequence[str], title: str = "dropbench sweep summary") -> Table:
    """One line per group (see stats.summarize); the best group (rank 1) is highlighted."""
    t = Table(title=title, header_style="bold", caption="test: mean ± 95% t-interval over seeds; paired: per-seed difference to the reference group")
    for k in keys:
        t.add_column(k)
    for c in ("seeds", "train MSE (mean ± std)", "test MSE (mean ± 95% CI)", "gap", "rank"):
        t.add_column(c, justify="right")
    paired = "paired_diff" in summary.columns and summary["n_pairs"].gt(0).any()
    if paired:
        t.add_column("vs reg=none (paired, 95% CI)", justify="right")
    for _, r in summary.iterrows():
        seeds = f"{r['n_seeds']}" + (f" [red]({r['failed']} failed)[/red]" if r["failed"] else "")
        cells = [_cell(r[k]) for k in keys] + [
            seeds,
            f"{_fmt(r['train_mean'])} ± {_fmt(r['train_std'], 2)}",
            f"{_fmt(r['test_mean'])} ± {_fmt(r['test_ci'], 2)}",
            _fmt(r["gap"]),
            _cell(r["rank"]) or "-",
        ]
        if paired:
            cells.append("" if not r["n_pairs"] else f"{r['paired_diff']:+.4g} ± {_fmt(r['paired_ci'], 2)}")
        best = _cell(r["rank"]) == "1"
        t.add_row(*cells, style="bold green" if best else None)
    return t
