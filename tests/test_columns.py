"""The CSV contract (dropbench/columns.py), pinned: scripts read these files by position and older
folders are read again, so a column is only ever appended. Changing a line here is changing the
contract: append, never rename, move or remove."""

from __future__ import annotations

import ast
from pathlib import Path

from dropbench import columns

CURVES = ("epoch", "train_mse", "test_mse", "train_loss", "train_rmse", "test_rmse", "test_mc_mse", "test_mc_rmse",
          "test_ll", "learned_p", "val_mse")
METRICS = ("final_train_mse", "final_test_mse", "final_train_rmse", "final_test_rmse", "final_test_mc_mse",
           "final_test_mc_rmse", "final_test_ll", "final_learned_p")


def test_the_columns_and_their_order_are_the_contract():
    assert columns.CURVE_COLUMNS == CURVES
    assert columns.CURVE_REQUIRED == CURVES[:4] and columns.SCORE_COLUMNS == CURVES[4:]
    assert columns.TEXT_COLUMNS == ("learned_p",)
    assert columns.LEAD_COLUMNS == ("run_id", "data", "model", "reg", "optim", "seed")
    assert columns.PLATFORM_COLUMNS == ("dropbench_version", "torch_version", "cpu", "cpu_capability", "gpu")
    assert columns.METRIC_COLUMNS == METRICS
    assert columns.RESULT_COLUMNS == (*METRICS, "best_test_mse", "best_epoch", "status", "reason", "seconds",
                                      "final_val_mse", "stopped_epoch", "kept_epoch", "effective_p")
    assert columns.FIT_COLUMNS == ("x", "y_pred")
    assert columns.BASELINE_STATS == ("n_seeds", "test_mean", "test_std", "train_mean", "train_std")
    assert (columns.BASELINE_METRIC, columns.BASELINE_META) == (("metric", "better"), ("config", "platform"))


def test_the_contract_imports_nothing():
    """Storage, the engines and the analysis all read it: it depends on none of them."""
    tree = ast.parse(Path(columns.__file__).read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [getattr(n, "module", None) for n in imports] == ["__future__"]
