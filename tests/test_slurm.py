"""launcher=submitit_slurm against a real scheduler: the one-node SLURM scripts/local_slurm.sh
starts (CI's .ci/run does where it is root with apt-get; elsewhere these tests skip and say how
to enable them). Accounting is off there, so `sacct` fails, as on many small clusters.

The matrix: the README's example at small size (the local launcher's rows), jobs that end early
(a time limit, scancel), the submitter terminated (SIGTERM), a job requeued mid-sweep (`scontrol
requeue`), a job that fails before Python starts, and an array sbatch refuses. Jobs are held
mid-sweep by a test hook (slurm_helpers.HOOK), not by guessing how long training takes."""

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from slurm_helpers import (  # noqa: F401  (slurm, sweeps: fixtures)
    PARTITION, Sweep, holding_env, job_field, job_log, same_files, slurm, squeue_state, sweeps, wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SMALL = ["model.hidden=32", "epochs=20", "eval_every=10"]
SLURM = ["launcher=submitit_slurm", f"launcher.partition={PARTITION}", "launcher.cpus_per_task=1", "launcher.mem_gb=1"]
HANG_S = 240  # bounds every wait: SLURM's time limits act within 30 s of the limit, a requeued job starts again in seconds
EARLY_SWEEP = ["-m", "reg=none,l2,dropout", "seed=range(3)", *SMALL]


def cli(*args: str):
    from typer.testing import CliRunner

    from dropbench.cli import app

    return CliRunner().invoke(app, list(args))


def local_rows(sweep: list[str], out: Path) -> Path:
    res = cli("run", *sweep, f"out={out}", "-q")
    assert res.exit_code == 0, res.output
    return out


def fate_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not re.match(r"dropbench: \d+/\d+ runs done", line)]


@pytest.fixture(scope="module", autouse=True)
def ended_early(slurm, tmp_path_factory):
    """A sweep started before this module's first test, so that its two-minute time limit runs
    out while the other tests run; test_jobs_that_end_early_... (the module's last) reads it.
    Three jobs of three runs: task 0 is held after one run until its 2 min time limit, task 1 is
    held after one run and cancelled (scancel, by this fixture's thread), task 2 completes."""
    folder = tmp_path_factory.mktemp("ended_early")
    s = Sweep([*EARLY_SWEEP, *SLURM, "launcher.jobs=3", "launcher.timeout_min=2"], folder / "r",
              env=holding_env(folder, after=1, tasks=(0, 1)))
    seen: dict = {}

    def cancel_task_1() -> None:
        try:
            held = lambda: [j for j in s.job_ids()[:2] if "test hook: holding this job" in job_log(s.out, j)]  # noqa: E731
            wait_until(lambda: len(held()) == 2, HANG_S, "tasks 0 and 1 to store a run each and be held")
            wait_until(lambda: "runs done" in s.stderr, 30, "the submitter to report runs stored while its jobs run")
            seen["cancelled"] = s.job_ids()[1]
            subprocess.run(["scancel", seen["cancelled"]], check=True, capture_output=True, timeout=30)
        except BaseException as e:  # noqa: BLE001  the test reports it
            seen["error"] = e

    thread = threading.Thread(target=cancel_task_1, daemon=True)
    thread.start()
    yield SimpleNamespace(sweep=s, thread=thread, seen=seen, folder=folder)
    s.stop()


@pytest.mark.kernels  # each launcher shares the runs out, and so chunks them, its own way
def test_the_readme_example_on_slurm_gives_the_local_launchers_rows(slurm, sweeps, tmp_path):
    sweep = ["-m", "reg=none,l1,l2,dropout,droppath", "seed=range(2)", *SMALL]
    local = local_rows(sweep, tmp_path / "local")
    setup = f'launcher.setup=["source {Path(sys.prefix) / "bin" / "activate"}"]'  # as on a cluster: the job's venv
    s = sweeps([*sweep, *SLURM, "launcher.jobs=2", "launcher.timeout_min=5", setup], tmp_path / "slurm")
    assert s.wait(HANG_S) == 0, s.stderr
    same_files(s.out, local, "from launcher=submitit_slurm, against launcher=local")
    assert len(s.job_ids()) == 2
    assert s.stderr.splitlines()[-1].startswith("dropbench: 10/10 runs done"), s.stderr
    assert "sacct" not in s.stderr, "no accounting here: the submitter must not ask sacct"


def test_sigterm_to_the_submitter_keeps_what_finished_and_cancels_its_jobs(slurm, sweeps, tmp_path):
    """kill -TERM of `dropbench run` while a job trains (for real, not held): as Ctrl-C, with
    exit 143; its jobs are cancelled, and the one training stops at once (its SIGTERM handler)."""
    s = sweeps(["-m", "reg=none", "seed=range(2)", "epochs=20,20000000", "eval_every=10000000", "model.hidden=32",
                *SLURM, "launcher.jobs=2"], tmp_path / "r")
    wait_until(lambda: s.stored() == 2, HANG_S, "task 0 to store its two short runs")
    short, long = s.job_ids()
    wait_until(lambda: "training this job's 2 runs" in job_log(s.out, long), HANG_S, f"job {long} to start training")
    s.proc.send_signal(signal.SIGTERM)
    assert s.wait(60) == 143, s.stderr
    out = s.out
    assert re.match(r"dropbench: 2/4 runs done", s.stderr.splitlines()[-2]), s.stderr
    assert fate_lines(s.stderr) == [
        f"dropbench: error: terminated (SIGTERM): 2 of 4 runs are stored in {out}; resume with: dropbench run --resume {out}"
    ], s.stderr
    wait_until(lambda: squeue_state(long) == "CANCELLED", 60, f"job {long} to be cancelled")
    wait_until(lambda: "SIGTERM: this job stops" in job_log(out, long), 30, f"job {long} to stop on SIGTERM")
    assert len((out / "runs.csv").read_text().splitlines()) == 1 + 2


def test_a_requeued_job_trains_only_the_runs_it_has_not_stored(slurm, sweeps, tmp_path):
    """`scontrol requeue` of a job mid-sweep (as a preemption with requeue does): SLURM stops it
    and starts it again; it skips the runs it stored, and the sweep ends as if nothing happened."""
    sweep = ["-m", "reg=none,dropout", "seed=range(3)", *SMALL]
    s = sweeps([*sweep, *SLURM, "launcher.jobs=2"], tmp_path / "r", env=holding_env(tmp_path, after=2, tasks=(0,)))
    wait_until(lambda: s.stored() == 5, HANG_S, "task 0 to store two runs (and be held), task 1 its three")
    held = s.job_ids()[0]
    before = {d.name: d.stat().st_ino for d in (s.out / "runs").iterdir() if not d.name.startswith(".")}
    subprocess.run(["scontrol", "requeue", held], check=True, capture_output=True, timeout=30)
    assert s.wait(HANG_S) == 0, s.stderr
    assert job_field(held, "Restarts") == "1"
    assert "2 of this job's 3 runs are stored already; training the other 1" in job_log(s.out, held)
    after = {d.name: d.stat().st_ino for d in (s.out / "runs").iterdir() if not d.name.startswith(".")}
    assert {k: after[k] for k in before} == before, "the runs stored before the requeue were not trained again"
    same_files(s.out, local_rows(sweep, tmp_path / "local"), "with a job requeued mid-sweep, against launcher=local")


def test_a_job_that_fails_before_python_starts_says_why(slurm, sweeps, tmp_path):
    s = sweeps(["reg=none", *SMALL, *SLURM, 'launcher.setup=["source /nonexistent/venv/bin/activate || exit 3"]'], tmp_path / "r")
    assert s.wait(HANG_S) == 1, s.stderr
    (job,) = s.job_ids()
    log = s.out / ".submitit" / job / f"{job}_0_log.err"
    lines = fate_lines(s.stderr)
    assert re.fullmatch(rf"dropbench: job {job} failed: exit code 3; \S+: line \d+: /nonexistent/venv/bin/activate: "
                        rf"No such file or directory; see {re.escape(str(log))}; 1 run unfinished", lines[0]), s.stderr
    assert lines[1:] == [f"dropbench: error: 1 of 1 job ended early; 0 of 1 runs are stored in {s.out}; "
                         f"resume with: dropbench run --resume {s.out}"]


def test_an_array_sbatch_refuses_is_one_line_and_leaves_nothing(slurm, tmp_path):
    out = tmp_path / "r"
    res = cli("run", "reg=none", *SMALL, *SLURM, "launcher.partition=nosuchpartition", f"out={out}")
    assert res.exit_code == 2
    errors = [line for line in res.output.splitlines() if not re.match(r"dropbench: \d+/\d+ runs done", line)]
    assert errors == ["dropbench: error: launcher=submitit_slurm: the job array was not submitted (sbatch: invalid partition "
                      "specified: nosuchpartition; Batch job submission failed: Invalid partition name specified); check the "
                      "launcher's keys (launcher.partition, account, qos, mem_gb, timeout_min)"], res.output
    assert not out.exists(), "nothing of the attempt is left"


# Last in the module: its sweep (the ended_early fixture) has been running since the first test.
def test_jobs_that_end_early_are_named_with_their_fate_and_the_sweep_resumes(ended_early, sweeps):
    """The submitter reported progress from the run folders while its jobs ran, then names each
    job that ended early with its fate, then the resume command (exit 1); resuming finishes the
    sweep with the local launcher's rows."""
    s = ended_early.sweep
    assert s.wait(HANG_S) == 1, s.stderr
    ended_early.thread.join(30)
    if "error" in ended_early.seen:
        raise ended_early.seen["error"]
    out = s.out
    first, cancelled, last = s.job_ids()
    assert ended_early.seen["cancelled"] == cancelled
    assert fate_lines(s.stderr) == [
        f"dropbench: job {first} hit its 2 min time limit; 2 runs unfinished",
        f"dropbench: job {cancelled} was cancelled; 2 runs unfinished",
        f"dropbench: error: 2 of 3 jobs ended early; 5 of 9 runs are stored in {out}; "
        f"resume with: dropbench run --resume {out}",
    ], s.stderr
    assert squeue_state(first) == "TIMEOUT" and squeue_state(cancelled) == "CANCELLED" and squeue_state(last) == "COMPLETED"
    assert "DUE TO TIME LIMIT" in job_log(out, first)
    # The warning comes 30 s ahead of the 2 min limit, not submitit's 90 s: SLURM may send it up to a
    # minute early, and it must not reach a job still starting up (it would kill it): launchers.signal_delay_s.
    scripts = list((out / ".submitit").rglob("*_submission.sh"))
    assert scripts and all("#SBATCH --signal=USR2@30" in p.read_text() for p in scripts), scripts
    # SLURM's warning before the time limit (SIGUSR2) does not end the job early: it trains on.
    assert "the time limit is near: training on until SLURM stops this job" in job_log(out, first)
    assert len((out / "runs.csv").read_text().splitlines()) == 1 + 5
    assert not [d for d in (out / "runs").iterdir() if not (d / "result.json").is_file() and not d.name.startswith(".")]

    resumed = sweeps([], out, resume=True)  # the recorded launcher: the four runs left go to SLURM
    assert resumed.wait(HANG_S) == 0, resumed.stderr
    assert resumed.stderr.splitlines()[-1].startswith("dropbench: 4/4 runs done"), resumed.stderr
    same_files(out, local_rows(EARLY_SWEEP, ended_early.folder / "local"), "kept and resumed on SLURM, against launcher=local")
