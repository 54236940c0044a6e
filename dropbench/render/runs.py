"""The table of runs: one line per run, what was run and how it ended."""

from __future__ import annotations

from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from dropbench.analysis import plugins
from dropbench.analysis.labels import file_labels
from dropbench.analysis.taxonomy import FILE_KEY, FILE_LABEL, key_str
from dropbench.render.naming import SINGLE_KEYS, common_non_default, config_label, non_default, settings_label, varying_keys
from dropbench.render.text import fmt


def runs_table(rows: Sequence[dict[str, Any]], title: str = "dropbench runs") -> Table:
    """One line per run: what was run, final train/test MSE, the gap and the best epoch.

    A single run is named by its data set and regularizer, every config value that differs
    from the defaults of its group choices (the overrides that made it) and its seed. Several
    runs are named by what distinguishes them; the caption gives the non-default values they
    share, and the notes of their regularizers (plugins.notes).
    """
    captions = []
    if len(rows) == 1:
        r = rows[0]
        diff = non_default(r)
        if diff is None:
            labels = [config_label(r, [k for k in SINGLE_KEYS if r.get(k) not in (None, "")])]
        else:
            named = {k: key_str(r.get(k)) for k in ("data", "reg") if key_str(r.get(k))}
            if sha := key_str(r.get(FILE_KEY)):  # a csv: its file, not its hash
                named[FILE_LABEL] = file_labels([r])[sha]
                diff = {k: v for k, v in diff.items() if k != FILE_KEY}
            labels = [" ".join(filter(None, [settings_label({**named, **diff}), f"seed={r['seed']}" if "seed" in r else ""]))]
    else:
        varying = varying_keys(rows) or [k for k in SINGLE_KEYS if any(r.get(k) not in (None, "") for r in rows)]
        files = file_labels(rows) if FILE_KEY in varying else {}
        labels = [config_label(r, varying, files) for r in rows]
        common = {k: v for k, v in common_non_default(rows).items() if k not in varying}
        if common:
            captions.append("every run: " + settings_label(common))
    notes = plugins.notes(r.get("reg") for r in rows)
    t = Table(title=title, header_style="bold", caption="\n".join([*captions, *notes]) or None)
    t.add_column("run_id", style="dim")
    t.add_column("config", ratio=1)
    # The best test MSE over the curve is chosen on the test set: an oracle's number, said so.
    stops = any(r.get("kept_epoch") not in (None, "") for r in rows)  # early stopping: where each run is reported
    for c in ("train MSE", "test MSE", "gap", *(["kept (stopped)"] if stops else []), "best test MSE (optimistic)", "at epoch"):
        t.add_column(c, justify="right")
    t.add_column("status")
    for r, label in zip(rows, labels):
        gap = r["final_test_mse"] - r["final_train_mse"]
        status = r["status"] if r["status"] == "ok" else f"[red]{r['status']}[/red]"
        kept = []
        if stops:
            k, st = (key_str(r.get(c)) for c in ("kept_epoch", "stopped_epoch"))
            kept = [f"{k} ({st})" if st else k]
        t.add_row(
            r["run_id"],
            label,
            fmt(r["final_train_mse"]),
            fmt(r["final_test_mse"]),
            fmt(gap),
            *kept,
            fmt(r["best_test_mse"]),
            str(r["best_epoch"]),
            status,
        )
    return t


def print_runs(rows: Sequence[dict[str, Any]], console: Console | None = None) -> None:
    (console or Console()).print(runs_table(rows))
