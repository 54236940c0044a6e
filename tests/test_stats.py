"""Sweep statistics against hand computations."""

import math

import pandas as pd
import pytest

from dropbench.stats import group_keys, summarize, t_halfwidth


def test_t_interval_by_hand():
    # 1, 2, 3: mean 2, s = 1, t(0.975, 2) = 4.302653 -> 4.302653 / sqrt(3) = 2.484138
    assert t_halfwidth([1, 2, 3]) == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert math.isnan(t_halfwidth([5.0]))


def runs(rows):
    base = {"data": "noisy_linear", "model": "mlp", "optim": "adam", "status": "ok", "reason": "", "seconds": 1.0,
            "best_test_mse": 0.0, "best_epoch": 1}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_summary_groups_means_std_ci_gap_rank_and_failures():
    df = runs(
        [{"run_id": f"n{s}", "reg": "none", "seed": s, "p": None, "final_train_mse": tr, "final_test_mse": te}
         for s, (tr, te) in enumerate([(0.1, 1.0), (0.2, 2.0), (0.3, 3.0)])]
        + [{"run_id": f"d{s}", "reg": "dropout", "seed": s, "p": 0.5, "reg.dropout.p": 0.5, "final_train_mse": 0.2,
            "final_test_mse": te} for s, te in enumerate([0.5, 0.7, 0.9])]
        + [{"run_id": "d9", "reg": "dropout", "seed": 9, "p": 0.5, "reg.dropout.p": 0.5, "final_train_mse": float("nan"),
            "final_test_mse": float("nan"), "status": "failed", "reason": "diverged"}]
    )
    keys = group_keys(df)
    assert keys == ["reg"], "p and reg.dropout.p only vary with reg"
    s = summarize(df, keys).set_index("reg")
    assert s.loc["none", "n_seeds"] == 3 and s.loc["dropout", "n_seeds"] == 3 and s.loc["dropout", "failed"] == 1
    assert s.loc["none", "test_mean"] == pytest.approx(2.0)
    assert s.loc["none", "test_std"] == pytest.approx(1.0)
    assert s.loc["none", "test_ci"] == pytest.approx(2.484138, rel=1e-6)
    assert s.loc["none", "train_mean"] == pytest.approx(0.2) and s.loc["none", "train_std"] == pytest.approx(0.1)
    assert s.loc["none", "gap"] == pytest.approx(1.8)
    assert s.loc["dropout", "test_mean"] == pytest.approx(0.7) and s.loc["dropout", "rank"] == 1
    assert s.loc["none", "rank"] == 2


def test_paired_difference_is_tighter_than_two_means():
    # Seed effects dominate (1, 5, 9, 13) but dropout is always 0.1 below: the paired interval is ~0.
    ref = [1.0, 5.0, 9.0, 13.0]
    drop = [v - 0.1 + e for v, e in zip(ref, [0.01, -0.01, 0.02, -0.02])]
    df = runs(
        [{"run_id": f"n{s}", "reg": "none", "seed": s, "p": None, "final_train_mse": 0.0, "final_test_mse": v} for s, v in enumerate(ref)]
        + [{"run_id": f"d{s}", "reg": "dropout", "seed": s, "p": 0.5, "final_train_mse": 0.0, "final_test_mse": v} for s, v in enumerate(drop)]
    )
    s = summarize(df, ["reg", "p"], {"reg": "none"}).set_index("reg")
    d = [a - b for a, b in zip(drop, ref)]
    assert s.loc["dropout", "n_pairs"] == 4
    assert s.loc["dropout", "paired_diff"] == pytest.approx(sum(d) / 4)
    assert s.loc["dropout", "paired_ci"] == pytest.approx(t_halfwidth(d))
    assert s.loc["dropout", "paired_ci"] < s.loc["dropout", "test_ci"] / 50
    assert s.loc["none", "n_pairs"] == 0
