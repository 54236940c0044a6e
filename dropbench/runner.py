"""Plan, validate, train and store: everything `dropbench run` does, as plain functions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from dropbench import config as config_mod
from dropbench.errors import UserError

if TYPE_CHECKING:
    from dropbench.config import Launcher, RunConfig


@dataclass
class RunOutcome:
    out: Path
    rows: list[dict[str, Any]] = field(default_factory=list)  # the plan's rows, in plan order
    trained: int = 0
    skipped: int = 0
    train_seconds: float = 0.0  # wall time from the first training step to the last result
    network_steps: int = 0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] != "ok"]


SWEEP_FILE = "sweep.yaml"


class Interrupted(Exception):
    """Ctrl-C during training: what finished is stored and listed."""

    def __init__(self, out: Path, stored: int, total: int) -> None:
        super().__init__(f"interrupted: {stored} of {total} runs are stored in {out}")
        self.out, self.stored, self.total = out, stored, total


def plan(overrides: Sequence[str], multirun: bool = False) -> tuple[list["RunConfig"], "Launcher"]:
    """The validated configs of every run the overrides ask for (duplicates removed), and the
    launcher that will run them."""
    jobs = config_mod.expand_sweep(list(overrides)) if multirun else [list(overrides)]
    cfgs: dict[str, RunConfig] = {}
    launchers: list[Launcher] = []
    for job in jobs:
        cfg, launcher = config_mod.load_job(job)
        cfgs.setdefault(cfg.run_id, cfg)
        if launcher not in launchers:
            launchers.append(launcher)
    if len({c.out for c in cfgs.values()}) > 1:
        raise UserError("out= takes one folder per invocation; do not sweep over out")
    if len(launchers) > 1:
        raise UserError("launcher= takes one launcher per invocation; do not sweep over it")
    return list(cfgs.values()), launchers[0]


def plan_resume(folder: str | Path) -> tuple[list["RunConfig"], "Launcher", dict[str, Any]]:
    """Re-plan the sweep stored in a results folder, to run what it is missing."""
    import yaml

    f = Path(folder) / SWEEP_FILE
    if not f.is_file():
        raise UserError(f"--resume {folder}: no {SWEEP_FILE} there; give a folder written by dropbench run")
    try:
        command = yaml.safe_load(f.read_text())
        stored = command["overrides"]
        if not isinstance(stored, list) or not all(isinstance(o, str) for o in stored):
            raise TypeError("overrides must be a list of strings")
        overrides = [o for o in stored if not o.startswith("out=")] + [f"out={folder}"]
        multirun = bool(command["multirun"])
    except (yaml.YAMLError, KeyError, TypeError) as e:
        raise UserError(f"{f}: not a dropbench sweep file ({type(e).__name__}); re-run the original command instead") from None
    cfgs, launcher = plan(overrides, multirun)
    return cfgs, launcher, {"overrides": overrides, "multirun": multirun}


def load_saved(path: str | Path) -> "RunConfig":
    """A run's config from its results folder (runs/<id>/ or its config.yaml), to reproduce it."""
    import yaml

    p = Path(path)
    f = p / "config.yaml" if p.is_dir() else p
    if not f.is_file():
        raise UserError(f"{path}: no config.yaml there; give a run folder such as results/DIR/runs/<run_id>")
    try:
        d = yaml.safe_load(f.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{f}: not valid YAML ({' '.join(str(e).split())[:100]})") from None
    return config_mod.build(d)


def reproduce(path: str | Path, overrides: Sequence[str] = (), multirun: bool = False) -> "RunConfig":
    """A stored run's config, to train again: into out=DIR if given, else a new results folder
    (its own folder would count it finished and skip it)."""
    import dataclasses

    outs = [o.split("=", 1)[1] for o in overrides if o.startswith("out=")]
    if multirun or len(outs) != len(overrides) or len(outs) > 1:
        raise UserError("--from trains the stored run as it was; the only override it takes is out=DIR (drop the others and -m)")
    return dataclasses.replace(load_saved(path), out=outs[0] if outs else None)


def _check_inputs(cfgs: Sequence["RunConfig"]) -> None:
    """Fail before anything is written: data must load, devices and engines must exist."""
    from dropbench.data import load_dataset
    from dropbench.engines.base import get_engine, resolve_device

    seen = set()
    for cfg in cfgs:
        key = (repr(cfg.data), cfg.data_seed)
        if key not in seen:
            load_dataset(cfg)
            seen.add(key)
        resolve_device(cfg.device)
        get_engine(cfg.engine)


def execute(
    cfgs: Sequence["RunConfig"],
    launcher: "Launcher | None" = None,
    out: Path | None = None,
    on_result: Callable[[str, str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    command: dict[str, Any] | None = None,
) -> RunOutcome:
    """Train every planned run not already finished in `out`, store each, rebuild the CSVs.

    `command` (overrides and multirun) is saved as sweep.yaml, so `--resume` can re-plan it.
    """
    import yaml

    from dropbench import results
    from dropbench.config import LocalLauncher
    from dropbench.launchers import launch

    if not cfgs:
        raise UserError("nothing to run")
    _check_inputs(cfgs)
    out = Path(out or cfgs[0].out or results.default_out())
    results.check_out_dir(out)
    if out.is_dir():
        results.remove_leftovers(out)
    done = results.finished_ids(out)
    todo = [c for c in cfgs if c.run_id not in done]
    outcome = RunOutcome(out=out, skipped=len(cfgs) - len(todo))
    out.mkdir(parents=True, exist_ok=True)
    if command is not None:
        results.atomic_write(out / SWEEP_FILE, yaml.safe_dump(command, sort_keys=False))
    if on_start:
        on_start(len(todo))

    def stored(run_id: str, status: str) -> None:
        outcome.trained += 1
        if on_result:
            on_result(run_id, status)

    t0 = time.perf_counter()
    interrupted = False
    try:
        if todo:  # a launcher has nothing to share out when every run is finished
            launch(todo, out, launcher or LocalLauncher(), stored)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        outcome.train_seconds = time.perf_counter() - t0
        # Whatever finished is kept and listed, even after Ctrl-C or an error.
        plan_ids = [c.run_id for c in cfgs]
        rows = results.consolidate(out, plan_ids)
        wanted = set(plan_ids)
        outcome.rows = [r for r in rows if r["run_id"] in wanted]
    trained = {c.run_id: c.epochs for c in todo}
    outcome.network_steps = sum(trained[r["run_id"]] for r in outcome.rows if r["run_id"] in trained and r["status"] == "ok")
    if interrupted:
        raise Interrupted(out, len(outcome.rows), len(cfgs))
    return outcome
