"""Evaluation beyond eval-mode MSE: MC dropout (eval.mc_samples), RMSE in the target's original
units and the Gaussian test log-likelihood (eval.tau), with PROTOCOL.md's formula.

The formulas are checked against hand computations on tiny tensors, the MC average against an
independent loop of single passes, the batched engine against the reference in float64, and a
run's MC numbers for invariance to its company and to the training it must not disturb.
"""

import csv
import json
import math

import numpy as np
import pytest
import torch
from conftest import assert_bits_equal
from typer.testing import CliRunner

from dropbench import readback, regs, results
from dropbench.cli import app
from dropbench.columns import CURVE_COLUMNS
from dropbench.config import load
from dropbench.data import load_dataset
from dropbench.engines.batched import BatchedEngine
from dropbench.engines.loop import settle
from dropbench.engines.mc import MC_BLOCK_ELEMENTS, MC_GROUP, MCStats, mc_block, mc_windows
from dropbench.engines.planner import MachineFacts
from dropbench.engines.reference import train_one
from dropbench.engines.result import RunResult, curve_row
from dropbench.errors import UserError
from dropbench.models import build_model
from dropbench.optim import make_optimizer

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def col(row: tuple, name: str):
    return row[CURVE_COLUMNS.index(name)]


def batched(cfgs, workers=1):
    return {r.run_id: r for r in BatchedEngine(machine=MachineFacts(workers=workers)).train(cfgs)}


# ---- the formulas, by hand ---------------------------------------------------------------------
def test_mc_stats_match_a_hand_computation():
    """Mean of the passes, its MSE, and logsumexp_t(-tau/2 (y_std (y - yhat_t))^2) - log T
    - log(2 pi)/2 + log(tau)/2 averaged over points; passes past T are left out."""
    y = torch.tensor([[0.5, -1.0], [0.0, 0.0]])
    passes = [[0.0, -1.5], [1.0, 0.0], [0.5, -0.5]]  # member 0: T = 3
    stats = MCStats(y, T=[3, 1], tau=[2.0, None], y_std=[1.5, 1.0])
    # blocks of 2: passes 0-1, then pass 2 beside a pass past T (1e6: must not count)
    stats.add(torch.tensor([passes[:2], [[3.0, 4.0], [1e6, 1e6]]]), 0)
    stats.add(torch.tensor([[passes[2], [1e6, 1e6]], [[1e6, 1e6], [1e6, 1e6]]]), 2)
    mean = [0.5, -2 / 3]
    assert stats.mse()[0] == pytest.approx(((0.5 - mean[0]) ** 2 + (-1.0 - mean[1]) ** 2) / 2, abs=1e-15)
    assert stats.mse()[1] == pytest.approx((3.0**2 + 4.0**2) / 2, abs=1e-12)  # its one pass
    per_point = []
    for i, yi in enumerate((0.5, -1.0)):
        terms = [-2.0 / 2 * (1.5 * (yi - p[i])) ** 2 for p in passes]
        per_point.append(math.log(sum(math.exp(t) for t in terms)) - math.log(3) - HALF_LOG_2PI + 0.5 * math.log(2.0))
    ll = stats.ll()
    assert ll[0] == pytest.approx(sum(per_point) / 2, abs=1e-12)
    assert ll[1] is None  # no tau: no log-likelihood


def test_one_prediction_gives_the_gaussian_log_density():
    """T = 1 (eval.mc_samples=0 with a tau): the mean Gaussian log-density of the errors."""
    y, pred, tau, s = [0.2, -0.4, 1.0], [0.0, 0.1, 0.7], 0.5, 3.0
    stats = MCStats(torch.tensor([y], dtype=torch.float64), [1], [tau], [s])
    stats.add(torch.tensor([[pred]], dtype=torch.float64), 0)
    want = sum(-tau / 2 * (s * (a - b)) ** 2 - HALF_LOG_2PI + 0.5 * math.log(tau) for a, b in zip(y, pred)) / 3
    assert stats.ll()[0] == pytest.approx(want, abs=1e-14)


def test_log_likelihood_is_stable_where_exp_underflows():
    """Errors far beyond 1/sqrt(tau): exp() of each term is 0 in float64, the log-sum-exp is not."""
    stats = MCStats(torch.tensor([[0.0]], dtype=torch.float64), [2], [1.0], [1.0])
    stats.add(torch.tensor([[[40.0], [41.0]]], dtype=torch.float64), 0)
    want = -800 + math.log(1 + math.exp(-40.5)) - math.log(2) - HALF_LOG_2PI
    assert stats.ll()[0] == pytest.approx(want, rel=1e-14)


def test_rmse_is_in_the_targets_original_units():
    row = curve_row(10, 0.25, 0.16, 0.3, y_std=2.0)
    assert (col(row, "train_rmse"), col(row, "test_rmse")) == (1.0, 0.8)
    assert col(row, "test_mc_mse") is None and col(row, "test_ll") is None


def test_a_block_depends_only_on_the_runs_config_and_shapes():
    """Never on T or the machine: as many passes as MC_BLOCK_ELEMENTS holds under the fast
    stream (whose masks are keyed by pass), else one pass per forward."""
    a, b = load(["reg=dropout", "eval.mc_samples=3", "model.hidden=50"]), load(["reg=dropout", "eval.mc_samples=10000", "model.hidden=50", "seed=4"])
    assert mc_block(a, 31, 6) == mc_block(b, 31, 6) == MC_BLOCK_ELEMENTS // (31 * 50) // MC_GROUP * MC_GROUP
    assert mc_block(a, 2000, 6) == 1
    assert mc_block(load(["reg=dropout", "eval.mc_samples=3", "eval.mc_masks=torch"]), 31, 6) == 1  # the generator, pass by pass
    assert mc_block(load(["reg=dropconnect", "eval.mc_samples=5"]), 31, 6) == 1  # a weight mask per pass
    assert mc_block(load(["reg=[dropout,gaussian_dropout]", "eval.mc_samples=5"]), 31, 6) == 1  # Gaussian noise: torch's generator


# ---- the reference engine against an independent loop ----------------------------------------
@pytest.mark.parametrize("reg", ["dropout", "dropconnect"])
def test_mc_is_the_mean_of_single_passes_continuing_the_runs_stream(reg):
    """eval.mc_masks=torch: train by hand as the reference does, then T single forward passes in
    training mode, each drawing its own masks from the global stream where training left it;
    mean, MSE and log-likelihood by hand."""
    T, tau = 400, 1.7
    ov = [f"reg={reg}", "p=0.3", "model.depth=1", "model.hidden=40", "epochs=7", "eval_every=7",
          "dtype=float64", "engine=torch", f"eval.mc_samples={T}", f"eval.tau={tau}", "eval.mc_masks=torch"]
    cfg = load(ov)
    assert mc_block(cfg, 20, 1) == 1  # pass by pass: the generator's draws would depend on a block
    got = train_one(cfg)
    assert got.status == "ok"

    data = load_dataset(cfg).to(torch.float64)
    model = build_model(cfg, 1).to(torch.float64)
    opt = make_optimizer(model, cfg)
    for _ in range(cfg.epochs):
        model.train()
        loss = torch.nn.functional.mse_loss(model(data.x_train), data.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.train()
    with torch.no_grad():
        preds = [model(data.x_test)[:, 0].tolist() for _ in range(T)]
    ys = data.y_test[:, 0].tolist()
    mean = [math.fsum(p[i] for p in preds) / T for i in range(len(ys))]
    mc_mse = math.fsum((y - m) ** 2 for y, m in zip(ys, mean)) / len(ys)
    lls = []
    for i, y in enumerate(ys):
        terms = [-tau / 2 * (y - p[i]) ** 2 for p in preds]
        top = max(terms)
        lls.append(top + math.log(math.fsum(math.exp(t - top) for t in terms)) - math.log(T) - HALF_LOG_2PI + 0.5 * math.log(tau))
    last = got.rows()[-1]
    assert col(last, "test_mc_mse") == pytest.approx(mc_mse, rel=1e-12)
    assert col(last, "test_ll") == pytest.approx(sum(lls) / len(lls), rel=1e-12)
    assert col(last, "test_mc_mse") != col(last, "test_mse")  # the passes did drop units


# ---- both engines, company, training -----------------------------------------------------------
MC_REGS = [n for n, r in regs.REGISTRY.items() if r.slot in ("input", "weight", "activation", "residual")]


@pytest.mark.parametrize("reg", MC_REGS)
def test_batched_mc_matches_the_reference_in_float64(reg):
    ov = [f"reg={reg}", "p=0.2", "model.depth=2", "model.hidden=12", "epochs=4", "eval_every=2", "dtype=float64",
          "data=friedman1", "data.n_train=10", "data.n_test=7", "eval.mc_samples=23", "eval.tau=3"]
    if reg == "alpha_dropout":
        ov += ["model.activation=selu"]
    ref = train_one(load(ov + ["engine=torch"]))
    (got,) = batched([load(ov)]).values()
    assert ref.status == got.status == "ok"
    for a, b in zip(ref.rows(), got.rows(), strict=True):
        for name in ("test_mc_mse", "test_mc_rmse", "test_ll"):
            assert col(b, name) == pytest.approx(col(a, name), rel=1e-11, abs=1e-12), name


MC_BASE = ["reg=[input_dropout,dropout]", "p=0.1", "model.hidden=30", "epochs=6", "eval_every=3", "data=friedman1",
           "data.n_train=15", "data.n_test=11"]


@pytest.mark.kernels
def test_mc_numbers_do_not_depend_on_the_runs_company():
    """A run gives the same bits alone and in a chunk with runs of other T, tau and seeds."""
    me = load(MC_BASE + ["eval.mc_samples=40", "eval.tau=2"])
    others = [load(MC_BASE + ["seed=5", "eval.mc_samples=150"]), load(MC_BASE + ["seed=6"]), load(MC_BASE + ["seed=7", "eval.tau=1"])]
    alone = batched([me])[me.run_id]
    crowd = batched([others[0], me, *others[1:]])
    assert_bits_equal(crowd[me.run_id].rows(), alone.rows(), "T=40 in a chunk of 4 with other T and tau, against alone")
    assert col(crowd[others[1].run_id].rows()[-1], "test_mc_mse") is None
    assert col(crowd[others[2].run_id].rows()[-1], "test_mc_mse") is None and col(crowd[others[2].run_id].rows()[-1], "test_ll") is not None


@pytest.mark.parametrize("members,member_bytes,most", [(m, b, w) for m in (1, 2, 3, 4, 5, 7, 60, 257)
                                                       for b, w in ((1, 1), (10, 35), (295_000, 2**22), (1, 2**30))])
def test_mc_windows_cover_the_members_in_pieces_of_two_or_more(members, member_bytes, most):
    bounds = mc_windows(members, member_bytes, most)
    assert [lo for lo, _ in bounds] == [0] + [hi for _, hi in bounds[:-1]] and bounds[-1][1] == members
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1
    assert all(s >= 2 for s in sizes) or members < 2
    if members >= 4 and max(2, most // member_bytes) * 2 <= members:  # room for windows within `most`
        assert len(bounds) > 1 and all(s * member_bytes <= most or s <= 3 for s in sizes)
    if members < 4:
        assert len(bounds) == 1


WINDOW_CASES = [("fast", "[input_dropout,dropout]"), ("torch", "[input_dropout,dropout]"), ("fast", "[dropout,gaussian_dropout]")]


@pytest.mark.kernels
@pytest.mark.parametrize("mc_masks,reg", WINDOW_CASES + [("fast", r) for r in MC_REGS])
def test_mc_passes_over_windows_of_members_change_no_number(monkeypatch, mc_masks, reg):
    """A chunk computes the MC passes of a large test set a window of members at a time
    (mc_windows) where every piece in its forward is `windowed`; forced down to windows of two
    or three members, every number (twins differing in tau, a padded member, runs of other T)
    is the same as over the whole chunk at once, for every regularizer of the registry. A piece
    that reads columns of its own (gaussian_dropout) keeps the whole chunk."""
    from dropbench.engines import mc, program

    base = [f"reg={reg}", "p=0.1", "model.hidden=30", "epochs=4", "eval_every=2", "data=friedman1", "data.n_train=15",
            "data.n_test=11", "eval.mc_samples=40", f"eval.mc_masks={mc_masks}"]
    if reg == "alpha_dropout":
        base += ["model.activation=selu"]
    cfgs = [load(base + [f"seed={s}", f"eval.tau={t}"]) for s in range(7) for t in ((1, 2) if s == 3 else (1,))]
    cfgs.append(load(base + ["seed=9", "eval.mc_samples=25", "eval.tau=3"]))
    windowed = []
    real = program.Chunk._window
    monkeypatch.setattr(program.Chunk, "_window", lambda self, w: windowed.append(w.hi - w.lo) or real(self, w))
    monkeypatch.setattr(mc, "MC_WINDOW_BYTES", 2**40)
    whole = batched(cfgs)
    assert not windowed
    monkeypatch.setattr(mc, "MC_WINDOW_BYTES", 1)
    parts = batched(cfgs)
    if reg in ("[input_dropout,dropout]", "dropout", "input_dropout"):
        assert windowed and set(windowed) <= {2, 3}
    if "gaussian" in reg:
        assert not windowed
    for c in cfgs:
        assert parts[c.run_id].status == "ok" and col(parts[c.run_id].rows()[-1], "test_ll") is not None
        assert_bits_equal(parts[c.run_id].rows(), whole[c.run_id].rows(), f"{c.run_id}: windows of members against the whole chunk")


def test_mc_evaluation_leaves_training_alone():
    """A run's columns other than the MC ones are those of the run without MC, in both engines
    (each alone: the same kernels)."""
    with_mc = batched([load(MC_BASE + ["eval.mc_samples=40", "eval.tau=2"])])
    plain = batched([load(MC_BASE)])
    (a,), (b,) = with_mc.values(), plain.values()
    assert [r[:6] for r in a.rows()] == [r[:6] for r in b.rows()] and col(a.rows()[-1], "test_mc_mse") is not None
    ref = train_one(load(MC_BASE + ["eval.mc_samples=40", "eval.tau=2", "engine=torch"]))
    assert [r[:6] for r in ref.rows()] == [r[:6] for r in train_one(load(MC_BASE + ["engine=torch"])).rows()]


def test_without_a_dropout_layer_every_pass_is_the_eval_mode_one():
    cfg = load(["reg=l2", "epochs=5", "eval_every=5", "dtype=float64", "eval.mc_samples=1000", "eval.tau=1", "engine=torch"])
    last = train_one(cfg).rows()[-1]
    assert col(last, "test_mc_mse") == pytest.approx(col(last, "test_mse"), rel=1e-14)


def test_a_non_finite_mc_evaluation_fails_the_run():
    r = RunResult(load(["eval.mc_samples=5"]))
    r.add_eval(5, 0.1, 0.2, 0.1, 1.0, 0.3, -1.0)
    r.add_eval(10, 0.1, 0.2, 0.1, 1.0, math.nan, None)
    settle(r)
    assert r.status == "failed" and "test_mc_mse nan" in r.reason and len(r.curve) == len(r.scores) == 1


def test_summary_leaves_uncomputed_metrics_empty():
    r = RunResult(load([]))
    r.add_eval(5, 0.25, 0.36, 0.1, 1.0)
    s = r.summary()
    assert (s["final_train_rmse"], s["final_test_rmse"]) == (0.5, 0.6)
    assert s["final_test_mc_mse"] is None and s["final_test_ll"] is None


# ---- config ------------------------------------------------------------------------------------
def test_default_eval_keeps_run_ids_and_other_values_change_them():
    assert load([]).run_id == load(["eval.mc_samples=0", "eval.tau=null"]).run_id == "5b2c820cfcbb"
    ids = {load(o).run_id for o in ([], ["eval.mc_samples=10"], ["eval.tau=0.5"], ["eval.tau=0.25"])}
    assert len(ids) == 4


@pytest.mark.parametrize("override, fragment", [
    ("eval.mc_samples=-1", "invalid value eval.mc_samples=-1: must be >= 0"),
    ("eval.tau=0", "invalid value eval.tau=0.0: must be a finite number > 0"),
    ("eval.tau=-2", "invalid value eval.tau=-2.0"),
    ("eval.tau=inf", "invalid value eval.tau=inf"),
    ("eval.mc_samples=many", "eval.mc_samples='many': must be an integer"),
    ("eval.taus=1", "unknown key eval.taus (did you mean eval.tau?)"),
])
def test_bad_eval_values_are_one_line_errors(override, fragment):
    with pytest.raises(UserError) as e:
        load([override])
    assert fragment in str(e.value) and "\n" not in str(e.value)


# ---- the results folder ------------------------------------------------------------------------
def test_a_folder_with_curves_from_before_the_new_columns_still_reads(tmp_path):
    """Re-consolidating a folder whose runs stored 4-column curves gives every column, the old
    runs' new cells empty, and the readers parse them."""
    out = tmp_path / "r"
    old = RunResult(load(["seed=2"]), curve=[(5, 0.1, 0.2, 0.3)])
    new = RunResult(load(["seed=3", "eval.tau=1"]))
    new.add_eval(5, 0.1, 0.2, 0.3, 1.0, None, -1.25)
    results.write_run(out, old)
    stored = out / "runs" / old.run_id / "curve.csv"
    stored.write_text("epoch,train_mse,test_mse,train_loss\n5,0.1,0.2,0.3\n")  # as an older dropbench wrote it
    results.write_run(out, new)
    results.consolidate(out)
    curves = readback.read_curves(out)
    assert [c["test_ll"] for c in curves if c["run_id"] == new.run_id] == [-1.25]
    assert all(math.isnan(c["test_ll"]) and c["test_mse"] == 0.2 for c in curves if c["run_id"] == old.run_id)
    header = next(csv.reader((out / "curves.csv").open()))
    assert header == ["run_id", *CURVE_COLUMNS]
    runs = {r["run_id"]: r for r in readback.read_runs(out)}
    assert runs[new.run_id]["final_test_ll"] == -1.25 and math.isnan(runs[old.run_id]["final_test_ll"])
    assert json.loads((out / "runs" / new.run_id / "result.json").read_text())["final_test_mc_mse"] is None


def test_uci_sweep_reports_rmse_and_log_likelihood(tmp_path, monkeypatch, uci_dir):
    """The UCI columns end to end: RMSE in the target's units (its training SD from the files, by
    numpy), report --metric test_rmse / test_ll / test_mc_rmse, and --epoch on the curves."""
    monkeypatch.setenv("DROPBENCH_UCI_DIR", str(uci_dir))
    out = tmp_path / "u"
    runner = CliRunner()
    res = runner.invoke(app, ["run", "-m", "data=uci", "data.dataset=yacht", "data.split=0,1", "reg=none,dropout",
                              "p=0.05", "model.hidden=20", "model.depth=1", "epochs=10", "eval_every=5",
                              "eval.mc_samples=30", "eval.tau=0.5", f"out={out}", "-q"])
    assert res.exit_code == 0, res.output
    rows = readback.read_runs(out)
    raw = np.loadtxt(uci_dir / "yacht" / "data.txt")
    for r in rows:
        split = int(r["data.split"])
        train = np.loadtxt(uci_dir / "yacht" / f"index_train_{split}.txt").astype(int)
        y_std = float(np.std(raw[train, -1]))
        assert r["final_test_rmse"] == pytest.approx(math.sqrt(r["final_test_mse"]) * y_std, rel=1e-12)
        assert r["final_train_rmse"] == pytest.approx(math.sqrt(r["final_train_mse"]) * y_std, rel=1e-12)
        assert r["final_test_mc_rmse"] == pytest.approx(math.sqrt(r["final_test_mc_mse"]) * y_std, rel=1e-12)
        assert math.isfinite(r["final_test_ll"])
    for metric in ("test_ll", "test_rmse", "test_mc_rmse"):
        rep = runner.invoke(app, ["report", str(out), "--metric", metric])
        assert rep.exit_code == 0, rep.output
    rep = runner.invoke(app, ["report", str(out), "--metric", "test_ll", "--epoch", "5"])
    assert rep.exit_code == 0 and "log-likelihood" in rep.output, rep.output
