"""Plan, validate, train and store: everything `dropbench run` does, as plain functions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from dropbench import config as config_mod
from dropbench.errors import UserError

if TYPE_CHECKING:
    from dropbench.config import RunConfig


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


def plan(overrides: Sequence[str], multirun: bool = False) -> list["RunConfig"]:
    """The validated configs of every run the overrides ask for, duplicates removed."""
    jobs = config_mod.expand_sweep(list(overrides)) if multirun else [list(overrides)]
    cfgs: dict[str, RunConfig] = {}
    for job in jobs:
        cfg = config_mod.load(job)
        cfgs.setdefault(cfg.run_id, cfg)
    outs = {c.out for c in cfgs.values()}
    if len(outs) > 1:
        raise UserError("out= takes one folder per invocation; do not sweep over out")
    return list(cfgs.values())


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
    out: Path | None = None,
    on_result: Callable[[Any], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> RunOutcome:
    """Train every planned run not already finished in `out`, store each, rebuild the CSVs."""
    from dropbench import results
    from dropbench.engines.base import get_engine

    if not cfgs:
        raise UserError("nothing to run")
    _check_inputs(cfgs)
    out = Path(out or cfgs[0].out or results.default_out())
    results.check_out_dir(out)
    done = results.finished_ids(out)
    todo = [c for c in cfgs if c.run_id not in done]
    outcome = RunOutcome(out=out, skipped=len(cfgs) - len(todo))
    by_engine: dict[str, list[RunConfig]] = {}
    for c in todo:
        by_engine.setdefault(c.engine, []).append(c)
    out.mkdir(parents=True, exist_ok=True)
    if on_start:
        on_start(len(todo))
    t0 = time.perf_counter()
    try:
        for name, group in by_engine.items():
            for res in get_engine(name).train(group):
                results.write_run(out, res)
                outcome.trained += 1
                outcome.network_steps += res.curve[-1][0] if res.curve else 0
                if on_result:
                    on_result(res)
    finally:
        outcome.train_seconds = time.perf_counter() - t0
        # Whatever finished is kept and listed, even after Ctrl-C.
        plan_ids = [c.run_id for c in cfgs]
        rows = results.consolidate(out, plan_ids)
        wanted = set(plan_ids)
        outcome.rows = [r for r in rows if r["run_id"] in wanted]
    return outcome
