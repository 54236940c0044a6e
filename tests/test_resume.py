"""Never lose a run: kill and resume, concurrent writers, failures inside a sweep, launchers."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_bits_equal

SWEEP = ["-m", "reg=none,dropout", "seed=range(6)", "epochs=60", "eval_every=20", "model.hidden=64"]


def dropbench(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dropbench", *args], capture_output=True, text=True, **kw)


def cli(*args: str):
    """`dropbench ARGS` in this process (no interpreter start, no torch import): exit_code, output
    (stdout and stderr)."""
    from typer.testing import CliRunner

    from dropbench.cli import app

    return CliRunner().invoke(app, list(args))


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dropbench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_default)


def sigint_as_default() -> None:
    """A child that answers SIGINT as a terminal's Ctrl-C makes it: a shell starts a background
    job (`.ci/run &`, nohup) with SIGINT ignored, every process under it inherits that, and
    Python then never installs its KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# Waiting for a child to reach a point is bounded only to turn a hang into a failure: the
# waits below end on an event, and a loaded machine only makes them longer.
HANG_S = 600

# `dropbench ARGS` that stops at a chosen point, says so by creating MARKER, and waits there to be
# killed: after the sweep is recorded and before any run (AFTER=0), or right after its AFTER-th
# run is stored. The point is reached, not guessed by polling the folder against the clock.
PAUSED_RUN = """
import sys, threading
from pathlib import Path

from dropbench import runner
from dropbench.cli import main

marker, after = Path(sys.argv[1]), int(sys.argv[2])
execute = runner.execute


def pause():
    marker.touch()
    threading.Event().wait()


def paused(*args, on_start=None, on_result=None, **kw):
    stored = []

    def started(n):
        if on_start:
            on_start(n)
        if after == 0:
            pause()

    def result(run_id, status):
        if on_result:
            on_result(run_id, status)
        stored.append(run_id)
        if len(stored) == after:
            pause()

    return execute(*args, on_start=started, on_result=result, **kw)


runner.execute = paused
sys.argv = ["dropbench", *sys.argv[3:]]
main()
"""


def start_paused(marker: Path, after: int, *args: str) -> subprocess.Popen:
    """`dropbench ARGS` (PAUSED_RUN), returned once it waits at its point."""
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_RUN, str(marker), str(after), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + HANG_S
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"dropbench ended before its pause point (exit {proc.returncode}): {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"dropbench did not reach its pause point in {HANG_S} s")
        time.sleep(0.01)
    return proc


def same_files(folder: Path, want: Path, what: str) -> None:
    """folder's curves.csv and runs.csv (without the wall-clock seconds) are want's, bit for bit."""
    assert_bits_equal((folder / "curves.csv").read_text().splitlines(), (want / "curves.csv").read_text().splitlines(),
                      f"curves.csv {what}")
    assert_bits_equal(without_seconds(folder), without_seconds(want), f"runs.csv {what}")


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
    res = cli("run", *SWEEP, "launcher.workers=1", f"out={out}", "-q")
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.slow
@pytest.mark.kernels  # the resumed runs train in other chunks than the uninterrupted ones
@pytest.mark.parametrize("when, after", [("at-start", 0), ("mid-sweep", 6)])
def test_killed_sweep_resumes_to_identical_csvs(tmp_path, uninterrupted, when, after):
    """kill -9 once the sweep is recorded and before any run, or once half its runs are stored and
    before the CSVs are: the resumed folder is the uninterrupted one."""
    out = tmp_path / "r"
    proc = start_paused(tmp_path / "paused", after, "run", *SWEEP, "launcher.workers=1", f"out={out}", "-q")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=HANG_S)
    assert (out / "sweep.yaml").is_file() and stored(out) == after
    p = dropbench("run", "--resume", str(out), "-q")
    assert p.returncode == 0, p.stderr
    same_files(out, uninterrupted, f"after kill -9 {when} and --resume, against the uninterrupted sweep")
    assert not [d for d in (out / "runs").iterdir() if d.name.startswith(".")], "no leftovers"


class CtrlC(Exception):
    pass


@pytest.mark.kernels  # the resumed runs train in other chunks than the uninterrupted ones
@pytest.mark.parametrize("after", [1, 7])
def test_ctrl_c_after_n_runs_then_resume_gives_identical_csvs(tmp_path, uninterrupted, after):
    """Ctrl-C delivered exactly after the n-th stored run (no timing): exactly n runs are kept,
    and --resume ends with the files of a sweep that never stopped."""
    from dropbench import runner

    out = tmp_path / "r"
    overrides = [*SWEEP[1:], "launcher.workers=1", f"out={out}"]
    cfgs, launcher = runner.plan(overrides, multirun=True)
    seen = []

    def on_result(run_id: str, status: str) -> None:
        seen.append(run_id)
        if len(seen) == after:
            raise KeyboardInterrupt

    with pytest.raises(runner.Interrupted) as e:
        runner.execute(cfgs, launcher, on_result=on_result, command=runner.command_of(overrides, True))
    assert (e.value.stored, e.value.total) == (after, 12) and stored(out) == after
    assert len(without_seconds(out)) == 1 + after
    cfgs, launcher, _ = runner.plan_resume(out)
    outcome = runner.execute(cfgs, launcher, out)
    assert (outcome.trained, outcome.skipped) == (12 - after, after)
    same_files(out, uninterrupted, f"after Ctrl-C after {after} run(s) and resume, against the uninterrupted sweep")
    assert not [d for d in (out / "runs").iterdir() if d.name.startswith(".")], "no leftovers"


@pytest.mark.slow
def test_sigint_mid_sweep_exits_130_with_the_sweep_unfinished(tmp_path):
    """A real SIGINT, sent only once a run is stored, while the other run has millions of epochs
    to go (so the sweep cannot have finished): exit 130, one error line, worker threads joined
    (a worker left inside torch at exit aborts the interpreter), nothing half written."""
    out = tmp_path / "r"
    proc = start("run", "-m", "epochs=5,10000000", "model.hidden=8", "launcher.workers=2", f"out={out}", "-q")
    deadline = time.monotonic() + HANG_S
    while stored(out) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("dropbench: error: interrupted: 1 of 2 runs are stored") and "--resume" in lines[-1], err
    assert [ln for ln in lines if "error" in ln] == [lines[-1]] and "Traceback" not in err
    assert stored(out) == 1 and not [d for d in (out / "runs").iterdir() if d.name.startswith(".")]
    assert len(without_seconds(out)) == 2


# `dropbench ARGS` whose Ctrl-C, once its first run is stored and its main thread waits for the
# other, reaches one of its helper threads (a worker pool's): the kernel hands a process's signal
# to any thread that does not block it, and Python runs the handler only in the main thread.
SIGINT_TO_A_HELPER_THREAD = """
import signal, sys, threading, time

from dropbench import runner
from dropbench.cli import main
from dropbench.engines import batched

execute = runner.execute
if sys.argv.pop(1) == "threads":  # the engine's workers as threads, where a system cannot fork
    batched._can_fork = lambda: False


def interrupt_a_helper():
    time.sleep(0.5)  # the main thread is back waiting for the other chunk (10 million epochs)
    helpers = [t for t in threading.enumerate() if t is not threading.main_thread() and t is not threading.current_thread()]
    assert helpers, threading.enumerate()
    signal.pthread_kill(helpers[0].ident, signal.SIGINT)


def hooked(*args, on_result=None, **kw):
    def result(run_id, status):
        if on_result:
            on_result(run_id, status)
        threading.Thread(target=interrupt_a_helper, daemon=True).start()

    return execute(*args, on_result=result, **kw)


runner.execute = hooked
sys.argv = ["dropbench", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["processes", "threads"])
def test_sigint_handled_by_a_helper_thread_still_stops_the_sweep(tmp_path, workers):
    """The main thread waits for the workers in steps, so a Ctrl-C that the kernel handed to
    another thread still stops the sweep (exit 130, the workers stopped) within a step, instead
    of waiting for the long run to finish."""
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_TO_A_HELPER_THREAD, workers, "run", "-m", "epochs=5,10000000",
                             "model.hidden=8", "launcher.workers=2", f"out={out}", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=sigint_as_default)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers
        proc.communicate()
        pytest.fail("a SIGINT handled by a helper thread left the sweep waiting for its 10-million-epoch run")
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("dropbench: error: interrupted: 1 of 2 runs are stored"), err
    assert stored(out) == 1


def test_same_command_again_is_a_resume(tmp_path):
    from typer.testing import CliRunner

    from dropbench.cli import app

    out = tmp_path / "r"
    args = ["run", "-m", "reg=none,l1", "seed=range(2)", "epochs=10", "model.hidden=8", f"out={out}"]
    assert CliRunner().invoke(app, args).exit_code == 0
    record = (out / "sweep.yaml").read_bytes()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "4 run(s) were already finished" in res.output
    assert (out / "sweep.yaml").read_bytes() == record


def test_another_sweep_into_a_folder_is_refused_unless_appended(tmp_path, monkeypatch):
    """cp -r sweepA mix; dropbench run -m reg=l1 ... out=mix silently mixed 100- and 200-epoch
    runs and overwrote sweep.yaml: now it is refused, or with --append recorded beside the
    first command, and --resume (from anywhere) finishes both."""
    import yaml
    from typer.testing import CliRunner

    from dropbench.cli import app

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(work)
    first = ["-m", "reg=none", "seed=range(2)", "epochs=10", "model.hidden=8", "out=mix"]
    second = ["-m", "reg=l1", "seed=range(2)", "epochs=5", "model.hidden=8", "out=mix"]
    assert CliRunner().invoke(app, ["run", *first]).exit_code == 0
    before = {f: (work / "mix" / f).read_bytes() for f in ("sweep.yaml", "runs.csv")}
    res = CliRunner().invoke(app, ["run", *second])
    assert res.exit_code == 2
    line = res.output.strip()
    assert line.startswith("dropbench: error: out=mix already holds another sweep (dropbench run -m reg=none") and "--append" in line
    assert len(line.splitlines()) == 1
    assert {f: (work / "mix" / f).read_bytes() for f in before} == before and stored(work / "mix") == 2
    res = CliRunner().invoke(app, ["run", *second, "--append"])
    assert res.exit_code == 0, res.output
    commands = yaml.safe_load((work / "mix" / "sweep.yaml").read_text())["commands"]
    assert [(c["overrides"], c["multirun"], c["cwd"]) for c in commands] == [(first[1:], True, str(work)), (second[1:], True, str(work))]
    # Each command again is a resume of the folder; a third one still needs --append.
    for again in (first, second):
        res = CliRunner().invoke(app, ["run", *again])
        assert res.exit_code == 0 and "4 run(s) were already finished" not in res.output and "2 run(s) were already finished" in res.output
    assert CliRunner().invoke(app, ["run", "reg=l2", "epochs=5", "model.hidden=8", "out=mix"]).exit_code == 2
    # --resume re-plans every recorded command, from another directory too.
    for d in sorted((work / "mix" / "runs").iterdir())[::2]:
        shutil.rmtree(d)
    monkeypatch.chdir(elsewhere)
    res = CliRunner().invoke(app, ["run", "--resume", str(work / "mix")])
    assert res.exit_code == 0, res.output
    assert stored(work / "mix") == 4 and "2 run(s) were already finished" in res.output
    rows = list(csv.DictReader((work / "mix" / "runs.csv").open()))
    assert sorted((r["reg"], r["epochs"]) for r in rows) == [("l1", "5"), ("l1", "5"), ("none", "10"), ("none", "10")]
    assert not (elsewhere / "mix").exists()


def test_resume_reads_a_single_command_sweep_file(tmp_path):
    """Folders written before sweep.yaml listed commands hold one {overrides, multirun}."""
    import yaml
    from typer.testing import CliRunner

    from dropbench.cli import app

    out = tmp_path / "r"
    args = ["reg=none,l1", "epochs=5", "model.hidden=8", f"out={out}"]
    assert CliRunner().invoke(app, ["run", "-m", *args]).exit_code == 0
    (out / "sweep.yaml").write_text(yaml.safe_dump({"overrides": args, "multirun": True}))
    shutil.rmtree(sorted((out / "runs").iterdir())[0])
    res = CliRunner().invoke(app, ["run", "--resume", str(out)])
    assert res.exit_code == 0 and "1 run(s) were already finished" in res.output, res.output
    assert stored(out) == 2
    res = CliRunner().invoke(app, ["run", "-m", *args])  # the recorded command: a resume
    assert res.exit_code == 0 and "2 run(s) were already finished" in res.output
    res = CliRunner().invoke(app, ["run", "reg=l2", "epochs=5", "model.hidden=8", f"out={out}", "--append"])
    assert res.exit_code == 0, res.output
    commands = yaml.safe_load((out / "sweep.yaml").read_text())["commands"]
    assert [c["overrides"] for c in commands] == [args, ["reg=l2", "epochs=5", "model.hidden=8", f"out={out}"]]


def test_from_into_a_folder_follows_the_same_rule(tmp_path):
    """--from into a folder holding another sweep: refused unless --append, then recorded (with
    its config, so --resume needs not the source folder) and re-planned by --resume."""
    import yaml
    from typer.testing import CliRunner

    from dropbench.cli import app

    a, b = tmp_path / "a", tmp_path / "b"
    assert CliRunner().invoke(app, ["run", "reg=l1", "epochs=5", "model.hidden=8", f"out={a}"]).exit_code == 0
    assert CliRunner().invoke(app, ["run", "reg=none", "epochs=5", "model.hidden=8", f"out={b}"]).exit_code == 0
    src = next((a / "runs").iterdir())
    res = CliRunner().invoke(app, ["run", "--from", str(src), f"out={b}"])
    assert res.exit_code == 2 and "already holds another sweep" in res.output and stored(b) == 1
    res = CliRunner().invoke(app, ["run", "--from", str(src), f"out={b}", "--append"])
    assert res.exit_code == 0 and stored(b) == 2, res.output
    commands = yaml.safe_load((b / "sweep.yaml").read_text())["commands"]
    assert commands[1]["from"] == str(src) and commands[1]["config"]["reg"] == {"l1": {"weight": 0.0001}}
    res = CliRunner().invoke(app, ["run", "--from", str(src), f"out={b}"])  # the same --from again
    assert res.exit_code == 0 and "1 run(s) were already finished" in res.output
    shutil.rmtree(a)
    shutil.rmtree(b / "runs" / src.name)
    res = CliRunner().invoke(app, ["run", "--resume", str(b)])
    assert res.exit_code == 0 and stored(b) == 2, res.output


def test_resume_finds_a_relative_data_path_from_another_directory(tmp_path, monkeypatch):
    """data.path=data.csv means the CSV beside the command that ran, also when --resume runs
    from elsewhere: sweep.yaml records the working directory and planning happens there."""
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    proj.mkdir(), elsewhere.mkdir()
    (proj / "data.csv").write_text("x,y\n" + "".join(f"{i / 10},{(i % 7) / 7}\n" for i in range(40)))
    (elsewhere / "data.csv").write_text("x,y\n" + "".join(f"{i},{i}\n" for i in range(40)))  # not this one
    out = tmp_path / "r"
    monkeypatch.chdir(proj)
    res = cli("run", "-m", "data=csv", "data.path=data.csv", "data.target=y", "seed=range(2)", "epochs=5", "model.hidden=8", f"out={out}")
    assert res.exit_code == 0, res.output
    before = without_seconds(out)
    shutil.rmtree(sorted((out / "runs").iterdir())[0])
    monkeypatch.chdir(elsewhere)
    res = cli("run", "--resume", str(out))
    assert res.exit_code == 0 and "1 run(s) were already finished" in res.output, res.output
    assert without_seconds(out) == before and Path.cwd() == elsewhere
    # The same words from elsewhere name another CSV: another sweep, not a resume.
    res = cli("run", "-m", "data=csv", "data.path=data.csv", "data.target=y", "seed=range(2)", "epochs=5", "model.hidden=8", f"out={out}")
    assert res.exit_code == 2 and "already holds another sweep" in res.output and stored(out) == 2


def test_the_same_command_from_another_directory_is_a_resume(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    args = ["run", "-m", "seed=range(2)", "epochs=5", "model.hidden=8", f"out={tmp_path / 'r'}"]
    monkeypatch.chdir(tmp_path / "a")
    assert cli(*args).exit_code == 0
    monkeypatch.chdir(tmp_path / "b")
    res = cli(*args)
    assert res.exit_code == 0 and "2 run(s) were already finished" in res.output, res.output


@pytest.mark.slow
def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    out = tmp_path / "r"
    import yaml

    regs = ["reg=none,l1", "reg=l1,l2", "reg=l2,none"]
    writers = [start("run", "-m", r, "seed=range(4)", "epochs=40", "model.hidden=32", f"out={out}", "-q", "--append") for r in regs]
    codes = [w.wait(120) for w in writers]
    assert codes == [0, 0, 0], [w.stderr.read() for w in writers]
    commands = yaml.safe_load((out / "sweep.yaml").read_text())["commands"]
    assert sorted(c["overrides"][0] for c in commands) == sorted(regs), "each command recorded once"
    rows = list(csv.DictReader((out / "runs.csv").open()))
    ids = [r["run_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 12, "none, l1, l2 x 4 seeds: each run exactly once"
    curves = list(csv.DictReader((out / "curves.csv").open()))
    assert len(curves) == 12 and {c["run_id"] for c in curves} == set(ids)


def test_diverging_run_inside_a_sweep(tmp_path):
    out = tmp_path / "r"
    res = cli("run", "-m", "optim=sgd", "optim.lr=0.01,1e6", "seed=range(2)", "epochs=30", f"out={out}")
    assert res.exit_code == 1
    assert "2 of 4 run(s) failed" in res.output
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert sorted(r["status"] for r in rows) == ["failed", "failed", "ok", "ok"]
    assert all("diverged" in r["reason"] for r in rows if r["status"] == "failed")
    res = cli("run", "-m", "optim=sgd", "optim.lr=0.01,1e6", "seed=range(2)", "epochs=30", f"out={out}", "--allow-failures")
    assert res.exit_code == 0 and "2 run(s) were already finished" in res.output  # the failed ones are tried again


@pytest.mark.slow
@pytest.mark.kernels  # each launcher shares the runs out, and so chunks them, its own way
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers_give_the_same_rows(tmp_path, launcher):
    args = ["-m", "reg=none,droppath", "seed=range(3)", "epochs=20", "model.hidden=32"]
    local, other = tmp_path / "local", tmp_path / launcher
    assert cli("run", *args, f"out={local}", "-q").exit_code == 0
    p = dropbench("run", *args, f"launcher={launcher}", f"out={other}", "-q")
    assert p.returncode == 0, p.stderr
    same_files(other, local, f"from launcher={launcher}, against launcher=local")
    # Again into the finished folder: nothing left to share out, nothing trained.
    res = cli("run", *args, f"launcher={launcher}", f"out={other}")
    assert res.exit_code == 0, res.output
    assert "6 run(s) were already finished" in res.output


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
    res = cli("run", "epochs=5", f"out={tmp_path}")
    assert res.exit_code == 2 and "holds no dropbench results" in res.output
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_leftovers_of_dead_writers_go_those_of_live_ones_stay(tmp_path):
    """A second writer starting in a folder must not delete the first one's in-flight files."""
    import socket

    from dropbench import atomic, results

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
    old = time.time() - atomic.STALE_SECONDS - 60
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


@pytest.mark.parametrize("damage", ["garbage json", "no curve"])
def test_a_damaged_run_folder_is_trained_again(tmp_path, damage):
    out = tmp_path / "r"
    args = ["run", "-m", "reg=none,l1", "seed=range(2)", "epochs=20", "model.hidden=16", f"out={out}", "-q"]
    assert cli(*args).exit_code == 0
    before = without_seconds(out)
    victim = sorted(d for d in (out / "runs").iterdir() if not d.name.startswith("."))[0]
    if damage == "garbage json":
        (victim / "result.json").write_text("{not json")
    else:
        (victim / "curve.csv").unlink()
    with pytest.warns(UserWarning) as said:
        res = cli(*args[:-1])
    assert res.exit_code == 0, res.output
    assert "3 run(s) were already finished" in res.output  # the damaged one is trained again
    why = "result.json is damaged (not valid JSON)" if damage == "garbage json" else "curve.csv is missing"
    assert [str(w.message) for w in said] == [f"{victim / why.split()[0]} {why.split(' ', 1)[1]}; training that run again"]
    assert without_seconds(out) == before


def test_a_damaged_sweep_file_is_a_user_error(tmp_path):
    out = tmp_path / "r"
    assert cli("run", "-m", "reg=none", "seed=range(2)", "epochs=5", "model.hidden=8", f"out={out}", "-q").exit_code == 0
    for damage in ("overrides: [5]\nmultirun: true\n", "commands: []\n", "commands: [{from: x}]\n", "[1, 2\n"):
        (out / "sweep.yaml").write_text(damage)
        for args in (["--resume", str(out)], ["-m", "reg=none", "seed=range(2)", "epochs=5", "model.hidden=8", f"out={out}"]):
            res = cli("run", *args)
            assert res.exit_code == 2 and "not a dropbench sweep file" in res.output, (damage, res.output)
            assert len(res.output.strip().splitlines()) == 1 and "internal error" not in res.output


def test_a_run_that_raises_fails_alone_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """An exception inside training (not a divergence) fails that run only, with the reason."""
    from dropbench import runner
    from dropbench.engines import batched

    train = batched.Chunk.train

    def boom_for_l1_seed_1(self, *a, **kw):
        if "l1" in self.cfg0.reg.names and any(c.seed == 1 for c in self.cfgs):
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
    # the l1 runs that shared the failing chunk were retried alone: their numbers are a lone run's
    monkeypatch.setattr(batched.Chunk, "train", train)
    alone = {c.seed: batched._train_chunk([c], 2)[0].curve for c in cfgs if c.reg.names == ["l1"] and c.seed != 1}
    rows = {(r["reg"], r["seed"]): r["final_test_mse"] for r in outcome.rows}
    assert rows[("l1", 0)] == alone[0][-1][2] and rows[("l1", 2)] == alone[2][-1][2]


def test_rows_follow_the_plan_whichever_runs_finished_first(tmp_path):
    """An interrupted sweep lists the runs it finished; on resume every run of the plan takes
    its plan position, and runs of an earlier sweep in the folder keep theirs."""
    from dropbench.config import load
    from dropbench.engines.result import RunResult
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


def _finished_folder(out: Path) -> list[Path]:
    """A finished 3-run sweep with one run folder removed (so resuming has a run to train)."""
    from typer.testing import CliRunner

    from dropbench.cli import app

    res = CliRunner().invoke(app, ["run", "-m", "seed=range(3)", "epochs=5", "model.hidden=8", f"out={out}"])
    assert res.exit_code == 0, res.output
    dirs = sorted(d for d in (out / "runs").iterdir())
    shutil.rmtree(dirs[0])
    return dirs[1:]


def _edit(run_dir: Path, **changes) -> None:
    f = run_dir / "result.json"
    row = json.loads(f.read_text())
    for k, v in changes.items():
        if v is None:
            row.pop(k)
        else:
            row[k] = v
    f.write_text(json.dumps(row))


@pytest.mark.parametrize("changes, named", [
    ({"torch_version": "1.13.1"}, "(torch 1.13.1, "),
    ({"cpu_capability": "NO_AVX"}, "CPU capability NO_AVX, cpu) than"),
    ({"device": "cuda", "gpu": "NVIDIA A100"}, None),  # a cuda run beside cpu ones: same host, allowed
    ({k: None for k in ("dropbench_version", "torch_version", "cpu", "cpu_capability", "gpu")}, "unrecorded"),
])
def test_resume_refuses_to_mix_platforms(tmp_path, changes, named):
    """Finished runs computed on another platform (or on an unrecorded one): --resume and the same
    command again refuse to add runs, naming both platforms, unless --allow-mixed-platforms."""
    import torch
    from typer.testing import CliRunner

    from dropbench.cli import app

    out = tmp_path / "r"
    kept = _finished_folder(out)
    _edit(kept[0], **changes)
    res = CliRunner().invoke(app, ["run", "--resume", str(out)])
    if named is None:
        assert res.exit_code == 0, res.output
        return
    line = res.output.strip()
    assert res.exit_code == 2 and len(line.splitlines()) == 1, res.output
    from dropbench.provenance import cpu_model

    here = f"this one (torch {torch.__version__}, {cpu_model()}, CPU capability {torch.backends.cpu.get_cpu_capability()}, cpu)"
    assert "holds 1 finished run(s) computed on another platform (" in line and named in line and here in line
    assert "--allow-mixed-platforms" in line and stored(out) == 2
    res = CliRunner().invoke(app, ["run", "-m", "seed=range(3)", "epochs=5", "model.hidden=8", f"out={out}"])
    assert res.exit_code == 2 and "another platform" in res.output and stored(out) == 2
    res = CliRunner().invoke(app, ["run", "--resume", str(out), "--allow-mixed-platforms"])
    assert res.exit_code == 0 and stored(out) == 3, res.output


def test_another_cpu_model_is_another_platform_and_a_finished_sweep_is_listed(tmp_path):
    """Two CPU models of one instruction set gave different last bits (Xeon and EPYC, both
    AVX-512), so the model counts; dropbench's own version does not. A folder with nothing left
    to train is listed on any platform."""
    from typer.testing import CliRunner

    from dropbench.cli import app

    out = tmp_path / "r"
    kept = _finished_folder(out)
    _edit(kept[0], dropbench_version="0.0.1")
    res = CliRunner().invoke(app, ["run", "--resume", str(out)])
    assert res.exit_code == 0 and stored(out) == 3, res.output
    shutil.rmtree(kept[0])  # something to train again, beside a run of another CPU model
    _edit(kept[1], cpu="Some Other CPU")
    res = CliRunner().invoke(app, ["run", "--resume", str(out)])
    assert res.exit_code == 2 and "Some Other CPU" in res.output, res.output
    res = CliRunner().invoke(app, ["run", "--resume", str(out), "--allow-mixed-platforms"])
    assert res.exit_code == 0 and stored(out) == 3, res.output
    _edit(kept[1], torch_version="1.13.1")
    res = CliRunner().invoke(app, ["run", "--resume", str(out)])
    assert res.exit_code == 0 and "3 run(s) were already finished" in res.output


def test_each_run_records_its_platform(tmp_path):
    """result.json and runs.csv carry the platform, between the config and the results."""
    import torch

    from dropbench import __version__, runner

    cfgs, launcher = runner.plan(["epochs=5", "model.hidden=8", f"out={tmp_path}"])
    runner.execute(cfgs, launcher)
    header = next(csv.reader((tmp_path / "runs.csv").open()))
    platform = ["dropbench_version", "torch_version", "cpu", "cpu_capability", "gpu"]
    start = header.index("dropbench_version")
    assert header[start : start + 5] == platform and header[start + 5] == "final_train_mse"
    assert header.index("dtype") < start and header.index("device") < start
    row = json.loads(next((tmp_path / "runs").iterdir()).joinpath("result.json").read_text())
    assert (row["dropbench_version"], row["torch_version"], row["cpu_capability"], row["gpu"], row["device"]) == (
        __version__, torch.__version__, torch.backends.cpu.get_cpu_capability(), "", "cpu")
    assert row["cpu"]


def _fake_slurm(bin_dir: Path) -> Path:
    """A folder holding stand-ins for SLURM's sbatch and srun (found on PATH, never run)."""
    bin_dir.mkdir()
    for name in ("sbatch", "srun"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_slurm_runs_on_nodes_the_login_host_cannot_check(tmp_path, monkeypatch):
    """The platform check compares with the host that trains: locally it refuses, for SLURM
    (whose nodes this host does not know) it leaves the warning to report and check."""
    from dropbench import launchers, runner
    from dropbench.config import LocalLauncher, SubmititSlurmLauncher
    from dropbench.errors import UserError

    out = tmp_path / "r"
    kept = _finished_folder(out)
    _edit(kept[0], cpu="Some Other CPU")
    cfgs, _ = runner.plan_resume(out)[:2]
    with pytest.raises(UserError, match="another platform"):
        runner.execute(cfgs, LocalLauncher(), out)
    launched = []
    monkeypatch.setattr(launchers, "launch", lambda todo, *a: launched.extend(todo))
    monkeypatch.setenv("PATH", str(_fake_slurm(tmp_path / "bin")))  # a login node: SLURM's commands, no platform check
    runner.execute(cfgs, SubmititSlurmLauncher(), out)
    assert len(launched) == 1


def test_the_same_runs_typed_otherwise_are_a_resume_and_new_runs_are_not(tmp_path):
    """seed=0,1 after seed=range(2), or the overrides in another order, plan no new run: a
    resume. One new run makes it another sweep, refused without --append."""
    out = f"out={tmp_path / 'r'}"
    assert cli("run", "-m", "reg=none,l1", "seed=range(2)", "epochs=5", "model.hidden=8", out).exit_code == 0
    for args in (["seed=0,1", "reg=none,l1"], ["reg=l1", "seed=1"]):
        res = cli("run", "-m", *args, "model.hidden=8", "epochs=5", out)
        assert res.exit_code == 0 and "already finished" in res.output, res.output
    res = cli("run", "-m", "reg=none,l1", "seed=range(3)", "epochs=5", "model.hidden=8", out)
    assert res.exit_code == 2 and "already holds another sweep" in res.output
    import yaml

    assert len(yaml.safe_load((tmp_path / "r" / "sweep.yaml").read_text())["commands"]) == 1


def _stored_run(folder: Path, *overrides: str) -> Path:
    """A run stored as `dropbench run` stores it (config.yaml, result.json, curve.csv), without
    training: the curve is made up."""
    from dropbench.config import load
    from dropbench.engines.result import RunResult
    from dropbench.results import write_run

    r = RunResult(load([*overrides, "eval_every=1"]))
    r.curve = [(e, 0.5 / e, 0.6 / e, 0.5 / e) for e in range(1, r.cfg.epochs + 1)]
    return write_run(folder, r)


@pytest.mark.parametrize("data", ["noisy_linear", "csv"])
def test_from_refuses_a_config_cut_anywhere(tmp_path, data):
    """A saved config.yaml cut at every byte (every line boundary and inside every line): --from
    either refuses it in one line that names the file as damaged, or, where what is left is a
    whole config of the same run, trains that run, never another one."""
    from dropbench import runner
    from dropbench.errors import UserError

    extra = []
    if data == "csv":
        (tmp_path / "data.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i * 0.5}\n" for i in range(12)))
        extra = ["data=csv", f"data.path={tmp_path / 'data.csv'}", "data.target=y"]
    run_dir = _stored_run(tmp_path / "r", *extra, "reg=dropout", "p=0.3", "seed=4", "epochs=3", "model.hidden=16",
                          "optim.lr=0.005")
    saved = run_dir / "config.yaml"
    text = saved.read_text()
    assert runner.reproduce(run_dir).run_id == run_dir.name  # the whole file is the stored run
    refused = accepted = 0
    for cut in range(len(text)):
        saved.write_text(text[:cut])
        try:
            cfg = runner.reproduce(run_dir)
        except UserError as e:
            msg = str(e)
            assert msg.startswith(f"{saved} is damaged") and "\n" not in msg, (cut, msg)
            refused += 1
        else:
            assert cfg.run_id == run_dir.name, (cut, text[:cut][-30:])
            accepted += 1
    assert refused > accepted > 0  # e.g. cut inside the last value's trailing newline: the same run


def test_from_a_cut_config_is_refused_before_anything_is_written(tmp_path):
    """The issue's trial: everything from `seed:` on removed trained the defaults, exit 0; a cut
    inside `optim:` said `unknown option optim=None`."""
    run_dir = _stored_run(tmp_path / "r", "reg=dropout", "seed=3", "epochs=3", "model.hidden=8")
    text = (run_dir / "config.yaml").read_text()
    for cut, said in ((text.index("\nseed:") + 1, "it gives run id "), (text.index("optim:") + len("optim:\n"), "optim=None")):
        (run_dir / "config.yaml").write_text(text[:cut])
        p = dropbench("run", "--from", str(run_dir), f"out={tmp_path / 'again'}")
        assert p.returncode == 2 and p.stdout == "", p.stderr
        assert p.stderr.startswith(f"dropbench: error: {run_dir / 'config.yaml'} is damaged or was edited") and said in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
        assert not (tmp_path / "again").exists()


def test_from_a_run_whose_data_file_changed_says_so(tmp_path):
    """A whole config whose CSV changed since is the data's fault, not a damaged config."""
    from dropbench import runner
    from dropbench.errors import UserError

    f = tmp_path / "data.csv"
    f.write_text("a,y\n" + "".join(f"{i},{i * 0.5}\n" for i in range(12)))
    run_dir = _stored_run(tmp_path / "r", "data=csv", f"data.path={f}", "data.target=y", "epochs=2")
    f.write_text(f.read_text() + "12,6.5\n")
    with pytest.raises(UserError, match="the file changed since this config was saved") as e:
        runner.reproduce(run_dir)
    assert "damaged" not in str(e.value)
    f.unlink()
    with pytest.raises(UserError, match="no such file") as e:
        runner.reproduce(run_dir)
    assert "damaged" not in str(e.value)


def test_a_damaged_result_is_named_on_stderr_when_trained_again(tmp_path):
    out = tmp_path / "r"
    args = ["run", "-m", "reg=none,l1", "epochs=5", "model.hidden=8", f"out={out}", "-q"]
    assert cli(*args).exit_code == 0
    victim = sorted((out / "runs").iterdir())[1]
    (victim / "result.json").write_text('{"run_id": "x"')
    p = dropbench("run", "--resume", str(out), "-q")
    assert p.returncode == 0, p.stderr
    said = [ln for ln in p.stderr.splitlines() if "damaged" in ln]
    assert said == [f"dropbench: warning: {out}/runs/{victim.name}/result.json is damaged (not valid JSON); training that run again"]
    assert json.loads((victim / "result.json").read_text())["run_id"] == victim.name
