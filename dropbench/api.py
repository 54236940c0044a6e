"""The library API, `import dropbench as db`: run(), tune() and load(), each the plain function
its command is a thin layer over (runner.plan_request + runner.execute, tune.plan_request +
tune.execute, report's readers), returning results as data (dropbench.sweep).

Bad input raises dropbench.UserError with the command's one-line message; nothing exits the
process, and nothing is printed unless asked (progress=True prints the command's progress lines
on stderr; a callable gets a dropbench.Progress per event instead).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, Union

from dropbench.errors import UserError
from dropbench.progress import Progress, ProgressLines
from dropbench.sweep import PathLike, Sweep, Tuning, load

if TYPE_CHECKING:
    from dropbench.runner import RunOutcome

__all__ = ["run", "tune", "load", "RunsFailed", "Progress", "Sweep", "Tuning"]

OnProgress = Union[Callable[[Progress], Any], bool, None]


class RunsFailed(UserError):
    """Some runs failed (or, in a tuning, some group could not be tuned): not bad input but an
    outcome, as `run` exits 1 for it. What finished is stored; `.result` is its Sweep (or
    Tuning). Pass allow_failures=True to get it returned instead."""

    exit_code = 1

    def __init__(self, message: str, result: Sweep) -> None:
        super().__init__(f"{message} (allow_failures=True returns the results; this error's .result holds them)")
        self.result = result


def _use_config_dirs(dirs: PathLike | Sequence[PathLike] | None) -> None:
    """The user's plug-in config directories join the registries, as --config-dir does."""
    if dirs is None:
        return
    from dropbench import registration

    for d in [dirs] if isinstance(dirs, (str, os.PathLike)) else dirs:
        registration.use_config_dir(d)


def run(*overrides: str, multirun: bool = False, out: PathLike | None = None, progress: OnProgress = None,
        append: bool = False, allow_mixed_platforms: bool = False, allow_failures: bool = False,
        from_run: PathLike | None = None, resume: PathLike | None = None,
        config_dir: PathLike | Sequence[PathLike] | None = None) -> Sweep:
    """`dropbench run`: train one run, or a sweep with multirun=True, into `out` (default: a new
    results/<timestamp>), and return the folder's results. Overrides as on the command line
    ("reg=none,dropout", "seed=range(3)"); runs already finished in `out` are not trained again.
    from_run trains a stored run again; resume finishes every sweep a folder records.
    config_dir: your plug-ins' config directories (`--config-dir`; docs/plugins.md), which join
    this process's registries.

    >>> import dropbench as db, tempfile
    >>> out = tempfile.mkdtemp() + "/sweep"
    >>> sweep = db.run("reg=none,dropout", "seed=range(2)", "epochs=10", "eval_every=5", multirun=True, out=out)
    >>> sweep
    Sweep(sweep: 4 runs)
    >>> sweep.runs.groupby("reg", observed=True).size().to_dict()
    {'dropout': 2, 'none': 2}
    >>> db.run("reg=nonsense", out=out)
    Traceback (most recent call last):
    dropbench.errors.UserError: unknown option reg=nonsense (did you mean none?): choose from ...
    """
    from dropbench import runner

    _use_config_dirs(config_dir)
    ovr = _with_out(overrides, out, from_run is not None)
    req = runner.plan_request(ovr, multirun, from_run, resume, append)
    with _callbacks(progress, "run") as (on_start, on_result):
        outcome = runner.execute(req.cfgs, req.launcher, req.out, on_start=on_start, on_result=on_result, command=req.command,
                                 append=append, allow_mixed_platforms=allow_mixed_platforms)
    sweep = Sweep([outcome.out])
    return _failures(outcome.failures(), sweep, allow_failures)


def tune(*overrides: str, over: Mapping[str, Any] | Sequence[str] = (), metric: str = "test_mse", better: str | None = None,
         multirun: bool = False, out: PathLike | None = None, progress: OnProgress = None,
         allow_mixed_platforms: bool = False, allow_failures: bool = False, resume: PathLike | None = None,
         budget: int | None = None, config_dir: PathLike | Sequence[PathLike] | None = None) -> Tuning:
    """`dropbench tune`: choose the `over` keys on a validation hold-out inside each split, retrain
    each choice on the full training rows and test it. over: {"p": [0.01, 0.05], "eval.tau":
    "0.1,0.2"} or ["p=0.01,0.05"]; one regularizer's: {"dropout:p": [...]}. budget: N grid points
    per method over each regularizer's declared range (tune --budget). config_dir: as run's.
    Returns the Tuning (its
    final runs, search, tuned values).

    >>> import dropbench as db, tempfile
    >>> t = db.tune("data=friedman1", "data.n_train=40", "epochs=10", "eval_every=5", "reg=dropout",
    ...             over={"p": [0.1, 0.3]}, out=tempfile.mkdtemp() + "/tuned")
    >>> t.tuned.loc[0, "p"] in (0.1, 0.3), len(t.search), len(t)
    (True, 2, 1)
    """
    from dropbench import results
    from dropbench import tuning as tune_mod

    _use_config_dirs(config_dir)
    grid = [f"{k}={_grid(v)}" for k, v in over.items()] if isinstance(over, Mapping) else [over] if isinstance(over, str) else list(over)
    made: Path | None = None
    try:
        p, made = tune_mod.plan_request(_with_out(overrides, out, False), grid, metric, better, multirun,
                                        Path(resume) if resume is not None else None, budget)

        def phase(name: str) -> contextlib.AbstractContextManager[tuple[Any, Any]]:
            return _callbacks(progress, name)

        t = tune_mod.execute(p, phase, allow_mixed_platforms, record=resume is None)
    finally:
        if made is not None:
            results.remove_if_empty(made)
    tuning = Tuning(t.out, t)
    return _failures(tune_mod.problems(t), tuning, allow_failures)


def _grid(values: Any) -> str:
    """A grid's values in sweep grammar: [0.1, 0.3] -> 0.1,0.3; a string as written."""
    if isinstance(values, str):
        return values
    if isinstance(values, (list, tuple, range)):
        return ",".join(str(v) for v in values)
    return str(values)


def _with_out(overrides: Sequence[str], out: PathLike | None, from_run: bool) -> list[str]:
    """The overrides with out= added where given as an argument (once: not also as an override)."""
    from dropbench.config import quote_value

    ovr = list(overrides)
    bad = [o for o in ovr if not isinstance(o, str)]
    if bad:
        raise UserError(f"overrides are strings such as 'reg=dropout'; got {bad[0]!r}")
    if out is None:
        return ovr
    if any(o.startswith("out=") for o in ovr):
        raise UserError("out is given twice, as out= in the overrides and as the out argument; give one")
    return [*ovr, f"out={quote_value(str(out))}"]


@contextlib.contextmanager
def _callbacks(progress: OnProgress, phase: str) -> Iterator[tuple[Callable[[int], None] | None, Callable[[str, str], None] | None]]:
    """runner.execute's (on_start, on_result) for progress=: a callable gets Progress events,
    True prints the command's progress lines on stderr, None/False nothing."""
    if progress is None or progress is False:
        yield None, None
        return
    if progress is True:
        lines = ProgressLines(lambda line: print(line, file=sys.stderr, flush=True))
        try:
            yield lines.start, (lambda run_id, status: lines.advance())
        finally:
            lines.finish()
        return
    if not callable(progress):
        raise UserError(f"progress= takes a function of a dropbench.Progress, True or None; got {progress!r}")
    state = {"done": 0, "total": 0}
    report = progress

    def on_start(n: int) -> None:
        state.update(done=0, total=n)
        report(Progress(phase, 0, n))

    def on_result(run_id: str, status: str) -> None:
        state["done"] += 1
        report(Progress(phase, state["done"], state["total"], run_id, status))

    yield on_start, on_result


def _failures(message: str | None, result: Any, allow: bool) -> Any:
    if message is not None and not allow:
        raise RunsFailed(message, result)
    return result
