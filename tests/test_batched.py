"""The batched engine: same initial weights and masks as the reference, agreement, invariance."""

import math
import subprocess
import sys

import pytest
import torch

from dropbench.config import load
from dropbench.engines.batched import BatchedEngine, Chunk, _train_chunk, plan_chunks, split_group
from dropbench.engines.torch_engine import build_model, train_one


def cfgs_for(reg, seeds, *extra):
    return [load([f"reg={reg}", f"seed={s}", *extra]) for s in seeds]


def rel_err(a, b):
    return abs(a - b) / max(abs(a), 1e-12)


def test_initial_weights_are_the_reference_engines():
    cfgs = cfgs_for("dropout", [3, 4, 5])
    chunk = Chunk(cfgs, 3)
    for i, cfg in enumerate(cfgs):
        ref = [m for m in build_model(cfg, 1).modules() if isinstance(m, torch.nn.Linear)]
        for j, lin in enumerate(ref):
            assert torch.equal(chunk.params[2 * j][i], lin.weight.detach().t())
            assert torch.equal(chunk.params[2 * j + 1][i, 0], lin.bias.detach())


def _max_curve_err(a, b):
    assert [r[0] for r in a.curve] == [r[0] for r in b.curve]
    return max(rel_err(x, y) for ra, rb in zip(a.curve, b.curve) for x, y in zip(ra[1:], rb[1:]))


@pytest.mark.parametrize("reg", ["none", "l1", "l2", "[l2]"])
def test_agrees_with_reference_float32_first_20_epochs(reg):
    """Runs without training-time randomness: curves agree to 1e-4 relative (issue's bound)."""
    extra = ["reg.l2.decoupled=true"] if reg == "[l2]" else []
    cfgs = cfgs_for(reg, range(3), "epochs=20", "eval_every=1", *extra)
    batched = _train_chunk(cfgs, 3)
    for cfg, b in zip(cfgs, batched):
        assert _max_curve_err(train_one(cfg), b) < 1e-4


@pytest.mark.parametrize(
    "reg, optim",
    [("none", "adam"), ("l1", "adam"), ("l2", "adam"), ("dropout", "adam"), ("vanilla_dropout", "adam"),
     ("droppath", "adam"), ("dropconnect", "adam"), ("[dropout,l2]", "adam"), ("l2", "sgd"), ("[l1,dropout]", "sgd")],
)
def test_agrees_with_reference_float64_to_rounding(reg, optim):
    """In float64 every regularizer agrees to rounding: the masks are the reference's own."""
    cfgs = cfgs_for(reg, range(2), "epochs=20", "eval_every=5", "dtype=float64", f"optim={optim}", "optim.lr=0.05")
    for cfg, b in zip(cfgs, _train_chunk(cfgs, 2)):
        assert _max_curve_err(train_one(cfg), b) < 1e-9


def _t975(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


@pytest.mark.parametrize(
    "overrides",
    [
        ["reg=[droppath,dropout]", "reg.dropout.p=0.1", "reg.droppath.p=0.6"],
        ["reg=[dropconnect,vanilla_dropout]", "reg.vanilla_dropout.p=0.3", "reg.dropconnect.p=0.05"],
        ["reg=[droppath,dropout]", "reg.droppath.p=0"],
        ["reg=[droppath,dropconnect]", "reg.dropconnect.p=0", "reg.droppath.p=0.4"],
    ],
)
def test_each_dropout_family_regularizer_keeps_its_own_p(overrides):
    """Combined, each regularizer drops with its own p; one with p=0 draws nothing, as the
    reference's layers do, so the others' masks stay the reference's. Float64, to rounding."""
    cfgs = [load([*overrides, f"seed={s}", "dtype=float64", "epochs=10", "eval_every=5", "model.hidden=16", "model.depth=3"])
            for s in range(2)]
    for cfg, b in zip(cfgs, _train_chunk(cfgs, 2)):
        assert _max_curve_err(train_one(cfg), b) < 1e-9


def test_members_with_p_zero_and_p_positive_share_a_chunk():
    cfgs = [load(["reg=[droppath,dropout]", f"reg.droppath.p={p}", "seed=1", "dtype=float64", "epochs=10", "eval_every=5",
                  "model.hidden=16", "model.depth=3"]) for p in (0.0, 0.4)]
    for cfg, b in zip(cfgs, _train_chunk(cfgs, 2)):
        assert _max_curve_err(train_one(cfg), b) < 1e-9


@pytest.mark.parametrize("reg", ["dropout", "vanilla_dropout", "droppath", "dropconnect"])
def test_dropout_family_mean_final_test_mse_within_ci(reg):
    """Over 20 seeds the two engines' mean final test MSE agree within the 95% CI (float32)."""
    cfgs = cfgs_for(reg, range(20), "epochs=40", "eval_every=40", "model.hidden=64")
    ref = [train_one(c).curve[-1][2] for c in cfgs]
    bat = [r.curve[-1][2] for r in BatchedEngine(workers=2).train(cfgs)]
    n = len(ref)
    mean_r = sum(ref) / n
    sd = math.sqrt(sum((x - mean_r) ** 2 for x in ref) / (n - 1))
    half_width = _t975(n - 1) * sd / math.sqrt(n)
    assert abs(sum(bat) / n - mean_r) < half_width


def _signature(results):
    return {r.run_id: (r.curve, r.fit, r.status) for r in results}


@pytest.mark.parametrize("reg", ["none", "l1", "dropout", "droppath", "dropconnect", "vanilla_dropout"])
def test_run_is_bit_identical_alone_in_any_chunk_or_worker(reg):
    target = load([f"reg={reg}", "seed=3", "epochs=12", "eval_every=4", "model.activation=gelu"])
    others = [load([f"reg={reg}", f"seed={s}", "epochs=12", "eval_every=4", "model.activation=gelu"]) for s in range(100, 137)]
    want = _signature(BatchedEngine(workers=1).train([target]))[target.run_id]
    for size, pos in [(2, 1), (5, 0), (13, 12), (37, 20)]:
        members = others[: size - 1]
        members.insert(pos, target)
        got = _signature(_train_chunk(members, size))[target.run_id]
        assert got == want, f"chunk of {size}, position {pos}"
    sweep = others[:9] + [target] + others[9:20]
    got = _signature(BatchedEngine(workers=2).train(sweep))[target.run_id]
    assert got == want, "inside a 21-run sweep on two worker threads"


def test_a_lone_run_is_padded_to_two_members():
    (members, size), = plan_chunks([load(["epochs=5"])])
    assert len(members) == 1 and size == 2


@pytest.mark.parametrize("n, most", [(1, 8), (2, 8), (3, 8), (10, 8), (50, 8), (37, 16), (9, 4), (16, 16)])
def test_split_group_sizes(n, most):
    sizes = split_group(n, most)
    assert sum(sizes) == n and max(sizes) <= most
    assert len(sizes) == -(-n // most) and max(sizes) - min(sizes) <= 1


def test_plan_balances_the_workers_with_few_large_chunks():
    """Five groups of 10 on two workers: one group is halved so each worker trains 10+10+5;
    on one worker no group is split; a chunk never drops below two runs."""
    from dropbench.engines.batched import chunk_cost, makespan

    cfgs = [load([f"reg={r}", f"seed={s}"]) for r in ["none", "l1", "l2", "dropout", "droppath"] for s in range(10)]
    one, two = plan_chunks(cfgs, 1), plan_chunks(cfgs, 2)
    assert sorted(size for _, size in one) == [10] * 5
    assert sorted(size for _, size in two) == [5, 5, 10, 10, 10, 10]
    assert sorted(c.run_id for ms, _ in two for c in ms) == sorted(c.run_id for c in cfgs)
    cost = lambda plan: makespan([chunk_cost((ms, 1.0)) for ms, _ in plan], 2)  # noqa: E731
    assert cost(two) < cost(one)
    small = plan_chunks(cfgs_for("none", range(3)), 4)
    assert all(size >= 2 for _, size in small)
    assert plan_chunks([], 2) == [] and list(BatchedEngine(2).train([])) == []


def test_mixed_sweep_groups_and_matches_solo_runs():
    """Different data sets, model sizes, optimizers and regularizers in one sweep."""
    cfgs = [
        load(["data=noisy_sine", "seed=1", "epochs=10", "reg=dropout"]),
        load(["data=friedman1", "seed=1", "epochs=10", "model.hidden=32"]),
        load(["data=friedman1", "seed=2", "epochs=10", "model.hidden=32"]),
        load(["seed=1", "epochs=10", "optim=sgd", "reg=l2"]),
        load(["seed=1", "epochs=10", "model.depth=3", "reg=droppath"]),
        load(["seed=1", "epochs=10", "dtype=float64"]),
    ]
    keys = {tuple(m.run_id for m in members) for members, _ in plan_chunks(cfgs, 2)}
    assert len(keys) == 5, "friedman1 runs share a chunk; every other run has its own program"
    mixed = _signature(BatchedEngine(workers=2).train(cfgs))
    for c in cfgs:
        assert mixed[c.run_id] == _signature(BatchedEngine(workers=1).train([c]))[c.run_id]
        assert mixed[c.run_id][2] == "ok"


def test_diverging_member_is_isolated():
    good = cfgs_for("none", [1, 2], "epochs=30", "eval_every=10", "optim=sgd")
    bad = load(["seed=3", "epochs=30", "eval_every=10", "optim=sgd", "optim.lr=1e6"])
    results = {r.run_id: r for r in _train_chunk([good[0], bad, good[1]], 3)}
    assert results[bad.run_id].status == "failed" and "diverged" in results[bad.run_id].reason
    alone = {r.run_id: r for r in _train_chunk(good, 2)}
    for g in good:
        assert results[g.run_id].status == "ok"
        assert results[g.run_id].curve == alone[g.run_id].curve


def test_cuda_runs_where_available():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    cfgs = cfgs_for("dropout", range(4), "epochs=20", "eval_every=5", "device=cuda", "dtype=float64")
    gpu = list(BatchedEngine().train(cfgs))
    for cfg, g in zip(cfgs, gpu):
        cpu = train_one(load(["reg=dropout", f"seed={cfg.seed}", "epochs=20", "eval_every=5", "dtype=float64"]))
        assert _max_curve_err(cpu, g) < 1e-6


@pytest.mark.slow
def test_thousand_short_runs_fit_in_memory(tmp_path):
    out = tmp_path / "k"
    code = (
        "import resource, subprocess, sys;"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)"
    )
    cmd = [sys.executable, "-m", "dropbench", "run", "-m", "reg=none,l1,l2,dropout,droppath", "seed=range(200)",
           "epochs=50", f"out={out}", "-q"]
    rc, peak_mb = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True).stdout.split()
    assert rc == "0"
    assert int(peak_mb) < 2048, f"peak RSS {peak_mb} MB"
    rows = (out / "runs.csv").read_text().splitlines()
    assert len(rows) == 1001 and all(r.split(",")[-3] == "ok" for r in rows[1:])


@pytest.mark.parametrize("keep", [0.5, 0.7, 0.1, 0.999])
@pytest.mark.parametrize("shape", [(20, 300), (300, 300), (7, 1)])
def test_rand_draws_are_bernoullis_draws(keep, shape):
    """The batched engine draws masks as rand(float64) < keep: the reference's bernoulli_(keep)
    masks, bit for bit, with the generator left in the same state."""
    g = torch.Generator()
    g.manual_seed(3)
    want = torch.empty(shape).bernoulli_(keep, generator=g)
    after = torch.rand(4, generator=g)
    g.manual_seed(3)
    got = (torch.rand(shape, dtype=torch.float64, generator=g) < keep).float()
    assert torch.equal(got, want) and torch.equal(torch.rand(4, generator=g), after)


def test_a_sweep_mixing_engines_groups_them(tmp_path):
    """engine=torch,batched in one sweep: each run goes to its engine; deterministic runs agree."""
    from dropbench import runner

    cfgs, launcher = runner.plan(["engine=torch,batched", "reg=none,dropout", "seed=range(2)", "epochs=10",
                                  "model.hidden=16", f"out={tmp_path / 'r'}"], True)
    rows = runner.execute(cfgs, launcher).rows
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    final = {(r["engine"], r["reg"], r["seed"]): r["final_test_mse"] for r in rows}
    for seed in range(2):
        assert rel_err(final[("torch", "none", seed)], final[("batched", "none", seed)]) < 1e-4


def test_chunk_size_follows_the_l2_cache(tmp_path):
    from dropbench.engines.batched import l2_cache_bytes, max_chunk

    for i, (level, kind, size) in enumerate([("1", "Data", "48K"), ("1", "Instruction", "32K"), ("2", "Unified", "2048K")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(level + "\n")
        (d / "type").write_text(kind + "\n")
        (d / "size").write_text(size + "\n")
    assert l2_cache_bytes(str(tmp_path)) == 2 * 2**20
    assert l2_cache_bytes(str(tmp_path / "none")) is None
    n = 91_201  # the 1-300-300-1 MLP
    assert max_chunk(n, 4, 2 * 2**20) == 17 and max_chunk(n, 4, 1 * 2**20) == 8 and max_chunk(n, 8, 2**18) == 2
    assert max_chunk(10, 4, 2**30) == 32


@pytest.mark.parametrize(
    "overrides",
    [
        ["reg=none"], ["reg=l1"], ["reg=l2"], ["reg=[l2]", "reg.l2.decoupled=true"],
        ["reg=dropout"], ["reg=dropout", "model.placement=after"], ["reg=vanilla_dropout"],
        ["reg=vanilla_dropout", "model.placement=after", "model.activation=tanh"],
        ["reg=droppath", "model.depth=3"], ["reg=droppath", "model.activation=gelu", "model.depth=4"],
        ["reg=dropconnect"], ["reg=dropconnect", "model.depth=1"], ["reg=[dropout,l2]", "model.residual=true", "model.depth=3"],
        ["reg=dropout", "model.activation=gelu", "model.placement=after", "model.depth=3"],
        ["reg=none", "data=friedman1", "model.depth=3", "model.activation=tanh", "model.residual=true"],
        ["reg=dropout", "dtype=float64", "optim=sgd"],
    ],
)
def test_hand_written_backward_is_autograds_bit_for_bit(overrides):
    """Chunk._backward gives exactly the gradients autograd takes through the same forward pass
    (same masks), so the hand-written backward changes no run's numbers."""
    cfgs = [load([*overrides, f"seed={s}", "model.hidden=24", "p=0.3"]) for s in range(3)]
    chunk = Chunk(cfgs, 3)
    for _ in range(3):  # a few steps, so the weights are past their initial values
        chunk.step(objective=False)
    params = [p.detach().clone().requires_grad_() for p in chunk.params]
    chunk.params = params
    tape: list = []
    d = chunk.forward(chunk.x, train=True, tape=tape) - chunk.y
    want = torch.autograd.grad(d.pow(2).mean(dim=(1, 2)).sum(), params)
    with torch.no_grad():
        chunk._backward(tape, chunk._inv_n * (2.0 * d.detach()))
    assert len(tape) == chunk.n_linear
    for w, g in zip(want, chunk.grads):
        assert torch.equal(w, g)
