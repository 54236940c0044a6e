"""A real SLURM for tests/test_slurm.py: whether one is up, sweeps submitted to it from a child
`dropbench run`, a test hook that holds a job mid-sweep, and every job a test started cancelled
whatever its end. Every wait is bounded: a hang becomes a failure that says what it waited for."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from conftest import assert_bits_equal

PARTITION = "debug"  # the partition scripts/local_slurm.sh (and ../shared/tools/local-slurm.sh) makes
HOW_TO_ENABLE = ("start a one-node SLURM on this machine, as root: scripts/local_slurm.sh "
                 "(CI's .ci/run does where it can; see docs/cluster.md)")
COMMANDS = ("sbatch", "squeue", "sinfo", "scancel", "scontrol", "srun")


def slurm_missing() -> str | None:
    """Why no SLURM with a usable `debug` partition answers here; None where one does."""
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        return f"no SLURM here ({', '.join(missing)} not on PATH)"
    try:
        p = subprocess.run(["sinfo", "--noheader", f"--partition={PARTITION}", "--format=%T"],
                           capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "SLURM does not answer (sinfo took over 15 s)"
    if p.returncode != 0:
        return f"SLURM does not answer (sinfo: {' '.join(p.stderr.split())[:120]})"
    states = [s.rstrip("*~#!%$@^-+") for s in p.stdout.split()]
    if not states:
        return f"SLURM has no partition {PARTITION}"
    if not any(s in ("idle", "mixed", "allocated", "completing") for s in states):
        return f"partition {PARTITION} has no node up (sinfo: {', '.join(states)})"
    return None


@pytest.fixture(scope="session")
def slurm() -> None:
    why = slurm_missing()
    if why:
        pytest.skip(f"{why}: {HOW_TO_ENABLE}")


# Inside a job of a test (and only there: SUBMITIT_EXECUTOR is set by submitit's sbatch script),
# DROPBENCH_TEST_PAUSE=N[:TASKS] holds the array tasks TASKS (comma separated; every task without
# them) once they have stored N runs, on their first attempt only (a requeued job runs through),
# until SLURM or the test ends them, and 10 minutes at most. A job held so is mid-sweep for sure,
# whatever the machine's speed.
HOOK = '''\
import os

_spec = os.environ.get("DROPBENCH_TEST_PAUSE", "")
if _spec and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
    _after, _, _tasks = _spec.partition(":")
    _first = os.environ.get("SLURM_RESTART_COUNT", "0") in ("", "0")
    if _first and (not _tasks or os.environ.get("SLURM_ARRAY_TASK_ID") in _tasks.split(",")):
        import sys
        import time

        import dropbench.engines as _engines

        _get_engine = _engines.get_engine

        def _holding(name, workers=None):
            engine = _get_engine(name, workers)

            class Holding:
                def train(self, cfgs):
                    for i, res in enumerate(engine.train(cfgs)):
                        if i == int(_after):
                            print("test hook: holding this job", file=sys.stderr, flush=True)
                            end = time.monotonic() + 600
                            while time.monotonic() < end:
                                time.sleep(0.2)
                        yield res

            return Holding()

        _engines.get_engine = _holding
'''


def holding_env(folder: Path, after: int, tasks: tuple[int, ...] = ()) -> dict[str, str]:
    """The environment of a `dropbench run` whose jobs (array tasks `tasks`, or all) hold after
    `after` stored runs; sbatch passes the submitter's environment on to the jobs."""
    hook = folder / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(hook) + (os.pathsep + path if path else ""),
            "DROPBENCH_TEST_PAUSE": f"{after}" + (":" + ",".join(map(str, tasks)) if tasks else "")}


def wait_until(what: Callable[[], bool], timeout: float, waiting_for: str) -> None:
    end = time.monotonic() + timeout
    while not what():
        if time.monotonic() > end:
            raise AssertionError(f"waited {timeout:.0f} s for {waiting_for}")
        time.sleep(0.25)


def squeue_state(job_id: str) -> str:
    """squeue's state of one job (ended ones too, while SLURM holds them); "" where it lists none."""
    p = subprocess.run(["squeue", "--noheader", "--array", "--states=all", f"--jobs={job_id.split('_')[0]}", "--format=%i|%T"],
                       capture_output=True, text=True, timeout=30)
    for line in p.stdout.splitlines():
        jid, _, state = line.strip().partition("|")
        if jid == job_id:
            return state
    return ""


def job_field(job_id: str, field: str) -> str:
    """A field of `scontrol show job` (Restarts, ExitCode, ...), "" where SLURM does not say."""
    p = subprocess.run(["scontrol", "--oneliner", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    m = re.search(rf"\b{field}=(\S*)", p.stdout)
    return m[1] if m else ""


class Sweep:
    """`dropbench run ARGS out=OUT -q` submitting to the local SLURM, as a child process, its
    stdout and stderr in files beside OUT."""

    def __init__(self, args: list[str], out: Path, env: dict[str, str] | None = None, resume: bool = False) -> None:
        self.out = out
        name = out.name + (".resume" if resume else "")
        self.log = out.parent / f"{name}.stderr"
        self.stdout = out.parent / f"{name}.stdout"
        where = ["--resume", str(out)] if resume else [f"out={out}"]
        with self.log.open("w") as err, self.stdout.open("w") as so:
            self.proc = subprocess.Popen([sys.executable, "-m", "dropbench", "run", *args, *where, "-q"],
                                         stdout=so, stderr=err, text=True, env=env)

    @property
    def stderr(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"dropbench run still waiting after {timeout:.0f} s; its stderr:\n{self.stderr}") from None

    def job_ids(self) -> list[str]:
        """The jobs submitit made (array tasks 7_0, 7_1, or a plain 7), from out/.submitit."""
        folder = self.out / ".submitit"
        names = [d.name for d in folder.iterdir()] if folder.is_dir() else []
        ids = [n for n in names if re.fullmatch(r"\d+_\d+", n)]
        return sorted(ids or [n for n in names if n.isdigit()], key=lambda j: [int(x) for x in j.split("_")])

    def stored(self) -> int:
        runs = self.out / "runs"
        return sum(1 for d in runs.iterdir() if not d.name.startswith(".")) if runs.is_dir() else 0

    def stop(self) -> None:
        """Whatever the test's end: the child and every job it submitted are gone."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        arrays = sorted({j.split("_")[0] for j in self.job_ids()})
        if arrays:
            subprocess.run(["scancel", *arrays], capture_output=True, timeout=30)


@pytest.fixture
def sweeps():
    """Start sweeps with sweeps(args, out, env=None); each is stopped and its jobs cancelled after the test."""
    started: list[Sweep] = []

    def start(args: list[str], out: Path, env: dict[str, str] | None = None, resume: bool = False) -> Sweep:
        s = Sweep(args, out, env, resume)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def same_files(folder: Path, want: Path, what: str) -> None:
    """folder's curves.csv and runs.csv (without the wall-clock seconds) are want's, bit for bit."""
    import csv

    def without_seconds(f: Path) -> list[list[str]]:
        rows = list(csv.reader((f / "runs.csv").open()))
        col = rows[0].index("seconds")
        return [r[:col] + r[col + 1:] for r in rows]

    assert_bits_equal((folder / "curves.csv").read_text().splitlines(), (want / "curves.csv").read_text().splitlines(),
                      f"curves.csv {what}")
    assert_bits_equal(without_seconds(folder), without_seconds(want), f"runs.csv {what}")


def job_log(out: Path, job_id: str, kind: str = "err") -> str:
    """A job's stderr (err) or stdout (out) as submitit keeps them: out/.submitit/<job>/<job>_0_log.<kind>."""
    try:
        return (out / ".submitit" / job_id / f"{job_id}_0_log.{kind}").read_text(errors="replace")
    except OSError:
        return ""
