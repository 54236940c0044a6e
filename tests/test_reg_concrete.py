"""Concrete dropout (Gal, Hron & Kendall 2017) pinned against a from-scratch NumPy transcription of
the authors' code (yaringal/ConcreteDropout): the relaxed mask, the objective's two terms, the
learned rate, and what both engines record. The registry-driven tests in test_regularizers.py
check it like every regularizer (engines agree, backward == autograd, eval, init_p=0, bad values)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assert_bits_equal, autograd_and_backward

from dropbench import regs
from dropbench.columns import CURVE_COLUMNS
from dropbench.config import load
from dropbench.errors import UserError
from dropbench.regs import concrete_dropout as cd

LEARNED = CURVE_COLUMNS.index("learned_p")  # a curve row's learned rates (text)

REG = regs.REGISTRY["concrete_dropout"]


def numpy_concrete(x: np.ndarray, p: float, u: np.ndarray, t: float) -> np.ndarray:
    """The authors' _concrete_dropout in NumPy, float64."""
    eps = 1e-7
    drop = np.log(p + eps) - np.log(1 - p + eps) + np.log(u + eps) - np.log(1 - u + eps)
    drop = 1 / (1 + np.exp(-drop / t))
    return x * (1 - drop) / (1 - p)


def layer(init_p: float = 0.1, temperature: float = 0.1) -> torch.nn.Module:
    conf = cd.Config(init_p=init_p, temperature=temperature)
    return REG.torch_layer(conf).double()


def test_forward_is_the_authors_relaxed_mask_with_u_from_the_runs_generator():
    m = layer(0.2, 0.1).train()
    x = torch.randn(50, 7, dtype=torch.float64)
    torch.manual_seed(3)
    got = m(x).detach().numpy()
    torch.manual_seed(3)
    u = torch.rand(50, 7, dtype=torch.float64).numpy()  # rand_like(x): the same draws
    p = float(torch.sigmoid(m.p_logit).item())  # logit(0.2) as the parameter holds it
    assert abs(p - 0.2) < 1e-7
    np.testing.assert_allclose(got, numpy_concrete(x.numpy(), p, u, 0.1), rtol=1e-12, atol=1e-14)


def test_low_temperature_approaches_inverted_dropout_with_rate_p():
    m = layer(0.3, 1e-3).train()
    torch.manual_seed(0)
    y = m(torch.ones(20000, 1, dtype=torch.float64)).detach().numpy()
    dropped = np.mean(y < 1e-3)
    assert abs(dropped - 0.3) < 0.02
    np.testing.assert_allclose(np.median(y[y > 1e-3]), 1 / 0.7, rtol=1e-6)  # survivors: 1/(1-p)


def test_eval_mode_and_init_p_zero_are_the_identity_without_draws():
    x = torch.randn(4, 3, dtype=torch.float64)
    for m in (layer(0.1).eval(), layer(0.0).train()):
        state = torch.get_rng_state()
        assert torch.equal(m(x), x)
        assert torch.equal(state, torch.get_rng_state())
    assert layer(0.0).p_logit is None


@pytest.mark.parametrize("inputs", [True, False])
def test_the_objective_terms_are_the_papers_per_dropped_layer(inputs):
    """l^2/N sum(W^2)/(1-p) + 2/N K (p log p + (1-p) log(1-p)) for each concrete layer, with W the
    weight (no bias) of the Linear its output feeds and K that Linear's input width: every Linear
    with inputs=true (the inputs are dropped too), all but the first with inputs=false."""
    from dropbench.models import build_model

    cfg = load(["reg=concrete_dropout", "model.depth=2", "model.hidden=6", "reg.concrete_dropout.length_scale=0.5",
                "reg.concrete_dropout.init_p=0.25", f"reg.concrete_dropout.inputs={str(inputs).lower()}"])
    model = build_model(cfg, 3).double()
    conf, n = cfg.reg.concrete_dropout, 40
    lins = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(cd.layers(model)) == (3 if inputs else 2)
    want = 0.0
    p = 0.25
    for lin in lins[0 if inputs else 1:]:
        w = lin.weight.detach().numpy()
        want += 0.5**2 / n * np.sum(w**2) / (1 - p) + 2 / n * lin.in_features * (p * math.log(p) + (1 - p) * math.log(1 - p))
    got = REG.torch_penalty(model, conf, n)
    assert math.isclose(float(got.detach()), want, rel_tol=1e-6)  # p_logit is stored in float32 before .double()
    got.backward()
    assert all(c.p_logit.grad is not None and c.p_logit.grad.abs().item() > 0 for c, _ in cd.layers(model))


def test_it_may_not_combine_with_l2():
    with pytest.raises(UserError, match=r"reg=\[concrete_dropout,l2\] combines two weight priors.*; choose one"):
        load(["reg=[concrete_dropout,l2]"])


def test_p_is_learned_and_recorded_in_curves_and_runs(tmp_path):
    """A run's p moves away from init_p, each layer its own; curves.csv records them at every
    evaluation and runs.csv the last ones, the same in both engines (float64)."""
    from dropbench.engines.batched import _train_chunk
    from dropbench.engines.reference import train_one

    over = ["reg=concrete_dropout", "model.depth=2", "model.hidden=16", "epochs=30", "eval_every=10", "dtype=float64",
            "optim.lr=0.05", "reg.concrete_dropout.length_scale=0.1"]
    cfgs = [load([*over, f"seed={s}"]) for s in (0, 1)]
    ref = [train_one(c) for c in cfgs]
    got = _train_chunk(cfgs, 2)
    learned = lambda r: [[float(v) for v in row[LEARNED].split()] for row in r.rows()]  # noqa: E731
    for a, b in zip(ref, got):
        assert a.status == b.status == "ok" and len(learned(a)) == len(a.curve) == 3
        ps = learned(a)[-1]
        assert len(ps) == 3 and all(0 < v < 1 for v in ps) and all(abs(v - 0.1) > 1e-4 for v in ps)  # inputs, 2 hidden
        np.testing.assert_allclose(np.array(learned(b)), np.array(learned(a)), rtol=1e-9)
        assert a.summary()["final_learned_p"] == " ".join(repr(v) for v in ps)
    from dropbench.readback import read_curves, read_runs
    from dropbench.results import consolidate, write_run

    for r in ref:
        write_run(tmp_path, r)
    consolidate(tmp_path)
    runs, curves = read_runs(tmp_path), read_curves(tmp_path)
    by_id = {r.run_id: r for r in ref}
    assert {r["run_id"]: r["final_learned_p"] for r in runs} == {k: r.summary()["final_learned_p"] for k, r in by_id.items()}
    assert sorted((c["run_id"], c["epoch"], c["learned_p"]) for c in curves) == \
        sorted((k, row[0], row[LEARNED]) for k, r in by_id.items() for row in r.rows())
    none = train_one(load(["reg=dropout", "epochs=3"]))
    assert none.summary()["final_learned_p"] is None


def test_mc_evaluation_draws_relaxed_masks_in_both_engines():
    from dropbench.engines.batched import _train_chunk
    from dropbench.engines.reference import train_one

    over = ["reg=concrete_dropout", "model.hidden=8", "epochs=4", "eval_every=4", "dtype=float64", "eval.mc_samples=7"]
    cfgs = [load([*over, f"seed={s}"]) for s in (0, 1)]
    for a, b in zip([train_one(c) for c in cfgs], _train_chunk(cfgs, 2)):
        mc, det = a.summary()["final_test_mc_mse"], a.summary()["final_test_mse"]
        assert mc is not None and mc != det
        assert math.isclose(b.summary()["final_test_mc_mse"], mc, rel_tol=1e-9)


@pytest.mark.kernels
@pytest.mark.parametrize("inputs", ["true", "false"])
def test_the_learned_rates_gradient_is_autograds_bit_for_bit(inputs):
    """The batched piece's gradient of p_logit (through the masks of every layer, the inputs' too)
    is autograd's through the chunk's forward, as the network's are (test_regularizers checks those)."""
    from dropbench.engines.program import Chunk

    cfgs = [load(["reg=concrete_dropout", "model.hidden=16", "model.depth=3", "dtype=float32", f"seed={s}",
                  f"reg.concrete_dropout.init_p={p}", f"reg.concrete_dropout.inputs={inputs}", "data=friedman1"])
            for s, p in ((0, 0.1), (1, 0.3), (2, 0.0))]
    chunk = Chunk(cfgs, 3)
    for _ in range(2):
        chunk.step(objective=False)
    want, got, _ = autograd_and_backward(chunk, of="learned")
    assert len(got) == len(want)
    assert_bits_equal(got, want, f"concrete dropout's p gradient (inputs={inputs}), against autograd's")
    for g in got:
        assert g[2].abs().max() == 0  # the member that is off: no gradient, its dummy never moves
    assert all(g[:2].abs().min() > 0 for g in got)


def test_inputs_on_and_off_never_share_a_chunk_and_both_engines_agree():
    """Dropping the inputs changes the program's structure (one more learned p, one more mask), so
    the planner keeps runs with inputs=true and false apart; each engine gives the same numbers."""
    from dropbench.data import load_dataset
    from dropbench.engines.batched import _train_chunk
    from dropbench.engines.planner import group_key
    from dropbench.engines.reference import train_one

    on, off = (load(["reg=concrete_dropout", "model.hidden=8", "epochs=6", "eval_every=3", "dtype=float64", "data=friedman1",
                     f"reg.concrete_dropout.inputs={v}"]) for v in ("true", "false"))
    assert group_key(on, load_dataset(on)) != group_key(off, load_dataset(off))
    for cfg, n in ((on, 3), (off, 2)):  # the inputs and 2 hidden layers, or the hidden ones
        a, (b,) = train_one(cfg), _train_chunk([cfg], 2)
        ps = [[float(v) for v in row[LEARNED].split()] for row in a.rows()]
        assert all(len(v) == n for v in ps)
        np.testing.assert_allclose([[float(v) for v in row[LEARNED].split()] for row in b.rows()], ps, rtol=1e-10)
        np.testing.assert_allclose([r[2] for r in b.curve], [r[2] for r in a.curve], rtol=1e-10)


@pytest.mark.kernels
@pytest.mark.parametrize("inputs", ["true", "false"])
def test_the_penaltys_gradient_is_autograds_bit_for_bit(inputs):
    """add_grad takes the weights' part of the penalty's gradient by hand (as autograd's
    pow_backward forms it): the same bits as autograd's gradient of the penalty, weights and p."""
    import torch

    from dropbench.engines.program import Chunk

    cfgs = [load(["reg=concrete_dropout", "model.hidden=16", "model.depth=3", "dtype=float32", f"seed={s}",
                  f"reg.concrete_dropout.init_p={p}", f"reg.concrete_dropout.inputs={inputs}", "data=friedman1",
                  "reg.concrete_dropout.length_scale=0.3"])
            for s, p in ((0, 0.1), (1, 0.3), (2, 0.0))]
    chunk = Chunk(cfgs, 3)
    for _ in range(2):
        chunk.step(objective=False)
    (piece,) = chunk.learners
    at = piece._consumers()
    leaves = [p.detach().clone().requires_grad_() for p in chunk.params]
    pls = [p.detach().clone().requires_grad_() for p in piece.params]
    saved, piece.params[:] = list(piece.params), pls
    with torch.enable_grad():
        want = torch.autograd.grad(piece.penalty(leaves).sum(), [leaves[a] for a in at] + pls)
    piece.params[:] = saved
    # add_grad adds to the gradients the backward left (as autograd's accumulation does)
    torch.manual_seed(0)
    grads = [torch.randn_like(p) for p in chunk.params]
    for g in piece.grads:
        g.copy_(torch.randn_like(g))
    expected = [grads[a].clone().add_(w) for a, w in zip(at, want)] + [g.clone().add_(w) for g, w in zip(piece.grads, want[len(at):])]
    piece.add_grad(grads, chunk.params)
    assert_bits_equal([grads[a] for a in at] + list(piece.grads), expected,
                      f"concrete dropout's penalty gradient (inputs={inputs}), against autograd's")


@pytest.mark.kernels
def test_training_with_the_recorded_forward_is_training_with_it_recomputed():
    """The piece's backward differentiates the graph its forward recorded; computing the forward
    again in the backward (as it once did) gives the same bits, steps and learned rates."""
    import torch

    from dropbench.engines.program import Chunk

    cfgs = [load(["reg=concrete_dropout", "model.hidden=16", "model.depth=3", "dtype=float32", f"seed={s}",
                  f"reg.concrete_dropout.init_p={p}", "data=friedman1", "batch_size=16"])
            for s, p in ((0, 0.1), (1, 0.3), (2, 0.0))]
    recorded, recomputed = Chunk(cfgs, 3), Chunk(cfgs, 3)
    (piece,) = recomputed.learners
    piece.record = False
    for chunk in (recorded, recomputed):
        for _ in range(4):
            chunk.step(objective=True)
    assert_bits_equal([*recorded.params, *recorded.learners[0].params], [*recomputed.params, *piece.params],
                      "concrete dropout trained with its forward recorded, against recomputed")
    assert not torch.equal(recorded.params[0], Chunk(cfgs, 3).params[0])  # it trained


def _member_rows(values: torch.Tensor) -> torch.Tensor:
    from dropbench.engines import memberwise

    out = memberwise.rows(values.shape, values.dtype)
    out.copy_(values)
    return out


@pytest.mark.kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_hand_written_relaxed_mask_and_its_backward_are_autograds_bit_for_bit(dtype):
    """relaxed_kept and relaxed_backward (what a chunk trains with) against autograd through
    where(on, relaxed(...), x): the forward and both gradients bit for bit, chunks with members
    off and all on, saturated masks (exact zeros, signed) included. Each gradient that autograd
    sums from several parts is summed in its order: another order differs in a few elements."""
    from dropbench.engines import memberwise

    for trial in range(60):
        gen = torch.Generator().manual_seed(trial)
        C, B, W = 1 + trial % 5, 1 + (trial * 7) % 33, 1 + (trial * 13) % 70
        shape = (C, B, W)
        x = _member_rows(torch.randn(shape, dtype=dtype, generator=gen) * (torch.rand(shape, generator=gen) > 0.2))
        u = _member_rows(torch.rand(shape, dtype=dtype, generator=gen))
        grad = _member_rows(torch.randn(shape, dtype=dtype, generator=gen))
        pl = (2 * torch.randn((C, 1, 1), dtype=dtype, generator=gen)).contiguous()
        temperature = torch.tensor([0.1, 0.05, 0.5, 1.0, 0.2][:C], dtype=dtype).view(C, 1, 1)
        all_on = trial % 3 == 0
        on = torch.ones((C, 1, 1), dtype=torch.bool) if all_on else torch.rand((C, 1, 1), generator=gen) > 0.3
        with torch.no_grad():
            out, kept = cd.relaxed_kept(x, pl, u, temperature, on, all_on)
            gx, gp = cd.relaxed_backward(grad, kept, temperature, on, all_on)
        xl, pll = x.clone().requires_grad_(), pl.clone().requires_grad_()
        want = torch.where(on, cd.relaxed(xl, pll, u, temperature, memberwise), xl)
        wx, wp = torch.autograd.grad(want, (xl, pll), grad)
        assert_bits_equal([out, gx, gp], [want.detach(), wx, wp], f"trial {trial}: relaxed_kept/relaxed_backward against autograd")


@pytest.mark.kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_hand_written_penalty_gradient_is_autograds_bit_for_bit(dtype):
    """regularizer_grads against autograd's gradient of regularizer (memberwise ops), for many
    rates, weights and factors, members off (a zero gradient) among them."""
    from dropbench.engines import memberwise

    for trial in range(60):
        gen = torch.Generator().manual_seed(trial)
        C = 1 + trial % 7
        col = lambda t: t.to(dtype).view(C, 1, 1).contiguous()  # noqa: E731
        sq = col(torch.rand(C, generator=gen, dtype=torch.float64) * 10 ** (trial % 5))
        pl = col(3 * torch.randn(C, generator=gen, dtype=torch.float64))
        wr = col(torch.rand(C, generator=gen, dtype=torch.float64) * 1e-3)
        dr = col(torch.rand(C, generator=gen, dtype=torch.float64) * 50)
        g = col((torch.rand(C, generator=gen) > 0.3).double())
        g_sq, g_pl = cd.regularizer_grads(sq, pl, wr, dr, g)
        sql, pll = sq.clone().requires_grad_(), pl.clone().requires_grad_()
        want = torch.autograd.grad(cd.regularizer(sql, pll, wr, dr, memberwise), (sql, pll), g)
        assert_bits_equal([g_sq, g_pl], list(want), f"trial {trial}: regularizer_grads against autograd")
