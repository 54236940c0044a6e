"""Where runs execute: this process (threads), local processes (joblib), or SLURM (submitit).

Every launcher gives each worker a share of the runs. The worker trains its share with the
run's engine and writes each finished run's folder into the results folder itself (atomically).
A run's numbers never depend on its share or worker (see engines/batched.py), so a sweep's CSVs
are the same row for row whichever launcher ran it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

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
        for res in get_engine(name, workers).train(group):
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


def _submitit(cfgs: Sequence["RunConfig"], out: Path, launcher: "Launcher", on_result: OnResult) -> None:
    """One submitit job array; this process waits, reporting runs as their folders appear."""
    try:
        import submitit
    except ImportError:
        raise UserError(f"launcher={launcher.name} needs submitit, which is not installed; install the cluster extra: "
                        f"{CLUSTER_EXTRA} (or: pip install submitit)") from None
    from dropbench import results

    cluster = "local" if launcher.name == "submitit_local" else "slurm"
    executor = submitit.AutoExecutor(folder=str(out / ".submitit" / "%j"), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": launcher.timeout_min, "cpus_per_task": launcher.cpus_per_task}
    if cluster == "slurm":
        params.update(
            mem_gb=launcher.mem_gb, gpus_per_node=launcher.gpus_per_node,
            slurm_array_parallelism=launcher.array_parallelism, name="dropbench",
        )
        if launcher.setup:
            params["slurm_setup"] = list(launcher.setup)
        for key in ("partition", "account", "qos"):
            if getattr(launcher, key):
                params[f"slurm_{key}"] = getattr(launcher, key)
    executor.update_parameters(**params)
    tasks = shares(cfgs, launcher.jobs)
    jobs = executor.map_array(train_and_store, tasks, [str(out)] * len(tasks), [launcher.cpus_per_task] * len(tasks))
    wanted = {c.run_id for c in cfgs}
    reported: set[str] = set()
    try:
        while True:
            for rid in (results.stored_ids(out) & wanted) - reported:
                reported.add(rid)
                on_result(rid, "stored")
            if all(j.done() for j in jobs):
                break
            time.sleep(0.5)
        for job, task in zip(jobs, tasks):
            try:
                job.result()
            except Exception as e:  # noqa: BLE001  a lost job fails its runs, not the sweep
                from dropbench.engines.base import failed_results

                for res in failed_results([c for c in task if c.run_id not in results.stored_ids(out)], e):
                    results.write_run(out, res)
        for rid in (results.stored_ids(out) & wanted) - reported:
            on_result(rid, "stored")
    except KeyboardInterrupt:
        for j in jobs:
            j.cancel(check=False)
        raise
