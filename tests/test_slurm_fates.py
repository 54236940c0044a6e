"""How the SLURM submitter learns that its jobs ended, and how jobs and submitter take signals,
without a cluster: squeue's answers and the jobs' logs are recorded text, time is injected.
tests/test_slurm.py runs the same paths against a real scheduler where one is up."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from dropbench import launchers, slurm

# What this project's local SLURM 22.05 wrote (scripts/local_slurm.sh), and what SLURM writes
# for the causes a one-node cluster cannot stage.
TIME_LIMIT = "slurmstepd-vm: error: *** JOB 5 ON vm CANCELLED AT 2026-12-04T22:35:46 DUE TO TIME LIMIT ***"
SCANCEL = "slurmstepd-vm: error: *** JOB 8 ON vm CANCELLED AT 2026-12-04T22:41:41 ***"
REQUEUE = "slurmstepd-vm: error: *** JOB 6 ON vm CANCELLED AT 2026-12-04T22:36:44 DUE TO JOB REQUEUE ***"
PREEMPTION = "slurmstepd: error: *** STEP 77.0 ON n12 CANCELLED AT 2025-01-02T03:04:05 DUE TO PREEMPTION ***"
NODE_FAILURE = "slurmstepd: error: *** JOB 78 ON n13 CANCELLED AT 2025-01-02T03:04:05 DUE TO NODE FAILURE ***"
OOM = "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=79.batch. Some of your processes may have been killed by the cgroup out-of-memory handler."
TRACE = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: boom\n'
SUBMITIT_TIMEOUT = TRACE.replace("ValueError: boom", "submitit.core.utils.UncompletedJobError: Job not requeued because: timed-out and not checkpointable.")


@pytest.mark.parametrize("text, minutes", [("1:00", 1), ("0:30", 1), ("1:00:00", 60), ("2-01:00:00", 2940), ("UNLIMITED", None), ("", None)])
def test_squeue_time_limits_in_minutes(text, minutes):
    assert slurm.parse_limit(text) == minutes


def answer(stdout="", returncode=0, stderr=""):
    calls = []

    def run(cmd):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, returncode, stdout, stderr)

    return run, calls


def test_squeue_lists_every_task_ended_ones_too():
    run, calls = answer("7_1|CANCELLED|5:00|Resources\n7_0|COMPLETING|5:00|None\n9|TIMEOUT|1:00|TimeLimit\n")
    assert slurm.queue(["7_0", "7_1", "9"], run) == {
        "7_1": slurm.Queued("CANCELLED", 5, "Resources"), "7_0": slurm.Queued("COMPLETING", 5, "None"),
        "9": slurm.Queued("TIMEOUT", 1, "TimeLimit"),
    }
    (cmd,) = calls
    assert cmd[0] == "squeue" and "--states=all" in cmd and "--array" in cmd and "--jobs=7,9" in cmd


def test_squeue_that_knows_none_of_the_jobs_and_squeue_that_does_not_answer():
    assert slurm.queue(["7_0"], answer("", 1, "slurm_load_jobs error: Invalid job id specified\n")[0]) == {}
    assert slurm.queue(["7_0"], answer("", 1, "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n")[0]) is None

    def hangs(cmd):
        raise subprocess.TimeoutExpired(cmd, slurm.SQUEUE_TIMEOUT_S)

    def missing(cmd):
        raise FileNotFoundError("squeue")

    assert slurm.queue(["7_0"], hangs) is None and slurm.queue(["7_0"], missing) is None


@pytest.mark.parametrize("lines, state", [
    ([TIME_LIMIT], "TIMEOUT"), ([SCANCEL], "CANCELLED"), ([PREEMPTION], "PREEMPTED"), ([NODE_FAILURE], "NODE_FAIL"),
    ([OOM], "OUT_OF_MEMORY"), ([REQUEUE], None), ([REQUEUE, "dropbench: training", TIME_LIMIT], "TIMEOUT"),
    ([SCANCEL, REQUEUE], None), (["Traceback ...", "ValueError: boom"], None), ([], None),
])
def test_the_state_a_jobs_log_tells(lines, state):
    """The last line that ends the job counts: a requeued job ran again after its first end."""
    assert slurm.fate_in_log("\n".join(lines)) == state


@pytest.mark.parametrize("queued, log, error, code, said", [
    (slurm.Queued("CANCELLED", 60), "", TRACE, None, "was cancelled"),
    (slurm.Queued("TIMEOUT", 1), "", None, None, "hit its 1 min time limit"),
    (None, TIME_LIMIT, None, None, "hit its 30 min time limit"),  # gone from squeue: the limit asked for
    (None, SCANCEL, None, None, "was cancelled"),
    (slurm.Queued("FAILED", 60), "", TRACE, None, "failed: ValueError: boom"),
    (slurm.Queued("FAILED", 60), "", SUBMITIT_TIMEOUT, None, "hit its 60 min time limit"),
    (slurm.Queued("FAILED", 60), "/var/spool/slurmd/job00013/slurm_script: line 17: /x/activate: No such file or directory\n",
     None, "3", "failed: exit code 3; /var/spool/slurmd/job00013/slurm_script: line 17: /x/activate: No such file or directory"),
    (slurm.Queued("FAILED", 60), "dropbench: training this job's 2 runs into /x\nSegmentation fault\nsrun: error: vm: task 0: Segmentation fault\n",
     None, "signal 11", "failed: killed by signal 11; Segmentation fault"),
    (slurm.Queued("NODE_FAIL"), "", None, None, "lost its node (NODE_FAIL)"),
    (slurm.Queued("OUT_OF_MEMORY"), "", None, None, "ran out of memory (raise launcher.mem_gb)"),
    (None, OOM, None, None, "ran out of memory (raise launcher.mem_gb)"),
    (slurm.Queued("PREEMPTED"), "", None, None, "was preempted"),
    (slurm.Queued("COMPLETED"), "", None, "0", "completed without storing all its runs: exit code 0"),
    (None, "", None, None, "ended without a result, and nothing tells how"),
])
def test_a_jobs_fate_from_what_slurm_still_says_its_log_and_its_error(queued, log, error, code, said):
    assert slurm.judge(queued, log, error, limit_min=30, code=code).describe() == said


def test_the_exit_code_scontrol_gives():
    line = "JobId=13 JobName=dropbench JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0 RunTime=00:00:01"
    assert slurm.exit_code("13", answer(line)[0]) == "3"
    assert slurm.exit_code("13", answer(line.replace("3:0", "0:9"))[0]) == "signal 9"
    assert slurm.exit_code("13", answer("", 1, "slurm_load_jobs error: Invalid job id specified")[0]) is None


# --- the submitter's wait, on an injected clock -------------------------------------------------


class FakeJob:
    """A submitit job as the submitter sees it: an id, its paths, and (submitit_local) done()."""

    def __init__(self, folder: Path, job_id: str) -> None:
        d = folder / ".submitit" / job_id
        d.mkdir(parents=True)
        self.job_id = job_id
        self.paths = SimpleNamespace(result_pickle=d / f"{job_id}_0_result.pkl", stderr=d / f"{job_id}_0_log.err",
                                     stdout=d / f"{job_id}_0_log.out")
        self.state = "RUNNING"

    def done(self) -> bool:
        return self.state != "RUNNING"


def store(out: Path, rid: str, status: str = "ok") -> None:
    d = out / "runs" / rid
    tmp = out / "runs" / f".{rid}.tmp"
    tmp.mkdir(parents=True)
    (tmp / "curve.csv").write_text("epoch\n")
    (tmp / "result.json").write_text(json.dumps({"run_id": rid, "status": status}))
    if d.exists():
        import shutil

        shutil.rmtree(d)
    os.replace(tmp, d)  # as results.write_run: a new folder, renamed into place


class World:
    """Time, squeue's answers and the jobs' files, moved on by the submitter's sleeps."""

    def __init__(self, monkeypatch, events: dict[float, callable], queue) -> None:
        self.now, self.events, self.naps = 0.0, dict(events), 0
        monkeypatch.setattr(slurm, "queue", lambda ids, run=None: queue(self.now))
        monkeypatch.setattr(slurm, "exit_code", lambda jid, run=None: None)

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.naps += 1
        assert self.naps < 10_000, "the submitter never stopped waiting"
        self.now += s
        for t in sorted(t for t in self.events if t <= self.now):
            self.events.pop(t)()


def cfgs(*ids):
    return [SimpleNamespace(run_id=r) for r in ids]


def wait(tmp_path, world, jobs, tasks, heard, cluster="slurm"):
    arrivals = launchers._Arrivals(tmp_path, {c.run_id for t in tasks for c in t})
    return launchers._wait(jobs, tasks, arrivals, lambda rid, status: heard.append((world.now, rid, status)), cluster, 30,
                           clock=world.clock, sleep=world.sleep)


def test_progress_comes_from_the_run_folders_while_the_job_runs(tmp_path, monkeypatch):
    job = FakeJob(tmp_path, "7_0")
    world = World(monkeypatch, {
        5: lambda: store(tmp_path, "a"), 9: lambda: store(tmp_path, "b", "failed"), 20: lambda: store(tmp_path, "c"),
    }, lambda now: {"7_0": slurm.Queued("RUNNING" if now < 21 else "COMPLETED", 60)})
    heard: list = []
    assert wait(tmp_path, world, [job], [cfgs("a", "b", "c")], heard) == []
    assert [(rid, status) for _, rid, status in heard] == [("a", "ok"), ("b", "failed"), ("c", "ok")]
    assert [t for t, *_ in heard] == pytest.approx([5, 9, 20], abs=launchers.POLL_S), "each run as its folder appears"
    assert world.now < 21 + launchers.QUEUE_POLL_S + 1


def test_a_job_cancelled_without_sacct_ends_the_wait_with_its_fate(tmp_path, monkeypatch):
    """The issue's hang: a job cancelled, then forgotten by slurmctld (MinJobAge), no result
    file. It leaves squeue; its log says how it ended."""
    job, done = FakeJob(tmp_path, "5_1"), FakeJob(tmp_path, "5_0")

    def cancel():
        job.paths.stderr.write_text(SCANCEL + "\n")

    world = World(monkeypatch, {3: lambda: store(tmp_path, "a"), 4: lambda: store(tmp_path, "b"), 10: cancel},
                  lambda now: {"5_0": slurm.Queued("COMPLETED" if now > 4 else "RUNNING", 60)} | ({} if now > 10 else {"5_1": slurm.Queued("RUNNING", 60)}))
    heard: list = []
    ends = wait(tmp_path, world, [done, job], [cfgs("a", "b"), cfgs("c", "d", "e")], heard)
    assert [e.line() for e in ends] == ["job 5_1 was cancelled; 3 runs unfinished"]
    assert world.now < 10 + launchers.GONE_POLLS * launchers.QUEUE_POLL_S + 2


def test_a_job_in_squeue_as_timed_out_is_told_at_once(tmp_path, monkeypatch):
    job = FakeJob(tmp_path, "7_0")
    world = World(monkeypatch, {2: lambda: store(tmp_path, "a")},
                  lambda now: {"7_0": slurm.Queued("RUNNING" if now < 60 else "TIMEOUT", 1)})
    ends = wait(tmp_path, world, [job], [cfgs("a", "b", "c")], [])
    assert [e.line() for e in ends] == ["job 7_0 hit its 1 min time limit; 2 runs unfinished"]
    assert world.now < 60 + launchers.QUEUE_POLL_MAX_S


def test_a_job_that_completed_without_its_runs_is_given_time_for_a_slow_file_system(tmp_path, monkeypatch):
    job = FakeJob(tmp_path, "7_0")
    job.paths.stdout.write_text("submitit INFO - Starting with JobEnvironment(job_id=7_0)\n")
    world = World(monkeypatch, {6: lambda: store(tmp_path, "b")}, lambda now: {"7_0": slurm.Queued("COMPLETED", 60)})
    assert wait(tmp_path, world, [job], [cfgs("b")], []) == [], "its run appeared within the grace"
    job = FakeJob(tmp_path, "8_0")
    job.paths.stdout.write_text("submitit INFO - Starting with JobEnvironment(job_id=8_0)\n")
    world = World(monkeypatch, {}, lambda now: {"8_0": slurm.Queued("COMPLETED", 60)})
    ends = wait(tmp_path, world, [job], [cfgs("x")], [])
    assert [e.line() for e in ends] == ["job 8_0 completed without storing all its runs; 1 run unfinished"]
    assert launchers.RESULT_GRACE_S <= world.now < launchers.RESULT_GRACE_S + 2


def test_squeue_not_answering_ends_the_wait_after_its_patience(tmp_path, monkeypatch):
    job = FakeJob(tmp_path, "7_0")
    world = World(monkeypatch, {}, lambda now: None)
    ends = wait(tmp_path, world, [job], [cfgs("a")], [])
    assert [e.line() for e in ends] == ["job 7_0 is in an unknown state: squeue has not answered for 10 min; 1 run unfinished"]
    assert launchers.SQUEUE_PATIENCE_S < world.now < launchers.SQUEUE_PATIENCE_S + 2 * launchers.QUEUE_POLL_MAX_S


def test_a_failed_run_trained_again_counts_when_its_new_folder_replaces_the_old(tmp_path, monkeypatch):
    store(tmp_path, "a", "failed")  # from an earlier attempt: not this sweep's progress
    job = FakeJob(tmp_path, "7_0")
    world = World(monkeypatch, {8: lambda: store(tmp_path, "a")}, lambda now: {"7_0": slurm.Queued("RUNNING" if now < 9 else "COMPLETED", 60)})
    heard: list = []
    assert wait(tmp_path, world, [job], [cfgs("a")], heard) == []
    assert [(rid, status) for _, rid, status in heard] == [("a", "ok")] and heard[0][0] >= 8


def test_a_local_job_that_died_is_told_by_its_process(tmp_path, monkeypatch):
    """submitit_local: no squeue; the job's process says it ended."""
    job = FakeJob(tmp_path, "4242_0")

    def die():
        job.state = "INTERRUPTED"

    world = World(monkeypatch, {3: die}, lambda now: pytest.fail("no squeue for local jobs"))
    ends = wait(tmp_path, world, [job], [cfgs("a")], [], cluster="local")
    assert [e.line() for e in ends] == [f"job 4242_0 ended without a result, and nothing tells how: its process interrupted; see "
                                        f"{job.paths.stderr}; 1 run unfinished"]


# --- inside a job --------------------------------------------------------------------------------


def plan(*overrides):
    from dropbench import runner

    return runner.plan(list(overrides), multirun=True)[0]


def test_a_job_started_again_trains_only_what_it_has_not_stored(tmp_path):
    from dropbench import results
    from dropbench.engines.base import RunResult

    a, b, c = plan("seed=range(3)", "epochs=5", "model.hidden=8")
    launchers.ShareJob()([a], str(tmp_path), 1)
    results.write_run(tmp_path, RunResult(b, status="failed", reason="an earlier attempt"))
    again = launchers.ShareJob()([a, b, c], str(tmp_path), 1)
    assert sorted(rid for rid, _ in again) == sorted([b.run_id, c.run_id]), "the ok run is skipped, the failed one trained again"
    assert results._status(tmp_path / "runs" / b.run_id) == "ok"
    requeued = launchers.ShareJob().checkpoint([a, b, c], str(tmp_path), 1)
    assert isinstance(requeued.function, launchers.ShareJob) and requeued.args == ([a, b, c], str(tmp_path), 1)


def test_submitits_warning_before_the_time_limit_is_let_pass_and_a_preemption_requeues_once_stored(capsys):
    calls = []

    class Submitit:  # submitit's SignalHandler: has_timed_out, and the bound method it registers
        timed_out = True

        def has_timed_out(self):
            return self.timed_out

        def checkpoint_and_try_requeue(self, signum, frame):
            calls.append(signum)

    owner = Submitit()
    previous = signal.signal(signal.SIGUSR2, owner.checkpoint_and_try_requeue)
    try:
        with launchers._job_signals():
            signal.raise_signal(signal.SIGUSR2)
            assert calls == [] and "the time limit is near: training on until SLURM stops this job" in capsys.readouterr().err
            owner.timed_out = False
            with launchers._STOPS.storing():
                signal.raise_signal(signal.SIGUSR2)
                assert calls == [], "not while a run is being stored"
            assert calls == [signal.SIGUSR2]
        assert signal.getsignal(signal.SIGUSR2) == owner.checkpoint_and_try_requeue, "restored"
    finally:
        signal.signal(signal.SIGUSR2, previous)


# A job's process: ShareJob over two small runs into OUT. Storing the first run touches
# OUT/writing and waits (60 s at most) for OUT/go before it writes, so the test can send SIGTERM
# while a run is being stored. With HOLD=0, the runs train for millions of epochs instead.
JOB = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import dropbench.engines.batched  # torch and the engine imported: SIGTERM comes during training, not an import
    from dropbench import launchers, results, runner

    out, mode = Path(sys.argv[1]), sys.argv[2]
    epochs = "epochs=5" if mode == "write" else "epochs=10000000"
    cfgs = runner.plan(["seed=range(2)", epochs, "eval_every=5000000", "model.hidden=8"], multirun=True)[0]
    write = results.write_run

    def slow_write(o, res):
        (out / "writing").touch()
        end = time.monotonic() + 60
        while not (out / "go").exists() and time.monotonic() < end:
            time.sleep(0.05)
        return write(o, res)

    results.write_run = slow_write
    launchers.ShareJob()(cfgs, str(out), 1)
""")


def test_sigterm_in_a_job_lets_the_run_being_stored_be_stored_then_exits_143(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", JOB, str(tmp_path), "write"], stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while not (tmp_path / "writing").exists():
        assert p.poll() is None and time.monotonic() < end, p.stderr.read() if p.poll() is not None else "no write began"
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert p.poll() is None, "it waits for the write"
    (tmp_path / "go").touch()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "dropbench: SIGTERM: this job stops; the runs it stored are kept" in err
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "result.json").is_file() and not runs[0].name.startswith("."), "the one run, whole"


def test_sigterm_in_a_job_while_training_exits_at_once_leaving_no_folder(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", JOB, str(tmp_path), "train"], stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    buf = ""
    while "training this job's 2 runs" not in buf:
        line = p.stderr.readline()
        assert line and time.monotonic() < end, buf + p.stderr.read()
        buf += line
    time.sleep(1)  # inside torch, in the training loop
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, buf + err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


# --- the submitter -------------------------------------------------------------------------------

# `dropbench run ARGS` that says it has stored a run by creating MARKER, and waits there.
PAUSED = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    from dropbench import runner
    from dropbench.cli import main

    marker, execute = Path(sys.argv[1]), runner.execute

    def paused(*args, on_result=None, **kw):
        def result(run_id, status):
            if on_result:
                on_result(run_id, status)
            marker.touch()
            threading.Event().wait()
        return execute(*args, on_result=result, **kw)

    runner.execute = paused
    sys.argv = ["dropbench", *sys.argv[2:]]
    main()
""")


@pytest.mark.slow
def test_sigterm_to_dropbench_run_keeps_what_finished_and_exits_143(tmp_path):
    out, marker = tmp_path / "r", tmp_path / "stored"
    p = subprocess.Popen([sys.executable, "-c", PAUSED, str(marker), "run", "-m", "seed=range(2)", "epochs=5", "model.hidden=8",
                          f"out={out}", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while not marker.exists():
        assert p.poll() is None and time.monotonic() < end, p.communicate()
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert err.splitlines()[-1] == (f"dropbench: error: terminated (SIGTERM): 1 of 2 runs are stored in {out}; "
                                    f"resume with: dropbench run --resume {out}"), err
    assert "Traceback" not in err and len((out / "runs.csv").read_text().splitlines()) == 2


def test_a_preempted_job_is_given_time_to_be_requeued(tmp_path, monkeypatch):
    job = FakeJob(tmp_path, "7_0")
    world = World(monkeypatch, {}, lambda now: {"7_0": slurm.Queued("PREEMPTED" if now > 5 else "RUNNING", 60)})
    ends = wait(tmp_path, world, [job], [cfgs("a")], [])
    assert [e.line() for e in ends] == ["job 7_0 was preempted; 1 run unfinished"]
    assert 5 + launchers.PREEMPTED_GRACE_S <= world.now < 5 + launchers.PREEMPTED_GRACE_S + launchers.QUEUE_POLL_MAX_S
    job = FakeJob(tmp_path, "8_0")
    world = World(monkeypatch, {40: lambda: store(tmp_path, "b")},
                  lambda now: {"8_0": slurm.Queued("PREEMPTED" if 5 < now < 20 else "PENDING" if now < 30 else "RUNNING" if now < 41 else "COMPLETED", 60)})
    assert wait(tmp_path, world, [job], [cfgs("b")], []) == [], "requeued after its preemption, it finished"


@pytest.mark.parametrize("minutes, delay", [(1, 30), (2, 30), (3, 90), (10, 90), (600, 90)])
def test_the_time_limit_warning_never_reaches_a_job_starting_up(minutes, delay):
    """SLURM may send a --signal up to a minute before the time asked for: from a 2 min limit on,
    the warning comes no sooner than STARTUP_S after the start; submitit's 90 s where there is room."""
    assert launchers.signal_delay_s(minutes) == delay
    if minutes >= 2:
        assert minutes * 60 - delay - launchers.SLURM_EARLY_S >= launchers.STARTUP_S
