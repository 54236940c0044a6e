"""Mini-batch training (batch_size): the epoch's shuffle, its steps, train_loss, both engines
agreeing in float64, the hand-written backward on a batch, the planner, and full batch unchanged."""

import math
from dataclasses import replace

import pytest
import torch
from conftest import assert_bits_equal

from dropbench import regs
from dropbench.config import load
from dropbench.data import load_dataset
from dropbench.engines import get_engine
from dropbench.engines.batched import _train_chunk
from dropbench.engines.loop import batch_slices, shuffle_generator, shuffle_seed, steps_per_epoch
from dropbench.engines.planner import MachineFacts, plan_chunks, run_work, step_work
from dropbench.engines.program import Chunk
from dropbench.engines.reference import train_one
from dropbench.errors import UserError
from dropbench.models import build_model

# noisy_linear's 20 training rows in batches of 7: steps of 7, 7 and 6 rows.
SMALL = ["model.hidden=16", "model.depth=3", "p=0.3", "epochs=4", "eval_every=2", "dtype=float64", "optim.lr=0.05"]


def _err(a, b) -> float:
    assert a.status == b.status == "ok", (a.reason, b.reason)
    assert [r[0] for r in a.curve] == [r[0] for r in b.curve]
    num = lambda row: [float(v) for c in row[1:] for v in (c.split() if isinstance(c, str) else [c])  # noqa: E731
                       if v is not None]  # learned_p: text, one number per layer
    rows = [(x, y) for ra, rb in zip(a.rows(), b.rows()) for x, y in zip(num(ra), num(rb))]
    assert all(len(num(ra)) == len(num(rb)) for ra, rb in zip(a.rows(), b.rows()))
    rows += [(y1, y2) for (_, y1), (_, y2) in zip(a.fit, b.fit)]
    return max(abs(x - y) / max(abs(x), 1e-12) for x, y in rows)


# ---- the key --------------------------------------------------------------------------------
def test_batch_size_null_keeps_the_run_id_and_a_size_enters_it():
    full = load([])
    assert full.batch_size is None and "batch_size" not in _id_blob(full)
    assert load(["batch_size=null"]).run_id == full.run_id
    assert load(["batch_size=7"]).run_id != full.run_id != load(["batch_size=8"]).run_id


def _id_blob(cfg) -> str:
    import json

    from dropbench.config import _omit_new_defaults

    d = cfg.to_dict()
    _omit_new_defaults(cfg, d)
    return json.dumps(d)


@pytest.mark.parametrize("bad", ["0", "-3", "1.5", "abc"])
def test_a_bad_batch_size_is_one_line(bad):
    with pytest.raises(UserError, match=r"batch_size="):
        load([f"batch_size={bad}"])


@pytest.mark.parametrize("n, b", [(20, 7), (21, 7), (5, 32), (277, 32), (1, 1)])
def test_an_epochs_slices_cover_every_row_once_the_last_may_be_smaller(n, b):
    slices = batch_slices(n, b)
    assert len(slices) == steps_per_epoch(n, b) == math.ceil(n / b)
    assert [r for a, z in slices for r in range(a, z)] == list(range(n))
    assert all(z - a == b for a, z in slices[:-1]) and 1 <= slices[-1][1] - slices[-1][0] <= b
    assert batch_slices(n, None) is None and steps_per_epoch(n, None) == 1


def test_the_shuffle_generator_is_the_runs_own():
    """Seeded from the seed alone, a stream apart from the masks' (manual_seed(seed)) and from
    every other seed's model stream."""
    perms = [torch.randperm(50, generator=shuffle_generator(s)) for s in (1, 1, 2)]
    assert torch.equal(perms[0], perms[1]) and not torch.equal(perms[0], perms[2])
    assert len({shuffle_seed(s) for s in range(1000)} | set(range(1000))) == 2000
    torch.manual_seed(1)
    assert not torch.equal(torch.randperm(50), perms[0])


# ---- the semantics, against a written-out loop -------------------------------------------------
def _written_out(cfg) -> list[tuple[int, float]]:
    """batch_size's definition as plain torch: per epoch one randperm from the shuffle generator,
    then one SGD update per consecutive slice on that batch's MSE; masks from the global stream
    after building the model; train_loss the rows-weighted mean of the batches' losses."""
    data = load_dataset(cfg)
    x, y = data.x_train.double(), data.y_train.double()
    model = build_model(cfg, data.n_features).double()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    g = torch.Generator()
    g.manual_seed(shuffle_seed(cfg.seed))
    n, out = x.shape[0], []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm, total = torch.randperm(n, generator=g), 0.0
        for a in range(0, n, cfg.batch_size):
            idx = perm[a : a + cfg.batch_size]
            loss = (model(x[idx]) - y[idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        out.append((epoch, total / n))
    return out


@pytest.mark.parametrize("reg", ["none", "dropout"])
@pytest.mark.parametrize("engine", ["torch", "batched"])
def test_each_engine_trains_as_the_definition_says(reg, engine):
    cfg = load([f"reg={reg}", "batch_size=7", "optim=sgd", "optim.lr=0.05", "optim.momentum=0", "epochs=3",
                "eval_every=1", "model.hidden=16", "dtype=float64", "seed=4"])
    (r,) = list(get_engine(engine, 1).train([cfg]))
    want = _written_out(cfg)
    assert [row[0] for row in r.curve] == [e for e, _ in want]
    for row, (_, loss) in zip(r.curve, want):
        assert abs(row[3] - loss) <= 1e-12 * abs(loss)


def test_a_batch_as_large_as_the_data_is_one_step_per_epoch_on_shuffled_rows():
    """batch_size >= n: one step per epoch; without dropout the shuffle changes only the order
    of a sum, so the numbers are full batch's to rounding."""
    full = load(["epochs=5", "eval_every=5", "dtype=float64", "engine=torch"])
    for b in (20, 64):
        r, f = train_one(replace(full, batch_size=b)), train_one(full)
        assert _err(f, r) < 1e-12


def test_full_batch_draws_no_permutation(monkeypatch):
    """batch_size=null is today's training: nothing is shuffled, in either engine."""
    cfgs = [load(["reg=dropout", f"seed={s}", *SMALL]) for s in range(2)]
    want = [train_one(c) for c in cfgs] + _train_chunk(cfgs, 2)

    def refuse(*a, **k):
        raise AssertionError("randperm at full batch")

    monkeypatch.setattr(torch, "randperm", refuse)
    got = [train_one(c) for c in cfgs] + _train_chunk(cfgs, 2)
    assert [(r.curve, r.fit) for r in got] == [(r.curve, r.fit) for r in want]


# ---- the engines agree, every regularizer --------------------------------------------------
@pytest.mark.parametrize("name", ["none", *regs.REGISTRY])
def test_engines_agree_in_float64_with_mini_batches(name):
    """Every regularizer with batches of 7 of 20 rows (the last of 6): the batched engine's curves,
    train_loss included, and fit are the reference's to rounding."""
    cfgs = [load([f"reg=[{name}]" if name != "none" else "reg=none", *SMALL, "batch_size=7", f"seed={s}"])
            for s in range(2)]
    for cfg, b in zip(cfgs, _train_chunk(cfgs, 2)):
        assert _err(train_one(cfg), b) < 1e-9


def test_engines_agree_on_the_uci_protocols_shape(monkeypatch, uci_dir):
    """yacht's 277 training rows in batches of 32 (the last of 21), dropout on the inputs and
    after the ReLU, L2 on the weights, with MC evaluation and the log-likelihood after training."""
    monkeypatch.setenv("DROPBENCH_UCI_DIR", str(uci_dir))
    cfgs = [load(["data=uci", "data.dataset=yacht", "reg=[input_dropout,dropout,l2]", "reg.l2.biases=false",
                  "p=0.05", "model.placement=after", "model.depth=1", "model.hidden=50", "batch_size=32",
                  "epochs=3", "eval_every=1", "eval.mc_samples=20", "eval.tau=0.5", "dtype=float64", f"seed={s}"])
            for s in range(2)]
    assert load_dataset(cfgs[0]).x_train.shape[0] % 32 != 0
    for cfg, b in zip(cfgs, _train_chunk(cfgs, 2)):
        assert _err(train_one(cfg), b) < 1e-9


@pytest.mark.kernels
@pytest.mark.parametrize("name", ["none", *regs.REGISTRY])
def test_hand_written_backward_is_autograds_on_a_mini_batch(name):
    """On a full batch of 7 and on the epoch's last batch of 6, gathered from the shuffled rows
    (strided views), the chunk's backward is autograd's bit for bit."""
    cfgs = [load([f"reg=[{name}]" if name != "none" else "reg=none", *SMALL, "dtype=float32", "batch_size=7",
                  f"seed={s}"]) for s in range(3)]
    chunk = Chunk(cfgs, 3)
    xs, ys = chunk.shuffled()
    for a, b in chunk.slices:
        chunk.step(False, xs[:, a:b], ys[:, a:b])
    xs, ys = chunk.shuffled()
    for a, b in (chunk.slices[0], chunk.slices[-1]):
        params = [p.detach().clone().requires_grad_() for p in chunk.params]
        chunk.params = params
        tape: list = []
        d = chunk.forward(xs[:, a:b], train=True, tape=tape) - ys[:, a:b]
        want = torch.autograd.grad(d.pow(2).mean(dim=(1, 2)).sum(), params)
        with torch.no_grad():
            chunk._backward(tape, chunk._inv_rows.get(b - a, torch.ones((), dtype=d.dtype) / (b - a)) * (2.0 * d.detach()))
        assert len(chunk.grads) == len(want)
        assert_bits_equal(chunk.grads, list(want), f"the hand-written backward of reg={name} on rows {a}:{b}, against autograd's")
        chunk.params = [p.detach() for p in params]


# ---- divergence, per step ---------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["torch", "batched"])
def test_a_run_diverging_mid_epoch_fails_with_that_epoch(engine):
    cfg = load(["optim=sgd", "optim.lr=1e30", "epochs=3", "batch_size=7", f"engine={engine}"])
    (r,) = list(get_engine(engine, 1).train([cfg]))
    assert r.status == "failed" and r.reason.startswith("diverged at epoch 1 ") and r.curve == []


def test_a_diverging_member_leaves_its_chunk_mates_as_beside_a_tame_one():
    """Its chunk mates' bits are those they have beside a member that trains normally (the same
    chunk size and positions, so the same kernels)."""
    good = [load(["optim=sgd", "epochs=4", "eval_every=2", "batch_size=7", f"seed={s}"]) for s in (1, 2)]
    bad = load(["optim=sgd", "optim.lr=1e6", "epochs=4", "eval_every=2", "batch_size=7", "seed=3"])
    results = {r.run_id: r for r in _train_chunk([good[0], bad, good[1]], 3)}
    assert results[bad.run_id].status == "failed" and "diverged" in results[bad.run_id].reason
    tame = load(["optim=sgd", "optim.lr=0.01", "epochs=4", "eval_every=2", "batch_size=7", "seed=3"])
    beside_tame = {r.run_id: r for r in _train_chunk([good[0], tame, good[1]], 3)}
    for g in good:
        assert results[g.run_id].status == "ok" and results[g.run_id].curve == beside_tame[g.run_id].curve


# ---- the planner -----------------------------------------------------------------------------
def test_a_chunk_never_mixes_batch_sizes():
    cfgs = [load([f"batch_size={b}", f"seed={s}", "epochs=2"]) for b in ("null", 7, 8) for s in range(3)]
    plan = plan_chunks(cfgs, MachineFacts(1))
    assert len(plan) == 3
    assert all(len({c.batch_size for c in members}) == 1 for members, _ in plan)


def test_the_planners_cost_counts_steps_per_epoch():
    """A run's work is epochs x ceil(n/B) steps, each on B rows (masks scale with the rows)."""
    full = load(["reg=dropout", "epochs=10"])
    mini = replace(full, batch_size=7)
    assert run_work(full, 20, 1) == step_work(full, 20, 1)[1] * 10
    assert run_work(mini, 20, 1) == step_work(mini, 7, 1)[1] * 3 * 10
    big = replace(full, batch_size=64)  # larger than the data: one step on all 20 rows
    assert run_work(big, 20, 1) == run_work(full, 20, 1)


def test_a_sweep_over_batch_sizes_and_engines(tmp_path):
    """engine=torch,batched x batch_size=null,7 in one sweep: each run in its engine, its own group;
    runs.csv records batch_size (empty at full batch) and the engines agree."""
    from dropbench import runner

    cfgs, launcher = runner.plan(["engine=torch,batched", "batch_size=null,7", "reg=dropout", "seed=range(2)",
                                  "epochs=4", "model.hidden=16", "dtype=float64", f"out={tmp_path / 'r'}"], True)
    rows = runner.execute(cfgs, launcher).rows
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    final = {(r["engine"], r["batch_size"], r["seed"]): r["final_test_mse"] for r in rows}
    assert {k[1] for k in final} == {None, 7}
    for b in (None, 7):
        for s in range(2):
            a, z = final[("torch", b, s)], final[("batched", b, s)]
            assert abs(a - z) <= 1e-9 * abs(a)
    assert final[("torch", None, 0)] != final[("torch", 7, 0)]
