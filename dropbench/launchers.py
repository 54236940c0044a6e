"""Where runs execute: this process (threads), local processes (joblib), or SLURM (submitit).

Every launcher gives each worker a share of the runs. The worker trains its share with the
run's engine and writes each finished run's folder into the results folder itself (atomically).
A run's numbers never depend on its share or worker (see engines/batched.py), so a sweep's CSVs
are the same row for row whichever launcher ran it.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from dropbench.errors import UserError

if TYPE_CHECKING:
    from dropbench.config import Launcher, RunConfig

OnResult = Callable[[str, str], None]  # run_id, status


def train_and_store(cfgs: Sequence["RunConfig"], out: str, workers: int | None = None) -> list[tuple[str, str]]:
    """One worker's share: train every run and store it under `out` as soon as it is done."""
    from dropbench import results
    from dropbench.engines import get_engine

    stored = []
    for name, group in _by_engine(cfgs).items():
        # closing: a worker told to stop (SIGTERM in a job) joins the engine's threads before
        # exiting; one left inside torch while the interpreter shuts down aborts the process.
        with closing(get_engine(name, workers).train(group)) as trained:
            for res in trained:
                with _STOPS.storing():
                    results.write_run(Path(out), res)
                stored.append((res.run_id, res.status))
    return stored


def _by_engine(cfgs: Sequence["RunConfig"]) -> dict[str, list["RunConfig"]]:
    """The runs of each engine, in the order given: an engine trains its runs in one call (the
    batched one plans them into chunks together)."""
    by_engine: dict[str, list[RunConfig]] = {}
    for c in cfgs:
        by_engine.setdefault(c.engine, []).append(c)
    return by_engine


def shares(cfgs: Sequence["RunConfig"], n: int) -> list[list["RunConfig"]]:
    """n near-equal contiguous shares, runs of one program kept together (they batch well)."""
    if not cfgs:
        return []
    ordered = sorted(cfgs, key=lambda c: (c.engine, repr(c.model), c.reg.label, repr(c.data), c.epochs))
    n = max(1, min(n, len(ordered)))
    size = math.ceil(len(ordered) / n)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


CLUSTER_EXTRA = 'pip install -e ".[cluster]"'
SLURM_COMMANDS = ("sbatch", "srun")  # submitit submits with sbatch; its SLURM executor detects srun


def check_available(launcher: "Launcher") -> None:
    """Refuse, before anything is written, a launcher this machine cannot use: its package is
    not installed, or SLURM's commands are not on PATH."""
    import importlib
    import shutil

    needs = {"joblib": "joblib", "submitit_local": "submitit", "submitit_slurm": "submitit"}.get(launcher.name)
    try:
        if needs:
            importlib.import_module(needs)
    except ImportError:
        raise UserError(f"launcher={launcher.name} needs {needs}, which is not installed; install the cluster extra: "
                        f"{CLUSTER_EXTRA} (or: pip install {needs})") from None
    if launcher.name == "submitit_slurm":
        missing = [c for c in SLURM_COMMANDS if shutil.which(c) is None]
        if missing:
            raise UserError(f"launcher=submitit_slurm needs SLURM, but {' and '.join(missing)} "
                            f"{'is' if len(missing) == 1 else 'are'} not on PATH; run on a SLURM login node, or use "
                            "launcher=local (or launcher=submitit_local to try the cluster set-up on this machine)")


def launch(cfgs: Sequence["RunConfig"], out: Path, launcher: "Launcher", on_result: OnResult) -> None:
    """Train and store every run of `cfgs` with the chosen launcher."""
    if launcher.name == "local":
        _local(cfgs, out, launcher.workers, on_result)
    elif launcher.name == "joblib":
        _joblib(cfgs, out, launcher.n_jobs, on_result)
    else:
        _submitit(cfgs, out, launcher, on_result)


def _local(cfgs: Sequence["RunConfig"], out: Path, workers: int | None, on_result: OnResult) -> None:
    from contextlib import closing

    from dropbench import results
    from dropbench.engines import get_engine

    for name, group in _by_engine(cfgs).items():
        # closing: where storing fails (a full disk), the engine's workers stop and are joined now,
        # not whenever the traceback that holds the generator is freed.
        with closing(get_engine(name, workers).train(group)) as trained:
            for res in trained:
                results.write_run(out, res)
                on_result(res.run_id, res.status)


def _joblib(cfgs: Sequence["RunConfig"], out: Path, n_jobs: int, on_result: OnResult) -> None:
    import os

    from joblib import Parallel, delayed

    n = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
    # Several shares per process, so a fast process is not left idle at the end.
    tasks = shares(cfgs, 2 * n)
    parallel = Parallel(n_jobs=n, backend="loky", return_as="generator_unordered")
    for stored in parallel(delayed(train_and_store)(t, str(out), 1) for t in tasks):
        for run_id, status in stored:
            on_result(run_id, status)


# --- SLURM and submitit: one job array; each task trains a share --------------------------------

POLL_S = 0.5  # the run folders are read this often at first, then every two-hundredth of the time waited,
POLL_MAX_S = 5.0  # up to this: one listing of runs/ per look, which a long sweep on NFS need not repeat twice a second
QUEUE_POLL_S = 2.0  # squeue this often at first, then every twentieth of the time waited,
QUEUE_POLL_MAX_S = 30.0  # up to this: a long sweep asks the controller rarely
GONE_POLLS = 2  # a job missing from this many answers of squeue in a row has left it
RESULT_GRACE_S = 10.0  # a job ended without its result file or runs in sight: wait this long for a shared file system
PREEMPTED_GRACE_S = 60.0  # a job preempted this long and not requeued has ended
SQUEUE_PATIENCE_S = 600.0  # squeue failing this long: stop waiting, and say so


class _Stops:
    """Signals that end a job wait while a run is being stored: the run's folder is complete or
    absent either way (write_run renames it into place), but a run trained to its end is worth
    the moment its write takes."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: list[Callable[[], None]] = []

    @contextmanager
    def storing(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        while not self.depth and self.pending:
            self.pending.pop(0)()

    def when_stored(self, act: Callable[[], None]) -> None:
        if self.depth:
            self.pending.append(act)
        else:
            act()


_STOPS = _Stops()


def _say(line: str) -> None:
    """A line in the job's stderr log (out/.submitit/<job>/<job>_0_log.err)."""
    print(f"dropbench: {line}", file=sys.stderr, flush=True)


SLURM_EARLY_S = 60  # SLURM may send a --signal up to this long before the time asked for (its event resolution)
STARTUP_S = 30  # a job's start-up (Python, imports): the warning would kill it before its handlers are in place


def signal_delay_s(timeout_min: int) -> int:
    """How long before the time limit SLURM warns a job (SIGUSR2): submitit's 90 s, or less where
    the limit is short, so that the warning, which SLURM may send up to a minute early, does not
    reach a job still starting up: from 2 min on, never in its first STARTUP_S. A 1 min limit
    leaves no such room; it gets half its limit, and its job may be warned as it starts."""
    room = timeout_min * 60 - SLURM_EARLY_S - STARTUP_S
    return min(90, room) if room > 0 else timeout_min * 30


def _stop(signum: int) -> None:
    _say(f"{signal.Signals(signum).name}: this job stops; the runs it stored are kept")
    raise SystemExit(128 + signum)


@contextmanager
def _job_signals() -> Iterator[None]:
    """Inside a job. SIGTERM (scancel, the time limit, `scontrol requeue`, a preemption) ends it
    as soon as the run being stored is stored (exit 143). SIGUSR2, which SLURM sends ahead of
    the time limit or of a preemption (submitit asks for it): near the time limit the job trains
    on until SLURM stops it, since a time limit is the user's bound, not extended by requeues;
    otherwise submitit requeues the job (ShareJob.checkpoint)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    usr2 = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)
    previous = {signal.SIGTERM: signal.getsignal(signal.SIGTERM), usr2: signal.getsignal(usr2)}
    submitit_handler = previous[usr2]

    def on_term(signum: int, frame: Any) -> None:
        _STOPS.when_stored(lambda: _stop(signum))

    def on_usr2(signum: int, frame: Any) -> None:
        owner = getattr(submitit_handler, "__self__", None)
        if owner is not None and callable(getattr(owner, "has_timed_out", None)) and owner.has_timed_out():
            _say("the time limit is near: training on until SLURM stops this job")
        elif callable(submitit_handler):
            _STOPS.when_stored(lambda: submitit_handler(signum, None))

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(usr2, on_usr2)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class ShareJob:
    """One job's work: train a share of the runs into `out`, storing each as it finishes.
    Started again (requeued by `scontrol requeue`, a preemption or a lost node), it trains only
    the runs of its share not yet stored with status ok. Picklable: submitit sends it to the node."""

    def __call__(self, cfgs: Sequence["RunConfig"], out: str, workers: int | None = None) -> list[tuple[str, str]]:
        from dropbench import results

        with _job_signals():
            runs = Path(out) / results.RUNS_DIR
            todo = [c for c in cfgs if results._status(runs / c.run_id) != "ok"]
            if len(todo) < len(cfgs):
                _say(f"{len(cfgs) - len(todo)} of this job's {len(cfgs)} runs are stored already; training the other {len(todo)}")
            else:
                _say(f"training this job's {len(cfgs)} runs into {out}")
            return train_and_store(todo, out, workers)

    def checkpoint(self, cfgs: Sequence["RunConfig"], out: str, workers: int | None = None) -> Any:
        """submitit's call on a preemption: requeue the same share (its stored runs are skipped then)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, cfgs, out, workers)


@dataclass(frozen=True)
class JobEnd:
    """A job that ended before storing its share of the runs."""

    job_id: str
    fate: str  # slurm.Fate.describe(): "was cancelled", "hit its 1 min time limit", ...
    unfinished: int

    def line(self) -> str:
        return f"job {self.job_id} {self.fate}; {self.unfinished} run{'' if self.unfinished == 1 else 's'} unfinished"


class JobsEnded(Exception):
    """Jobs ended (cancelled, time limit, failed, node lost) before storing all their runs; what
    every job stored is kept."""

    def __init__(self, ends: Sequence[JobEnd], jobs: int) -> None:
        super().__init__(f"{len(ends)} of {jobs} job{'' if jobs == 1 else 's'} ended early")
        self.ends, self.jobs = list(ends), jobs


class _Arrivals:
    """Runs of `wanted` stored in `out` since the jobs were submitted: a folder that is new, or
    that replaced the one there before (a failed run trained again). One listing of runs/ per
    look; each new folder is read once."""

    def __init__(self, out: Path, wanted: set[str]) -> None:
        from dropbench import results

        self.runs, self.wanted = out / results.RUNS_DIR, wanted
        self.before = {rid: ino for rid in wanted if (ino := self._inode(rid)) is not None}
        self.seen: dict[str, str] = {}  # run_id -> status

    def _inode(self, rid: str) -> int | None:
        try:
            return (self.runs / rid).stat().st_ino
        except OSError:
            return None

    def scan(self) -> list[tuple[str, str]]:
        from dropbench import results

        try:
            names = os.listdir(self.runs)
        except OSError:
            return []
        new = []
        for rid in names:
            if rid in self.seen or rid not in self.wanted:
                continue
            ino = self._inode(rid)
            if ino is None or self.before.get(rid) == ino:
                continue
            status = results._status(self.runs / rid)
            if status is not None:
                self.seen[rid] = status
                new.append((rid, status))
        return new


def _submitit(cfgs: Sequence["RunConfig"], out: Path, launcher: "Launcher", on_result: OnResult) -> None:
    """One submitit job array. This process waits, reporting runs as their folders appear and
    learning from SLURM (squeue, the jobs' logs; never sacct, which clusters without accounting
    lack) when a job ends. Jobs that end early raise JobsEnded, once every job has ended."""
    try:
        import submitit
    except ImportError:
        raise UserError(f"launcher={launcher.name} needs submitit, which is not installed; install the cluster extra: "
                        f"{CLUSTER_EXTRA} (or: pip install submitit)") from None

    cluster = "local" if launcher.name == "submitit_local" else "slurm"
    executor = submitit.AutoExecutor(folder=str(out / ".submitit" / "%j"), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": launcher.timeout_min, "cpus_per_task": launcher.cpus_per_task}
    if cluster == "slurm":
        params.update(
            mem_gb=launcher.mem_gb, gpus_per_node=launcher.gpus_per_node,
            slurm_array_parallelism=launcher.array_parallelism, name="dropbench",
            # submitit's warning comes 90 s before the limit; for a limit shorter than that it would
            # come as the job starts, before any handler is installed, and kill it (SIGUSR2's default)
            slurm_signal_delay_s=signal_delay_s(launcher.timeout_min),
        )
        if launcher.setup:
            params["slurm_setup"] = list(launcher.setup)
        for key in ("partition", "account", "qos"):
            if getattr(launcher, key):
                params[f"slurm_{key}"] = getattr(launcher, key)
    executor.update_parameters(**params)
    tasks = shares(cfgs, launcher.jobs)
    arrivals = _Arrivals(out, {c.run_id for c in cfgs})
    jobs = _submit(executor, tasks, out, launcher)
    try:
        ends = _wait(jobs, tasks, arrivals, on_result, cluster, launcher.timeout_min)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the jobs go too; what they stored is kept
        _cancel(jobs, cluster)
        for rid, status in arrivals.scan():  # the progress's last line counts what is stored
            on_result(rid, status)
        raise
    if ends:
        raise JobsEnded(ends, len(jobs))


def _submit(executor: Any, tasks: list[list["RunConfig"]], out: Path, launcher: "Launcher") -> list[Any]:
    """The job array, submitted; refused (a partition that does not exist, too much memory), a
    UserError in sbatch's words, and nothing of the attempt left in out/.submitit."""
    import contextlib
    import io
    import shutil

    folder = out / ".submitit"
    before = set(os.listdir(folder)) if folder.is_dir() else None
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):  # submitit prints sbatch's complaint; it is said below, once
            return executor.map_array(ShareJob(), tasks, [str(out)] * len(tasks), [launcher.cpus_per_task] * len(tasks))
    except Exception as e:  # noqa: BLE001  sbatch refused the array, or could not be run
        for name in set(os.listdir(folder)) - (before or set()) if folder.is_dir() else ():
            p = folder / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
        if before is None:
            with contextlib.suppress(OSError):
                folder.rmdir()
        lines = [" ".join(line.split()) for line in (str(e) or said.getvalue()).splitlines() if line.strip()]
        why = "; ".join(dict.fromkeys(line.removeprefix("sbatch: error: ") for line in lines))[:300] or type(e).__name__
        raise UserError(f"launcher={launcher.name}: the job array was not submitted (sbatch: {why}); check the "
                        "launcher's keys (launcher.partition, account, qos, mem_gb, timeout_min)") from None


def _cancel(jobs: Sequence[Any], cluster: str) -> None:
    if cluster != "slurm":
        for j in jobs:
            j.cancel(check=False)
        return
    import subprocess

    arrays = sorted({j.job_id.split("_", 1)[0] for j in jobs})
    try:  # one scancel for the array, bounded: Ctrl-C must not hang on a controller that is down
        subprocess.run(["scancel", *arrays], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pass


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _outcome(job: Any) -> tuple[str, Any] | None:
    """submitit's result file of a job: ("success", value) or ("error", traceback); None while absent."""
    from submitit.core.utils import pickle_load

    try:
        return pickle_load(job.paths.result_pickle)
    except (OSError, EOFError, ValueError):
        return None
    except Exception:  # noqa: BLE001  unreadable (written by another submitit): no outcome to read
        return None


def _wait(jobs: Sequence[Any], tasks: Sequence[Sequence["RunConfig"]], arrivals: _Arrivals, on_result: OnResult,
          cluster: str, limit_min: int | None, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> list[JobEnd]:
    """Until every job has ended: report runs as they are stored; the jobs that ended with runs
    of their share unstored, each with its fate."""
    from collections import Counter

    from dropbench import slurm

    waiting = {j.job_id: (j, [c.run_id for c in t]) for j, t in zip(jobs, tasks)}
    ends: list[JobEnd] = []
    queued: dict[str, slurm.Queued] = {}
    missing: Counter[str] = Counter()
    over_since: dict[str, float] = {}
    preempted_since: dict[str, float] = {}
    t0 = answered = next_queue = clock()
    while True:
        if cluster == "slurm" and waiting and clock() >= next_queue:
            # squeue before the files: a job it no longer lists has written all it ever will.
            now = clock()
            got = slurm.queue(waiting)
            next_queue = now + min(QUEUE_POLL_MAX_S, max(QUEUE_POLL_S, (now - t0) / 20))
            if got is not None:
                answered, queued = now, got
                for jid in waiting:
                    missing[jid] = 0 if jid in got else missing[jid] + 1
            elif now - answered > SQUEUE_PATIENCE_S:
                fate = f"is in an unknown state: squeue has not answered for {SQUEUE_PATIENCE_S / 60:.0f} min"
                ends += [JobEnd(jid, fate, len([r for r in ids if r not in arrivals.seen])) for jid, (_, ids) in waiting.items()]
                waiting.clear()
        for rid, status in arrivals.scan():
            on_result(rid, status)
        if not waiting:
            break
        now = clock()
        for jid, (job, ids) in list(waiting.items()):
            outcome = _outcome(job) if job.paths.result_pickle.exists() else None
            q = queued.get(jid)
            if cluster == "slurm":
                preempted = q is not None and q.state == "PREEMPTED"
                if not preempted:
                    preempted_since.pop(jid, None)
                over = (outcome is not None or (q is not None and q.state in slurm.ENDED) or missing[jid] >= GONE_POLLS
                        or preempted and now - preempted_since.setdefault(jid, now) >= PREEMPTED_GRACE_S)
            else:
                over = outcome is not None or job.done()
            if not over:
                continue
            left = [r for r in ids if r not in arrivals.seen]
            if not left:
                del waiting[jid]
                continue
            logs = _read(job.paths.stderr)
            error = outcome[1] if outcome is not None and outcome[0] == "error" else None
            fate = slurm.judge(q if cluster == "slurm" else None, logs, error if isinstance(error, str) else None, limit_min)
            # A result file or run folders may reach this host late (a shared file system): wait
            # a little where more could come, not where the job's end says it cannot.
            started = "Starting with JobEnvironment" in _read(job.paths.stdout)
            may_lag = outcome is not None and outcome[0] == "success" or (
                outcome is None and fate.state in ("COMPLETED", "FAILED", "UNKNOWN") and started)
            if may_lag and now - over_since.setdefault(jid, now) < RESULT_GRACE_S:
                continue
            if cluster == "slurm" and fate.state == "FAILED" and outcome is None:
                fate = slurm.judge(q, logs, None, limit_min, slurm.exit_code(jid))
            if fate.state in ("FAILED", "UNKNOWN") and outcome is None:
                fate = slurm.Fate(fate.state, "; ".join(x for x in (fate.detail, f"see {job.paths.stderr}") if x), fate.limit_min)
            if cluster != "slurm" and fate.state == "UNKNOWN":
                fate = slurm.Fate("UNKNOWN", f"its process {str(job.state).lower()}; see {job.paths.stderr}")
            ends.append(JobEnd(jid, fate.describe(), len(left)))
            del waiting[jid]
        if waiting:
            sleep(min(POLL_MAX_S, max(POLL_S, (clock() - t0) / 200)))
    order = {j.job_id: i for i, j in enumerate(jobs)}
    return sorted(ends, key=lambda e: order[e.job_id])
