"""The chunk planner's cost of MC-dropout evaluation, on simulated machines (MachineFacts).

eval.mc_samples = T passes over the test rows at each eval epoch can cost more than the whole
training (the UCI protocol's T = 10,000). The planner counts them, so MC-heavy chunks start first
and are the ones split between workers; runs of one program with different T are chunked apart.
None of this may change a number: the last test trains the same runs under different plans.
"""

from dataclasses import replace

import pytest
from conftest import assert_bits_equal

from dropbench.config import load
from dropbench.data import load_dataset
from dropbench.engines.batched import BatchedEngine
from dropbench.engines.mc import mc_block
from dropbench.engines.planner import MachineFacts, chunk_cost, eval_work, makespan, plan_chunks, run_work


def with_T(cfg, T: int, **eval_fields):
    return replace(cfg, eval=replace(cfg.eval, mc_samples=T, **eval_fields))


def seeds(cfg, n: int) -> list:
    return [replace(cfg, seed=s) for s in range(n)]


@pytest.fixture(scope="module")
def mc_cfg():
    """Dropout, hidden 64, 100 epochs evaluated once: noisy_linear's 20 test rows, one input."""
    return load(["reg=dropout", "model.hidden=64", "epochs=100", "eval_every=100"])


def test_eval_work_is_zero_where_no_pass_draws(mc_cfg):
    """No T, or no MC-active regularizer (none, L2, input noise): every pass would be the
    eval-mode prediction, which the engines compute once."""
    assert eval_work(mc_cfg, 20, 1) == 0.0
    for reg in ("none", "l2", "input_noise"):
        assert eval_work(with_T(load([f"reg={reg}", "model.hidden=64"]), 1000), 20, 1) == 0.0, reg
    assert eval_work(with_T(mc_cfg, 1000), 0, 1) == 0.0
    assert run_work(with_T(mc_cfg, 1000), 20, 1) == run_work(mc_cfg, 20, 1), "n_test=0: training only"


def test_eval_work_counts_whole_blocks_and_every_eval_epoch(mc_cfg):
    block = mc_block(mc_cfg, 20, 1)
    assert block > 1
    one = eval_work(with_T(mc_cfg, block), 20, 1)
    assert one > 0
    assert eval_work(with_T(mc_cfg, 1), 20, 1) == one, "the last block is computed whole"
    assert eval_work(with_T(mc_cfg, block + 1), 20, 1) == 2 * one
    assert eval_work(with_T(mc_cfg, 10 * block), 20, 1) == pytest.approx(10 * one)
    four = replace(with_T(mc_cfg, block), eval_every=25)  # epochs 25, 50, 75, 100
    assert eval_work(four, 20, 1) == pytest.approx(4 * one)
    assert eval_work(with_T(mc_cfg, block), 40, 1) > one, "more test rows, more work"
    assert run_work(with_T(mc_cfg, block), 20, 1, 20) == pytest.approx(run_work(mc_cfg, 20, 1) + one)


def test_dropconnect_passes_are_counted_one_by_one():
    """A weight-slot regularizer draws one mask per forward, so its passes go one at a time."""
    cfg = load(["reg=dropconnect", "model.hidden=32", "epochs=10", "eval_every=10"])
    assert mc_block(cfg, 20, 1) == 1
    assert eval_work(with_T(cfg, 7), 20, 1) == pytest.approx(7 * eval_work(with_T(cfg, 1), 20, 1))


def test_the_protocols_T_outweighs_the_training(mc_cfg):
    """T = 10,000 at one eval epoch: the passes are the larger part of the run's work."""
    heavy = with_T(mc_cfg, 10_000)
    assert eval_work(heavy, 20, 1) > run_work(mc_cfg, 20, 1)


@pytest.fixture(scope="module")
def two_programs(mc_cfg):
    """8 runs of the default 1-300-300-1 dropout network without MC, and 8 runs of a 64-wide one
    with T = 10,000: by training alone the wide network is ~10x the dearer."""
    wide = seeds(load(["reg=dropout", "epochs=100"]), 8)
    heavy = seeds(with_T(mc_cfg, 10_000), 8)
    return wide, heavy


def test_an_mc_heavy_chunk_starts_first(two_programs):
    wide, heavy = two_programs
    assert run_work(wide[0], 20, 1) > 5 * run_work(heavy[0], 20, 1), "training alone ranks the wide runs first"
    plan = plan_chunks(wide + heavy, MachineFacts(1, 2**21))
    assert [(ms[0].model.hidden, size) for ms, size in plan] == [(64, 8), (300, 8)]


def test_two_workers_split_the_mc_heavy_group(two_programs):
    """On two workers the costliest group is halved so that both share it: the MC-heavy one."""
    wide, heavy = two_programs
    plan = plan_chunks(wide + heavy, MachineFacts(2, 2**21))
    assert sorted((ms[0].model.hidden, size) for ms, size in plan) == [(64, 4), (64, 4), (300, 8)]
    cost = lambda ms: chunk_cost((ms, run_work(ms[0], 20, 1, 20)))  # noqa: E731
    whole = makespan([cost(heavy), cost(wide[:4]), cost(wide[4:])], 2)
    assert makespan([cost(ms) for ms, _ in plan], 2) < whole


def test_runs_of_one_program_are_chunked_by_their_T(mc_cfg):
    """A chunk computes its largest T for every member: runs are ordered by T before the group
    is cut (a 256-byte L2 forces chunks of 2), equal T keep their order, and each chunk is
    costed by its largest T, so the T = 2000 chunks come first."""
    runs = [with_T(replace(mc_cfg, seed=s), 2000 if s % 2 else 0) for s in range(8)]
    plan = plan_chunks(runs, MachineFacts(1, 256))
    assert [[c.seed for c in ms] for ms, _ in plan] == [[1, 3], [5, 7], [0, 2], [4, 6]]
    assert [size for _, size in plan] == [2, 2, 2, 2]


def test_equal_T_keeps_the_plan_of_training_alone(two_programs):
    """Where every run of a group has the same T, the members' order is the sweep's."""
    _, heavy = two_programs
    plan = plan_chunks(heavy, MachineFacts(1, 256))
    assert [c.seed for ms, _ in plan for c in ms] == list(range(8))


def _mc_signature(results) -> dict:
    return {r.run_id: (r.status, r.rows()) for r in results}


@pytest.mark.kernels
def test_mc_numbers_do_not_depend_on_the_plan():
    """Runs with T = 0, 7 and 40 (and tau) trained in chunks of 2 on one worker, in chunks of up
    to 32 on two, and each alone: every curve row, MC columns included, is identical."""
    base = load(["reg=[input_dropout,dropout]", "p=0.2", "model.hidden=8", "epochs=4", "eval_every=2"])
    runs = [with_T(replace(base, seed=s), T, tau=0.5) for s, T in enumerate([40, 0, 7, 40, 7, 0, 40])]
    small = _mc_signature(BatchedEngine(machine=MachineFacts(1, 256)).train(runs))
    large = _mc_signature(BatchedEngine(machine=MachineFacts(2, None)).train(runs))
    assert_bits_equal(large, small, "chunks of up to 32 on two workers, against chunks of 2 on one")
    for c in runs[:3]:
        alone = _mc_signature(BatchedEngine(machine=MachineFacts(1, None)).train([c]))[c.run_id]
        assert_bits_equal(alone, small[c.run_id], f"T={c.eval.mc_samples} alone, against in a chunk of 2")
    assert all(status == "ok" for status, _ in small.values())
    with_mc = [rows for (_, rows), c in zip((small[c.run_id] for c in runs), runs) if c.eval.mc_samples]
    assert all(row[6] is not None for rows in with_mc for row in rows), "MC columns were computed"


def test_twins_stay_in_one_chunk_and_count_once():
    """Runs differing only in eval.tau train as one member: the planner keeps them together and
    sizes chunks by distinct trainings."""
    from dropbench.engines.planner import training_key

    cfgs = [load(["reg=dropout", f"seed={s}", "eval.mc_samples=5", f"eval.tau={t}", "model.hidden=8", "epochs=2"])
            for s in range(6) for t in (0.5, 1.0, 2.0)]
    plan = plan_chunks(cfgs, MachineFacts(workers=2, l2_bytes=2**20))
    for members, size in plan:
        keys = {training_key(m) for m in members}
        assert size == max(len(keys), 2)
        assert all(sum(training_key(m) == k for m in members) == 3 for k in keys)  # all three twins
    assert sorted(c.run_id for ms, _ in plan for c in ms) == sorted(c.run_id for c in cfgs)


def test_planning_reads_each_data_set_once(monkeypatch):
    """Runs on the same rows (a grid over p on one seed's data) share one load: planning runs
    inside training's time, before any worker starts."""
    from dropbench import data, runner

    cfgs, _ = runner.plan(["reg=dropout", "p=0.1,0.2,0.3", "seed=1,2", "epochs=2"], multirun=True)
    calls = []
    monkeypatch.setattr(data, "load_dataset", lambda c: calls.append(c.seed) or load_dataset(c))
    plan = plan_chunks(cfgs, MachineFacts(workers=1))
    assert sorted(calls) == [1, 2]
    assert sorted(c.run_id for ms, _ in plan for c in ms) == sorted(c.run_id for c in cfgs)
