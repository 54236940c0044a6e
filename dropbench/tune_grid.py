"""The grid of a tuning and its plan: every method's --over KEY=..., one regularizer's --over
REG:KEY=..., --budget spread over each method's declared range; each group (a job of the base
sweep) with its candidates in grid order, validated before anything is written."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from dropbench.errors import UserError
from dropbench.results import SEARCH_DIR
from dropbench.tune_spec import Spec, metric_column

if TYPE_CHECKING:
    from dropbench.config import Launcher, RunConfig
    from dropbench.grids import Spread

HOLDOUT_KEY = "data.holdout"


def _key(o: str) -> str:
    return o.split("=", 1)[0].lstrip("+~").strip()



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



def value_of(cfg: "RunConfig", key: str) -> Any:
    """A config key's value as runs.csv spells it ("" where the run does not use it: p of reg=l2)."""
    from dropbench.analysis.taxonomy import key_str

    values = {**cfg.choices(), **cfg.flat()}
    return key_str(values.get(key)) if key in values else ""
