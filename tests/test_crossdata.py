"""Tests across data sets (Friedman, Wilcoxon-Holm, Nemenyi, cliques), the critical-difference
diagram, and a published table beside ours: against Demšar (JMLR 2006)'s worked example, scipy
called directly on the same table, and hand computations."""

import csv
import io
import json
import math

import pytest
from typer.testing import CliRunner

from conftest import write_sweep
from dropbench.analysis import crossdata
from dropbench.analysis.crossdata import cross_stats, holm
from dropbench.cli import app
from dropbench.errors import UserError

runner = CliRunner()

# Demšar 2006, Table 6: AUC of C4.5 and three tuned variants on 14 UCI data sets (section 3.2.2).
NAMES = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]
AUC = [
    [0.763, 0.768, 0.771, 0.798], [0.599, 0.591, 0.590, 0.569], [0.954, 0.971, 0.968, 0.967], [0.628, 0.661, 0.654, 0.657],
    [0.882, 0.888, 0.886, 0.898], [0.936, 0.931, 0.916, 0.931], [0.661, 0.668, 0.609, 0.685], [0.583, 0.583, 0.563, 0.625],
    [0.775, 0.838, 0.866, 0.875], [1.000, 1.000, 1.000, 1.000], [0.940, 0.962, 0.965, 0.962], [0.619, 0.666, 0.614, 0.669],
    # voting: the paper ranks C4.5+cf 2nd and C4.5+m+cf 3rd, both printed 0.975 (their unrounded AUCs differ)
    [0.972, 0.981, 0.9751, 0.975], [0.957, 0.978, 0.946, 0.970],
]
SETS = ["adult", "breast cancer", "breast cancer wisconsin", "cmc", "ionosphere", "iris", "liver disorders", "lung cancer",
        "lymphography", "mushroom", "primary tumor", "rheum", "voting", "wine"]


def demsar(posthoc="nemenyi", alpha=0.05):
    return cross_stats(SETS, NAMES, AUC, "auc", True, posthoc, alpha)


def test_demsars_worked_example():
    s = demsar()
    # The paper's average ranks, chi²_F = 9.28 and F_F = 3.69 (its formula, without a tie correction).
    assert [round(r, 3) for r in s.mean_ranks] == [3.143, 2.000, 2.893, 1.964]
    n, k = 14, 4
    chi = 12 * n / (k * (k + 1)) * (sum(r * r for r in s.mean_ranks) - k * (k + 1) ** 2 / 4)
    assert chi == pytest.approx(9.28, abs=0.005) and (n - 1) * chi / (n * (k - 1) - chi) == pytest.approx(3.69, abs=0.005)
    # Ours is corrected for ties, as scipy's: iris, lung cancer and primary tumor tie two groups, mushroom all four.
    ties = 1 - (3 * (2**3 - 2) + (4**3 - 4)) / (n * k * (k * k - 1))
    f = s.friedman
    assert f.statistic == pytest.approx(chi / ties, rel=1e-12) and f.df == 3 and f.f_df == (3, 39)
    assert f.f == pytest.approx((n - 1) * f.statistic / (n * (k - 1) - f.statistic), rel=1e-12)
    # Nemenyi: q_0.05 = 2.569 for k = 4, CD = 1.25; not even best against worst (1.179) is told apart.
    assert crossdata.nemenyi_q(4, 0.05) == pytest.approx(2.569, abs=5e-4)
    assert s.cd == pytest.approx(1.25, abs=0.005) and not any(p.different for p in s.pairs)
    assert s.cliques == [["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]]
    # At alpha 0.10 (q = 2.291, CD = 1.12): C4.5 is worse than C4.5+m and C4.5+m+cf, and C4.5+cf
    # belongs to neither group for sure: the two bars of the paper's Figure 1(a).
    s10 = demsar(alpha=0.10)
    assert crossdata.nemenyi_q(4, 0.10) == pytest.approx(2.291, abs=5e-4) and s10.cd == pytest.approx(1.12, abs=0.005)
    assert {(p.a, p.b) for p in s10.pairs if p.different} == {("C4.5+m+cf", "C4.5"), ("C4.5+m", "C4.5")}
    assert s10.cliques == [["C4.5+m+cf", "C4.5+m", "C4.5+cf"], ["C4.5+cf", "C4.5"]]


def test_friedman_and_wilcoxon_are_scipys_on_the_same_table():
    from scipy import stats

    s = demsar("wilcoxon")
    cols = [[row[j] for row in AUC] for j in range(4)]
    direct = stats.friedmanchisquare(*cols)
    assert s.friedman.statistic == direct.statistic and s.friedman.p == direct.pvalue
    assert s.friedman.f_p == pytest.approx(stats.f.sf(s.friedman.f, 3, 39), rel=1e-12)
    for p in s.pairs:
        a, b = NAMES.index(p.a), NAMES.index(p.b)
        w = stats.wilcoxon(cols[a], cols[b])
        assert (p.statistic, p.p) == (w.statistic, w.pvalue)
    # Holm by hand: the i-th smallest of the 6 p-values times 6 - i + 1 (i from 1), non-decreasing, at most 1.
    raw = sorted(p.p for p in s.pairs)
    by_hand, running = [], 0.0
    for i, p in enumerate(raw):
        running = max(running, min(1.0, (6 - i) * p))
        by_hand.append(running)
    assert sorted(p.p_adjusted for p in s.pairs) == pytest.approx(by_hand, rel=1e-12)
    assert all(p.different == (p.p_adjusted < 0.05) for p in s.pairs)
    # C4.5+m against C4.5: better on 10 data sets, tied on 2 (lung cancer, mushroom), worse on 2.
    m = next(p for p in s.pairs if {p.a, p.b} == {"C4.5+m", "C4.5"})
    assert (m.a, m.wins) == ("C4.5+m", (10, 2, 2))


def test_holm_by_hand():
    # sorted: .005*4 = .02, .01*3 = .03, .03*2 = .06, .04*1 = .04 -> .06 (never below the step before)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_minimum_data_sets():
    # A two-sided signed-rank test's smallest p over n data sets is 2/2^n: 1/16 at 5, 1/32 at 6.
    assert crossdata.wilcoxon_min_data_sets(0.05) == 6 and crossdata.wilcoxon_min_data_sets(0.01) == 8
    # Friedman's largest chi² is n(k-1); it must pass chi²_0.95(k-1) (5.99 for k=3: n = 3).
    assert crossdata.friedman_min_data_sets(3, 0.05) == 3
    assert crossdata.nemenyi_min_data_sets(4, 0.05) == 3  # CD(4, 3) = 2.569 * sqrt(20/18) = 2.71 < 3


@pytest.mark.parametrize("scores, groups, says", [
    ([[1.0, 2.0, 3.0]] * 5, ["a", "b", "c"], "need at least 6 data sets for 3 groups; these runs have 5"),
    ([[1.0, 1.0, 1.0]] * 6, ["a", "b", "c"], "every data set ties all 3 groups on test_mse: there is nothing to rank"),
    ([[1.0, 2.0, 3.0]] * 5 + [[1.0, None, 3.0]], ["a", "b", "c"], "d5 has no test_mse for b"),
    ([[1.0, 2.0]] * 8, ["a", "b"], "compare 3 or more groups, these runs have 2"),
])
def test_refusals_are_one_line(scores, groups, says):
    with pytest.raises(UserError) as e:
        cross_stats([f"d{i}" for i in range(len(scores))], groups, scores, "test_mse", False)
    assert says in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="unknown --posthoc 'tukey'"):
        cross_stats(SETS, NAMES, AUC, "auc", True, "tukey")


def test_a_pair_equal_everywhere_has_p_one():
    rows = [[1.0 + i, 1.0 + i, 2.0 + i] for i in range(6)]
    s = cross_stats([f"d{i}" for i in range(6)], ["a", "b", "c"], rows, "test_mse", False)
    ab = next(p for p in s.pairs if {p.a, p.b} == {"a", "b"})
    assert ab.p == 1.0 and ab.statistic is None and ab.wins == (0, 6, 0) and not ab.different


# --- in the report -------------------------------------------------------------------------------

def uci_folder(tmp_path, sets=6, name="uci"):
    """data=uci on `sets` data sets x 2 splits: l2 beats none on every data set, dropout beats
    none on all but the last; the means per data set are known (offsets plus split 0.0 / 0.1)."""
    rows = []
    for i in range(sets):
        for split in range(2):
            for reg, off in (("none", 0.3), ("dropout", 0.1 if i < sets - 1 else 0.4), ("l2", 0.2 - 0.01 * i)):
                rows.append({"data": "uci", "data.dataset": f"set{i}", "data.split": split, "seed": 0, "reg": reg,
                             "final_train_mse": 0.1, "final_test_mse": 1.0 + i + off + 0.1 * split,
                             "final_test_mc_rmse": 2.0 + i + off})
    return write_sweep(tmp_path / name, rows)


def test_the_wide_report_carries_the_tests_in_every_format(tmp_path):
    from scipy import stats

    d = str(uci_folder(tmp_path))
    res = runner.invoke(app, ["report", d, "--layout", "wide", "--format", "markdown"])
    assert res.exit_code == 0, res.output
    md = res.stdout
    means = {reg: [1.0 + i + off + 0.05 for i, off in enumerate(offs)] for reg, offs in
             (("none", [0.3] * 6), ("dropout", [0.1] * 5 + [0.4]), ("l2", [0.2 - 0.01 * i for i in range(6)]))}
    direct = stats.friedmanchisquare(means["none"], means["dropout"], means["l2"])
    assert f"Friedman: chi²(2) = {direct.statistic:.4g}, p = {direct.pvalue:.2g}" in md
    assert "across 6 data sets: test MSE, each data set's mean over its splits and seeds" in md
    assert "| l2 | none | 1.83 vs 2.83 | 6/0/0 | 0 | 0.031 | 0.094 |  |" in md, md
    records = json.loads(runner.invoke(app, ["report", d, "--layout", "wide", "--format", "json"]).stdout)
    assert [r["data.dataset"] for r in records if "table" not in r] == [f"set{i}" for i in range(6)]
    fr = next(r for r in records if r.get("table") == "friedman")
    assert fr["statistic"] == pytest.approx(direct.statistic) and fr["df"] == 2 and fr["posthoc"] == "wilcoxon"
    pair = next(r for r in records if r.get("table") == "pair" and (r["a"], r["b"]) == ("l2", "none"))
    assert pair["p"] == pytest.approx(stats.wilcoxon(means["l2"], means["none"]).pvalue) and pair["p_adjusted"] == pytest.approx(3 / 32)
    table = list(csv.DictReader(io.StringIO(runner.invoke(app, ["report", d, "--layout", "wide", "--format", "csv"]).stdout)))
    assert [r["table"] for r in table].count("pair") == 3 and table[0]["table"] == ""
    rich = runner.invoke(app, ["report", d, "--layout", "wide", "--posthoc", "nemenyi"], env={"COLUMNS": "200"}).stdout
    assert "across data sets" in rich and "CD = 1.35" in rich  # 2.344 * sqrt(12 / 36)


def test_too_few_data_sets_is_a_caption_line_by_default_and_an_error_when_asked(tmp_path):
    d = str(uci_folder(tmp_path, sets=4))
    md = runner.invoke(app, ["report", d, "--layout", "wide", "--format", "markdown"])
    assert md.exit_code == 0 and "no tests across data sets: cross-data-set tests (Wilcoxon signed-rank, Holm-corrected at " \
        "alpha 0.05) need at least 6 data sets for 3 groups; these runs have 4" in md.stdout
    res = runner.invoke(app, ["report", d, "--layout", "wide", "--posthoc", "wilcoxon"])
    assert res.exit_code == 2 and "need at least 6 data sets" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert runner.invoke(app, ["report", d, "--layout", "wide", "--posthoc", "nemenyi", "--format", "json"]).exit_code == 0
    res = runner.invoke(app, ["report", d, "--posthoc", "nemenyi"])
    assert res.exit_code == 2 and "add --layout wide" in res.stderr
    res = runner.invoke(app, ["report", d, "--layout", "wide", "--alpha", "5"])
    assert res.exit_code == 2 and "--alpha 5.0 is not a significance level" in res.stderr


# --- the critical-difference diagram --------------------------------------------------------------

def bars(fig) -> dict[str, tuple[float, float]]:
    ax = fig.axes[0]
    return {line.get_gid().removeprefix("clique:"): tuple(sorted(line.get_xdata())) for line in ax.lines
            if (line.get_gid() or "").startswith("clique:")}


def test_cd_diagram_draws_a_bar_per_clique_over_its_ranks():
    from dropbench.plots import cd_figure

    s = demsar(alpha=0.10)
    drawn = bars(cd_figure(s))
    assert set(drawn) == {"C4.5+m+cf,C4.5+m,C4.5+cf", "C4.5+cf,C4.5"}
    rank = dict(zip(NAMES, s.mean_ranks))
    lo, hi = drawn["C4.5+cf,C4.5"]
    assert lo < rank["C4.5+cf"] < rank["C4.5"] < hi and hi - lo < rank["C4.5"] - rank["C4.5+cf"] + 0.1
    lo, hi = drawn["C4.5+m+cf,C4.5+m,C4.5+cf"]
    assert lo < rank["C4.5+m+cf"] and rank["C4.5+cf"] < hi < rank["C4.5"]
    ax = cd_figure(s).axes[0]
    assert ax.xaxis_inverted(), "rank 1, the best, on the right"
    cd = next(line for line in ax.lines if line.get_gid() == "cd")
    assert abs(cd.get_xdata()[1] - cd.get_xdata()[0]) == pytest.approx(s.cd)
    assert len(bars(cd_figure(demsar()))) == 1


def test_plot_cd_writes_cd_png_or_refuses_in_one_line(tmp_path):
    d = uci_folder(tmp_path)
    res = runner.invoke(app, ["plot", str(d), "--cd", "--out", str(tmp_path / "figs")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "figs" / "cd.png").stat().st_size > 0 and res.stdout.strip() == str(tmp_path / "figs" / "cd.png")
    few = uci_folder(tmp_path, sets=4, name="few")
    res = runner.invoke(app, ["plot", str(few), "--cd", "--out", str(tmp_path / "none")])
    assert res.exit_code == 2 and "need at least 6 data sets" in res.stderr and not (tmp_path / "none").exists()


# --- against a published table --------------------------------------------------------------------

def test_reference_comparison_by_hand(tmp_path):
    d = str(uci_folder(tmp_path, sets=2))
    ref = tmp_path / "ref.csv"
    ref.write_text("# Someone et al. 2020\ndataset,metric,mean,se,n\nset0,test_mc_rmse,2.0,0.1,20\nset1,test_mc_rmse,3.0,0.0,20\n"
                   "set0,test_ll,-1.0,0.1,20\n")
    res = runner.invoke(app, ["report", d, "--metric", "test_mc_rmse", "--reference", str(ref), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = {(r["dataset"], r["group"]): r for r in json.loads(res.stdout) if r.get("table") == "reference"}
    assert len(rows) == 6
    # set0 none: ours 2.3 over 2 identical splits (SE 0): diff .3, two-sample SE .1, z 3: marked.
    r = rows[("set0", "none")]
    assert r["ours"] == pytest.approx(2.3) and r["diff"] == pytest.approx(0.3) and r["se2"] == pytest.approx(0.1)
    assert r["z"] == pytest.approx(3.0) and r["beyond"] is True and r["theirs_n"] == 20 and r["ours_n"] == 2
    assert rows[("set0", "dropout")]["z"] == pytest.approx(1.0) and rows[("set0", "dropout")]["beyond"] is False
    md = runner.invoke(app, ["report", d, "--metric", "test_mc_rmse", "--reference", str(ref), "--format", "markdown"]).stdout
    assert "| set0 | none | 2.3 ± 0 | 2 ± 0.1 | +0.3 | 3 | * |" in md and "Someone et al. 2020" in md


def test_the_shipped_2016_table_and_bad_references(tmp_path):
    from dropbench.analysis.reference import read_reference

    gal = read_reference("gal2016")
    assert "Gal & Ghahramani" in gal.citation and len(gal.rows) == 16
    yacht = next(r for r in gal.rows if (r["dataset"], r["metric"]) == ("yacht", "test_mc_rmse"))
    assert (round(yacht["mean"], 2), round(yacht["se"], 2), yacht["n"]) == (1.11, 0.09, 20)  # the paper's 1.11 ± 0.09
    d = str(uci_folder(tmp_path, sets=2))
    bad = tmp_path / "bad.csv"
    for text, says in (("dataset,metric,mean\n", "missing column(s) se, n"),
                       ("dataset,metric,mean,se,n\nset0,test_mc_rmse,x,1,2\n", "row 2 (set0, test_mc_rmse) has a mean"),
                       ("dataset,metric,mean,se,n\nset0,test_ll,1,1,2\n", "has nothing to compare with: it lists test_ll on set0")):
        bad.write_text(text)
        res = runner.invoke(app, ["report", d, "--metric", "test_mc_rmse", "--reference", str(bad)])
        assert res.exit_code == 2 and says in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = runner.invoke(app, ["report", d, "--reference", "gal2017"])
    assert res.exit_code == 2 and "not a shipped reference (gal2016)" in res.stderr


def test_the_api_carries_the_tests_and_the_reference_comparison_the_command_prints(tmp_path):
    import dropbench as db

    d = uci_folder(tmp_path)
    sweep = db.load(d)
    tests = sweep.wide(posthoc="nemenyi").attrs["tests"]
    records = json.loads(runner.invoke(app, ["report", str(d), "--layout", "wide", "--posthoc", "nemenyi", "--format", "json"]).stdout)
    fr = next(r for r in records if r.get("table") == "friedman")
    assert tests.friedman.statistic == pytest.approx(fr["statistic"]) and tests.cd == pytest.approx(2.344 * (12 / 36) ** 0.5, abs=1e-3)
    with pytest.raises(db.UserError, match="need at least 6 data sets"):
        db.load(uci_folder(tmp_path, sets=4, name="four")).wide(posthoc="wilcoxon")
    ref = tmp_path / "ref.csv"
    ref.write_text("dataset,metric,mean,se,n\nset0,test_mc_rmse,2.0,0.1,20\n")
    cmp = sweep.compare(ref, metric="test_mc_rmse")
    by_cli = [r for r in json.loads(runner.invoke(app, ["report", str(d), "--metric", "test_mc_rmse", "--reference", str(ref),
                                                         "--format", "json"]).stdout) if r.get("table") == "reference"]
    assert sorted(cmp["group"]) == sorted(r["group"] for r in by_cli) and list(cmp["z"]) == pytest.approx([r["z"] for r in by_cli])
