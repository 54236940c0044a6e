"""Sweep statistics against hand computations and against scipy."""

import math

import pytest
from scipy import stats as sps

from dropbench.stats import betainc, group_keys, summarize, t_halfwidth, t_ppf, t_sf, welch_greater


@pytest.mark.parametrize("df", [1, 2, 3, 4.5, 9, 19, 29.3, 100, 2500])
def test_student_t_matches_scipy(df):
    for q in (0.6, 0.9, 0.95, 0.975, 0.995, 0.9995):
        assert t_ppf(q, df) == pytest.approx(sps.t.ppf(q, df), rel=1e-9)
        assert t_ppf(1 - q, df) == pytest.approx(sps.t.ppf(1 - q, df), rel=1e-9)
    for t in (-8.0, -1.5, 0.0, 0.3, 2.0, 6.0, 40.0):
        assert t_sf(t, df) == pytest.approx(sps.t.sf(t, df), rel=1e-9, abs=1e-300)
    assert betainc(2.5, 0.5, 0.3) == pytest.approx(sps.beta.cdf(0.3, 2.5, 0.5), rel=1e-12)


def test_t_interval_by_hand():
    # 1, 2, 3: mean 2, s = 1, t(0.975, 2) = 4.302653 -> 4.302653 / sqrt(3) = 2.484138
    assert t_halfwidth([1, 2, 3]) == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert math.isnan(t_halfwidth([5.0]))


def test_welch_matches_scipy():
    a, b = (0.14, 0.04, 20), (0.11, 0.03, 12)
    w = welch_greater(*a, *b)
    ref = sps.ttest_ind_from_stats(*a, *b, equal_var=False, alternative="greater")
    assert w.t == pytest.approx(ref.statistic, rel=1e-12) and w.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert math.isnan(welch_greater(0.1, 0.0, 1, 0.1, 0.01, 5).p), "one seed: no test"
    assert welch_greater(0.2, 0.0, 3, 0.1, 0.0, 3).p == 0.0 and welch_greater(0.1, 0.0, 3, 0.1, 0.0, 3).p == 1.0


def runs(rows):
    base = {"data": "noisy_linear", "model": "mlp", "optim": "adam", "status": "ok", "reason": "", "seconds": 1.0,
            "best_test_mse": 0.0, "best_epoch": 1}
    return [{**base, **r} for r in rows]


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
    s = {g["reg"]: g for g in summarize(df, keys)}
    assert s["none"]["n_seeds"] == 3 and s["dropout"]["n_seeds"] == 3 and s["dropout"]["failed"] == 1
    assert s["none"]["test_mean"] == pytest.approx(2.0)
    assert s["none"]["test_std"] == pytest.approx(1.0)
    assert s["none"]["test_ci"] == pytest.approx(2.484138, rel=1e-6)
    assert s["none"]["train_mean"] == pytest.approx(0.2) and s["none"]["train_std"] == pytest.approx(0.1)
    assert s["none"]["gap"] == pytest.approx(1.8)
    assert s["dropout"]["test_mean"] == pytest.approx(0.7) and s["dropout"]["rank"] == 1
    assert s["none"]["rank"] == 2
    assert [g["reg"] for g in summarize(df, keys)] == ["dropout", "none"], "sorted by rank"


def test_a_group_with_only_failures_has_no_rank():
    df = runs([{"run_id": "a", "reg": "none", "seed": 0, "final_train_mse": 0.1, "final_test_mse": 0.2},
               {"run_id": "b", "reg": "l1", "seed": 0, "final_train_mse": float("nan"), "final_test_mse": float("nan"), "status": "failed"}])
    s = summarize(df, ["reg"])
    assert [(g["reg"], g["rank"], g["n_seeds"], g["failed"]) for g in s] == [("none", 1, 1, 0), ("l1", None, 0, 1)]


def test_paired_difference_is_tighter_than_two_means():
    # Seed effects dominate (1, 5, 9, 13) but dropout is always 0.1 below: the paired interval is ~0.
    ref = [1.0, 5.0, 9.0, 13.0]
    drop = [v - 0.1 + e for v, e in zip(ref, [0.01, -0.01, 0.02, -0.02])]
    df = runs(
        [{"run_id": f"n{s}", "reg": "none", "seed": s, "p": None, "final_train_mse": 0.0, "final_test_mse": v} for s, v in enumerate(ref)]
        + [{"run_id": f"d{s}", "reg": "dropout", "seed": s, "p": 0.5, "final_train_mse": 0.0, "final_test_mse": v} for s, v in enumerate(drop)]
    )
    s = {g["reg"]: g for g in summarize(df, ["reg", "p"], {"reg": "none"})}
    d = [a - b for a, b in zip(drop, ref)]
    assert s["dropout"]["n_pairs"] == 4
    assert s["dropout"]["paired_diff"] == pytest.approx(sum(d) / 4)
    assert s["dropout"]["paired_ci"] == pytest.approx(t_halfwidth(d))
    assert s["dropout"]["paired_ci"] < s["dropout"]["test_ci"] / 50
    assert s["none"]["n_pairs"] == 0


def test_non_finite_values_give_nan_statistics_not_errors():
    """A damaged runs.csv can hold an ok run with an empty (NaN) or inf MSE."""
    rows = [{"reg": "none", "seed": s, "status": "ok", "final_train_mse": 0.1, "final_test_mse": v}
            for s, v in enumerate([0.1, 0.2, math.nan])]
    s = summarize(rows, ["reg"])[0]
    assert math.isnan(s["test_std"]) and math.isnan(s["test_ci"]) and math.isnan(s["test_mean"])
    assert s["train_mean"] == pytest.approx(0.1)
