"""Results folders under concurrency and odd names: default folders made atomically, report on a
folder still being written or of a tuning, and commands printed so that they paste back."""

import multiprocessing
import os
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dropbench import results
from dropbench.cli import app

SECOND = datetime(2026, 1, 2, 3, 4, 5)
STAMP = "2026-01-02_03-04-05"


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def one_second(monkeypatch):
    """Every command starts in the same second."""
    monkeypatch.setattr(results, "_now", lambda: SECOND)


# ---- default folders -------------------------------------------------------------------------
def test_default_folders_made_in_one_second_are_distinct_and_sort_by_time(tmp_path, one_second):
    made = [results.default_out(tmp_path / "results") for _ in range(3)]
    assert [p.name for p in made] == [STAMP, f"{STAMP}-2", f"{STAMP}-3"]
    assert all(p.is_dir() and not any(p.iterdir()) for p in made)
    assert sorted(made) == made, "the timestamp leads: names sort by time"


def _make(root: str, barrier, queue) -> None:
    barrier.wait()
    queue.put(str(results.default_out(Path(root))))


def test_processes_started_together_never_share_a_default_folder(tmp_path, one_second):
    """mkdir is the arbiter: 8 processes released at once, in the same (injected) second."""
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_make, args=(str(tmp_path / "results"), barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=60) for _ in range(n)]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * n
    assert len(set(got)) == n and sorted(os.listdir(tmp_path / "results")) == sorted(Path(g).name for g in got)


def test_runs_started_in_one_second_each_get_their_own_folder(tmp_path, monkeypatch, one_second):
    """The issue: three `dropbench run` with the default out in one second; two used to fail with
    'already holds another sweep'."""
    monkeypatch.chdir(tmp_path)
    outs = []
    for seed in (1, 2, 3):
        res = cli("run", "epochs=2", "eval_every=1", "model.hidden=4", f"seed={seed}", "-q")
        assert res.exit_code == 0, res.output
        outs.append(res.stdout.strip().splitlines()[-1])
    assert outs == [f"results: results/{STAMP}", f"results: results/{STAMP}-2", f"results: results/{STAMP}-3"]
    assert all(len(results.read_runs(tmp_path / o.split(": ")[1])) == 1 for o in outs)


def test_a_tune_refused_before_writing_leaves_no_default_folder(tmp_path, monkeypatch, one_second):
    monkeypatch.chdir(tmp_path)
    res = cli("tune", "data=noisy_linear", "reg=dropout", "--over", "p=0.1,0.2")
    assert res.exit_code == 2 and "needs a validation hold-out" in res.output
    assert not list((tmp_path / "results").iterdir())
