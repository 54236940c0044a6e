"""What became of a SLURM job, told without accounting.

submitit asks `sacct`, which fails on the many small clusters that run without accounting
(slurmdbd); it then cannot tell a dead job from a running one. Here the sources are those every
cluster has: `squeue --states=all`, which lists a job, ended ones too, while slurmctld still holds
it (MinJobAge, 300 s by default), and the lines slurmstepd writes into the job's stderr ("***
JOB 7 ON node1 CANCELLED AT ... DUE TO TIME LIMIT ***"), which outlive it. The submitter adds
what only it knows (the job's result file, its runs stored) in launchers.py.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Callable, Iterable

# squeue's job states (man squeue, JOB STATE CODES). A job in any of these may still store runs:
# PREEMPTED too, since a preempted job is often requeued (the submitter gives it a while).
ACTIVE = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
    "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "SUSPENDED", "RESV_DEL_HOLD", "SPECIAL_EXIT", "PREEMPTED",
})
ENDED = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "REVOKED"})

SQUEUE_TIMEOUT_S = 30  # a controller that does not answer in this time counts as not answering

Run = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: list[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(cmd, capture_output=True, text=True, timeout=SQUEUE_TIMEOUT_S)


@dataclass(frozen=True)
class Queued:
    """One job (array task) as squeue lists it."""

    state: str
    limit_min: int | None = None  # its time limit, where it has one
    reason: str = ""


@dataclass(frozen=True)
class Fate:
    """How a job ended, in SLURM's words (state) and ours (describe)."""

    state: str  # CANCELLED, TIMEOUT, FAILED, NODE_FAIL, ...; UNKNOWN where nothing says
    detail: str = ""  # the error or exit code, where known
    limit_min: int | None = None

    def describe(self) -> str:
        """'was cancelled', 'hit its 1 min time limit', 'failed: ValueError: ...'."""
        s = self.state
        if s == "TIMEOUT":
            text = f"hit its {self.limit_min} min time limit" if self.limit_min else "hit its time limit"
        elif s == "CANCELLED":
            text = "was cancelled"
        elif s == "PREEMPTED":
            text = "was preempted"
        elif s == "NODE_FAIL":
            text = "lost its node (NODE_FAIL)"
        elif s == "BOOT_FAIL":
            text = "never started: its node failed to boot (BOOT_FAIL)"
        elif s == "OUT_OF_MEMORY":
            text = "ran out of memory (raise launcher.mem_gb)"
        elif s == "DEADLINE":
            text = "passed its deadline"
        elif s == "FAILED":
            text = "failed"
        elif s == "COMPLETED":
            text = "completed without storing all its runs"
        else:
            text = "ended without a result, and nothing tells how"
        return f"{text}: {self.detail}" if self.detail else text


def parse_limit(text: str) -> int | None:
    """squeue's %l ([days-][hours:]minutes:seconds, or UNLIMITED) in whole minutes."""
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text.strip())
    if not m:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return ((days * 24 + hours) * 60 * 60 + minutes * 60 + seconds + 59) // 60


def queue(job_ids: Iterable[str], run: Run = _run) -> dict[str, Queued] | None:
    """squeue's word on these jobs (array tasks 7_0, or plain 7), ended ones included, by id;
    a job it no longer holds is absent. None where squeue did not answer (the controller is
    down, or squeue missing): then nothing can be said."""
    arrays = sorted({j.split("_", 1)[0] for j in job_ids})
    if not arrays:
        return {}
    cmd = ["squeue", "--noheader", "--array", "--states=all", "--jobs=" + ",".join(arrays), "--format=%i|%T|%l|%r"]
    try:
        p = run(cmd)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        # Every id unknown to slurmctld (all of them ended more than MinJobAge ago): an answer.
        return {} if "Invalid job id" in (p.stderr or "") else None
    found: dict[str, Queued] = {}
    for line in p.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            found[parts[0]] = Queued(parts[1].split()[0].upper(), parse_limit(parts[2]), parts[3])
    return found


# slurmstepd's line when it ends a job or step: "*** JOB 8 ON vm CANCELLED AT 2026-12-04T22:41:41
# DUE TO TIME LIMIT ***" (scancel: no "DUE TO"; `scontrol requeue`: DUE TO JOB REQUEUE).
_STEPD = re.compile(r"\*\*\* (?:JOB|STEP) \S+ ON \S+ CANCELLED AT \S+(?: DUE TO (?P<why>[A-Z][A-Z ]*?))?(?: \(?by \S+\)?)? \*\*\*")
_DUE_TO = {None: "CANCELLED", "TIME LIMIT": "TIMEOUT", "PREEMPTION": "PREEMPTED", "NODE FAILURE": "NODE_FAIL"}
_OOM = re.compile(r"oom[- ]kill|Out Of Memory|OOM Killed", re.IGNORECASE)


def fate_in_log(text: str) -> str | None:
    """The state the job's own stderr tells: the last slurmstepd line ending it, or an
    out-of-memory kill. None where it tells none (or only of a requeue, after which the job ran again)."""
    state = None
    for line in text.splitlines():
        m = _STEPD.search(line)
        if m:
            state = _DUE_TO.get(m["why"], "REQUEUED" if m["why"] == "JOB REQUEUE" else "CANCELLED")
        elif _OOM.search(line):
            state = "OUT_OF_MEMORY"
    return None if state == "REQUEUED" else state


def error_line(trace: str) -> str:
    """The last line of a Python traceback: 'ValueError: ...'."""
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def last_line(text: str, limit: int = 200) -> str:
    """A log's last line, shortened: what a job that failed before Python started said last
    (srun's, submitit's and dropbench's own progress lines aside)."""
    ours = ("srun: ", "submitit ", "dropbench: ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(ours)]
    return lines[-1][:limit] if lines else ""


def exit_code(job_id: str, run: Run = _run) -> str | None:
    """The exit code `scontrol show job` gives while slurmctld holds the job ("3", or
    "signal 9"); None where it does not say."""
    try:
        p = run(["scontrol", "--oneliner", "show", "job", job_id])
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\bExitCode=(\d+):(\d+)", p.stdout or "") if p.returncode == 0 else None
    if not m:
        return None
    code, sig = int(m[1]), int(m[2])
    return f"signal {sig}" if sig else str(code)


def judge(queued: Queued | None, log: str, error: str | None, limit_min: int | None = None, code: str | None = None) -> Fate:
    """How a job that stored only part of its runs ended, from what SLURM still says (`queued`,
    None where it no longer holds the job), its stderr (`log`), the traceback submitit stored
    when the job's Python raised (`error`) and its exit code (`code`, where known).
    `limit_min`: the time limit asked for."""
    limit = queued.limit_min if queued is not None and queued.limit_min else limit_min
    said = queued.state if queued is not None and (queued.state in ENDED or queued.state == "PREEMPTED") else None
    if said not in (None, "FAILED", "COMPLETED"):  # SLURM ended it, and says why
        return Fate(said, limit_min=limit)
    in_log = fate_in_log(log)
    if in_log is not None:
        return Fate(in_log, limit_min=limit)
    if error is not None:
        if "Job not requeued because: timed-out" in error:  # submitit's own word on a time limit
            return Fate("TIMEOUT", limit_min=limit)
        return Fate("FAILED", error_line(error))
    if said is not None:  # ended without a Python error stored: it failed before or around Python
        how = "" if not code else f"exit code {code}" if code.isdigit() else f"killed by {code}"
        detail = "; ".join(x for x in (how, last_line(log)) if x)
        return Fate(said, detail)
    return Fate("UNKNOWN")
