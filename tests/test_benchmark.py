"""scripts/benchmark.py's UCI workload: its plan, the work each variant does, its missing-data exit.
No timing is asserted: the script measures speed, these tests check that it measures the right work."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from dropbench.config import load_sweep

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def bm():
    spec = importlib.util.spec_from_file_location("dropbench_benchmark_script", ROOT / "scripts" / "benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    yield mod
    del sys.modules[spec.name]


def plan_of(bm, monkeypatch, *argv: str):
    """The plan main() would run for these flags (argument parsing as the script does it)."""
    seen = {}
    monkeypatch.setattr(sys, "argv", ["benchmark.py", *argv])
    monkeypatch.setattr(bm, "uci_main", lambda args: seen.setdefault("plan", bm.uci_plan(args)))
    monkeypatch.setattr(bm, "seed_main", lambda args: seen.setdefault("seed", (args.seeds, args.epochs)))
    bm.main()
    return seen


def test_default_invocation_is_the_seed_workload_alone(bm, monkeypatch):
    assert plan_of(bm, monkeypatch) == {"seed": (10, 500)}
    assert plan_of(bm, monkeypatch, "--quick") == {"seed": (3, 100)}


def test_uci_plan_from_flags(bm, monkeypatch):
    plan = plan_of(bm, monkeypatch, "--workload", "uci")["plan"]
    assert (plan.datasets, plan.splits, plan.batch_sizes, plan.epochs) == (("yacht", "boston_housing", "concrete"), 20, (32, 128), 20)
    assert len(plan.runs(32)) == 3 * 20 * 4
    quick = plan_of(bm, monkeypatch, "--workload", "uci", "--quick")["plan"]
    assert quick == bm.QUICK_UCI and len(quick.runs(32)) < len(plan.runs(32))
    mine = plan_of(bm, monkeypatch, "--workload", "all", "--datasets", "energy", "--splits", "3", "--batch-sizes", "64",
                   "--epochs", "7")
    assert mine["seed"] == (10, 7)
    assert (mine["plan"].datasets, mine["plan"].splits, mine["plan"].batch_sizes, mine["plan"].epochs) == (("energy",), 3, (64,), 7)
    with pytest.raises(SystemExit, match="unknown UCI data set 'boston'"):
        plan_of(bm, monkeypatch, "--workload", "uci", "--datasets", "boston")
    with pytest.raises(SystemExit, match="--splits must be in 1..20"):
        plan_of(bm, monkeypatch, "--workload", "uci", "--splits", "21")


def test_uci_sweep_is_the_loops_runs_with_the_protocols_network(bm):
    """(c)'s `dropbench run -m` overrides expand to exactly the runs (a) and (b) train."""
    plan = bm.UciPlan(datasets=("yacht", "concrete"), splits=2, batch_sizes=(128,), epochs=3)
    jobs = plan.runs(128)
    cfgs = [cfg for cfg, _ in load_sweep(plan.sweep(128))]
    got = [(c.data.dataset, c.data.split, c.reg.dropout.p, c.reg.l2.weight_decay, c.batch_size, c.epochs, c.seed) for c in cfgs]
    assert got == [(j["dataset"], j["split"], j["p"], j["wd"], j["batch_size"], j["epochs"], j["seed"]) for j in jobs]
    for c in cfgs:
        assert set(c.reg.names) == {"input_dropout", "dropout", "l2"}
        assert c.reg.input_dropout.p == c.reg.dropout.p and c.reg.l2.biases is False
        assert (c.model.hidden, c.model.depth, c.model.placement, c.optim.name, c.optim.lr) == (50, 1, "after", "adam", 1e-3)
        assert c.eval_every == c.epochs and c.engine == "batched"


def test_missing_uci_files_is_one_line_and_exit_2(bm, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DROPBENCH_UCI_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["benchmark.py", "--workload", "uci", "--quick"])
    with pytest.raises(SystemExit) as e:
        bm.main()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "yacht/data.txt is missing from DROPBENCH_UCI_DIR=" in err[0] and "set DROPBENCH_UCI_DIR=" in err[0]


def test_the_loop_takes_the_planned_steps(bm, monkeypatch, uci_dir):
    """(a)'s loop does ceil(n/B) updates per epoch, the count the throughput divides by."""
    monkeypatch.setenv("DROPBENCH_UCI_DIR", str(uci_dir))
    plan = bm.UciPlan(datasets=("yacht",), splits=2, batch_sizes=(128,), epochs=2, ps=(0.05,), wds=(1e-6,))
    shapes = bm.uci_n_train(plan)
    assert shapes["yacht", 0] == (277, 6)
    assert sum(bm.uci_loop(j) for j in plan.runs(128)) == bm.uci_steps(plan, 128, shapes) == 2 * 2 * math.ceil(277 / 128)


@pytest.fixture
def threads():
    """The script's measurements set torch's intra-op threads, as their own processes would."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_floor_measures_each_part_under_each_stream(bm, threads):
    import bench_floor

    streams = ["torch"] + ([] if bench_floor.fast_stream() else ["fast"])
    case = {"dims": [3, 5, 1], "rows": [4, 4, 2], "masks": [3, 5], "keep": 0.9, "wd_split": True}  # batches 4, 4, 2
    f = bench_floor.floor(case, [2, 3], streams, 0.0)
    assert set(f) == {"2", "3"}
    for parts in f.values():
        assert set(parts) == {"matmuls", "optimizer", *(f"{k}:{s}" for s in streams for k in ("masks", "floor"))}
        assert all(v > 0 for v in parts.values())


def test_floor_cases_are_the_planners_chunks(bm, monkeypatch, uci_dir):
    """The floor is timed for the chunks (c) trains: the planner's sizes, every run-step once."""
    import bench_floor

    monkeypatch.setenv("DROPBENCH_UCI_DIR", str(uci_dir))
    plan = bm.UciPlan(datasets=("yacht", "concrete"), splits=2, batch_sizes=(128,), epochs=2)
    cases = bench_floor.planned(plan.sweep(128), 2, label=lambda c: c.data.dataset)
    assert sorted(e["label"] for e in cases.values()) == ["concrete", "yacht"]
    assert sum(e["run_steps"] for e in cases.values()) == bm.uci_steps(plan, 128, bm.uci_n_train(plan))
    for e in cases.values():
        n, d = (277, 6) if e["label"] == "yacht" else (927, 8)
        assert e["case"] == {"dims": [d, 50, 1], "rows": [128] * (n // 128) + [n % 128], "masks": [d, 50],
                             "keep": 1 - plan.ps[0], "wd_split": True}
        assert {s for s, _ in e["chunks"]} <= set(e["sizes"]) and max(e["sizes"]) == e["group"] == 8


def test_the_split_is_the_median_round_of_each_stream_in_interleaved_rounds(bm):
    import bench_floor

    trains = {"torch": iter([3.0, 1.0, 2.0]), "fast": iter([0.5, 0.9, 0.7])}
    order = []

    def call(words):
        order.append(words[0])
        t = next(trains[words[0]])
        return {"train": t, "else": t / 2}

    got = bench_floor.split_in_rounds({"torch": ["torch"], "fast": ["fast"]}, 2, 3, call)
    assert order == ["torch", "fast"] * 3  # interleaved, not one stream's rounds in a row
    assert got == {"torch": {"train": 2.0, "else": 1.0, "rounds": 3}, "fast": {"train": 0.7, "else": 0.35, "rounds": 3}}


def test_c_split_accounts_for_its_training_time(bm, monkeypatch, uci_dir, threads):
    import torch

    import bench_floor

    monkeypatch.setenv("DROPBENCH_UCI_DIR", str(uci_dir))
    bmm = torch.bmm
    plan = bm.UciPlan(datasets=("yacht",), splits=1, batch_sizes=(128,), epochs=2, ps=(0.05,), wds=(1e-6, 1e-5))
    sp = bench_floor.split_c(plan.sweep(128), 1)
    assert sp["sizes"] == [2] and torch.bmm is bmm  # one chunk; the timers are gone afterwards
    assert all(sp[k] > 0 for k in ("matmuls", "optimizer", "masks", "else"))
    assert sp["matmuls"] + sp["optimizer"] + sp["masks"] + sp["else"] == pytest.approx(sp["train"])


def test_the_ensemble_trains_the_planned_runs_and_steps(bm, monkeypatch, uci_dir, threads):
    """(d) trains every run of the plan, one program per data set, with (a)'s step count."""
    import bench_ensemble

    monkeypatch.setenv("DROPBENCH_UCI_DIR", str(uci_dir))
    plan = bm.UciPlan(datasets=("yacht", "concrete"), splits=2, batch_sizes=(128,), epochs=2)
    progs = bench_ensemble.programs(plan.runs(128))
    assert [tuple(p["x"].shape) for p in progs] == [(8, 277, 6), (8, 927, 8)]
    assert progs[0]["keep"].view(-1).tolist() == pytest.approx([1 - j["p"] for j in plan.runs(128)[:8]])
    got = bench_ensemble.variant_ensemble(plan.runs(128), 1)
    assert got["network_steps"] == bm.uci_steps(plan, 128, bm.uci_n_train(plan)) and got["train_seconds"] > 0


def test_bookkeeping_measures_planning_and_storing_of_the_runs_asked(bm, tmp_path):
    """Each measurement keeps its sweep's folder in the scratch folder it is given: deleting it
    between measurements would slow the next one's new files on ext4 without a journal."""
    fast = bm.bookkeeping_child("noisy_linear", 7, per_job=False, scratch=tmp_path)
    assert fast["runs"] == 7 and all(fast[k] > 0 for k in ("plan", "write", "consolidate", "fs_floor"))
    (sweep,) = tmp_path.iterdir()
    assert len(list((sweep / "runs").iterdir())) == 7 and len(list((sweep / "floor").iterdir())) == 7
    slow = bm.bookkeeping_child("noisy_linear", 7, per_job=True, scratch=tmp_path)
    assert slow["runs"] == 7 and slow["plan"] > 0


def test_bookkeeping_deletes_the_sweeps_folders_after_the_last_measurement(bm, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    monkeypatch.setattr(bm.tempfile, "mkdtemp", lambda prefix: (scratch.mkdir(), str(scratch))[1])
    seen = []

    def rounds(me, sweeps, n, rounds):
        seen.append((me[-1], scratch.is_dir()))
        (scratch / "sweep-x").mkdir()
        raise RuntimeError("a measurement failed")

    monkeypatch.setattr(bm, "bookkeeping_rounds", rounds)
    with pytest.raises(RuntimeError):
        bm.bookkeeping_main(bm.argparse.Namespace(quick=True, runs=7, rounds=1))
    assert seen == [(f"--scratch={scratch}", True)] and not scratch.exists()


def test_the_workers_workload_trains_every_run_each_way(bm, monkeypatch, uci_dir, threads, capsys):
    """--workload workers: the plan's runs on one worker, two threads and two processes, each way
    all of them (train_once refuses a short count), one line per way and batch size."""
    import bench_workers

    monkeypatch.setenv("DROPBENCH_UCI_DIR", str(uci_dir))
    monkeypatch.setattr(sys, "argv", ["benchmark.py", "--workload", "workers", "--quick"])
    bm.main()
    lines = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.split()[:1] == ["32"]]
    assert [" ".join(ln[1:3]) for ln in lines] == list(bench_workers.WAYS)
    assert lines[0][-1] == "1.00x" and all(float(ln[3]) > 0 for ln in lines)
