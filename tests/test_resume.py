"""Never lose a run: kill and resume, concurrent writers, failures inside a sweep, launchers."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SWEEP = ["-m", "reg=none,dropout", "seed=range(6)", "epochs=60", "eval_every=20", "model.hidden=64"]


def dropbench(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dropbench", *args], capture_output=True, text=True, **kw)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dropbench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def without_seconds(folder: Path) -> list[list[str]]:
    rows = list(csv.reader((folder / "runs.csv").open()))
    col = rows[0].index("seconds")
    return [r[:col] + r[col + 1 :] for r in rows]


def stored(folder: Path) -> int:
    runs = folder / "runs"
    return sum(1 for d in runs.iterdir() if not d.name.startswith(".")) if runs.is_dir() else 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "r"
    p = dropbench("run", *SWEEP, "launcher.workers=1", f"out={out}", "-q")
    assert p.returncode == 0, p.stderr
    return out


@pytest.mark.parametrize("when", ["at-start", "after-first-run", "mid-sweep"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_sweep_resumes_to_identical_csvs(tmp_path, uninterrupted, when, sig):
    out = tmp_path / "r"
    proc = start("run", *SWEEP, "launcher.workers=1", f"out={out}", "-q")
    deadline = time.time() + 60
    if when == "at-start":
        while not (out / "sweep.yaml").exists() and time.time() < deadline:
            time.sleep(0.01)
    else:
        need = 1 if when == "after-first-run" else 6
        while stored(out) < need and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode in (0, 130), err  # 0: the sweep had finished; never an abort
        if proc.returncode == 130:
            assert "--resume" in err and "Traceback" not in err
    n_before = stored(out)
    assert n_before < 12 or proc.returncode == 0
    p = dropbench("run", "--resume", str(out), "-q")
    assert p.returncode == 0, p.stderr
    assert (out / "curves.csv").read_bytes() == (uninterrupted / "curves.csv").read_bytes()
    assert without_seconds(out) == without_seconds(uninterrupted)
    assert not [d for d in (out / "runs").iterdir() if d.name.startswith(".")], "no leftovers"


def test_same_command_again_skips_finished_runs(tmp_path, uninterrupted):
    out = tmp_path / "r"
    assert dropbench("run", *SWEEP[:2], "seed=range(3)", *SWEEP[3:], f"out={out}", "-q").returncode == 0
    p = dropbench("run", *SWEEP, f"out={out}")
    assert p.returncode == 0, p.stderr
    assert "6 run(s) were already finished" in p.stdout  # none,dropout x seeds 0-2
    assert len(without_seconds(out)) == 13  # header + 2 regs x 6 seeds


def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    out = tmp_path / "r"
    a = start("run", "-m", "reg=none,l1", "seed=range(4)", "epochs=40", "model.hidden=32", f"out={out}", "-q")
    b = start("run", "-m", "reg=l1,l2", "seed=range(4)", "epochs=40", "model.hidden=32", f"out={out}", "-q")
    c = start("run", "-m", "reg=l2,none", "seed=range(4)", "epochs=40", "model.hidden=32", f"out={out}", "-q")
    codes = [w.wait(120) for w in (a, b, c)]
    assert codes == [0, 0, 0], [w.stderr.read() for w in (a, b, c)]
    rows = list(csv.DictReader((out / "runs.csv").open()))
    ids = [r["run_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 12, "none, l1, l2 x 4 seeds: each run exactly once"
    curves = list(csv.DictReader((out / "curves.csv").open()))
    assert len(curves) == 12 and {c["run_id"] for c in curves} == set(ids)


def test_diverging_run_inside_a_sweep(tmp_path):
    out = tmp_path / "r"
    p = dropbench("run", "-m", "optim=sgd", "optim.lr=0.01,1e6", "seed=range(2)", "epochs=30", f"out={out}")
    assert p.returncode == 1
    assert "2 of 4 run(s) failed" in p.stderr and "Traceback" not in p.stderr
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert sorted(r["status"] for r in rows) == ["failed", "failed", "ok", "ok"]
    assert all("diverged" in r["reason"] for r in rows if r["status"] == "failed")
    p = dropbench("run", "-m", "optim=sgd", "optim.lr=0.01,1e6", "seed=range(2)", "epochs=30", f"out={out}", "--allow-failures")
    assert p.returncode == 0


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers_give_the_same_rows(tmp_path, launcher):
    args = ["-m", "reg=none,droppath", "seed=range(3)", "epochs=20", "model.hidden=32"]
    local, other = tmp_path / "local", tmp_path / launcher
    assert dropbench("run", *args, f"out={local}", "-q").returncode == 0
    p = dropbench("run", *args, f"launcher={launcher}", f"out={other}", "-q")
    assert p.returncode == 0, p.stderr
    assert without_seconds(local) == without_seconds(other)
    assert (local / "curves.csv").read_bytes() == (other / "curves.csv").read_bytes()
    # Again into the finished folder: nothing left to share out, nothing trained.
    p = dropbench("run", *args, f"launcher={launcher}", f"out={other}")
    assert p.returncode == 0, p.stderr
    assert "6 run(s) were already finished" in p.stdout


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--resume", "/nonexistent/folder"], "no sweep.yaml there"),
        (["--resume", "."], "no sweep.yaml there"),
        (["launcher=slurmz"], "unknown option launcher=slurmz"),
        (["launcher=joblib", "launcher.n_jobs=0"], "launcher.n_jobs=0"),
        (["-m", "launcher=local,joblib"], "one launcher per invocation"),
    ],
)
def test_bad_launcher_and_resume_input(tmp_path, args, msg):
    p = dropbench("run", *args, cwd=tmp_path)
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_out_that_is_not_a_results_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    p = dropbench("run", "epochs=5", f"out={tmp_path}")
    assert p.returncode == 2 and "holds no dropbench results" in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_leftovers_of_dead_writers_go_those_of_live_ones_stay(tmp_path):
    """A second writer starting in a folder must not delete the first one's in-flight files."""
    import socket

    from dropbench import results

    host = socket.gethostname().replace(".", "_")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    runs = tmp_path / "runs"
    names = {
        "live": f".abc123.{host}-{os.getpid()}.k2j4h5g6",
        "dead": f".abc124.{host}-{dead.pid}.k2j4h5g6",
        "other host, fresh": ".abc125.elsewhere-1.k2j4h5g6",
        "other host, old": ".abc126.elsewhere-1.k2j4h5g6",
    }
    for name in names.values():
        (runs / name).mkdir(parents=True)
    old = time.time() - results.STALE_SECONDS - 60
    os.utime(runs / names["other host, old"], (old, old))
    (tmp_path / f".runs.csv.{host}-{os.getpid()}.x7y8z9w0.tmp").write_text("half")
    (tmp_path / f".runs.csv.{host}-{dead.pid}.x7y8z9w0.tmp").write_text("half")
    results.remove_leftovers(tmp_path)
    assert sorted(p.name for p in runs.iterdir()) == sorted([names["live"], names["other host, fresh"]])
    assert [p.name for p in tmp_path.glob(".*.tmp")] == [f".runs.csv.{host}-{os.getpid()}.x7y8z9w0.tmp"]


@pytest.mark.parametrize("first", [".lock", ".sweep.yaml.host-1.abcd1234.tmp"])
def test_a_folder_a_concurrent_run_just_started_is_ours(tmp_path, first):
    from dropbench import results
    from dropbench.errors import UserError

    (tmp_path / first).write_text("")
    results.check_out_dir(tmp_path)  # no error
    (tmp_path / first).unlink()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="non-empty folder that holds no dropbench results"):
        results.check_out_dir(tmp_path)


def test_ctrl_c_with_worker_threads_exits_cleanly(tmp_path):
    """Worker threads inside torch at exit abort the interpreter; Ctrl-C must join them first."""
    out = tmp_path / "r"
    proc = start("run", *SWEEP[:2], "seed=range(40)", "epochs=400", "model.hidden=64", "launcher.workers=2", f"out={out}", "-q")
    deadline = time.time() + 60
    while stored(out) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.startswith("dropbench: error: interrupted: ") and "--resume" in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("damage", ["garbage json", "no curve"])
def test_a_damaged_run_folder_is_trained_again(tmp_path, damage):
    out = tmp_path / "r"
    args = ["run", "-m", "reg=none,l1", "seed=range(2)", "epochs=20", "model.hidden=16", f"out={out}", "-q"]
    assert dropbench(*args).returncode == 0
    before = without_seconds(out)
    victim = sorted(d for d in (out / "runs").iterdir() if not d.name.startswith("."))[0]
    if damage == "garbage json":
        (victim / "result.json").write_text("{not json")
    else:
        (victim / "curve.csv").unlink()
    p = dropbench(*args[:-1])
    assert p.returncode == 0, p.stderr
    assert "3 run(s) were already finished" in p.stdout  # the damaged one is trained again
    assert without_seconds(out) == before


def test_a_damaged_sweep_file_is_a_user_error(tmp_path):
    out = tmp_path / "r"
    assert dropbench("run", "-m", "reg=none", "seed=range(2)", "epochs=5", "model.hidden=8", f"out={out}", "-q").returncode == 0
    (out / "sweep.yaml").write_text("overrides: [5]\nmultirun: true\n")
    p = dropbench("run", "--resume", str(out))
    assert p.returncode == 2 and "not a dropbench sweep file" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "internal error" not in p.stderr


def test_a_run_that_raises_fails_alone_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """An exception inside training (not a divergence) fails that run only, with the reason."""
    from dropbench import runner
    from dropbench.engines import batched

    train = batched.Chunk.train

    def boom_for_l1_seed_1(self, *a, **kw):
        if "l1" in self.kinds and any(c.seed == 1 for c in self.cfgs):
            raise RuntimeError("boom in l1")
        return train(self, *a, **kw)

    monkeypatch.setattr(batched.Chunk, "train", boom_for_l1_seed_1)
    cfgs, launcher = runner.plan(["reg=none,l1,l2", "seed=range(3)", "epochs=10", "model.hidden=8", f"out={tmp_path / 'r'}"], True)
    outcome = runner.execute(cfgs, launcher)
    status = {(r["reg"], r["seed"]): (r["status"], r["reason"]) for r in outcome.rows}
    assert len(status) == 9
    for (reg, seed), (st, reason) in status.items():
        assert (st, reason) == (("failed", "RuntimeError: boom in l1") if (reg, seed) == ("l1", 1) else ("ok", ""))
    assert len(outcome.failed) == 1
    # the l1 runs that shared the failing chunk were retried alone: their numbers are unchanged
    monkeypatch.setattr(batched.Chunk, "train", train)
    alone = {r.cfg.seed: r.curve for r in batched._train_chunk([c for c in cfgs if c.reg.names == ["l1"]][::2], 2)}
    rows = {(r["reg"], r["seed"]): r["final_test_mse"] for r in outcome.rows}
    assert rows[("l1", 0)] == alone[0][-1][2] and rows[("l1", 2)] == alone[2][-1][2]


def test_rows_follow_the_plan_whichever_runs_finished_first(tmp_path):
    """An interrupted sweep lists the runs it finished; on resume every run of the plan takes
    its plan position, and runs of an earlier sweep in the folder keep theirs."""
    from dropbench.config import load
    from dropbench.engines.base import RunResult
    from dropbench.results import consolidate, write_run

    def store(*overrides):
        r = RunResult(load([*overrides, "epochs=2", "eval_every=1"]))
        r.curve = [(1, 0.5, 0.6, 0.5), (2, 0.4, 0.5, 0.4)]
        write_run(tmp_path, r)
        return r.run_id

    earlier = store("seed=9")
    consolidate(tmp_path, [earlier])
    plan = [load([f"reg={r}", f"seed={s}", "epochs=2", "eval_every=1"]).run_id for r in ("none", "dropout") for s in (0, 1)]
    late = [store("reg=dropout", f"seed={s}") for s in (0, 1)]  # the last two of the plan finished first
    assert late == plan[2:]
    consolidate(tmp_path, plan)
    store("reg=none", "seed=0"), store("reg=none", "seed=1")
    rows = consolidate(tmp_path, plan)
    assert [r["run_id"] for r in rows] == [earlier, *plan]
