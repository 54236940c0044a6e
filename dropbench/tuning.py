"""`dropbench tune`: choose hyper-parameters on a validation hold-out inside each split, then
retrain the choice on the whole training set and test it (docs/uci-protocol.md, 2018 version).

A tuning is two ordinary sweeps in one folder OUT:

    OUT/search/   phase 1: the base sweep times the grid (--over), every run with
                  data.holdout=validation (trained on the first 80% of the training rows, "test"
                  columns measured on the last 20%)
    OUT/final/    phase 2: per group, the selected grid point with data.holdout=none (the full
                  training rows, the real test rows); `dropbench report OUT/final` reads it
    OUT/tuned.csv one row per group: the values chosen, their validation score, both run ids,
                  and which --over keys were chosen at an end of their grid (at_edge)
    OUT/tune.yaml the command, so the same command again (or --resume OUT) finishes what is missing

A group is one job of the base sweep: a data set, a split, a seed, a regularizer and every other
value the overrides give, so nothing chosen on one split (or for one regularizer) is used on
another. Its candidates are its grid points in grid order (the product of the --over values in
the order given, the first --over key varying slowest), each run once: a grid key a run does not
use (p for reg=l2) gives the same run id, so it does not multiply that group's runs. Selection
takes the best finite value of the metric (higher for *_ll, else lower; --better overrides);
a tie goes to the candidate first in grid order. Failed candidates (and non-finite scores) are
left out; a group with none left is reported failed and gets no final run. A value chosen at the
lowest or highest point of a numeric grid of 3 or more values is counted per setting (the tune's
summary) and warned where at least half of the setting's groups chose it: the best value may lie
beyond the grid.

Fair budgets: `--over REG:KEY=VALUES` is one regularizer's grid, for the groups whose config selects
it; `--budget N` gives every method N grid points, spread over the strength range each regularizer
declares (Regularizer.tune, dropbench/grids.py). A group's grid is then every method's --over keys
times its own (Group.grid); tuned.csv records its `budget`, and report/check compare them per method
(analysis/budgets.py). Per-method grids are no one `dropbench run -m`, so tune.yaml is then the
search's only record (resume with tune --resume or the same command).

Here: the request, selection, the two phases and what they write (tune.yaml, tuned.csv). The
spec as typed is tune_spec.py, the grid and the plan tune_grid.py, a choice at an end of its grid
tune_edges.py, the summaries `tune` prints tune_summary.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Mapping, Sequence

from dropbench.errors import UserError
from dropbench.results import FINAL_DIR, SEARCH_DIR, TUNE_FILE
from dropbench.tune_edges import at_edge
from dropbench.tune_grid import Group, Plan, plan, value_of
from dropbench.tune_spec import Spec, make_spec

if TYPE_CHECKING:
    from dropbench.config import RunConfig
    from dropbench.runner import RunOutcome

TUNED_CSV = "tuned.csv"


def plan_request(overrides: Sequence[str] = (), over: Sequence[str] = (), metric: str = "test_mse", better: str | None = None,
                 multirun: bool = False, resume: Path | None = None, budget: int | None = None) -> tuple["Plan", Path | None]:
    """Plan a tuning as typed (`dropbench tune`, the API's tune()): a new one, or --resume a
    folder's. Also the default folder made for it (results/<timestamp>), which the caller
    removes again (results.remove_if_empty) where the tuning fails before writing into it."""
    from dropbench import results

    if resume is not None:
        if overrides or over or multirun or budget is not None:
            raise UserError("--resume finishes the tuning a folder records; drop the overrides, --over, --budget and -m")
        return plan_resume(Path(resume)), None
    spec, out = make_spec(overrides, over, metric, better, multirun, budget)
    made = None
    if out is None:
        out = made = results.default_out()
    try:
        return plan(spec, out.absolute()), made
    except BaseException:
        if made is not None:
            results.remove_if_empty(made)
        raise


def problems(t: "TuneOutcome") -> str | None:
    """What went wrong in a tuning, in one line (`tune` exits 1 with it); None where nothing did."""
    out = []
    if t.failed_groups:
        out.append(f"{len(t.failed_groups)} of {len(t.choices)} group(s) could not be tuned (every grid point failed)")
    failed = t.final.failed if t.final is not None else []
    if failed:
        assert t.final is not None
        out.append(f"{len(failed)} of {len(t.final.rows)} final run(s) failed; first: {failed[0]['run_id']}: {failed[0]['reason']}")
    return "; ".join(out) or None


@dataclass
class Choice:
    """What selection made of one group."""

    group: Group
    chosen: "RunConfig | None"
    score: float  # the chosen candidate's validation metric (NaN: none)
    n_ok: int
    n_failed: int
    final: "RunConfig | None" = None  # the chosen config as its final run trains it (finals), or None


def finals(chosen: Sequence["RunConfig | None"]) -> list["RunConfig | None"]:
    """Each chosen config retrained on the full training rows (holdout none), its derived values
    (L2's N) derived again for those rows; None for None."""
    from dropbench import derive

    unheld = [derive.underived(dataclasses.replace(c, data=dataclasses.replace(c.data, holdout="none")))
              for c in chosen if c is not None]
    resolved = iter(derive.resolve(unheld))
    return [None if c is None else next(resolved) for c in chosen]


def select(candidates: Sequence["RunConfig"], rows: Mapping[str, Mapping[str, Any]], column: str, higher: bool) -> tuple["RunConfig | None", float, int, int]:
    """The best candidate by `column` among those whose run finished ok with a finite score; a
    tie goes to the earliest in grid order. Returns (chosen, its score, usable, left out)."""
    best, best_v, ok = None, math.nan, 0
    for c in candidates:
        r = rows.get(c.run_id)
        try:
            v = float(r[column]) if r is not None and r.get("status") == "ok" and r.get(column) not in (None, "") else math.nan
        except (TypeError, ValueError):
            v = math.nan
        if not math.isfinite(v):
            continue
        ok += 1
        if best is None or (v > best_v if higher else v < best_v):  # strictly better: ties keep the first
            best, best_v = c, v
    return best, best_v, ok, len(candidates) - ok


@dataclass
class TuneOutcome:
    out: Path
    plan: Plan
    search: "RunOutcome"
    choices: list[Choice]
    final: "RunOutcome | None"
    rows: list[dict[str, Any]]  # tuned.csv

    @property
    def failed_groups(self) -> list[Choice]:
        return [c for c in self.choices if c.chosen is None]


def read_spec(out: Path) -> Spec | None:
    import yaml

    f = out / TUNE_FILE
    if not f.is_file():
        return None
    try:
        d = yaml.safe_load(f.read_text())
        budget = d.get("budget")
        return Spec(tuple(d["overrides"]), tuple(d["over"]), str(d["metric"]), d.get("better"), bool(d["multirun"]),
                    str(d.get("cwd") or os.getcwd()), None if budget is None else int(budget), d.get("source"))
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{f}: not a dropbench tune file ({type(e).__name__}); run the tune command again into a new folder") from None


def plan_resume(out: Path) -> Plan:
    """Re-plan the tuning OUT/tune.yaml records, from the directory it was started in."""
    spec = read_spec(out)
    if spec is None:
        raise UserError(f"--resume {out}: no {TUNE_FILE} there; give a folder written by dropbench tune")
    with contextlib.chdir(spec.cwd) if Path(spec.cwd).is_dir() else contextlib.nullcontext():
        return plan(spec, out.resolve())


def _check_folder(p: Plan) -> None:
    """OUT is new, or holds this same tuning (a resume); refused before anything is written."""
    from dropbench import runner

    out = p.out
    if out.exists() and not out.is_dir():
        raise UserError(f"out={out} is a file, not a folder; choose another out=DIR")
    recorded = read_spec(out) if out.is_dir() else None
    if recorded is None:
        entries = {e.name for e in out.iterdir()} if out.is_dir() else set()
        if entries - {SEARCH_DIR, FINAL_DIR, ".lock"}:
            raise UserError(f"out={out} is a non-empty folder that holds no dropbench tuning; choose a new or empty folder")
        return
    if recorded.same_as(p.spec):
        return
    # The same tuning typed otherwise (range(2) for 0,1) plans no search run it lacks.
    other = f"out={out} already holds another tuning ({recorded.describe()}); run this one into a new folder"
    if (recorded.metric, recorded.better) != (p.spec.metric, p.spec.better) or not p.search_overrides:
        raise UserError(other)  # per-method grids have no one search command to compare
    try:
        runner.updated_record(out / SEARCH_DIR, runner.command_of(p.search_overrides, True), p.search, append=False)
    except UserError:
        raise UserError(other) from None


def _write_spec(p: Plan) -> bool:
    """Record the tuning in OUT/tune.yaml, unless it is there; True where it was written now."""
    import yaml

    from dropbench.oserrors import writing
    from dropbench.results import atomic_write

    if read_spec(p.out) is not None:
        return False
    with writing("out=DIR", p.out):
        p.out.mkdir(parents=True, exist_ok=True)
        atomic_write(p.out / TUNE_FILE, yaml.safe_dump(p.spec.to_dict(), sort_keys=False))
    return True


def tuned_rows(p: Plan, choices: Sequence[Choice], final_rows: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """tuned.csv: per group its swept base keys, the values chosen, the validation and test score,
    how many candidates were usable, both run ids and the final run's status."""
    short = p.metric.removeprefix("test_")
    rows = []
    for ch in choices:
        shown = ch.chosen or ch.group.candidates[0]
        row: dict[str, Any] = {k: value_of(shown, k) for k in p.swept}
        for k in p.over_keys:
            row[k] = value_of(ch.chosen, k) if ch.chosen is not None else ""
        fin = ch.final
        fr = final_rows.get(fin.run_id) if fin is not None else None
        row[f"val_{short}"] = ch.score
        row[p.metric] = float(fr[p.column]) if fr is not None and fr.get("status") == "ok" and fr.get(p.column) not in (None, "") else math.nan
        row.update(grid_points=len(ch.group.candidates), failed_points=ch.n_failed,
                   search_run_id=ch.chosen.run_id if ch.chosen is not None else "", run_id=fin.run_id if fin is not None else "")
        if fin is None:
            row.update(status="failed", reason=f"every grid point failed or scored no finite {p.metric} on the validation rows")
        elif fr is None:
            row.update(status="missing", reason="the final run did not finish; run the command again to resume")
        else:
            row.update(status=fr.get("status", ""), reason=fr.get("reason") or "")
        row["at_edge"] = at_edge(ch.group, ch.chosen)  # appended: tuned.csv's earlier columns keep their places
        # The points its method was allotted: --budget N where its grid was spread from it, else
        # what its grid gave it (grid_points). Report and check show and compare these per method.
        row["budget"] = ch.group.budget if ch.group.budget is not None else len(ch.group.candidates)
        rows.append(row)
    return rows


def write_tuned(out: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    import csv
    import io

    from dropbench.oserrors import writing
    from dropbench.results import _cell, write_if_changed

    buf = io.StringIO()
    columns = list(rows[0]) if rows else ["status"]
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(v) for k, v in r.items()})
    with writing("out=DIR", out):
        write_if_changed(out / TUNED_CSV, buf.getvalue())  # a finished tuning resumed is only read
    return out / TUNED_CSV


def execute(
    p: Plan,
    progress: Callable[[str], ContextManager[tuple[Any, Any]]] | None = None,
    allow_mixed_platforms: bool = False,
    record: bool = True,
) -> TuneOutcome:
    """Run the search, select per group, run the final runs, write tuned.csv. Runs already
    finished in OUT are not trained again (resume); `record`: write the command into OUT's
    tune.yaml and search/sweep.yaml (False for --resume, which replays them). `progress(phase)`:
    a context manager giving the phase's (on_start, on_result) callbacks (cli's progress bar)."""
    from dropbench import runner

    _check_folder(p)
    search_dir, final_dir = p.out / SEARCH_DIR, p.out / FINAL_DIR
    # Per-method grids are no one `run -m`: tune.yaml is then their only record (tune --resume).
    command = runner.command_of(p.search_overrides, True) if record and p.search_overrides else None
    phase = progress or (lambda name: contextlib.nullcontext((None, None)))
    wrote_spec, out_existed = False, p.out.exists()
    with phase("search") as (on_start, on_result):

        def started(n: int) -> None:  # the search folder exists and records its command: so may OUT
            nonlocal wrote_spec
            if record:
                wrote_spec = _write_spec(p)
            if on_start:
                on_start(n)

        try:
            search = runner.execute(p.search, p.launcher, search_dir, on_start=started, on_result=on_result, command=command,
                                    allow_mixed_platforms=allow_mixed_platforms)
        except UserError as e:
            if wrote_spec and not isinstance(e, runner.Stopped) and not search_dir.exists():
                # the search could not start and left nothing: neither does OUT
                with contextlib.suppress(OSError):
                    (p.out / TUNE_FILE).unlink(missing_ok=True)
                    if not out_existed:
                        p.out.rmdir()
            raise
    by_id = {r["run_id"]: r for r in search.rows}
    choices = [Choice(g, *select(g.candidates, by_id, p.column, p.higher)) for g in p.groups]
    for ch, f in zip(choices, finals([ch.chosen for ch in choices])):
        ch.final = f
    to_train: dict[str, RunConfig] = {}
    for ch in choices:
        if ch.final is not None:
            to_train.setdefault(ch.final.run_id, dataclasses.replace(ch.final, out=str(final_dir)))
    final = None
    if to_train:
        with phase("final") as (on_start, on_result):
            final = runner.execute(list(to_train.values()), p.launcher, final_dir, on_start=on_start, on_result=on_result,
                                   allow_mixed_platforms=allow_mixed_platforms)
    rows = tuned_rows(p, choices, {r["run_id"]: r for r in final.rows} if final else {})
    write_tuned(p.out, rows)
    return TuneOutcome(p.out, p, search, choices, final, rows)

