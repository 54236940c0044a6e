"""Sweep statistics against hand computations and against scipy."""

import math

import pytest
from scipy import stats as sps

from dropbench.analysis.grouping import group_keys, pooled_configs, pooled_note
from dropbench.analysis.platforms import UNRECORDED, platform_counts, platform_note
from dropbench.analysis.selection import at_epoch
from dropbench.analysis.significance import welch_greater
from dropbench.analysis.spread import t_halfwidth
from dropbench.analysis.summary import summarize
from dropbench.analysis.tdist import betainc, t_ppf, t_sf
from dropbench.provenance import IDENTITY_COLUMNS


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


def default_sweep(regs=("none", "l2", "l1", "dropout", "droppath"), seeds=3, **extra):
    """Rows as dropbench writes them for reg=...: p and reg.<name>.* only where they apply,
    model.residual turned on by droppath. Test MSE: 1 + seed + a level per reg."""
    level = {"none": 0.5, "l2": 0.3, "l1": 0.4, "dropout": 0.2, "droppath": 0.1}
    rows = []
    for reg in regs:
        for s in range(seeds):
            rows.append({"run_id": f"{reg}{s}", "reg": reg, "seed": s, "epochs": "200", "model.residual": str(reg == "droppath"),
                         "p": "0.5" if reg in ("dropout", "droppath") else "", "reg.dropout.p": "0.5" if reg == "dropout" else "",
                         "reg.l1.weight": "0.0001" if reg == "l1" else "", "final_train_mse": 0.1,
                         "final_test_mse": 1.0 + s + level[reg], **extra})
    return runs(rows)


def test_implied_columns_are_not_keys():
    """p, reg.dropout.p and reg.l1.weight only exist for some regs; droppath sets model.residual."""
    assert group_keys(default_sweep()) == ["reg"]
    rows = [{**r, "p": "0.3", "reg.dropout.p": "0.3"} if r["reg"] == "dropout" else r for r in default_sweep()]
    assert group_keys(rows) == ["reg", "p"], "dropout at 0.3, droppath at 0.5: p tells them apart, reg.dropout.p mirrors it"


def test_a_config_value_that_co_varies_with_reg_is_a_key_and_pairs_stay_within_a_config():
    """The issue's mixed folder: reg=l1 ran 100 epochs, the other regs 200."""
    rows = [{**r, "epochs": "100"} if r["reg"] == "l1" else r for r in default_sweep()]
    keys = group_keys(rows)
    assert keys == ["reg", "epochs"], "the 100-epoch l1 group must not look like the others"
    s = {g["reg"]: g for g in summarize(rows, keys, {"reg": "none"})}
    assert s["l1"]["n_pairs"] == 0 and math.isnan(s["l1"]["paired_diff"]), "no reg=none run of 100 epochs to pair with"
    assert s["l2"]["n_pairs"] == 3 and s["l2"]["paired_diff"] == pytest.approx(-0.2)
    assert s["droppath"]["n_pairs"] == 3, "model.residual differs from reg=none's because droppath sets it"
    # With reg=none at 100 epochs too, l1 pairs with it, and only with it.
    extra = [{**r, "run_id": r["run_id"] + "e", "epochs": "100", "final_test_mse": r["final_test_mse"] + 5}
             for r in default_sweep(("none",))]
    rows += extra
    s = {(g["reg"], g["epochs"]): g for g in summarize(rows, group_keys(rows), {"reg": "none"})}
    assert s[("l1", "100")]["n_pairs"] == 3 and s[("l1", "100")]["paired_diff"] == pytest.approx(-0.1 - 5)
    # A --by coarser than the config pools both epochs in one group, but each run still pairs
    # with the reference run of its own config; pooled_configs says what the groups mix.
    s = {g["reg"]: g for g in summarize(rows, ["reg"], {"reg": "none"})}
    assert s["l1"]["n_pairs"] == 3 and s["l1"]["paired_diff"] == pytest.approx(-0.1 - 5)
    assert pooled_configs(rows, ["reg"]) == {"epochs": ["100", "200"]}
    assert "epochs (100, 200)" in pooled_note(pooled_configs(rows, ["reg"]), ["reg"])
    assert pooled_configs(rows, group_keys(rows)) == {}


def test_ranks_and_pairs_stay_within_a_data_set():
    rows = default_sweep(("none", "l2"), data="noisy_sine") + [
        {**r, "run_id": r["run_id"] + "f", "data": "friedman1", "final_test_mse": r["final_test_mse"] * 10}
        for r in default_sweep(("none", "l2"))]
    keys = group_keys(rows)
    assert keys == ["data", "reg"]
    s = summarize(rows, keys, {"reg": "none"})
    assert [(g["data"], g["reg"], g["rank"]) for g in s] == [
        ("friedman1", "l2", 1), ("friedman1", "none", 2), ("noisy_sine", "l2", 1), ("noisy_sine", "none", 2)]
    assert s[0]["paired_diff"] == pytest.approx(-2.0) and s[2]["paired_diff"] == pytest.approx(-0.2)


def test_epoch_best_never_picks_a_nan_epoch():
    rows = runs([{"run_id": "a", "reg": "none", "seed": 0, "final_train_mse": 0.1, "final_test_mse": 0.3}])
    curves = [{"run_id": "a", "epoch": 50, "train_mse": math.nan, "test_mse": math.nan},
              {"run_id": "a", "epoch": 100, "train_mse": 0.2, "test_mse": 0.4},
              {"run_id": "a", "epoch": 150, "train_mse": 0.1, "test_mse": 0.3}]
    (r,) = at_epoch(rows, curves, "best")
    assert (r["final_train_mse"], r["final_test_mse"]) == (0.1, 0.3)


def test_platform_note_warns_for_two_recorded_platforms_only():
    a, b = ("2.13.0", "Some CPU", "AVX512", "cpu", ""), ("2.13.0", "Some CPU", "AVX2", "cpu", "")
    assert platform_note({a: {"runs": 5}}) is None and platform_note({UNRECORDED: {"runs": 5}}) is None
    warning = platform_note({a: {"runs": 3}, b: {"runs": 2}})
    assert warning.startswith("WARNING: these numbers come from 2 platforms") and "AVX2, cpu: 2 runs" in warning
    assert "AVX512, cpu: 3 runs" in warning
    assert platform_note({a: {"runs": 3}, UNRECORDED: {"runs": 2}}).startswith("note: some runs do not record")
    rows = [{"status": "ok", **dict(zip(IDENTITY_COLUMNS, a))}, {"status": "ok", "device": "cpu"}, {"status": "failed"}]
    assert platform_counts(rows) == {a: 1, UNRECORDED: 1}


def test_standard_error_is_the_literatures_population_sd_over_root_n():
    import numpy as np

    from dropbench.analysis.spread import std_error

    v = [0.3, 1.7, 2.2, 0.9, 5.0]
    assert std_error(v) == pytest.approx(np.std(v) / np.sqrt(len(v)), rel=1e-12), "numpy's default ddof=0, as PROTOCOL.md"
    assert math.isnan(std_error([1.0])) and math.isnan(std_error([1.0, math.nan]))


@pytest.mark.parametrize("name, higher", [("test_mse", False), ("test_rmse", False), ("test_ll", True), ("val_ll", True),
                                          ("test_nll", False), ("test_log_likelihood", True)])
def test_which_way_a_metric_is_better(name, higher):
    from dropbench.analysis.metrics import higher_is_better

    assert higher_is_better(name) is higher


def test_a_new_result_column_is_a_metric_not_a_grouping_key():
    from dropbench.analysis.metrics import resolve_metric

    rows = [{"run_id": f"r{i}", "reg": reg, "seed": s, "final_test_mse": 1.0 + i, "final_train_mse": 0.5,
             "final_test_rmse": 0.1 * i, "status": "ok"} for i, (reg, s) in enumerate([("none", 0), ("none", 1), ("l2", 0), ("l2", 1)])]
    assert group_keys(rows) == ["reg"]
    m = resolve_metric(rows, "test_rmse")
    assert (m.test, m.train, m.higher, m.label) == ("final_test_rmse", None, False, "test RMSE")


# ---- csv data sets: grouped by contents (data.sha256), named by their file -----------------------

SHA = {c: c * 64 for c in "abcdef"}  # fake sha256 values: "aaa...", "bbb...", ...


def csv_rows(*files: tuple[str, str], runs: int = 2) -> list[dict]:
    """`runs` runs of reg=none per (sha256, path) pair, seeds 0.., test MSE growing with the file."""
    return [{"data": "csv", "data.sha256": sha, "data.path": path, "reg": "none", "seed": s, "status": "ok",
             "final_train_mse": 0.1, "final_test_mse": 1.0 + i + s / 10}
            for i, (sha, path) in enumerate(files) for s in range(runs)]


@pytest.mark.parametrize("files, labels", [
    ([(SHA["a"], "/d/one.csv"), (SHA["b"], "/d/two.csv")], ["one.csv", "two.csv"]),
    ([(SHA["a"], "/x/a/data.csv"), (SHA["b"], "/x/b/data.csv")], ["a/data.csv", "b/data.csv"]),
    ([(SHA["a"], "/x/a.csv"), (SHA["b"], "/y/x/a.csv"), (SHA["c"], "/y/b.csv")], ["/x/a.csv", "y/x/a.csv", "b.csv"]),
    # one path, two contents: a file edited between sweeps
    ([(SHA["a"], "/d/data.csv"), (SHA["b"], "/d/data.csv")], ["data.csv@aaaaaaa", "data.csv@bbbbbbb"]),
    ([("1234567a" + "0" * 56, "/d/data.csv"), ("1234567b" + "0" * 56, "/d/data.csv")], ["data.csv@1234567a", "data.csv@1234567b"]),
    ([(SHA["a"], "")], ["aaaaaaaaaaaa"]),  # no path recorded
])
def test_file_labels_are_the_shortest_unambiguous_paths(files, labels):
    from dropbench.analysis.labels import file_labels

    assert file_labels(csv_rows(*files)) == {sha: label for (sha, _), label in zip(files, labels)}


def test_file_labels_name_a_copy_by_the_path_most_runs_used_and_skip_other_data():
    from dropbench.analysis.labels import file_labels

    rows = csv_rows((SHA["a"], "/d/b.csv"), runs=2) + csv_rows((SHA["a"], "/d/a.csv"), runs=1)
    rows += [{"data": "noisy_linear", "data.sha256": "", "reg": "none", "seed": 0}]
    assert file_labels(rows) == {SHA["a"]: "b.csv"}, "2 runs read it as /d/b.csv, 1 as /d/a.csv"
    assert file_labels(csv_rows((SHA["a"], "/d/b.csv"), (SHA["a"], "/d/a.csv"))) == {SHA["a"]: "a.csv"}, "a tie: the first path"


def test_csv_groups_stay_by_contents_and_are_named_by_file():
    from dropbench.analysis.labels import group_label

    # Two contents under one path, and one content under two paths: three runs' files, two groups.
    rows = csv_rows((SHA["b"], "/d/data.csv"), (SHA["a"], "/d/data.csv"), (SHA["b"], "/old/data.csv"))
    keys = group_keys(rows)
    assert keys == ["data.sha256"]
    groups = summarize(rows, keys)
    assert [(g["data.sha256"], g["data.file"], g["n_seeds"]) for g in groups] == [
        (SHA["a"], "data.csv@aaaaaaa", 2), (SHA["b"], "data.csv@bbbbbbb", 4)]
    assert "data.file" not in summarize(csv_rows((SHA["a"], "/d/x.csv")), ["reg"])[0], "only where the groups split by file"
    files = {SHA["a"]: "x.csv"}
    assert group_label({"reg": "l2", "data.sha256": SHA["a"]}, files) == "reg=l2 data.file=x.csv"
    assert group_label({"reg": "l2", "data.sha256": SHA["b"]}, files) == "reg=l2 data.sha256=bbbbbbbbbbbb"
    assert group_label({"reg": "l2", "data.sha256": SHA["b"]}) == f"reg=l2 data.sha256={SHA['b']}"


def test_csv_groups_are_ordered_by_file_name_not_hash():
    rows = csv_rows((SHA["a"], "/d/zeta.csv"), (SHA["b"], "/d/alpha.csv"))
    assert [g["data.file"] for g in summarize(rows, ["data.sha256"])] == ["alpha.csv", "zeta.csv"]
    pooled = pooled_configs(rows, ["reg"])
    assert pooled == {"data.sha256": ["alpha.csv", "zeta.csv"]}
