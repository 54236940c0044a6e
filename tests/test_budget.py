"""Fair tuning (issue 22): per-regularizer grids, --budget N per method spread over each
regularizer's declared strength range, the budget recorded in tuned.csv and shown (report, the wide
layout, check) with a caption where budgets differ, and edge hits counted per method."""

import math

import pytest

from dropbench import grids, regs
from dropbench import tune_grid, tune_spec
from dropbench.analysis import budgets
from test_tune import BASE, TINY, invoke, rows, uci_root  # noqa: F401 (a fixture)

PLAN_BASE = ("data=uci", "data.dataset=yacht", "data.split=0", *TINY)


def _plan(tmp_path, overrides, over=(), budget=None, multirun=True):
    spec = tune_spec.Spec(tuple(overrides), tuple(over), "test_mse", multirun=multirun, budget=budget)
    return tune_grid.plan(spec, tmp_path / "out")


def _by_reg(p):
    return {"+".join(r.name for r, _ in regs.active(g.candidates[0].reg)) or "none": g for g in p.groups}


# ---- the grids ---------------------------------------------------------------------------------

def test_a_scale_is_spread_evenly_on_a_log_scale_and_a_count_linearly():
    assert grids.LogRange(1e-4, 1e-1).points(4) == [1e-4, 1e-3, 1e-2, 1e-1]
    assert grids.LinearRange(2, 20, integer=True).points(4) == [2.0, 8.0, 14.0, 20.0]
    assert grids.LogRange(0.01, 1.0).points(1) == [0.1], "one point: the middle of the scale"
    assert grids.split_budget(8, 2) == [4, 2] and grids.split_budget(9, 2) == [3, 3] and grids.split_budget(7, 2) == [7, 1]
    with pytest.raises(ValueError):
        grids.LogRange(0.0, 1.0)


def test_every_registered_regularizer_declares_a_strength_range_and_budget_8_gives_each_8_points(uci_root, tmp_path):
    """Registry-driven: a regularizer added without a range fails here."""
    for name, reg in regs.REGISTRY.items():
        assert reg.tune, f"{name} declares no strength knob to tune (Regularizer.tune)"
        fields = reg.Config.__dataclass_fields__
        assert all(k in fields for k in reg.tune), name
    names = list(regs.REGISTRY)
    p = _plan(tmp_path, [*PLAN_BASE, f"reg={','.join(names)}", "model.depth=2"], budget=8)  # droppath needs depth 2
    got = _by_reg(p)
    assert sorted(got) == sorted(names)
    for name, g in got.items():
        assert len(g.candidates) == 8 and g.budget == 8, (name, g.grid)
        (key,) = g.grid
        assert key == regs.knob_key(regs.REGISTRY[name], next(iter(regs.REGISTRY[name].tune)))


def test_per_method_grids_apply_only_to_their_method_and_a_combination_gets_both(uci_root, tmp_path):
    p = _plan(tmp_path, [*PLAN_BASE, "reg=none,dropout,l2,[dropout,l2]"],
              over=["dropout:p=0.1,0.3", "l2:weight_decay=1e-5,1e-3,1e-1", "eval.tau=0.5,1"])
    g = _by_reg(p)
    assert {k: len(v.candidates) for k, v in g.items()} == {"none": 2, "dropout": 4, "l2": 6, "dropout+l2": 12}
    assert {(c.p, c.reg.l2) for c in g["dropout"].candidates} == {(0.1, None), (0.3, None)}
    assert {c.reg.l2.weight_decay for c in g["l2"].candidates} == {1e-5, 1e-3, 1e-1}
    assert all(c.reg.dropout is None for c in g["l2"].candidates)
    assert list(g["dropout+l2"].grid) == ["eval.tau", "p", "reg.l2.weight_decay"]
    assert p.search_overrides == [], "no one run -m: tune.yaml records the tuning"


def test_a_budget_counts_the_grid_every_method_shares(uci_root, tmp_path):
    p = _plan(tmp_path, [*PLAN_BASE, "reg=dropout,l2"], over=["eval.tau=0.5,1"], budget=6)
    assert {k: (len(g.candidates), g.grid["eval.tau"]) for k, g in _by_reg(p).items()} == {
        "dropout": (6, ["0.5", "1"]), "l2": (6, ["0.5", "1"])}
    ranged = _plan(tmp_path, [*PLAN_BASE, "reg=l2"], over=["l2:weight_decay=1e-6..1e-2"], budget=5)
    assert ranged.groups[0].grid == {"reg.l2.weight_decay": ["1e-06", "1e-05", "0.0001", "0.001", "0.01"]}


def test_an_equal_budget_tune_gives_equal_grid_points_and_says_so(uci_root, tmp_path):
    from dropbench.report import build_report, render_report

    out = tmp_path / "eq"
    res = invoke(*BASE, "reg=none,dropout,l2", "--budget", "3", f"out={out}")
    assert res.exit_code == 0, res.output
    tuned = rows(out / "tuned.csv")
    points = {(r["reg"], r["grid_points"], r["budget"]) for r in tuned}
    assert points == {("none", "1", "1"), ("dropout", "3", "3"), ("l2", "3", "3")}
    rep = build_report([out / "final"], ["data.dataset", "reg"], layout="wide", interval="se")
    assert "tuned per split with equal budgets: grid points none 1 (nothing to tune), dropout 3, l2 3" in rep.notes
    md = render_report(rep, "markdown")
    assert "| grid points | 1 | 3 | 3 |" in md
    assert any(line.startswith("| at grid edge | 0/2 |") for line in md.splitlines())
    edges = {r["reg"]: sum(bool(x["at_edge"]) for x in tuned if x["reg"] == r["reg"]) for r in tuned}
    assert f"per method: dropout {edges['dropout']}/2, l2 {edges['l2']}/2" in rep.notes[-1]
    records = render_report(rep, "json")
    assert '"dropout grid_points": 3' in records and '"l2 n_tuned": 2' in records


def test_an_unequal_tune_gets_the_caption_naming_the_budgets_in_report_and_check(uci_root, tmp_path):
    from typer.testing import CliRunner

    from dropbench.cli import app

    out = tmp_path / "uneq"
    res = invoke(*BASE, "reg=dropout,l2", "--over", "dropout:p=0.1,0.2,0.3", "--over", "l2:weight_decay=1e-4,1e-2",
                 f"out={out}")
    assert res.exit_code == 0, res.output
    assert {(r["reg"], r["grid_points"]) for r in rows(out / "tuned.csv")} == {("dropout", "3"), ("l2", "2")}
    want = "warning: unequal tuning budgets, grid points per split dropout 3, l2 2"
    rep = CliRunner().invoke(app, ["report", str(out / "final"), "--by", "reg", "--layout", "wide", "-f", "markdown"])
    assert rep.exit_code == 0 and want in rep.stdout
    base = tmp_path / "base.csv"
    assert CliRunner().invoke(app, ["check", str(out / "final"), "--baseline", str(base), "--update-baseline", "--by", "reg"]).exit_code == 0
    chk = CliRunner().invoke(app, ["check", str(out / "final"), "--baseline", str(base)])
    assert chk.exit_code == 0 and want in " ".join(chk.stdout.split())


def test_budget_notes_name_a_published_grid_and_leave_none_out_of_the_comparison():
    t = lambda *p: budgets.Tally(list(p), 0)  # noqa: E731
    equal = {"none": t(3, 3), "dropout": t(12, 12), "l2": t(12, 12)}
    assert not budgets.unequal(equal), "reg=none has nothing to tune"
    assert budgets.notes(equal, ["the published grids of uci_mc_dropout_2018"])[0].startswith(
        "tuned on the published grids of uci_mc_dropout_2018, not on an equal budget per method: grid points per split")
    assert budgets.unequal({"dropout": t(12, 8), "l2": t(12, 12)})
    assert budgets.Tally([8, 12, 12], 1).points_text() == "8–12"


@pytest.mark.parametrize("args, msg", [
    (["reg=dropout", "--budget", "0"], "--budget 0: give each method at least 1 grid point"),
    (["reg=dropout", "--budget", "5", "--over", "eval.tau=0.1,0.2"], "a method's budget is a multiple of 2: use --budget 4 or 6"),
    (["reg=dropout", "--over", "dropuot:p=0.1,0.2"], "no regularizer 'dropuot'"),
    (["reg=dropout", "--over", "l2:weight_decay=0.1,0.2"], "no run of the sweep selects l2"),
    (["reg=dropout", "--over", "dropout:p=0.1..0.5"], "a range LO..HI is spread over --budget N points"),
    (["reg=dropout", "--over", "p=0.1,0.2", "--over", "dropout:p=0.3,0.4"], "--over p is given twice"),
    (["reg=l2", "--over", "l2:p=0.1,0.2"], "sweeping p changes no run"),
])
def test_bad_grids_are_one_line_exit_2_and_nothing_written(uci_root, tmp_path, args, msg):
    out = tmp_path / "bad"
    res = invoke(*BASE, *args, f"out={out}")
    assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_a_budget_tune_resumes_from_its_record(uci_root, tmp_path):
    out = tmp_path / "r"
    assert invoke(*BASE, "reg=l1", "--budget", "2", f"out={out}").exit_code == 0
    first = (out / "tuned.csv").read_text()
    res = invoke("--resume", str(out))
    assert res.exit_code == 0 and "(0 trained, 4 already finished)" in res.output, res.output
    assert (out / "tuned.csv").read_text() == first
    other = invoke(*BASE, "reg=l1", "--budget", "3", f"out={out}")
    assert other.exit_code == 2 and "already holds another tuning" in other.output
    assert not math.isnan(float(rows(out / "tuned.csv")[0]["test_mse"]))
