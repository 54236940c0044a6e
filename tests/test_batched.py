"""The batched engine: same initial weights and masks as the reference, agreement, invariance."""

import csv
import math
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from conftest import assert_bits_equal, autograd_and_backward
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbench.config import load
from dropbench.data import load_dataset
from dropbench.engines import get_engine
from dropbench.engines.batched import BatchedEngine, _train_chunk
from dropbench.engines.loop import fit_grid, settle
from dropbench.engines.planner import (
    DEFAULT_L2, MachineFacts, balance, chunk_cost, group_key, makespan, max_chunk, plan_chunks, run_work, split_group, step_work, working_elements,
)
from dropbench.engines.program import Chunk
from dropbench.engines.reference import train_one
from dropbench.engines.result import RunResult
from dropbench.models import build_model
from dropbench.regs import REGISTRY


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


@pytest.mark.parametrize(
    "reg, optim",
    [("none", "adam"), ("l1", "adam"), ("l2", "adam"), ("dropout", "adam"), ("vanilla_dropout", "adam"),
     ("droppath", "adam"), ("dropconnect", "adam"), ("[dropout,l2]", "adam"), ("l2", "sgd"), ("[l1,dropout]", "sgd"),
     ("[l2]", "adam"), ("[l2]", "sgd")],
)
def test_agrees_with_reference_float64_to_rounding(reg, optim):
    """In float64 every regularizer agrees to rounding: the masks are the reference's own.
    ([l2] is decoupled weight decay.) Float64 with a tolerance, not float32 bits: the two engines
    take different kernels, whose float32 rounding differs from one CPU to another."""
    extra = ["reg.l2.decoupled=true"] if reg == "[l2]" else []
    cfgs = cfgs_for(reg, range(2), "epochs=20", "eval_every=5", "dtype=float64", f"optim={optim}", "optim.lr=0.05",
                    "model.hidden=64", *extra)
    for cfg, b in zip(cfgs, _train_chunk(cfgs, 2)):
        assert _max_curve_err(train_one(cfg), b) < 1e-9


def test_reference_engine_numbers_do_not_depend_on_the_thread_count():
    """The torch engine trains with one intra-op thread, as the batched engine does: with the
    machine's threads, the L1 sum over 91k weights was split over threads and its last bits
    (the train_loss column) depended on the core count."""
    cfg = load(["reg=l1", "epochs=10", "eval_every=5", "engine=torch"])
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            (r,) = list(get_engine("torch").train([cfg]))
            assert torch.get_num_threads() == threads, "the caller's setting is restored"
            runs.append((r.curve, r.fit))
    finally:
        torch.set_num_threads(before)
    assert runs[0] == runs[1] == runs[2]


def test_fit_agrees_with_reference_in_float64():
    """fit.csv of a float64 run: the grid is drawn from the float64 data in both engines (it was
    drawn from float32 data in the batched one, 1e-7 off), and the predictions agree to rounding."""
    cfg = load(["reg=dropout", "seed=2", "epochs=10", "eval_every=5", "dtype=float64", "model.hidden=32"])
    ref, (bat,) = train_one(cfg), _train_chunk([cfg], 2)
    assert len(ref.fit) == len(bat.fit) == 200
    for (xr, yr), (xb, yb) in zip(ref.fit, bat.fit):
        assert abs(xr - xb) <= 1e-12 and abs(yr - yb) <= 1e-12 * max(1.0, abs(yr))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fit_grid_keeps_the_datas_device_and_dtype(dtype):
    """The grid lives where the model does (engine=torch device=cuda made it on the CPU).
    A meta tensor stands in for a GPU: it has a device and a dtype but no values to copy out."""
    grid = fit_grid(torch.empty(20, 1, dtype=dtype, device="meta"))
    assert grid.device.type == "meta" and grid.dtype == dtype and grid.shape == (200, 1)
    x = torch.tensor([[0.5], [-2.0], [3.0]], dtype=dtype)
    grid = fit_grid(x)
    assert grid.dtype == dtype and grid[0, 0] == -2.0 and grid[-1, 0] == 3.0
    assert torch.equal(grid[:, 0], torch.linspace(-2.0, 3.0, 200, dtype=dtype))


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


@pytest.mark.kernels
@pytest.mark.parametrize("reg", ["none", *REGISTRY])
def test_run_is_bit_identical_alone_in_any_chunk_or_worker(reg):
    """A run's numbers do not depend on its company (default 1-300-300-1 network, whose thin
    layers are where a batch of one took other kernels). This is a property of the kernels of
    the CPU it runs on: it held on every CPU tried, and this test checks it on this one."""
    target = load([f"reg={reg}", "seed=3", "epochs=6", "eval_every=3", "model.activation=gelu"])
    others = [replace(target, seed=s) for s in range(100, 137)]
    want = _signature(BatchedEngine(workers=1).train([target]))[target.run_id]
    for size, pos in [(2, 1), (5, 0), (13, 12), (37, 20)]:
        members = others[: size - 1]
        members.insert(pos, target)
        got = _signature(_train_chunk(members, size))[target.run_id]
        assert_bits_equal(got, want, f"reg={reg} in a chunk of {size} at position {pos}, against alone")
    sweep = others[:9] + [target] + others[9:20]
    got = _signature(BatchedEngine(workers=2).train(sweep))[target.run_id]
    assert_bits_equal(got, want, f"reg={reg} inside a 21-run sweep on two workers, against alone")


@pytest.mark.slow
@pytest.mark.kernels
@pytest.mark.parametrize("reg", ["none", "dropout", "dropconnect", "droppath", "input_dropout", "max_norm"])
def test_mini_batch_run_is_bit_identical_alone_in_any_chunk_or_worker(reg):
    """The same with batch_size=7 (batches of 7, 7 and 6 of the 20 rows, each member gathering
    its own rows from its own permutation), for a regularizer of each slot that draws or acts on
    the rows, and none: company changes neither the shuffle nor the masks nor the kernels."""
    target = load([f"reg={reg}", "seed=3", "epochs=2", "eval_every=1", "model.activation=gelu", "batch_size=7"])
    others = [replace(target, seed=s) for s in range(100, 137)]
    want = _signature(BatchedEngine(workers=1).train([target]))[target.run_id]
    assert want[2] == "ok"
    for size, pos in [(2, 1), (5, 0), (13, 12), (37, 20)]:
        members = others[: size - 1]
        members.insert(pos, target)
        got = _signature(_train_chunk(members, size))[target.run_id]
        assert_bits_equal(got, want, f"reg={reg} batch_size=7 in a chunk of {size} at position {pos}, against alone")
    sweep = others[:9] + [target] + others[9:20] + [replace(o, batch_size=None) for o in others[20:25]]
    got = _signature(BatchedEngine(workers=2).train(sweep))[target.run_id]
    assert_bits_equal(got, want, f"reg={reg} batch_size=7 inside a 26-run sweep (5 of them full batch), against alone")


def _sweep_of_chunks() -> list:
    return [load(["reg=dropout", "epochs=3", "eval_every=1", "model.hidden=16", f"seed={s}", f"p={p}"])
            for s in range(6) for p in (0.1, 0.3)]


@pytest.mark.kernels  # one worker and two chunk the runs differently: a run's bits alone and in company
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the workers fork on Linux only: threads here")
def test_forked_and_threaded_workers_train_the_same_runs():
    """Worker processes (forked, the default where the platform forks) and worker threads give
    every run the numbers it gets on one worker; each run comes back once."""
    cfgs = _sweep_of_chunks()
    machine = MachineFacts(2, 2**12)  # a small L2: several chunks
    assert len(plan_chunks(cfgs, machine)) > 2
    want = _signature(BatchedEngine(machine=MachineFacts(1, 2**12)).train(cfgs))
    assert BatchedEngine(machine=machine).processes
    for processes in (True, False):
        got = list(BatchedEngine(machine=machine, processes=processes).train(cfgs))
        assert len(got) == len(cfgs) and _signature(got) == want, f"processes={processes}"


def _left_behind(before: set) -> list:
    """Child processes started since `before` that still exist. multiprocessing may list one
    that is gone: where the executor's thread and the engine both wait for a killed worker, the
    one that loses the race leaves the Process object looking alive; the OS says whether it is."""
    import multiprocessing

    left = []
    for p in set(multiprocessing.active_children()) - before:
        try:
            os.kill(p.pid, 0)
        except ProcessLookupError:
            continue
        left.append(p)
    return left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the workers fork on Linux only: threads here")
def test_a_worker_process_that_dies_ends_the_sweep_with_one_clear_error(monkeypatch):
    """A worker killed mid-chunk (the OOM killer, say) cannot hand back its runs: the sweep stops
    with a message saying so and how to resume, and no worker is left behind."""
    import multiprocessing

    from dropbench.engines import batched

    real = batched._train_chunk

    def dies_on_the_second(cfgs, size, *rest):
        if any(c.seed == 1 for c in cfgs):
            os._exit(9)
        return real(cfgs, size, *rest)

    monkeypatch.setattr(batched, "_train_chunk", dies_on_the_second)  # inherited by the forked workers
    before = set(multiprocessing.active_children())
    with pytest.raises(RuntimeError, match="worker process died.*run the sweep again to resume"):
        list(BatchedEngine(machine=MachineFacts(2, 2**12), processes=True).train(_sweep_of_chunks()))
    assert not _left_behind(before)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the workers fork on Linux only: threads here")
def test_closing_the_sweep_early_stops_its_worker_processes():
    """A consumer that stops reading (storing failed, Ctrl-C) closes the generator: the workers
    are killed and reaped, not left training."""
    import multiprocessing

    before = set(multiprocessing.active_children())
    trained = BatchedEngine(machine=MachineFacts(2, 2**12), processes=True).train(_sweep_of_chunks())
    next(trained)
    trained.close()
    assert not _left_behind(before)


def test_a_lone_run_is_padded_to_two_members():
    (members, size), = plan_chunks([load(["epochs=5"])], MachineFacts())
    assert len(members) == 1 and size == 2


@pytest.mark.parametrize("n, most", [(1, 8), (2, 8), (3, 8), (10, 8), (50, 8), (37, 16), (9, 4), (16, 16)])
def test_split_group_sizes(n, most):
    sizes = split_group(n, most)
    assert sum(sizes) == n and max(sizes) <= most
    assert len(sizes) == -(-n // most) and max(sizes) - min(sizes) <= 1


# ---- the chunk planner, on simulated machines -------------------------------------------------
# The plan depends on the machine (a core's L2 size, the number of workers) and changes only the
# speed. These tests inject the machine, so they hold on any host, and check the planner's rules.
MACHINES = [MachineFacts(w, l2) for l2 in (2**18, 2**19, 2**20, 2**21, None) for w in (1, 2, 4, 16)]
FIVE_REGS = ["none", "l1", "l2", "dropout", "droppath"]


@pytest.fixture(scope="module")
def sweeps():
    """Configs are composed once and varied by seed (composing one takes ~50 ms)."""
    def seeds(overrides, n):
        cfg = load(overrides)
        return [replace(cfg, seed=s) for s in range(n)]

    five = [c for r in FIVE_REGS for c in seeds([f"reg={r}"], 10)]
    mixed = (seeds(["reg=dropout", "model.hidden=64"], 37) + seeds(["data=friedman1"], 3) + seeds(["reg=l1"], 1)
             + seeds(["dtype=float64"], 7) + seeds(["reg=dropconnect", "model.depth=3"], 4))
    return {"five groups of 10": five, "mixed sizes": mixed}


def _unit_cost(members) -> float:
    c = members[0]
    return run_work(c, *tuple(load_dataset(c).x_train.shape))


def _plan_makespan(plan, workers: int) -> float:
    return makespan([chunk_cost((ms, _unit_cost(ms))) for ms, _ in plan], workers)


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: f"{m.workers}w-L2={m.l2_bytes}")
@pytest.mark.parametrize("sweep", ["five groups of 10", "mixed sizes"])
def test_plan_rules_hold_on_any_machine(sweeps, sweep, machine):
    """Every run in exactly one chunk; no chunk mixes groups; 2 <= size <= max_chunk (a chunk of
    one run is padded to 2); balancing over the workers never lengthens the makespan."""
    cfgs = sweeps[sweep]
    plan = plan_chunks(cfgs, machine)
    assert sorted(c.run_id for ms, _ in plan for c in ms) == sorted(c.run_id for c in cfgs)
    keys = {c.run_id: group_key(c, load_dataset(c)) for c in cfgs}
    group_sizes: dict = {}
    for c in cfgs:
        group_sizes[keys[c.run_id]] = group_sizes.get(keys[c.run_id], 0) + 1
    for members, size in plan:
        assert len({keys[c.run_id] for c in members}) == 1, "a chunk mixes groups"
        c = members[0]
        data = load_dataset(c)
        n_params = step_work(c, *tuple(data.x_train.shape))[0]
        most_t = max(members, key=lambda m: m.eval.mc_samples)
        elements = working_elements(most_t, *tuple(data.x_train.shape), data.x_test.shape[0])
        most = max_chunk(n_params, 8 if c.dtype == "float64" else 4, machine.l2_bytes, *elements)
        assert 2 <= size <= max(most, 2) and size == max(len(members), 2)
        # One member (padded) only where nothing else fits: a group of one, or an odd group
        # in chunks of at most 2.
        assert len(members) > 1 or group_sizes[keys[c.run_id]] == 1 or most == 2, "a needless chunk of one"
    unbalanced = plan_chunks(cfgs, replace(machine, workers=1))
    assert _plan_makespan(plan, machine.workers) <= _plan_makespan(unbalanced, machine.workers) + 1e-9


def _worker_sizes(plan, workers: int) -> list[list[int]]:
    """Which chunk sizes each worker trains when they take chunks in order, each the next free."""
    loads, sizes = [0.0] * workers, [[] for _ in range(workers)]
    for ms, size in plan:
        w = loads.index(min(loads))
        loads[w] += chunk_cost((ms, _unit_cost(ms)))
        sizes[w].append(size)
    return sorted(sorted(s) for s in sizes)


def test_plan_balances_two_workers_with_a_2mb_l2(sweeps):
    """Five groups of 10 on a 2 MB L2 (chunks of up to 17): one worker trains them whole; two
    workers train 10+10+5 each rather than 10+10+10 against 10+10. An unknown L2 plans as 2 MB."""
    cfgs = sweeps["five groups of 10"]
    assert sorted(size for _, size in plan_chunks(cfgs, MachineFacts(1, 2**21))) == [10] * 5
    two = plan_chunks(cfgs, MachineFacts(2, 2**21))
    assert sorted(size for _, size in two) == [5, 5, 10, 10, 10, 10]
    assert _worker_sizes(two, 2) == [[5, 10, 10], [5, 10, 10]]
    assert DEFAULT_L2 == 2**21
    unknown = plan_chunks(cfgs, MachineFacts(2, None))
    assert [(len(ms), s) for ms, s in unknown] == [(len(ms), s) for ms, s in two]


def test_a_smaller_l2_cuts_smaller_chunks(sweeps):
    cfgs = sweeps["five groups of 10"]
    largest = [max(s for _, s in plan_chunks(cfgs, MachineFacts(1, l2))) for l2 in (2**18, 2**19, 2**20, 2**21)]
    assert largest == sorted(largest) and largest[0] == 2 and largest[-1] == 10


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(1, 40), st.floats(0.1, 5.0)), min_size=1, max_size=12), st.integers(1, 16))
def test_balance_only_halves_chunks_and_never_lengthens_the_makespan(pieces, workers):
    """On any chunks: each output chunk is a part of one input chunk, every member is kept,
    no chunk of 2 or more falls below 2, and the makespan does not grow."""
    chunks = [([(i, j) for j in range(n)], cost) for i, (n, cost) in enumerate(pieces)]
    out = balance(list(chunks), workers)
    assert sorted(m for ms, _ in out for m in ms) == sorted(m for ms, _ in chunks for m in ms)
    for ms, cost in out:
        (origin,) = {i for i, _ in ms}
        assert cost == chunks[origin][1]
        assert len(ms) >= 2 or len(chunks[origin][0]) == 1
    cost_of = lambda cs: makespan([chunk_cost(c) for c in cs], workers)  # noqa: E731
    assert cost_of(out) <= cost_of(chunks) + 1e-9


def test_machine_facts_are_detected_or_injected(monkeypatch):
    assert MachineFacts.detect(3).workers == 3
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 7)  # one worker per core by default, whatever this host has
    assert MachineFacts.detect().workers == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert MachineFacts.detect().workers == 1
    machine = MachineFacts(5, 2**19)
    assert BatchedEngine(machine=machine).machine == machine and BatchedEngine(machine=machine).workers == 5
    assert plan_chunks([], MachineFacts(2)) == [] and list(BatchedEngine(2).train([])) == []


@pytest.mark.kernels
def test_numbers_do_not_depend_on_the_machine_facts():
    """The same sweep planned for a 256 KB L2 on one worker (chunks of 2) and for a 2 MB L2 on two
    (chunks of up to 17): every run's numbers are identical."""
    cfg = load(["reg=dropout", "epochs=6", "eval_every=3"])
    cfgs = [replace(cfg, seed=s) for s in range(7)]
    small = _signature(BatchedEngine(machine=MachineFacts(1, 2**18)).train(cfgs))
    large = _signature(BatchedEngine(machine=MachineFacts(2, 2**21)).train(cfgs))
    assert_bits_equal(large, small, "7 runs in chunks of up to 7 on two workers, against chunks of 2 on one")


@pytest.mark.kernels
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
    keys = {tuple(m.run_id for m in members) for members, _ in plan_chunks(cfgs, MachineFacts(2))}
    assert len(keys) == 5, "friedman1 runs share a chunk; every other run has its own program"
    mixed = _signature(BatchedEngine(workers=2).train(cfgs))
    for c in cfgs:
        assert_bits_equal(mixed[c.run_id], _signature(BatchedEngine(workers=1).train([c]))[c.run_id],
                          f"{c.run_id} in a mixed sweep on two workers, against alone")
        assert mixed[c.run_id][2] == "ok"


def test_diverging_member_is_isolated():
    """A member whose numbers become inf and NaN leaves its chunk mates' bits as they are beside a
    member that trains normally: the same chunk size and positions, so the same kernels."""
    good = cfgs_for("none", [1, 2], "epochs=30", "eval_every=10", "optim=sgd")
    bad = load(["seed=3", "epochs=30", "eval_every=10", "optim=sgd", "optim.lr=1e6"])
    results = {r.run_id: r for r in _train_chunk([good[0], bad, good[1]], 3)}
    assert results[bad.run_id].status == "failed" and "diverged" in results[bad.run_id].reason
    tame = load(["seed=3", "epochs=30", "eval_every=10", "optim=sgd", "optim.lr=0.01"])
    beside_tame = {r.run_id: r for r in _train_chunk([good[0], tame, good[1]], 3)}
    for g in good:
        assert results[g.run_id].status == "ok"
        assert results[g.run_id].curve == beside_tame[g.run_id].curve


@pytest.mark.parametrize("engine", ["torch", "batched"])
def test_a_run_diverging_in_its_last_step_fails(engine):
    """lr=1e30, one epoch: the loss of that step is measured before its update and is finite; the
    update makes the weights non-finite. It was stored status=ok with NaN scores."""
    cfg = load(["optim=sgd", "optim.lr=1e30", "epochs=1", f"engine={engine}"])
    (r,) = list(get_engine(engine, 1).train([cfg]))
    assert r.status == "failed" and r.reason.startswith("diverged at epoch 1 ")
    assert r.curve == [] and r.fit == [], "no NaN scores or fitted curve are kept"


def test_a_member_diverging_in_the_last_step_leaves_its_chunk_ok():
    good = load(["optim=sgd", "epochs=2", "eval_every=1", "seed=4"])
    bad = load(["optim=sgd", "optim.lr=1e30", "epochs=2", "eval_every=1", "seed=5"])
    results = {r.run_id: r for r in _train_chunk([good, bad], 2)}
    assert results[bad.run_id].status == "failed" and "diverged" in results[bad.run_id].reason
    assert results[good.run_id].status == "ok" and len(results[good.run_id].fit) == 200


def test_settle_fails_a_run_at_its_first_non_finite_evaluation():
    cfg = load(["epochs=3", "eval_every=1"])
    nan, inf = float("nan"), float("inf")
    r = settle(RunResult(cfg, curve=[(1, 0.5, 0.6, 0.4), (2, 0.4, inf, 0.3), (3, nan, nan, 0.2)], fit=[(0.0, 1.0)]))
    assert r.status == "failed" and r.reason.startswith("diverged at epoch 2 ") and "test MSE inf" in r.reason
    assert r.curve == [(1, 0.5, 0.6, 0.4)] and r.fit == []
    assert r.summary()["final_test_mse"] == 0.6
    ok = settle(RunResult(cfg, curve=[(1, 0.5, 0.6, 0.4), (3, 0.4, 0.5, 0.3)], fit=[(0.0, 1.0)]))
    assert ok.status == "ok" and len(ok.curve) == 2 and ok.fit == [(0.0, 1.0)]
    bad_fit = settle(RunResult(cfg, curve=[(3, 0.4, 0.5, 0.3)], fit=[(0.0, 1.0), (1.0, nan)]))
    assert bad_fit.status == "failed" and "fitted curve" in bad_fit.reason


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
    """A 1000-run sweep streams its results: peak memory stays far below holding them all.
    Memory follows the chunks alive at once, not the epochs, so two epochs make the point; two
    workers whatever this host's core count (one chunk alive per worker)."""
    out = tmp_path / "k"
    code = (
        "import resource, subprocess, sys;"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)"
    )
    cmd = [sys.executable, "-m", "dropbench", "run", "-m", "reg=none,l1,l2,dropout,droppath", "seed=range(200)",
           "epochs=2", "eval_every=1", "launcher.workers=2", f"out={out}", "-q"]
    rc, peak_mb = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True).stdout.split()
    assert rc == "0"
    assert int(peak_mb) < 2048, f"peak RSS {peak_mb} MB"
    with (out / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1000 and all(r["status"] == "ok" for r in rows)


def test_a_sweep_mixing_engines_groups_them(tmp_path):
    """engine=torch,batched in one sweep: each run goes to its engine; deterministic runs agree."""
    from dropbench import runner

    cfgs, launcher = runner.plan(["engine=torch,batched", "reg=none,dropout", "seed=range(2)", "epochs=10",
                                  "model.hidden=16", "dtype=float64", f"out={tmp_path / 'r'}"], True)
    rows = runner.execute(cfgs, launcher).rows
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    final = {(r["engine"], r["reg"], r["seed"]): r["final_test_mse"] for r in rows}
    for reg in ("none", "dropout"):
        for seed in range(2):
            assert rel_err(final[("torch", reg, seed)], final[("batched", reg, seed)]) < 1e-9


def test_chunk_size_follows_the_l2_cache(tmp_path):
    from dropbench.engines.planner import l2_cache_bytes

    for i, (level, kind, size) in enumerate([("1", "Data", "48K"), ("1", "Instruction", "32K"), ("2", "Unified", "2048K")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(level + "\n")
        (d / "type").write_text(kind + "\n")
        (d / "size").write_text(size + "\n")
    assert l2_cache_bytes(str(tmp_path)) == 2 * 2**20
    assert l2_cache_bytes(str(tmp_path / "none")) is None
    n = 91_201  # the 1-300-300-1 MLP: 1.46 MB of Adam state per float32 member
    # A chunk's state may span 12 L2 caches: 12 * L2 // (4 * n * bytes), clamped to [2, 256].
    assert max_chunk(n, 4, 2 * 2**20) == 17 and max_chunk(n, 4, 1 * 2**20) == 8 and max_chunk(n, 8, 2**18) == 2
    assert max_chunk(n, 4, None) == max_chunk(n, 4, DEFAULT_L2)
    assert max_chunk(10, 4, 2**30) == 256
    # a step's activations count too; an MC block's are bounded by memory
    assert max_chunk(500, 4, 2**20, 40_000) == 12 * 2**20 // ((4 * 500 + 40_000) * 4) == 74
    assert max_chunk(10, 4, 2**30, 0, 8 * 2**20) == 8


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
@pytest.mark.kernels
def test_hand_written_backward_is_autograds_bit_for_bit(overrides):
    """Chunk._backward gives exactly the gradients autograd takes through the same forward pass
    (same masks), so the hand-written backward changes no run's numbers."""
    cfgs = [load([*overrides, f"seed={s}", "model.hidden=24", "p=0.3"]) for s in range(3)]
    chunk = Chunk(cfgs, 3)
    for _ in range(3):  # a few steps, so the weights are past their initial values
        chunk.step(objective=False)
    want, got, tape = autograd_and_backward(chunk)
    assert len(tape) == chunk.n_linear and len(got) == len(want)
    assert_bits_equal(got, want, f"the hand-written backward of {overrides}, against autograd's")


def test_runs_differing_only_in_tau_train_once():
    """eval.tau only weighs the log-likelihood: such twins share one member, and each reads as
    it does alone (its own tau), in float64 as the reference engine trains it."""
    base = ["reg=dropout", "masks=fast", "eval.mc_samples=20", "epochs=4", "eval_every=2", "model.hidden=16",
            "dtype=float64"]
    cfgs = [load([*base, "seed=3", f"eval.tau={t}"]) for t in (0.5, 1.0, 2.0)] + [load([*base, "seed=4", "eval.tau=1.0"])]
    chunk = Chunk(cfgs, 4)
    assert len(chunk.cfgs) == 2 and chunk.reader_of == [0, 0, 0, 1]
    got = chunk.train()
    lls = [r.rows()[-1][8] for r in got]
    assert len(set(lls[:3])) == 3  # each its own tau
    assert len({tuple(r.rows()[-1][:8]) for r in got[:3]}) == 1  # and the same training and passes
    for cfg, r in zip(cfgs, got):
        assert _max_curve_err(train_one(cfg), r) < 1e-9


@pytest.mark.kernels
def test_twins_read_as_they_do_alone():
    base = ["reg=[input_dropout,dropout]", "eval.mc_samples=12", "epochs=2", "eval_every=1", "model.hidden=13", "batch_size=7"]
    cfgs = [load([*base, "seed=5", f"eval.tau={t}"]) for t in (0.5, 2.0)] + [load([*base, f"seed={s}"]) for s in (6, 7)]
    for cfg, r in zip(cfgs, _train_chunk(cfgs, 4)):
        assert_bits_equal(r.rows(), _train_chunk([cfg], 2)[0].rows(), f"tau={cfg.eval.tau} seed={cfg.seed} beside its twin")


def test_a_chunk_loads_each_data_set_once_however_many_members_share_it(monkeypatch):
    """Members on the same data (a grid over p) share its loading; their numbers are unchanged."""
    from dropbench import data

    calls = []
    real = data.load_dataset

    def counting(cfg):
        calls.append(cfg.data_seed)
        return real(cfg)

    cfgs = [load(["reg=dropout", f"p={p}", "epochs=2", "eval_every=1", f"seed={s}", "data.seed=7"])
            for s in (1, 2) for p in (0.1, 0.3)]
    want = [r.rows() for r in _train_chunk(cfgs, 4)]
    monkeypatch.setattr(data, "load_dataset", counting)
    got = [r.rows() for r in _train_chunk(cfgs, 4)]
    assert calls == [7] and got == want
