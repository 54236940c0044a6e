"""The metric a summary compares: its runs.csv column, its train counterpart, which way is better."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from dropbench.analysis.taxonomy import LOCATION_COLUMNS, SELECTION_COLUMNS, WHERE_COLUMNS, columns_of, config_columns
from dropbench.columns import PLATFORM_COLUMNS, TEXT_COLUMNS
from dropbench.errors import UserError

# A metric whose name ends so is better when higher (log-likelihood, R², accuracy); every
# other one (MSE, RMSE, NLL, ...) when lower.
HIGHER_IS_BETTER_SUFFIXES = ("_ll", "loglik", "log_likelihood", "_r2", "_acc", "accuracy")
WORDS = {"mc": "MC", "mse": "MSE", "rmse": "RMSE", "mae": "MAE", "ll": "log-likelihood", "nll": "NLL", "r2": "R²"}
# Columns that are never metrics, whatever they hold.
NOT_METRICS = {"run_id", "seed", "sweep", "status", "reason", "seconds", "best_epoch", "stopped_epoch", "kept_epoch",
               *SELECTION_COLUMNS, *PLATFORM_COLUMNS,
               *TEXT_COLUMNS, *(f"final_{c}" for c in TEXT_COLUMNS)}  # learned rates: text, one value per layer
DEFAULT_METRIC = "test_mse"


@dataclass(frozen=True)
class Metric:
    """What the summary's test statistics are computed from, and which way is better."""

    name: str  # as given: test_mse
    test: str  # its runs.csv column: final_test_mse
    train: str | None  # the train counterpart's column (final_train_mse), None where runs lack one
    higher: bool  # higher is better (log-likelihood)

    @property
    def label(self) -> str:
        return metric_label(self.name)

    @property
    def train_label(self) -> str:
        return metric_label(self.name.replace("test", "train", 1))

    @property
    def curve(self) -> str:
        """Its column in curves.csv: test_mse for final_test_mse."""
        return self.test.removeprefix("final_")


MSE = Metric(DEFAULT_METRIC, "final_test_mse", "final_train_mse", False)  # what a summary compares unless told


def metric_label(name: str) -> str:
    """test_mse -> "test MSE", test_ll -> "test log-likelihood"."""
    return " ".join(WORDS.get(w, w) for w in name.removeprefix("final_").split("_"))


def higher_is_better(name: str) -> bool:
    return name.lower().endswith(HIGHER_IS_BETTER_SUFFIXES)


def canonical_metric(name: str) -> str:
    """A metric as a baseline records it and options compare it: final_test_ll is test_ll."""
    return name.removeprefix("final_")


def metric_choices(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metrics the rows carry: final_X as X, other numeric result columns as they are."""
    config = set(config_columns(rows)) | set(WHERE_COLUMNS) | set(LOCATION_COLUMNS)
    out = []
    for c in columns_of(rows):
        if c in NOT_METRICS or c in config:
            continue
        out.append(c.removeprefix("final_"))
    return out


def _metric_column(rows: Sequence[Mapping[str, Any]], name: str) -> str | None:
    cols = set(columns_of(rows))
    for c in (f"final_{name}", name):
        if c in cols and c not in NOT_METRICS and c not in config_columns(rows):
            return c
    return None


def resolve_metric(rows: Sequence[Mapping[str, Any]], name: str = DEFAULT_METRIC, better: str | None = None) -> Metric:
    """The metric `name` (test_mse, test_rmse, test_ll, best_test_mse, ...) as the rows carry it:
    column final_NAME, else NAME. better: "higher", "lower" or None (by the name: a log-likelihood
    is better higher, see HIGHER_IS_BETTER_SUFFIXES)."""
    if better not in (None, "higher", "lower"):
        raise UserError(f"unknown --better {better!r}: choose higher or lower (default: by the metric's name)")
    column = _metric_column(rows, name)
    if column is None:
        raise UserError(f"unknown --metric {name!r}: these runs carry {', '.join(metric_choices(rows)) or 'no metric'}")
    train = _metric_column(rows, name.replace("test", "train", 1)) if "test" in name else None
    for r in rows:
        if r.get("status") == "ok":
            try:
                float(r.get(column))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise UserError(f"--metric {name}: run {r.get('run_id')} has {column}={r.get(column)!r}, not a number; choose a numeric column") from None
    values = [float(r[column]) for r in rows if r.get("status") == "ok"]
    if values and all(math.isnan(v) for v in values):
        how = "the log-likelihood needs eval.tau=VALUE" if "_ll" in column else "MC metrics need eval.mc_samples=T" if "_mc_" in column else ""
        raise UserError(f"--metric {name}: no run computed {column} (empty in runs.csv)" + (f"; {how} when the runs are trained" if how else ""))
    return Metric(name, column, train, higher_is_better(name) if better is None else better == "higher")


def summary_metric(summary: Sequence[Mapping[str, Any]]) -> Metric:
    """The metric a summary's records are of (summary.summarize writes its name and direction
    into each); its train side is present or not, as the records' train_mean says."""
    name = next((r["metric"] for r in summary if r.get("metric")), DEFAULT_METRIC)
    higher = next((bool(r["higher_is_better"]) for r in summary if "higher_is_better" in r), False)
    has_train = any(not (isinstance(r.get("train_mean"), float) and math.isnan(r["train_mean"])) for r in summary) or not summary
    return Metric(name, f"final_{name}", "train" if has_train else None, higher)
