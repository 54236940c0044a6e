"""The literature's UCI protocols as one call each (`dropbench bench uci-2016 | uci-2018`): one
sweep (2016) or one tuning (2018) per data set into OUT/<data set>, each resumable, timed, then
the literature's table over all of them.

    uci-2016  the paper's fixed per-data-set p, tau and length-scale (+experiment=uci_mc_dropout_2016)
    uci-2018  p and tau tuned on each split over the data set's published grid (dropout_rates x
              tau_values, read from the experiment's own protocol.datasets table, never copied)

A data set's folder is an ordinary `dropbench run` sweep (2016) or `dropbench tune` folder (2018):
the same call again trains only what is missing. The 2018 grids are the published ones, not an
equal budget per method; its tables say so (tune.Spec.source, analysis/budgets.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence

from dropbench.errors import UserError

if TYPE_CHECKING:
    from dropbench.report import Report

SPLITS = 20  # every UCI data set of the protocol has 20 splits
METRICS = ("test_mc_rmse", "test_ll")  # the two columns of the literature's tables


@dataclass(frozen=True)
class Protocol:
    name: str  # the command's: uci-2016
    experiment: str  # conf/experiment/<experiment>.yaml
    tuned: bool
    reference: str | None = None  # the published table ours is set beside (report --reference NAME)
    about: str = ""

    @property
    def source(self) -> str:
        return f"the published grids of {self.experiment} (dropout_rates x tau_values per data set)"


PROTOCOLS = {
    "uci-2016": Protocol("uci-2016", "uci_mc_dropout_2016", tuned=False, reference="gal2016",
                         about="Gal & Ghahramani 2016: fixed p, tau and length-scale per data set"),
    "uci-2018": Protocol("uci-2018", "uci_mc_dropout_2018", tuned=True,
                         about="the 2018 re-run: p and tau tuned per split over each data set's published grid"),
}


def table(protocol: Protocol) -> dict[str, dict[str, Any]]:
    """The experiment's protocol.datasets: per data set its p, tau, l (2016) or its grids (2018)."""
    import yaml

    from dropbench.config import config_dir

    doc = yaml.safe_load((config_dir() / "experiment" / f"{protocol.experiment}.yaml").read_text())
    return dict(doc["protocol"]["datasets"])


@dataclass
class Step:
    """One data set's part: its folder and the overrides (and grid) of its sweep or tuning."""

    dataset: str
    out: Path
    overrides: list[str]
    over: list[str] = field(default_factory=list)  # uci-2018: --over p=... --over eval.tau=...

    def command(self, protocol: Protocol) -> str:
        import shlex

        over = [a for o in self.over for a in ("--over", o)]
        words = ["dropbench", "tune" if protocol.tuned else "run", "-m", *self.overrides, *over,
                 *(["--metric", "test_ll"] if protocol.tuned else [])]
        return " ".join(shlex.quote(w) for w in words)


def steps(protocol: Protocol, out: Path, datasets: Sequence[str] | None = None, splits: int = SPLITS,
          epochs: int | None = None, overrides: Sequence[str] = ()) -> list[Step]:
    """Each data set's sweep or tuning, in the order given; bad input refused before anything runs."""
    from dropbench.config import quote_value

    known = table(protocol)
    names = list(datasets) if datasets else list(known)
    unknown = [d for d in names if d not in known]
    if unknown:
        raise UserError(f"--datasets: unknown data set(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if len(set(names)) < len(names):
        raise UserError(f"--datasets names a data set twice ({', '.join(names)}); give each once")
    if not 1 <= splits <= SPLITS:
        raise UserError(f"--splits {splits}: give 1 to {SPLITS} (the first N of the protocol's {SPLITS} splits)")
    if epochs is not None and epochs < 1:
        raise UserError(f"--epochs {epochs}: give at least 1")
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key in ("out", "data.dataset", "data.split", "+experiment", "experiment"):
            raise UserError(f"{o}: bench sets {key} itself (--out, --datasets, --splits); drop it")
    out_steps = []
    for ds in names:
        folder = out / ds
        ov = [f"+experiment={protocol.experiment}", f"data.dataset={ds}", f"data.split=range({splits})",
              *([f"epochs={epochs}", f"eval_every={epochs}"] if epochs is not None else []), *overrides,
              f"out={quote_value(str(folder))}"]
        grid = known[ds]
        over = ([f"p={','.join(f'{v:g}' for v in grid['dropout_rates'])}",
                 f"eval.tau={','.join(f'{v:g}' for v in grid['tau_values'])}"] if protocol.tuned else [])
        out_steps.append(Step(ds, folder, ov, over))
    return out_steps


@dataclass
class BenchOutcome:
    protocol: Protocol
    out: Path
    finals: list[Path]  # each data set's folder of final runs, in order
    walls: dict[str, float]  # seconds per data set
    outcomes: list[Any]  # each data set's RunOutcome (2016) or TuneOutcome (2018)

    @property
    def failed(self) -> list[str]:
        """One line per data set with failed runs or groups that could not be tuned."""
        lines = []
        for step_out, ds in zip(self.outcomes, self.walls):
            if self.protocol.tuned:
                bad = len(step_out.failed_groups) + (len(step_out.final.failed) if step_out.final is not None else 0)
            else:
                bad = len(step_out.failed)
            if bad:
                lines.append(f"{ds}: {bad} run(s) or group(s) failed")
        return lines


Phase = Callable[[str], ContextManager[tuple[Any, Any]]]


def kernels_note() -> str | None:
    """A line to print where the fast mask stream, which both protocols use, runs without its
    compiled kernels (numba not installed): the same numbers, slower."""
    from dropbench import masks

    if masks.compiled() is not None:
        return None
    return ("numba is not installed, so the fast mask stream runs its numpy code: the same numbers, several "
            "times slower; pip install 'dropbench[fast]' (or -e \".[fast]\") for its compiled kernels")


def execute(protocol: Protocol, plan: Sequence[Step], progress: Phase | None = None,
            on_done: Callable[[str, float, int, int], None] | None = None, clock: Callable[[], float] = time.perf_counter,
            allow_mixed_platforms: bool = False) -> BenchOutcome:
    """Run each data set's sweep or tuning in turn (what a folder holds already is not trained
    again). progress(phase): the phase's (on_start, on_result) callbacks, phase "yacht (1/2)" or,
    tuned, "yacht (1/2) search" and "... final"; on_done(data set, seconds, runs trained, runs
    already finished) after each."""
    import contextlib

    from dropbench import runner, tune_grid, tune_spec
    from dropbench import tuning as tune_mod

    phase_of: Phase = progress or (lambda name: contextlib.nullcontext((None, None)))
    walls: dict[str, float] = {}
    finals, outcomes = [], []
    for i, step in enumerate(plan, 1):
        where = f"{step.dataset} ({i}/{len(plan)})"
        t0 = clock()
        if protocol.tuned:
            spec, out = tune_spec.make_spec(step.overrides, step.over, "test_ll", None, True, source=protocol.source)
            assert out is not None
            p = tune_grid.plan(spec, out.absolute())
            outcome: Any = tune_mod.execute(p, lambda ph: phase_of(f"{where} {ph}"), allow_mixed_platforms)
            finals.append(step.out / "final")
        else:
            cfgs, launcher = runner.plan(step.overrides, True)
            with phase_of(where) as (on_start, on_result):
                outcome = runner.execute(cfgs, launcher, None, on_start=on_start, on_result=on_result,
                                         command=runner.command_of(step.overrides, True),
                                         allow_mixed_platforms=allow_mixed_platforms)
            finals.append(step.out)
        walls[step.dataset] = clock() - t0
        outcomes.append(outcome)
        if on_done is not None:
            parts = [outcome.search, outcome.final] if protocol.tuned else [outcome]
            on_done(step.dataset, walls[step.dataset], sum(o.trained for o in parts if o is not None),
                    sum(o.skipped for o in parts if o is not None))
    return BenchOutcome(protocol, plan[0].out.parent if plan else Path("."), finals, walls, outcomes)


def final_reports(outcome: BenchOutcome, metrics: Sequence[str] = METRICS) -> list["Report"]:
    """The literature's table per metric over every data set (wide, standard errors), with the
    published comparison where the protocol has one."""
    from dropbench.report import build_report

    return [build_report(outcome.finals, ["data.dataset", "reg"], layout="wide", interval="se", metric=m,
                         reference_table=outcome.protocol.reference) for m in metrics]


def walls_line(walls: dict[str, float]) -> str:
    return "wall time: " + ", ".join(f"{d} {s:.1f} s" for d, s in walls.items()) + f"; total {sum(walls.values()):.1f} s"
