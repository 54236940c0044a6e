"""Early stopping (reg=early_stopping): its semantics against an independent reading of what the
runs recorded, its hold-out rows, both engines, any chunk. The registry-driven tests of
tests/test_regularizers.py cover it too (engines agree, strength 0, bad values)."""

import csv
import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dropbench.cli import app
from dropbench.config import load
from dropbench.data import load_dataset
from dropbench.engines import loop
from dropbench.errors import UserError
from dropbench.regs.early_stopping import Config as ESConfig
from test_tune import uci_root  # noqa: F401  (the fixture: a small UCI folder)

SMALL = ["model.hidden=16", "model.depth=2", "optim.lr=0.05", "eval_every=2"]


def keras_early_stopping(val, patience, min_delta):
    """Keras' EarlyStopping(patience, min_delta, restore_best_weights=True) on_epoch_end, written
    out from its documentation: (index it stops at or None, index of the weights restored)."""
    best, best_i, wait = math.inf, None, 0
    for i, v in enumerate(val):
        wait += 1
        if v < best - min_delta:
            best, best_i, wait = v, i, 0
            continue
        if wait >= patience:
            return i, best_i
    return None, best_i


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_runs_stop_where_their_recorded_validation_curve_says_and_report_the_best_evaluation(tmp_path):
    """A sweep of patience and min_delta: each run's curve ends where Keras' rule on its recorded
    val_mse stops it, and its final_* are the curve row of the evaluation the rule restores."""
    out = tmp_path / "es"
    res = CliRunner().invoke(app, ["run", "-m", "reg=[dropout,early_stopping]", "seed=0,1,2", "epochs=200", *SMALL,
                                   "reg.early_stopping.patience=1,3,40", "reg.early_stopping.min_delta=0,0.002",
                                   f"out={out}", "-q"])
    assert res.exit_code == 0, res.output
    runs, curves = read(out / "runs.csv"), read(out / "curves.csv")
    stopped = kept_earlier = 0
    for r in runs:
        curve = [c for c in curves if c["run_id"] == r["run_id"]]
        val = [float(c["val_mse"]) for c in curve]
        stop, best = keras_early_stopping(val, int(r["reg.early_stopping.patience"]), float(r["reg.early_stopping.min_delta"]))
        epochs = [int(c["epoch"]) for c in curve]
        if stop is None:
            assert epochs[-1] == 200 and r["stopped_epoch"] == ""
        else:
            stopped += 1
            assert len(curve) == stop + 1, "no evaluation after the stop"
            assert r["stopped_epoch"] == str(epochs[stop]) and epochs[stop] < 200
        kept = curve[best]
        kept_earlier += best < len(curve) - 1
        assert r["kept_epoch"] == kept["epoch"]
        for c in ("train_mse", "test_mse", "val_mse", "train_rmse", "test_rmse"):
            assert r[f"final_{c}"] == kept[c], c  # the restored evaluation's numbers, digit for digit
        if float(r["reg.early_stopping.min_delta"]) == 0:  # restored: the best validation epoch's numbers
            assert best == min(range(len(val)), key=lambda i: (val[i], i))
    assert 0 < stopped < len(runs) and kept_earlier, "the sweep must show stops, full runs and restores"


def _rows(result):
    return (result.status, result.rows(), result.fit, result.kept, result.stopped, result.summary())


def test_engines_agree_in_float64_when_members_stop_at_different_epochs():
    """Members of one chunk stop at different epochs; each matches the reference engine alone,
    fitted curve (drawn at the kept evaluation) included."""
    from dropbench.engines.batched import _train_chunk
    from dropbench.engines.reference import train_one

    cfgs = [load(["reg=[dropout,early_stopping]", "epochs=120", *SMALL, "dtype=float64", f"seed={s}",
                  f"reg.early_stopping.patience={p}"]) for s, p in [(0, 1), (1, 2), (2, 5)]]
    batched = _train_chunk(cfgs, 3)
    assert len({b.stopped for b in batched}) > 1, "the members must stop at different epochs"
    for cfg, b in zip(cfgs, batched):
        t = train_one(cfg)
        assert (t.status, t.kept, t.stopped) == (b.status, b.kept, b.stopped) == ("ok", b.kept, b.stopped)
        for rt, rb in zip(t.rows(), b.rows()):
            assert rt[0] == rb[0]
            for x, y in zip(rt[1:], rb[1:]):
                assert (x is None and y is None) or (not isinstance(x, str) and abs(x - y) <= 1e-9 * max(1, abs(x)))
        assert len(t.fit) == len(b.fit) > 0
        assert max(abs(y1 - y2) for (_, y1), (_, y2) in zip(t.fit, b.fit)) < 1e-9


def test_a_runs_numbers_do_not_depend_on_when_its_chunk_mates_stop():
    """Bit for bit, alone or beside members that stop earlier or later, at any position."""
    from dropbench.engines.batched import BatchedEngine, _train_chunk

    target = load(["reg=[dropout,early_stopping]", "epochs=80", *SMALL, "seed=3", "reg.early_stopping.patience=3"])
    others = [dataclasses.replace(target, seed=s, reg=dataclasses.replace(
        target.reg, early_stopping=ESConfig(patience=p))) for s, p in zip(range(100, 106), [1, 8, 2, 30, 1, 4])]
    (want,) = BatchedEngine(workers=1).train([target])
    for size, pos in [(2, 1), (4, 0), (7, 3)]:
        members = others[: size - 1]
        members.insert(pos, target)
        got = _train_chunk(members, size)[pos]
        assert _rows(got) == _rows(want), f"chunk of {size}, position {pos}"
    assert want.stopped is not None


def test_strength_zero_holds_out_nothing_and_changes_no_number():
    """patience=0: every training row is trained on, nothing is validated, the run is reg=none's."""
    from dropbench.engines.reference import train_one

    off = load(["reg=early_stopping", "reg.early_stopping.patience=0", "epochs=20", *SMALL])
    none = load(["reg=none", "epochs=20", *SMALL])
    assert load_dataset(off).x_val is None and len(load_dataset(off).x_train) == 20
    a, b = train_one(off), train_one(none)
    assert a.rows() == b.rows() and a.fit == b.fit and a.summary() == b.summary()
    assert a.summary()["final_val_mse"] is None and a.summary()["kept_epoch"] is None


def test_the_validation_rows_of_a_noisy_set_are_drawn_from_the_data_seed():
    """noisy_linear's rows lie in x order: the validation rows are 4 of the 20 drawn by the data
    seed (the same for every regularizer of that seed), not the right end of the range."""
    plain = load_dataset(load(["reg=none", "seed=4"]))
    es = [load_dataset(load([f"reg={r}", "seed=4"])) for r in ("early_stopping", "[dropout,early_stopping]")]
    for d in es:
        assert d.x_train.shape == (16, 1) and d.x_val.shape == (4, 1)
        together = sorted(torch.cat([d.x_train, d.x_val])[:, 0].tolist())
        assert together == sorted(plain.x_train[:, 0].tolist())  # a partition of the training rows
        assert torch.equal(torch.cat([d.y_train, d.y_val]).sort(0).values, plain.y_train.sort(0).values)
        assert torch.equal(d.x_test, plain.x_test)
    assert torch.equal(es[0].x_val, es[1].x_val)
    assert not torch.equal(es[0].x_val, plain.x_train[16:]), "not the last rows of the x range"
    other_seed = load_dataset(load(["reg=early_stopping", "seed=5"]))
    assert not torch.equal(other_seed.x_val, es[0].x_val)


def test_tabular_validation_rows_are_the_last_of_the_training_rows_scaled_with_the_rest():
    """friedman1: the validation rows are the last int(0.2 n) training rows in order, and
    standardisation uses the rows trained on only (computed here from the raw rows)."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=200, n_features=10, noise=1.0, random_state=7)
    xtr, ytr = x[:100], y[:100]
    raw = load_dataset(load(["data=friedman1", "data.standardize=false", "reg=early_stopping", "seed=7",
                             "reg.early_stopping.fraction=0.3"]))
    assert np.allclose(raw.x_train.numpy(), xtr[:70], atol=1e-6) and np.allclose(raw.x_val.numpy(), xtr[70:], atol=1e-6)
    d = load_dataset(load(["data=friedman1", "reg=early_stopping", "seed=7", "reg.early_stopping.fraction=0.3"]))
    mx, sx, my, sy = xtr[:70].mean(0), xtr[:70].std(0), ytr[:70].mean(), ytr[:70].std()
    assert np.allclose(d.x_val.numpy(), (xtr[70:] - mx) / sx, atol=1e-5)
    assert np.allclose(d.y_val.numpy()[:, 0], (ytr[70:] - my) / sy, atol=1e-5)
    assert np.allclose(d.x_test.numpy(), (x[100:] - mx) / sx, atol=1e-5)


def test_uci_validation_rows_come_after_the_tune_hold_out(uci_root):  # noqa: F811
    """data=uci, 10 training rows: early stopping validates on the last 2 in index-file order; in a
    tune's search (data.holdout=validation: 8 rows trained on) on the last 2 of those 8."""
    from dropbench.data.uci import splits

    s = splits.load_split("yacht", 0)
    base = ["data=uci", "data.dataset=yacht", "data.split=0", "reg=early_stopping"]
    d = load_dataset(load(base))
    fit = s.x_train[:8]
    assert np.allclose(d.x_val.numpy(), (s.x_train[8:] - fit.mean(0)) / fit.std(0), atol=1e-5)
    h = load_dataset(load([*base, "data.holdout=validation"]))
    fit = s.x_train[:6]
    assert h.x_train.shape[0] == 6 and np.allclose(h.x_val.numpy(), (s.x_train[6:8] - fit.mean(0)) / fit.std(0), atol=1e-5)
    assert np.allclose(h.x_test.numpy(), (s.x_train[8:] - fit.mean(0)) / fit.std(0), atol=1e-5)


@pytest.mark.parametrize("fraction, n_train, n_val", [(0.2, 20, 4), (0.5, 20, 10), (0.05, 20, 1), (0.3, 10, 3)])
def test_fraction_sets_how_many_rows_validate(fraction, n_train, n_val):
    d = load_dataset(load(["reg=early_stopping", f"reg.early_stopping.fraction={fraction}", f"data.n_train={n_train}"]))
    assert (len(d.x_train), len(d.x_val)) == (n_train - n_val, n_val)


def test_too_few_rows_to_hold_out_is_a_one_line_error():
    with pytest.raises(UserError) as e:
        load_dataset(load(["reg=early_stopping", "data.n_train=2"]))
    msg = str(e.value)
    assert "\n" not in msg and "data=noisy_linear has 2 training row(s)" in msg and "at least 2" in msg
    res = CliRunner().invoke(app, ["run", "reg=early_stopping", "data.n_train=2", "epochs=2"])
    assert res.exit_code == 2 and "holding out 0.2 of them" in res.output


def test_the_l2_prior_counts_the_rows_trained_on():
    """reg.l2.prior_length_scale derives the decay from N, the rows trained on: 16 of 20 here."""
    from dropbench import derive
    from dropbench.regs.l2 import prior_weight_decay

    (cfg,) = derive.resolve([load(["reg=[dropout,l2,early_stopping]", "reg.l2.prior_length_scale=0.1",
                                   "reg.l2.weight_decay=null", "eval.tau=2", "p=0.1"])])
    assert cfg.reg.l2.weight_decay == prior_weight_decay(0.1, 0.1, 16, 2.0)


def test_the_new_columns_come_after_the_old_ones(tmp_path):
    """CSV contract: columns are appended, never inserted or renamed."""
    from dropbench.columns import CURVE_COLUMNS, RESULT_COLUMNS

    assert CURVE_COLUMNS[-1] == "val_mse" and CURVE_COLUMNS.index("learned_p") == 9
    assert RESULT_COLUMNS[-5:-1] == ("seconds", "final_val_mse", "stopped_epoch", "kept_epoch")
    out = tmp_path / "cols"
    res = CliRunner().invoke(app, ["run", "-m", "reg=none,early_stopping", "epochs=4", *SMALL, f"out={out}", "-q"])
    assert res.exit_code == 0, res.output
    header = (out / "runs.csv").read_text().splitlines()[0].split(",")
    assert header[-5:] == ["seconds", "final_val_mse", "stopped_epoch", "kept_epoch", "effective_p"]
    none = next(r for r in read(out / "runs.csv") if r["reg"] == "none")
    assert none["final_val_mse"] == none["stopped_epoch"] == none["kept_epoch"] == ""


# ---- the loop's rule, with a scripted engine (no torch) ---------------------------------------

def test_the_loop_stops_a_watched_member_keeps_its_best_evaluation_and_draws_its_fit_there():
    """Member 0 watches a scripted validation curve (patience 2); member 1 runs without it. The
    stopped member is not evaluated again, the other goes on, and member 0's fit is the one drawn
    right after its best evaluation."""
    val = {1: 0.5, 2: 0.3, 3: 0.4, 4: 0.35, 5: 0.1, 6: 0.2}  # epoch 4 is the 2nd without improvement
    reg = SimpleNamespace(early_stopping=ESConfig(patience=2))
    cfgs = [SimpleNamespace(epochs=6, eval_every=1, batch_size=None, run_id="r0", reg=reg),
            SimpleNamespace(epochs=6, eval_every=1, batch_size=None, run_id="r1")]
    epoch = [0]
    evals: list[int] = []

    def step(rows, objective):
        epoch[0] += 1
        return [1.0, 1.0]

    def evaluate():
        evals.append(epoch[0])
        return [(0.1, 1.0 * epoch[0], None, None, None, val[epoch[0]]), (0.1, 2.0, None, None, None, None)]

    def fit():
        return [[(0.0, float(epoch[0]))], [(0.0, -float(epoch[0]))]]

    a, b = loop.train(cfgs, 10, [1.0, 1.0], step, evaluate, fit=fit)
    assert a.status == "ok" and a.stopped == 4 and a.kept == 1 and [r[0] for r in a.curve] == [1, 2, 3, 4]
    assert a.fit == [(0.0, 2.0)] and a.summary()["final_test_mse"] == 2.0 and a.summary()["kept_epoch"] == 2
    assert b.stopped is None and b.kept is None and [r[0] for r in b.curve] == [1, 2, 3, 4, 5, 6] and b.fit == [(0.0, -6.0)]
    assert evals == [1, 2, 3, 4, 5, 6] and epoch[0] == 6


def test_the_loop_ends_training_once_every_member_has_stopped():
    reg = SimpleNamespace(early_stopping=ESConfig(patience=1))
    cfgs = [SimpleNamespace(epochs=50, eval_every=5, batch_size=None, run_id=f"r{i}", reg=reg) for i in range(2)]
    steps = [0]

    def step(rows, objective):
        steps[0] += 1
        return [1.0, 1.0]

    # member 0 never improves after epoch 5, member 1 after epoch 10
    evaluate = lambda: [(0.1, 1.0, None, None, None, 1.0), (0.1, 1.0, None, None, None, 1.0 if steps[0] > 10 else 2.0 - steps[0] / 10)]  # noqa: E731
    a, b = loop.train(cfgs, 10, [1.0, 1.0], step, evaluate)
    assert (a.stopped, a.kept, b.stopped, b.kept) == (10, 0, 15, 1) and steps[0] == 15
