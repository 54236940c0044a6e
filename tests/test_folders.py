"""Results folders under concurrency and odd names: default folders made atomically, report on a
folder still being written or of a tuning, and commands printed so that they paste back."""

import multiprocessing
import os
from datetime import datetime
from pathlib import Path

import json

import pytest
from typer.testing import CliRunner

from dropbench import locks, readback, results
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
    assert all(len(readback.read_runs(tmp_path / o.split(": ")[1])) == 1 for o in outs)


def test_a_tune_in_a_second_already_taken_gets_its_own_folder(tmp_path, monkeypatch, one_second):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / STAMP / "runs").mkdir(parents=True)  # a run started in this second
    res = cli("tune", "data=diabetes", "reg=dropout", "epochs=2", "eval_every=1", "model.hidden=4", "--over", "p=0.1,0.2", "-q")
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == f"results: {tmp_path / 'results' / (STAMP + '-2')}"


def test_a_tune_refused_before_writing_leaves_no_default_folder(tmp_path, monkeypatch, one_second):
    monkeypatch.chdir(tmp_path)
    res = cli("tune", "data=noisy_linear", "reg=dropout", "--over", "p=0.1,0.2")
    assert res.exit_code == 2 and "needs a validation hold-out" in res.output
    assert not list((tmp_path / "results").iterdir())


# ---- report on a folder that is not (yet) a finished sweep -----------------------------------
def store(folder: Path, run_id: str, status: str = "ok", reason: str = "") -> None:
    """A run folder as write_run leaves it (only what reading it back needs)."""
    import json

    d = folder / results.RUNS_DIR / run_id
    d.mkdir(parents=True)
    (d / "curve.csv").write_text("epoch,train_mse,test_mse\n")
    (d / "result.json").write_text(json.dumps({"run_id": run_id, "status": status, "reason": reason}))


HOLD = "import sys; from pathlib import Path; from dropbench import locks\n" \
       "with locks.training_into(Path(sys.argv[1]), sys.argv[2:]):\n    print('held', flush=True); sys.stdin.read()"


@pytest.fixture
def holder():
    """Start a process that holds a folder's training lock, as `dropbench run` does while it trains."""
    import subprocess
    import sys

    procs = []

    def hold(folder: Path, plan: tuple[str, ...] = ()) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), *plan], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "held\n"
        procs.append(p)
        return p

    yield hold
    for p in procs:
        p.kill()
        p.wait()


@pytest.mark.parametrize("command", [["check", "--baseline", "b.csv"]])
def test_a_sweep_still_running_is_said_to_be_running(tmp_path, holder, command):
    """check judges a finished sweep only; report and plot show what has finished (below)."""
    out = tmp_path / "sweep"
    store(out, "a1")
    store(out, "b2", "failed", "diverged")
    proc = holder(out)
    res = cli(command[0], str(out), *command[1:])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert (f"{out} is still being written by a running dropbench (2 run(s) finished so far (1 failed)); "
            "its runs.csv is written when that command ends") in res.output
    proc.kill()  # gone however it ends (kill -9 here): then the folder is a stopped sweep
    proc.wait()
    res = cli(command[0], str(out), *command[1:])
    assert res.exit_code == 2 and f"holds no runs.csv; finish it with: dropbench run --resume {out}" in res.output


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory) -> Path:
    from dropbench import runner

    out = tmp_path_factory.mktemp("small") / "sweep"
    cfgs, launcher = runner.plan(["reg=none,l2", "seed=1,2,3", "epochs=4", "eval_every=2", "model.hidden=4", f"out={out}"], True)
    runner.execute(cfgs, launcher)
    return out


def test_report_and_plot_of_a_sweep_still_running_show_what_finished_marked_partial(tmp_path, holder, small_sweep):
    import shutil

    out = tmp_path / "sweep"
    shutil.copytree(small_sweep, out)
    ids = [r["run_id"] for r in readback.read_runs(out)]
    whole = {(g["reg"], g["n_seeds"]): g["test_mean"] for g in json.loads(cli("report", str(out), "--format", "json").stdout)}
    # As while training: the CSVs not yet written, two runs of l2 still to come.
    l2 = [r["run_id"] for r in readback.read_runs(out) if r["reg"] == "l2"]
    (out / results.RUNS_CSV).unlink()
    (out / results.CURVES_CSV).unlink()
    for rid in l2[1:]:
        shutil.rmtree(out / results.RUNS_DIR / rid)
    holder(out, tuple(ids))
    res = cli("report", str(out), "--format", "json")
    assert res.exit_code == 0, res.output
    got = {(g["reg"], g["n_seeds"]): g["test_mean"] for g in json.loads(res.stdout)}
    assert got[("none", 3)] == whole[("none", 3)], "the finished groups' numbers are the full sweep's"
    assert set(got) == {("none", 3), ("l2", 1)}
    note = f"partial: {out} is still being written by a running dropbench; this shows the 4 run(s) finished so far; 2 still running or queued"
    assert note in " ".join(res.stderr.split())
    table = cli("report", str(out))
    assert table.exit_code == 0 and note in " ".join(table.output.split())
    assert cli("report", str(out), "--epoch", "2").exit_code == 0, "curves are read from the run folders too"
    res = cli("plot", str(out), "--out", str(tmp_path / "figs"))
    assert res.exit_code == 0 and (tmp_path / "figs" / "curves.png").is_file() and note in " ".join(res.stderr.split())
    from dropbench.plots import load_sweep, subtitle

    assert subtitle(load_sweep(out)).startswith("partial: ")


def test_a_sweep_running_with_nothing_finished_yet_is_one_line(tmp_path, holder):
    out = tmp_path / "empty"
    out.mkdir()
    holder(out, ("a", "b"))
    res = cli("report", str(out))
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "is still being written by a running dropbench and no run has finished yet" in res.output
    assert readback.progress(out) == readback.Progress(True, 0, 0, 2)


def test_a_run_holds_the_lock_while_it_trains_and_not_after(tmp_path):
    from dropbench import runner

    out = tmp_path / "r"
    seen = []
    cfgs, launcher = runner.plan(["seed=1,2", "epochs=2", "eval_every=1", "model.hidden=4", f"out={out}"], True)
    runner.execute(cfgs, launcher, on_result=lambda run_id, status: seen.append(locks.is_being_written(out)))
    assert seen == [True, True] and not locks.is_being_written(out)
    results.check_out_dir(out)  # the lock file is one of ours


def tuning(folder: Path, final: bool) -> Path:
    """A tuning's root as dropbench tune leaves it: tune.yaml, search/, and final/ once written."""
    from conftest import write_sweep

    folder.mkdir()
    (folder / "tune.yaml").write_text("overrides: []\n")
    write_sweep(folder / "search", [{"reg": "dropout", "seed": 1, "final_train_mse": 0.1, "final_test_mse": 0.2}])
    if final:
        write_sweep(folder / "final", [{"reg": "dropout", "seed": 1, "final_train_mse": 0.1, "final_test_mse": 0.2}])
    return folder


@pytest.mark.parametrize("command", [["report"], ["plot"], ["check", "--baseline", "b.csv"]])
def test_a_tunings_root_points_to_its_final_runs(tmp_path, command):
    root = tuning(tmp_path / "tuned", final=True)
    res = cli(command[0], str(root), *command[1:])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert f"{root} holds a tuning (tune.yaml), not one sweep: its final runs are in {root / 'final'}; give that folder" in res.output


def test_a_tuning_without_final_runs_says_why(tmp_path, holder):
    root = tuning(tmp_path / "tuned", final=False)
    res = cli("report", str(root))
    assert res.exit_code == 2 and f"final runs were never written; finish it with: dropbench tune --resume {root}" in res.output
    holder(root / "search")
    res = cli("report", str(root))
    assert res.exit_code == 2 and "holds a tuning still running, in its search phase (0 run(s) finished so far)" in res.output


def test_a_report_of_a_sweep_resumed_and_still_running_says_so(tmp_path, holder, hand_sweep):
    """runs.csv is from an earlier command; another is adding runs: the report says what it shows."""
    res = cli("report", str(hand_sweep), "--format", "csv")
    assert res.exit_code == 0 and "still being written" not in res.output
    holder(hand_sweep)
    res = cli("report", str(hand_sweep))
    assert res.exit_code == 0 and f"partial: {hand_sweep} is still being written by a running dropbench; this shows the 6 run(s)" \
        in " ".join(res.output.split())


# ---- commands printed so that they paste back -------------------------------------------------
ODD = "my results/it's"  # a space and a quote: printed unquoted, the pasted command breaks


def printed_command(text: str, after: str) -> list[str]:
    """The shell words of the command printed after `after` (to the end of its line)."""
    import shlex

    line = next(ln for ln in text.splitlines() if after in ln)
    return shlex.split(line.split(after, 1)[1])


def test_the_resume_command_after_ctrl_c_pastes_back(tmp_path, monkeypatch):
    from dropbench import launchers

    out = tmp_path / ODD
    real = launchers.launch

    def ctrl_c(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(launchers, "launch", ctrl_c)
    res = cli("run", "epochs=2", "eval_every=1", "model.hidden=4", f'out="{out}"', "-q")
    assert res.exit_code == 130, res.output
    words = printed_command(res.output, "resume with: ")
    assert words == ["dropbench", "run", "--resume", str(out)]
    monkeypatch.setattr(launchers, "launch", real)
    res = cli(*words[1:], "-q")
    assert res.exit_code == 0 and len(readback.read_runs(out)) == 1, res.output


def test_the_resume_command_of_an_interrupted_tune_pastes_back(tmp_path, monkeypatch):
    from dropbench import launchers

    out = tmp_path / ODD
    real = launchers.launch
    monkeypatch.setattr(launchers, "launch", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    res = cli("tune", "data=diabetes", "reg=dropout", "epochs=2", "eval_every=1", "model.hidden=4", "--over", "p=0.1,0.2", f'out="{out}"', "-q")
    assert res.exit_code == 130, res.output
    words = printed_command(res.output, "resume with: ")
    assert words == ["dropbench", "tune", "--resume", str(out)]
    monkeypatch.setattr(launchers, "launch", real)
    res = cli(*words[1:])
    assert res.exit_code == 0 and len(readback.read_runs(out / "final")) == 1, res.output
    assert printed_command(res.output, "the literature's table: ")[:2] == ["dropbench", "report"]
    assert printed_command(res.output, "the literature's table: ")[2] == str(out / "final")


def test_from_into_an_odd_folder(tmp_path):
    src = tmp_path / "src"
    assert cli("run", "epochs=2", "eval_every=1", "model.hidden=4", f"out={src}", "-q").exit_code == 0
    (run,) = (src / "runs").iterdir()
    out = tmp_path / ODD
    res = cli("run", "--from", str(run), f'out="{out}"', "-q")
    assert res.exit_code == 0 and [r["run_id"] for r in readback.read_runs(out)] == [run.name], res.output


def test_every_other_command_printed_with_a_folder_pastes_back(tmp_path):
    out = tmp_path / ODD
    (out / results.RUNS_DIR).mkdir(parents=True)
    res = cli("report", str(out))
    assert printed_command(res.output, "finish it with: ") == ["dropbench", "run", "--resume", str(out)]
    assert cli("run", "epochs=2", "eval_every=1", "model.hidden=4", f'out="{out}"', "-q").exit_code == 0
    res = cli("run", "epochs=3", "eval_every=1", "model.hidden=4", f'out="{out}"', "-q")
    assert res.exit_code == 2 and printed_command(res.output.replace(" then finishes both)", ""), "(dropbench run --resume ") == [str(out)]
