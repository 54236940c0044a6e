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
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Mapping, Sequence

from dropbench.errors import UserError
from dropbench.results import FINAL_DIR, SEARCH_DIR, TUNE_FILE

if TYPE_CHECKING:
    from dropbench.config import Launcher, RunConfig
    from dropbench.grids import Spread
    from dropbench.runner import RunOutcome

TUNED_CSV = "tuned.csv"
HOLDOUT_KEY = "data.holdout"
# The metrics a selection can use: those the search runs measure on the validation rows (their
# "test" set). val_X is accepted for test_X.
METRICS = ("test_mse", "test_rmse", "test_mc_mse", "test_mc_rmse", "test_ll")


@dataclass(frozen=True)
class Spec:
    """A tuning as typed: the base overrides (out= aside), the grid, the selection metric, the
    per-method budget (--budget) and, for a published protocol, whose grids these are (`source`,
    said in every table of its final runs)."""

    overrides: tuple[str, ...]
    over: tuple[str, ...]
    metric: str
    better: str | None = None
    multirun: bool = False
    cwd: str = field(default_factory=os.getcwd)
    budget: int | None = None
    source: str | None = None  # e.g. "the published grids of uci_mc_dropout_2018"

    def to_dict(self) -> dict[str, Any]:
        d = {"overrides": list(self.overrides), "multirun": self.multirun, "over": list(self.over),
             "metric": self.metric, "better": self.better, "cwd": self.cwd}
        # Only where set: a tuning without them records what it always did.
        return {**d, **({"budget": self.budget} if self.budget is not None else {}),
                **({"source": self.source} if self.source else {})}

    def describe(self) -> str:
        over = " ".join(f"--over {o}" for o in self.over)
        budget = f" --budget {self.budget}" if self.budget is not None else ""
        better = f" --better {self.better}" if self.better else ""
        return " ".join(["dropbench tune", *(["-m"] if self.multirun else []), *self.overrides, *([over] if over else []),
                         f"--metric {self.metric}{budget}{better}"])

    def same_as(self, other: "Spec") -> bool:
        return (self.overrides, self.over, self.metric, self.better, self.multirun, self.budget) == \
               (other.overrides, other.over, other.metric, other.better, other.multirun, other.budget)


def make_spec(overrides: Sequence[str], over: Sequence[str], metric: str, better: str | None, multirun: bool,
              budget: int | None = None, source: str | None = None) -> tuple[Spec, Path | None]:
    """The spec and the out= folder given (None: a new results/<timestamp>)."""
    from dropbench.config import out_override

    outs = [out_override(o) for o in overrides if o.startswith("out=")]
    if len(outs) > 1:
        raise UserError("out= is given twice; give one folder")
    rest = tuple(o for o in overrides if not o.startswith("out="))
    return (Spec(rest, tuple(over), metric, better, multirun, budget=budget, source=source),
            (Path(outs[0]) if outs and outs[0] is not None else None))


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


def _key(o: str) -> str:
    return o.split("=", 1)[0].lstrip("+~").strip()


def metric_column(metric: str, better: str | None) -> tuple[str, str, bool]:
    """(name, the runs.csv column, higher is better) of a selection metric."""
    from dropbench.analysis.metrics import higher_is_better

    name = metric.removeprefix("final_")
    if name.startswith("val_"):
        name = "test_" + name.removeprefix("val_")
    if name not in METRICS:
        raise UserError(f"unknown --metric {metric!r}: choose from {', '.join(METRICS)} (measured on the validation rows "
                        "in the search; val_ll is accepted for test_ll)")
    if better not in (None, "higher", "lower"):
        raise UserError(f"unknown --better {better!r}: choose higher or lower (default: by the metric's name)")
    return name, f"final_{name}", higher_is_better(name) if better is None else better == "higher"


def _check_computed(name: str, cfgs: Sequence["RunConfig"]) -> None:
    for c in cfgs:
        if name == "test_ll" and c.eval.tau is None:
            raise UserError(f"--metric {name} is not computed without eval.tau: set it (eval.tau=0.1) or tune it "
                            "(--over eval.tau=0.1,0.15,0.2)")
        if "_mc_" in name and c.eval.mc_samples == 0:
            raise UserError(f"--metric {name} is not computed without eval.mc_samples: set it, e.g. eval.mc_samples=100")


# ---- the grid: every method's (--over KEY=...), one regularizer's (--over REG:KEY=...), --budget --
@dataclass(frozen=True)
class Over:
    """One --over as typed: KEY=VALUES for every group, or REG:KEY=VALUES for the groups whose
    config selects regularizer REG; VALUES in sweep grammar, or LO..HI (REG: only) to spread over
    the method's --budget."""

    typed: str
    key: str  # the config key, resolved (dropout:p -> p, l2:weight_decay -> reg.l2.weight_decay)
    values: str  # as typed after "="
    reg: str | None = None
    span: "Spread | None" = None  # LO..HI, on the knob's declared scale (linear for an undeclared key)

    @property
    def override(self) -> str:
        return f"{self.key}={self.values}"


def parse_over(o: str, budget: int | None) -> Over:
    """An --over, validated: its regularizer exists, a bare field name means that regularizer's
    knob, and a range LO..HI is spread over the budget on the knob's scale."""
    from dropbench import regs
    from dropbench.errors import did_you_mean
    from dropbench.grids import LinearRange, parse_range

    if "=" not in o or not _key(o):
        raise UserError(f"--over {o}: write it as KEY=VALUES, e.g. --over p=0.01,0.05,0.1 (one regularizer's: --over dropout:p=...)")
    left, values = o.split("=", 1)
    if ":" not in left:
        if parse_range(values) is not None:
            raise UserError(f"--over {o}: a range LO..HI is spread over one method's --budget; give it per regularizer "
                            f"(--over dropout:{left.strip()}={values}), or list the values")
        return Over(o, _key(o), values)
    name, _, key = (part.strip() for part in left.partition(":"))
    reg = regs.REGISTRY.get(name)
    if reg is None:
        raise UserError(f"--over {o}: no regularizer {name!r}{did_you_mean(name, regs.names())}; "
                        f"choose from {', '.join(regs.names())}")
    if not key:
        raise UserError(f"--over {o}: name the key after {name}:, e.g. --over {name}:{next(iter(reg.tune or {'p': 0}))}=...")
    fields = getattr(reg.Config, "__dataclass_fields__", {})
    resolved = regs.knob_key(reg, key) if "." not in key and key in fields else key.lstrip("+~")
    span = None
    if (bounds := parse_range(values)) is not None:
        if budget is None:
            raise UserError(f"--over {o}: a range LO..HI is spread over --budget N points; add --budget, or list the values")
        declared = next((sp for k, sp in (reg.tune or {}).items() if regs.knob_key(reg, k) == resolved), None)
        try:
            span = type(declared or LinearRange(0, 1))(*bounds, integer=bool(declared and declared.integer))
        except ValueError as e:
            raise UserError(f"--over {o}: {e}") from None
    return Over(o, resolved, values, name, span)


@dataclass
class Group:
    """One job of the base sweep and its candidates (search configs) in grid order."""

    base: tuple[str, ...]  # the job's base overrides, "key=value"
    candidates: list["RunConfig"]
    grid: dict[str, list[str]] = field(default_factory=dict)  # its tuned keys' values, in grid order
    budget: int | None = None  # the --budget its grid was spread from (None: its grid is as given, or it has nothing to tune)


@dataclass
class Plan:
    spec: Spec
    out: Path
    search_overrides: list[str]  # the search's `dropbench run -m` overrides, out= included; [] where grids differ by method
    search: list["RunConfig"]  # each run once, in plan order
    groups: list[Group]
    launcher: "Launcher"
    swept: list[str]  # the base keys with several values (report's --by, tuned.csv's columns)
    over_keys: list[str]  # every tuned key, in grid order (those of every method first)
    metric: str
    column: str
    higher: bool
    grid: dict[str, list[str]] = field(default_factory=dict)  # each every-method --over key's values, in grid order


def _values(o: Over) -> list[str]:
    """An --over's values as its key=value overrides expand them."""
    from dropbench import config as config_mod

    return [job[0].split("=", 1)[1] for job in config_mod.expand_sweep([o.override])]


def method_grid(reg_names: Sequence[str], own: Mapping[str, Sequence[Over]], budget: int | None) -> dict[str, list[str]]:
    """A method's own grid (beyond every method's): its regularizers' --over REG:... grids, and with
    a budget, the declared knobs of those without one (and any LO..HI range), spread so that the
    method gets `budget` points in all (grids.split_budget)."""
    from dropbench import regs
    from dropbench.grids import split_budget, values_text

    listed: dict[str, list[str]] = {}
    spread: dict[str, Spread] = {}
    for name in reg_names:
        reg = regs.REGISTRY[name]
        mine = own.get(name, ())
        for o in mine:
            if o.key in listed or o.key in spread:
                continue  # a knob two regularizers share (the dropout family's p): once
            if o.span is not None:
                spread[o.key] = o.span
            else:
                listed[o.key] = _values(o)
        if budget is None or mine:
            continue
        if reg.tune is None:
            raise UserError(f"--budget: regularizer {name} declares no range to tune its strength over; "
                            f"give its grid with --over {name}:KEY=VALUES")
        for knob, sp in reg.tune.items():
            key = regs.knob_key(reg, knob)
            if key not in listed and key not in spread:
                spread[key] = sp
    if spread:
        assert budget is not None
        left = max(1, budget // max(1, math.prod(len(v) for v in listed.values())))
        for (key, sp), n in zip(spread.items(), split_budget(left, len(spread))):
            if n > 1:  # a knob given one point keeps its configured value
                listed[key] = values_text(sp.points(n), sp.integer).split(",")
    return listed


def _check_overs(spec: Spec, overs: Sequence[Over]) -> None:
    base_keys = [_key(o) for o in spec.overrides]
    seen: dict[tuple[str | None, str], Over] = {}
    for o in overs:
        k = o.key
        twice = seen.get((o.reg, k)) or seen.get((None, k)) or (
            next((x for (r, kk), x in seen.items() if kk == k), None) if o.reg is None else None)
        if twice is not None:
            raise UserError(f"--over {k} is given twice ({twice.typed} and {o.typed}); give its values once")
        seen[(o.reg, k)] = o
        if k in base_keys:
            raise UserError(f"{k} is given both as an override and in --over; give it once (tuned keys go in --over)")
    for k in [*base_keys, *(o.key for o in overs)]:
        if k == HOLDOUT_KEY:
            raise UserError("dropbench tune sets data.holdout itself (validation in the search, none in the final runs); drop it")
        if k == "out" or k == "launcher" or k.startswith(("launcher.", "launcher/")):
            if k in (o.key for o in overs):
                raise UserError(f"--over {k}: a grid key must change what a run computes; {k} only says where it runs")


def _holdout_errors(e: UserError) -> UserError:
    if str(e).startswith(f"unknown key {HOLDOUT_KEY}"):
        return UserError("dropbench tune needs a validation hold-out, which data=uci, csv, diabetes and friedman1 have; "
                         "choose one of them (data=uci data.dataset=yacht)")
    return e


def plan(spec: Spec, out: Path) -> Plan:
    """Every search run and its group, validated; refuses bad input before anything is written."""
    from dropbench import config as config_mod
    from dropbench import derive

    name, column, higher = metric_column(spec.metric, spec.better)
    if spec.budget is not None and spec.budget < 1:
        raise UserError(f"--budget {spec.budget}: give each method at least 1 grid point")
    if not spec.over and spec.budget is None:
        raise UserError("nothing to tune: give the grid with --over KEY=VALUES (e.g. --over p=0.01,0.05,0.1), once per key, "
                        "or --budget N to tune each regularizer's strength over N points of its declared range")
    overs = [parse_over(o, spec.budget) for o in spec.over]
    _check_overs(spec, overs)
    base_jobs = config_mod.expand_sweep(list(spec.overrides))
    if len(base_jobs) > 1 and not spec.multirun:
        arg = next((o for o in spec.overrides if "," in o or "(" in o), " ".join(spec.overrides))
        raise UserError(f"{arg} lists several values: to tune each of them add -m (dropbench tune -m {arg} ...)")
    swept = []
    for i in range(len(base_jobs[0])):
        if len({job[i] for job in base_jobs}) > 1:
            swept.append(base_jobs[0][i].split("=", 1)[0].lstrip("+~"))
    tail = [f"{HOLDOUT_KEY}=validation", f"out={config_mod.quote_value(str(out / SEARCH_DIR))}"]
    every = [o for o in overs if o.reg is None]
    grid = {o.key: _values(o) for o in every}
    if any(o.reg is not None for o in overs) or spec.budget is not None:
        groups, search, launcher = _plan_per_method(spec, overs, base_jobs, grid, tail)
        search_overrides: list[str] = []
    else:
        n_base = len(base_jobs[0])
        search_overrides = [*spec.overrides, *spec.over, *tail]
        try:
            jobs = config_mod.expand_sweep(search_overrides)
            loaded = config_mod.load_sweep(search_overrides)
        except UserError as e:
            raise _holdout_errors(e) from None
        by_base: dict[tuple[str, ...], dict[str, RunConfig]] = {}
        search = {}
        for job, cfg in zip(jobs, derive.resolve(cfg for cfg, _ in loaded)):
            by_base.setdefault(tuple(job[:n_base]), {}).setdefault(cfg.run_id, cfg)
            search.setdefault(cfg.run_id, cfg)
        # Two base jobs with the same candidates (one config typed two ways) are one group.
        groups = {}
        for base, cands in by_base.items():
            groups.setdefault(tuple(cands), Group(base, list(cands.values()), dict(grid)))
        launcher = loaded[0][1]
    _check_computed(name, list(search.values()))
    over_keys = [*grid, *dict.fromkeys(k for g in groups.values() for k in g.grid if k not in grid)]
    return Plan(spec, out, search_overrides, list(search.values()), list(groups.values()), launcher, swept,
                over_keys, name, column, higher, grid)


def _plan_per_method(spec: Spec, overs: Sequence[Over], base_jobs: Sequence[Sequence[str]], grid: Mapping[str, list[str]],
                     tail: Sequence[str]) -> "tuple[dict[tuple[str, ...], Group], dict[str, RunConfig], Launcher]":
    """The groups where the grid differs by method (--over REG:KEY=..., --budget): each base job's
    grid is every method's --over keys times its own regularizers' grids."""
    import itertools

    from dropbench import config as config_mod
    from dropbench import derive, regs

    own: dict[str, list[Over]] = {}
    for o in overs:
        if o.reg is not None:
            own.setdefault(o.reg, []).append(o)
    if any(k == "reg" for k in grid):
        raise UserError("--over reg=... tunes which regularizer runs, so per-regularizer grids and --budget cannot follow it; "
                        "sweep the regularizers in the base overrides instead (-m reg=dropout,l2)")
    shared = math.prod(len(v) for v in grid.values())
    if spec.budget is not None and spec.budget % shared:
        lo, hi = max(shared, spec.budget // shared * shared), (spec.budget // shared + 1) * shared
        raise UserError(f"--budget {spec.budget}: every method's grid already has {shared} points from "
                        f"{' x '.join(f'{k} ({len(v)})' for k, v in grid.items())}, so a method's budget is a multiple "
                        f"of {shared}: use --budget {lo} or {hi}")
    own_budget = None if spec.budget is None else spec.budget // shared
    loaded: dict[tuple[str, ...], "tuple[RunConfig, Launcher]"] = {}

    def load(job: Sequence[str]) -> "tuple[RunConfig, Launcher]":
        key = tuple(job)
        if key not in loaded:
            try:
                loaded[key] = config_mod.load_job(list(job))
            except UserError as e:
                raise _holdout_errors(e) from None
        return loaded[key]

    used: set[str] = set()
    planned: list[tuple[tuple[str, ...], dict[str, list[str]], list[tuple[tuple[str, ...], "RunConfig"]], int | None]] = []
    launcher = None
    for job in base_jobs:
        head, launcher = load([*job, *(f"{k}={v[0]}" for k, v in grid.items()), *tail])
        names = tuple(r.name for r, _ in regs.active(head.reg))
        used.update(names)
        mine = method_grid(names, own, own_budget)
        cands = [(values, load([*job, *(f"{k}={v}" for k, v in zip({**grid, **mine}, values)), *tail])[0])
                 for values in itertools.product(*{**grid, **mine}.values())]
        spread = spec.budget is not None and any(regs.REGISTRY[n].tune and n not in own for n in names)
        planned.append((tuple(job), {**grid, **mine}, cands, spec.budget if spread else None))
    for reg_name, given in own.items():
        if reg_name not in used:
            raise UserError(f"--over {given[0].typed}: no run of the sweep selects {reg_name}, so its grid applies to none; "
                            f"add it (reg={reg_name}) or drop the --over")
    resolved = iter(derive.resolve(cfg for _, _, cands, _ in planned for _, cfg in cands))
    groups: dict[tuple[str, ...], Group] = {}
    search: dict[str, RunConfig] = {}
    combos: list[tuple[Group, list[tuple[tuple[str, ...], str]]]] = []
    for job, g_grid, cands, budget in planned:
        by_id: dict[str, RunConfig] = {}
        ids = []
        for values, _ in cands:
            cfg = next(resolved)
            by_id.setdefault(cfg.run_id, cfg)
            search.setdefault(cfg.run_id, cfg)
            ids.append((values, cfg.run_id))
        # Two base jobs with the same candidates (one config typed two ways) are one group.
        if tuple(by_id) not in groups:
            groups[tuple(by_id)] = Group(job, list(by_id.values()), g_grid, budget)
            combos.append((groups[tuple(by_id)], ids))
    _check_each_key_matters(spec, overs, combos, tail)
    assert launcher is not None
    return groups, search, launcher


def _check_each_key_matters(spec: Spec, overs: Sequence[Over], combos: Sequence[tuple[Group, list[tuple[tuple[str, ...], str]]]],
                            tail: Sequence[str]) -> None:
    """Refuse a tuned key whose values change no run of any group that tunes it (p with reg=l2
    alone): its grid would only repeat runs. Where it is every method's key, config's sweep says
    why (which override pins it)."""
    from dropbench import config as config_mod

    for o in overs:
        matters, tuned = False, False
        for g, ids in combos:
            if o.key not in g.grid or len(set(g.grid[o.key])) < 2:
                continue
            tuned = True
            i = list(g.grid).index(o.key)
            by_rest: dict[tuple[str, ...], set[str]] = {}
            for values, run_id in ids:
                by_rest.setdefault(values[:i] + values[i + 1:], set()).add(run_id)
            if any(len(s) > 1 for s in by_rest.values()):
                matters = True
                break
        if matters or not tuned:
            continue
        if o.reg is None:
            config_mod.load_sweep([*spec.overrides, o.override, *tail])  # raises config's wording where it can
        raise UserError(f"sweeping {o.key} changes no run: --over {o.typed} sets a key no tuned run reads, or one another "
                        "override pins; drop it")


# ---- a choice at the edge of its grid --------------------------------------------------------
# A value chosen at the lowest or highest point of a numeric grid may have been stopped by the grid,
# not chosen by the data: the best value can lie beyond it. Counted in tuned.csv (at_edge) and the
# tune's summary; warned where it is the choice of at least half of a setting's groups. A grid of
# one or two values (or of words) has no inside, so no edge: every choice would sit on one.
MIN_EDGED_GRID = 3
EDGE_SHARE = 0.5


def _number(v: str) -> float | None:
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def edge_of(p: "Plan | Group", key: str, value: str) -> str | None:
    """"lowest" or "highest" where `value` is that end of `key`'s grid, else None (inside it, the
    key not used by the run, or a grid without an inside: fewer than 3 numbers, or words)."""
    nums = [_number(v) for v in p.grid.get(key, [])]
    v = _number(value) if value != "" else None
    if v is None or any(n is None for n in nums) or len(set(nums)) < MIN_EDGED_GRID:
        return None
    return "lowest" if v == min(nums) else "highest" if v == max(nums) else None  # type: ignore[type-var]


def at_edge(g: Group, chosen: "RunConfig | None") -> str:
    """tuned.csv's at_edge: key=lowest / key=highest for each key of the group's grid chosen at an end of it."""
    if chosen is None:
        return ""
    return " ".join(f"{k}={side}" for k in g.grid if (side := edge_of(g, k, value_of(chosen, k))))


@dataclass(frozen=True)
class EdgeHit:
    """How many of a setting's groups chose one end of a key's grid."""

    setting: dict[str, str]  # the swept base keys but seeds and splits (data set, regularizer, ...)
    key: str
    value: str
    side: str  # lowest | highest
    count: int
    of: int  # the setting's groups that chose a value of this key (tuned, and using the key)
    over: str  # what the groups are: splits, seeds or groups

    @property
    def warned(self) -> bool:
        return self.count >= EDGE_SHARE * self.of

    def message(self) -> str:
        where = f" of {' '.join(f'{k}={v}' for k, v in self.setting.items())}" if self.setting else ""
        beyond = "below" if self.side == "lowest" else "above"
        return (f"{self.key}={self.value} is the {self.side} value of its grid and was chosen in {self.count} of {self.of} "
                f"{self.over}{where}; extend the grid {beyond} it")


def value_of(cfg: "RunConfig", key: str) -> Any:
    """A config key's value as runs.csv spells it ("" where the run does not use it: p of reg=l2)."""
    from dropbench.analysis.taxonomy import key_str

    values = {**cfg.choices(), **cfg.flat()}
    return key_str(values.get(key)) if key in values else ""


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


def chosen_summary(t: TuneOutcome) -> list[dict[str, str]]:
    """Per setting (the swept base keys but seeds and splits), how often each grid point was
    chosen, and how often a key's choice sat at an end of its grid (edge_hits):
    {keys..., "chosen": "p=0.01 eval.tau=0.1 (12); ...", "at grid edge": "eval.tau=0.1 lowest (11/12)", "failed": n}."""
    from dropbench.analysis.taxonomy import sort_key

    keys = _setting_keys(t)
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for r in t.rows:
        s = out.setdefault(tuple(str(r[k]) for k in keys), {"counts": {}, "failed": 0})
        if r["status"] == "failed" and not r["search_run_id"]:
            s["failed"] += 1
            continue
        label = " ".join(f"{k}={r[k]}" for k in t.plan.over_keys if r[k] != "") or "(no grid key applies)"
        s["counts"][label] = s["counts"].get(label, 0) + 1
    edges: dict[tuple[str, ...], list[EdgeHit]] = {}
    for h in edge_hits(t):
        edges.setdefault(tuple(h.setting[k] for k in keys), []).append(h)
    res = []
    for key, s in sorted(out.items(), key=lambda kv: [sort_key(v) for v in kv[0]]):
        counts = sorted(s["counts"].items(), key=lambda kv: (-kv[1], kv[0]))
        hits = "; ".join(f"{h.key}={h.value} {h.side} ({h.count}/{h.of})" for h in edges.get(key, []))
        res.append({**dict(zip(keys, key)), "chosen": "; ".join(f"{lab} ({n})" for lab, n in counts) or "-",
                    "at grid edge": hits or "-", "failed": str(s["failed"])})
    return res


def _setting_keys(t: TuneOutcome) -> list[str]:
    from dropbench.analysis.taxonomy import REPETITION_KEYS

    return [k for k in t.plan.swept if k not in REPETITION_KEYS]


def edge_hits(t: TuneOutcome) -> list[EdgeHit]:
    """Per setting, key and end of its grid, how many groups chose that end (only ends some group
    chose), in setting, key and grid order."""
    from dropbench.analysis.taxonomy import REPETITION_KEYS, sort_key

    keys = _setting_keys(t)
    reps = [k for k in t.plan.swept if k in REPETITION_KEYS]
    over = {("data.split",): "splits", ("seed",): "seeds"}.get(tuple(reps), "groups")
    tally: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}
    # each row's grid: its group's, or the plan's where the groups are not at hand (a folder loaded from disk)
    choices = getattr(t, "choices", [])
    grids = [c.group for c in choices] if len(choices) == len(t.rows) else [t.plan] * len(t.rows)
    for r, g in zip(t.rows, grids):
        if not r.get("search_run_id"):  # no choice made
            continue
        setting = tuple(str(r[k]) for k in keys)
        for k in t.plan.over_keys:
            side = edge_of(g, k, str(r[k]))
            if r[k] == "" or (side is None and not _in_grid(g, k)):
                continue
            s = tally.setdefault((setting, k), {"of": 0, "hits": {}})
            s["of"] += 1
            if side is not None:
                s["hits"][(side, str(r[k]))] = s["hits"].get((side, str(r[k])), 0) + 1
    out = []
    for (setting, k), s in sorted(tally.items(), key=lambda kv: ([sort_key(v) for v in kv[0][0]], t.plan.over_keys.index(kv[0][1]))):
        for (side, value), n in sorted(s["hits"].items(), key=lambda kv: kv[0][0] != "lowest"):  # lowest end first
            out.append(EdgeHit(dict(zip(keys, setting)), k, value, side, n, s["of"], over))
    return out


def _in_grid(p: "Plan | Group", key: str) -> bool:
    """Whether the key's grid has ends at all (edge_of can say lowest or highest)."""
    nums = [_number(v) for v in p.grid.get(key, [])]
    return all(n is not None for n in nums) and len(set(nums)) >= MIN_EDGED_GRID


def edge_warnings(t: TuneOutcome) -> list[str]:
    """One line per key and end of its grid chosen in at least half of a setting's groups."""
    return [h.message() for h in edge_hits(t) if h.warned]


def report_keys(t: TuneOutcome) -> list[str]:
    """The final runs' grouping: the swept base keys but seeds and splits (the tuned values differ
    from split to split, so report's default, every key that varies, would split the groups)."""
    from dropbench.analysis.taxonomy import REPETITION_KEYS

    return [k for k in t.plan.swept if k not in REPETITION_KEYS] or ["reg"]


def report_command(t: TuneOutcome) -> str:
    """The `dropbench report` line for the literature's table of the final runs."""
    return f"dropbench report {shlex.quote(str(t.out / FINAL_DIR))} --by {','.join(report_keys(t))} --layout wide --interval se --metric {t.plan.metric}"
