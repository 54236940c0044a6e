"""Plan, validate, train and store: everything `dropbench run` does, as plain functions."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from dropbench import config as config_mod
from dropbench import derive
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

    def failures(self) -> str | None:
        """What failed, in one line (`run` exits 1 with it); None where every run finished."""
        if not self.failed:
            return None
        first = self.failed[0]
        return f"{len(self.failed)} of {len(self.rows)} run(s) failed; first: {first['run_id']}: {first['reason']}"


SWEEP_FILE = "sweep.yaml"


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, or SLURM ending the job this command runs in), handled as Ctrl-C is:
    what finished is kept, and the command says how to resume (exit 143, not 130)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While training: SIGTERM raises Terminated in the main thread, as SIGINT raises
    KeyboardInterrupt, so every path that keeps what finished on Ctrl-C keeps it on SIGTERM."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code(e: BaseException) -> int:
    """The shell's code for a command stopped by a signal: 128 + SIGTERM's 15, or + SIGINT's 2."""
    return 143 if isinstance(e, Terminated) else 130


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during training: what finished is stored and listed."""

    def __init__(self, out: Path, stored: int, total: int, code: int = 130) -> None:
        how = "terminated (SIGTERM)" if code == 143 else "interrupted"
        super().__init__(f"{how}: {stored} of {total} runs are stored in {out}")
        self.out, self.stored, self.total, self.code = out, stored, total, code


class JobsLost(Exception):
    """Jobs of a cluster launcher ended (cancelled, time limit, failed, node lost) before
    storing all their runs: what finished is stored, each job's fate is a line of `lines`."""

    def __init__(self, out: Path, stored: int, total: int, lines: Sequence[str], ended: str) -> None:
        super().__init__(f"{ended}; {stored} of {total} runs are stored in {out}")
        self.out, self.stored, self.total, self.lines = out, stored, total, list(lines)


def plan(overrides: Sequence[str], multirun: bool = False) -> tuple[list["RunConfig"], "Launcher"]:
    """The validated configs of every run the overrides ask for, their derived values resolved
    (dropbench.derive), duplicates removed; and the launcher that will run them."""
    # A sweep refuses a swept out= or launcher and a sweep of no runs, so every job shares one
    # folder and one launcher.
    loaded = config_mod.load_sweep(list(overrides)) if multirun else [config_mod.load_job(list(overrides))]
    cfgs: dict[str, RunConfig] = {}
    for cfg in derive.resolve(cfg for cfg, _ in loaded):
        cfgs.setdefault(cfg.run_id, cfg)
    return list(cfgs.values()), loaded[0][1]


@dataclass
class Request:
    """What one `dropbench run` (or the API's run()) asks for: the runs, their launcher, the
    command sweep.yaml records (None: --resume replays the recorded ones) and the folder given
    (None: the runs' out=, else a new results/<timestamp>)."""

    cfgs: list["RunConfig"]
    launcher: "Launcher | None"
    command: dict[str, Any] | None
    out: Path | None = None


def plan_request(overrides: Sequence[str] = (), multirun: bool = False, from_run: str | Path | None = None,
                 resume: str | Path | None = None, append: bool = False) -> Request:
    """Plan a run as typed: overrides (with -m a sweep), --from a stored run, or --resume a folder."""
    if resume is not None and (overrides or multirun or from_run is not None or append):
        raise UserError("--resume finishes the sweeps a results folder records; drop the overrides, -m, --from and --append")
    if from_run is not None:
        one = reproduce(from_run, overrides, multirun)
        return Request([one], None, from_command(from_run, one))
    if resume is not None:
        cfgs, launcher, _ = plan_resume(resume)
        return Request(cfgs, launcher, None, Path(resume))  # the folder as given, though planned from recorded directories
    cfgs, launcher = plan(overrides, multirun)
    return Request(cfgs, launcher, command_of(overrides, multirun))


# --- the folder's record of the commands that ran into it (sweep.yaml) ----------------------
#   commands:
#   - {overrides: [reg=none,l1, seed=range(3)], multirun: true, cwd: /home/me/project}
#   - {from: /abs/results/a/runs/<id>, config: {...}, cwd: ...}      (dropbench run --from)
# Folders written before dropbench recorded several commands hold one {overrides, multirun}.


def command_of(overrides: Sequence[str], multirun: bool) -> dict[str, Any]:
    """A `dropbench run [-m] overrides` command as sweep.yaml records it: with its working
    directory, against which relative paths (data.path) are resolved on --resume."""
    return {"overrides": list(overrides), "multirun": bool(multirun), "cwd": os.getcwd()}


def from_command(path: str | Path, cfg: "RunConfig") -> dict[str, Any]:
    """A `dropbench run --from RUN` command: the config it trains, so --resume needs no source."""
    config = {k: v for k, v in cfg.to_dict().items() if k != "out"}
    return {"from": str(Path(path).resolve()), "config": config, "cwd": os.getcwd()}


def _valid_command(c: Any) -> dict[str, Any]:
    if not isinstance(c, dict):
        raise TypeError("a command must be a mapping")
    if not isinstance(c.get("cwd", ""), str):
        raise TypeError("cwd must be a string")
    if "from" in c:
        if not isinstance(c.get("config"), dict):
            raise TypeError("a --from command needs its config")
        return c
    overrides = c["overrides"]
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise TypeError("overrides must be a list of strings")
    return {**c, "multirun": bool(c["multirun"])}


def read_commands(folder: str | Path) -> list[dict[str, Any]] | None:
    """The commands sweep.yaml records, oldest first; None where the folder has no sweep.yaml."""
    import yaml

    f = Path(folder) / SWEEP_FILE
    if not f.is_file():
        return None
    try:
        d = yaml.safe_load(f.read_text())
        commands = d["commands"] if isinstance(d, dict) and "commands" in d else [d]
        if not isinstance(commands, list) or not commands:
            raise TypeError("commands must be a non-empty list")
        return [_valid_command(c) for c in commands]
    except (yaml.YAMLError, KeyError, TypeError) as e:
        raise UserError(
            f"{f}: not a dropbench sweep file ({type(e).__name__}); delete it and run the sweep's command again with --append"
        ) from None


def _same_key(c: dict[str, Any]) -> tuple:
    """What makes two commands the same sweep, out= aside (the folder is where they run)."""
    if "from" in c:
        return ("from", json.dumps(c["config"], sort_keys=True, default=str))
    return ("overrides", tuple(o for o in c["overrides"] if not o.startswith("out=")), c["multirun"])


def describe_command(c: dict[str, Any]) -> str:
    if "from" in c:
        return f"dropbench run --from {shlex.quote(c['from'])}"
    overrides = [o for o in c["overrides"] if not o.startswith("out=")]  # the folder may have moved
    return " ".join(["dropbench run", *(["-m"] if c["multirun"] else []), *overrides])


def plan_command(c: dict[str, Any], out: Path) -> tuple[list["RunConfig"], "Launcher"]:
    """Re-plan one recorded command into `out` (absolute), from the directory it was run in:
    a relative data.path means what it meant then (the directory is changed while planning only)."""
    import dataclasses

    from dropbench.config import LocalLauncher

    cwd = c.get("cwd")
    with contextlib.chdir(cwd) if cwd and Path(cwd).is_dir() else contextlib.nullcontext():
        if "from" in c:
            (cfg,) = derive.resolve([config_mod.build({**c["config"], "out": str(out)})])
            return [dataclasses.replace(cfg, out=str(out))], LocalLauncher()
        overrides = [o for o in c["overrides"] if not o.startswith("out=")] + [f"out={config_mod.quote_value(str(out))}"]
        return plan(overrides, c["multirun"])


def plan_commands(commands: Sequence[dict[str, Any]], out: Path) -> tuple[list["RunConfig"], "Launcher"]:
    """Every run of every command, in command order, each once; the latest command's launcher
    (a launcher never changes a run's numbers)."""
    cfgs: dict[str, RunConfig] = {}
    launcher = None
    for c in commands:
        planned, launcher = plan_command(c, out)
        for cfg in planned:
            cfgs.setdefault(cfg.run_id, cfg)
    assert launcher is not None
    return list(cfgs.values()), launcher


def plan_resume(folder: str | Path) -> tuple[list["RunConfig"], "Launcher", list[dict[str, Any]]]:
    """Re-plan every command stored in a results folder, to run what it is missing."""
    commands = read_commands(folder)
    if commands is None:
        raise UserError(f"--resume {folder}: no {SWEEP_FILE} there; give a folder written by dropbench run")
    cfgs, launcher = plan_commands(commands, Path(folder).resolve())
    return cfgs, launcher, commands


def _is_recorded(command: dict[str, Any], recorded: Sequence[dict[str, Any]]) -> bool:
    """Whether the folder records `command` as typed: the same overrides from the same directory."""
    return any(_same_key(c) == _same_key(command) and c.get("cwd", command.get("cwd")) == command.get("cwd") for c in recorded)


def _is_covered(cfgs: Sequence["RunConfig"], recorded: Sequence[dict[str, Any]], out: Path) -> bool:
    """Whether the recorded commands already plan every run of `cfgs`: the same sweep typed
    otherwise (seed=0,1 for seed=range(2), another order, another directory where no relative
    path changed meaning), or a part of it."""
    planned: set[str] = set()
    for c in recorded:
        try:
            planned |= {x.run_id for x in plan_command(c, out.resolve())[0]}
        except UserError:  # e.g. its relative data.path is gone: it cannot be the same runs
            pass
    return {x.run_id for x in cfgs} <= planned


def updated_record(out: Path, command: dict[str, Any] | None, cfgs: Sequence["RunConfig"], append: bool) -> list[dict[str, Any]] | None:
    """The commands sweep.yaml should record after `command` runs into `out`; None where it
    stays as it is. The same command again is a resume; another one is refused unless `append`
    (a folder is one sweep unless its user says otherwise: report would mix the two)."""
    from dropbench import results

    if command is None:
        return None
    recorded = read_commands(out) if out.is_dir() else None
    if recorded is None:
        if out.is_dir() and results.stored_ids(out) and not append:
            raise UserError(
                f"out={out} holds runs but no {SWEEP_FILE} (written by --from or an older dropbench); "
                "run into a new folder, or add --append to add this command to it"
            )
        return [command]
    if _is_recorded(command, recorded):
        return None
    if not append:
        if _is_covered(cfgs, recorded, out):  # a resume typed otherwise: nothing new to record
            return None
        shown = describe_command(recorded[-1])
        more = f" and {len(recorded) - 1} other command(s)" if len(recorded) > 1 else ""
        raise UserError(
            f"out={out} already holds another sweep ({shown}{more}); run this one into a new folder, "
            f"or add --append to add it to that folder (dropbench run --resume {shlex.quote(str(out))} then finishes both)"
        )
    return [*recorded, command]


def check_platform(out: Path, rows: Sequence[dict[str, Any]], todo: Sequence["RunConfig"]) -> None:
    """Refuse to train runs into a folder whose finished runs were computed on another platform
    (torch version, CPU model and capability, device, GPU): their numbers would differ in the last bits,
    and a comparison across them would measure the platform as well as the regularizer. Runs
    stored before dropbench recorded platforms count as another, unknown, platform. `rows`: the
    folder's finished rows (results.finished_rows)."""
    from dropbench import provenance

    if not rows or not todo:
        return
    here = {d: {**provenance.current(d), "device": d} for d in sorted({c.device for c in todo})}
    shared = ("torch_version", "cpu", "cpu_capability")  # the same for every device of one machine
    any_here = next(iter(here.values()))
    for r in rows:
        mine = here.get(str(r.get("device")))
        differs = (
            provenance.identity(r) != provenance.identity(mine) if mine is not None
            else any(str(r.get(k) or "") != any_here[k] for k in shared)
        )
        if differs:
            n = sum(1 for x in rows if provenance.identity(x) == provenance.identity(r))
            raise UserError(
                f"out={out} holds {n} finished run(s) computed on another platform ({provenance.describe(r)}) "
                f"than this one ({provenance.describe(mine or any_here)}), whose numbers differ in the last bits; "
                "run into a new folder, or add --allow-mixed-platforms to mix them"
            )


def load_saved(path: str | Path) -> "RunConfig":
    """A run's config from its results folder (runs/<id>/ or its config.yaml), to reproduce it.

    The config must give the run id it was stored under (its folder's name, its result.json's
    run_id): a config.yaml cut short or edited by hand would otherwise train, or describe, another
    run with the defaults filling the gap. Either is refused in one line naming the file."""
    import yaml

    p = Path(path)
    f = p / "config.yaml" if p.is_dir() else p
    if not f.is_file():
        raise UserError(f"{path}: no config.yaml there; give a run folder such as results/DIR/runs/<run_id>")
    fix = "restore it from a copy, or train the config you want with overrides (dropbench run KEY=VALUE ...)"
    try:
        d = yaml.safe_load(f.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{f} is damaged: not valid YAML ({' '.join(str(e).split())[:100]}); {fix}") from None
    except UnicodeDecodeError:
        raise UserError(f"{f} is damaged: not UTF-8 text; {fix}") from None
    except OSError as e:
        raise UserError(f"{f}: cannot read it ({e.strerror or type(e).__name__})") from None
    if not isinstance(d, dict):
        raise UserError(f"{f} is damaged: not a mapping of config keys; {fix}")
    row = _stored_result(f.parent)
    missing = _not_here(d)
    if missing is not None and row is not None and _ran_with(row, missing):  # not a damaged file: a plug-in not here
        raise UserError(f"{f} names {missing}, which is no option here: install the package that provides it or give the "
                        "--config-dir that configures it (a results folder is data: what it names is never imported)")
    try:
        (cfg,) = derive.resolve([config_mod.build(d)])
    except config_mod.DataFileError as e:
        data = d.get("data") if isinstance(d.get("data"), dict) else {}
        if row is None or all(row.get(f"data.{k}") == data.get(k) for k in ("path", "sha256")):
            raise  # the config names the file its run used: that file moved or changed
        raise UserError(f"{f} is damaged or was edited ({e}); {fix}") from None
    except UserError as e:
        raise UserError(f"{f} is damaged or was edited ({e}); {fix}") from None
    stored = _stored_ids(f.parent, row)
    if stored and stored != {cfg.run_id}:
        raise UserError(
            f"{f} is damaged or was edited: it gives run id {cfg.run_id}, not the stored run's {' or '.join(sorted(stored))} "
            f"(cut short, missing keys take their defaults); {fix}"
        )
    return cfg


def _not_here(d: dict[str, Any]) -> str | None:
    """The first group option a stored config names that this process does not have (a plug-in
    neither installed nor configured here), as GROUP=NAME; None when it has them all."""
    from dropbench import data, models, regs

    reg = d.get("reg")
    for name in reg if isinstance(reg, dict) else ():
        if isinstance(name, str) and name not in regs.REGISTRY and not name.startswith("_"):
            return f"reg={name}"
    for group, registry in (("data", data.REGISTRY), ("model", models.REGISTRY)):
        name = d.get(group, {}).get("name") if isinstance(d.get(group), dict) else None
        if isinstance(name, str) and name not in registry:
            return f"{group}={name}"
    return None


def _ran_with(row: dict[str, Any], option: str) -> bool:
    """Whether a stored result's row says its run chose GROUP=NAME (reg: one of its label's)."""
    group, _, name = option.partition("=")
    value = str(row.get(group, ""))
    return name in value.split("+") if group == "reg" else value == name


def _stored_result(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's result.json row, where it holds one."""
    try:
        row = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) else None


def _stored_ids(run_dir: Path, row: dict[str, Any] | None) -> set[str]:
    """The ids a run folder says its run has: its name (runs/<run_id>) and its result.json's
    run_id, where they exist; empty for a config.yaml kept elsewhere."""
    import re

    ids = {run_dir.name} if re.fullmatch(r"[0-9a-f]{12}", run_dir.name) else set()
    if row is not None and isinstance(row.get("run_id"), str):
        ids.add(row["run_id"])
    return ids


def reproduce(path: str | Path, overrides: Sequence[str] = (), multirun: bool = False) -> "RunConfig":
    """A stored run's config, to train again: into out=DIR if given, else a new results folder
    (its own folder would count it finished and skip it)."""
    import dataclasses

    outs = [config_mod.out_override(o) for o in overrides if o.startswith("out=")]
    if multirun or len(outs) != len(overrides) or len(outs) > 1:
        raise UserError("--from trains the stored run as it was; the only override it takes is out=DIR (drop the others and -m)")
    return dataclasses.replace(load_saved(path), out=outs[0] if outs else None)


def _check_inputs(cfgs: Sequence["RunConfig"]) -> None:
    """Fail before anything is written: data must load, devices and engines must exist."""
    from dropbench.data import data_key, load_dataset
    from dropbench.engines import get_engine
    from dropbench.engines.base import resolve_device
    from dropbench.engines.generic import unsupported

    seen: set[Any] = set()  # what was checked already: a data set, a device, an engine
    for cfg in cfgs:
        key = data_key(cfg)
        if key not in seen:
            load_dataset(cfg)
            seen.add(key)
        if ("device", cfg.device) not in seen:
            resolve_device(cfg.device)
            seen.add(("device", cfg.device))
        if ("engine", cfg.engine) not in seen:  # building one reads the machine's cache sizes
            get_engine(cfg.engine)
            seen.add(("engine", cfg.engine))
        if cfg.engine == "batched":  # a plug-in the generic path cannot run: say so before anything is written
            why = unsupported(cfg)
            if why is not None:
                raise UserError(why)


OUT_OPTION = "out=DIR"  # how a user sends results elsewhere, named in the fix of an OS error


class Stopped(UserError):
    """Training stopped by an OS error (a full disk) after the sweep was recorded: the runs that
    finished are stored, and resuming trains the rest."""

    def __init__(self, cause: str, out: Path, stored: int, total: int) -> None:
        super().__init__(f"{cause}; {stored} of {total} runs are stored in {out}")
        self.out, self.stored, self.total = out, stored, total


def execute(
    cfgs: Sequence["RunConfig"],
    launcher: "Launcher | None" = None,
    out: Path | None = None,
    on_result: Callable[[str, str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    command: dict[str, Any] | None = None,
    append: bool = False,
    allow_mixed_platforms: bool = False,
    on_folder: Callable[[Path], None] | None = None,
) -> RunOutcome:
    """Train every planned run not already finished in `out`, store each, rebuild the CSVs.
    on_folder hears the folder once it is known (a default one is made here), before training.

    `command` (command_of / from_command) is recorded in sweep.yaml, so `--resume` can re-plan
    it; a folder that records another command takes it only with `append`. None (--resume, or a
    caller that records nothing) leaves sweep.yaml as it is.

    Writing fails in one line (oserrors.os_error: read-only, full disk, permission). A failure
    before any run is stored leaves the folder as it was (one this call created is removed);
    after that it raises Stopped, the finished runs kept. A folder with nothing to train is
    only read.
    """
    import warnings

    import yaml

    from dropbench import launchers, locks, oserrors, results
    from dropbench.config import LocalLauncher

    if not cfgs:
        raise UserError("nothing to run")
    _check_inputs(cfgs)
    out = Path(out or cfgs[0].out or results.default_out())
    results.check_out_dir(out)
    if on_folder:
        on_folder(out)
    if out.is_dir():
        results.remove_leftovers(out)
    record = updated_record(out, command, cfgs, append)  # refuse before anything is written
    finished = results.finished_rows(out)  # one read of the run folders serves both checks
    done = {r["run_id"] for r in finished}
    todo = [c for c in cfgs if c.run_id not in done]
    # On SLURM the runs train on nodes whose platform this login host does not know; each run
    # records its node's, and report/check warn of a mix afterwards.
    if not allow_mixed_platforms and not (launcher is not None and launcher.name == "submitit_slurm"):
        check_platform(out, finished, todo)
    if todo:  # a launcher has nothing to share out when every run is finished
        launchers.check_available(launcher or LocalLauncher())
    for why in results.damaged(out, [c.run_id for c in todo]).values():
        warnings.warn(f"{why}; training that run again", stacklevel=2)
    outcome = RunOutcome(out=out, skipped=len(cfgs) - len(todo))
    option = OUT_OPTION if command is not None else None  # --resume: the folder is the one given
    created: list[Path] = []
    recorded = False
    try:
        with oserrors.writing(option, out):
            created = results.make_dirs(out)
            if record is not None:
                with locks.folder_lock(out):  # again under the lock: concurrent runs append in turn
                    record = updated_record(out, command, cfgs, append)
                    if record is not None:
                        results.atomic_write(out / SWEEP_FILE, yaml.safe_dump({"commands": record}, sort_keys=False))
                        recorded = True
            if on_start:
                on_start(len(todo))
    except BaseException:
        _undo_new_folder(out, created, command)
        raise

    def stored(run_id: str, status: str) -> None:
        outcome.trained += 1
        if on_result:
            on_result(run_id, status)

    _ready(todo, launcher)
    t0 = time.perf_counter()
    error: BaseException | None = None
    plan_ids = [c.run_id for c in cfgs]
    # training_into: report tells this sweep in progress from a stopped one; held from training
    # through the CSV rebuild, and only where there is something to train (a finished folder is
    # only read).
    holding = contextlib.ExitStack()
    try:
        if todo:
            with oserrors.writing(option, out):
                holding.enter_context(locks.training_into(out, [c.run_id for c in todo]))
                launchers.launch(todo, out, launcher or LocalLauncher(), stored)
    except BaseException as e:  # Ctrl-C, a full disk, a bug: what finished is kept and listed first
        error = e
    with holding:
        outcome.train_seconds = time.perf_counter() - t0
        stop = error if isinstance(error, UserError) else None
        try:
            with oserrors.writing(option, out):
                rows = results.consolidate(out, plan_ids)
        except UserError as e:  # the CSVs cannot be rebuilt; the run folders hold every finished run
            stop = stop or e
            stored_rows = results.stored_rows(out)
            rows = [stored_rows[r] for r in plan_ids if r in stored_rows]
    wanted = set(plan_ids)
    outcome.rows = [r for r in rows if r["run_id"] in wanted]
    trained = {c.run_id: c.epochs for c in todo}
    outcome.network_steps = sum(trained[r["run_id"]] for r in outcome.rows if r["run_id"] in trained and r["status"] == "ok")
    if isinstance(error, KeyboardInterrupt):
        raise Interrupted(out, len(outcome.rows), len(cfgs), exit_code(error))
    if isinstance(error, launchers.JobsEnded):
        raise JobsLost(out, len(outcome.rows), len(cfgs), [e.line() for e in error.ends], str(error)) from None
    if error is not None and stop is not error:
        raise error
    if stop is not None:
        if _undo_new_folder(out, created, command) or not (outcome.trained or recorded):
            raise stop  # the folder is as it was
        raise Stopped(str(stop), out, len(outcome.rows), len(cfgs)) from None
    return outcome


def _ready(todo: Sequence["RunConfig"], launcher: "Launcher | None") -> None:
    """Load once, before training's clock starts (as torch is imported before it), what training
    in this process will load anyway: the fast mask stream's compiled kernels (dropbench/masks.py,
    about half a second), where a run draws from that stream."""
    if (launcher is None or launcher.name == "local") and any(c.masks == "fast" or c.fast_mc_passes for c in todo):
        from dropbench import masks

        masks.compiled()


def _undo_new_folder(out: Path, created: Sequence[Path], command: dict[str, Any] | None) -> bool:
    """Remove the results folder this invocation created, where it stored no run in it: a sweep
    that could not start leaves nothing behind. Only what it wrote goes (a sweep.yaml that
    records another command too is a concurrent writer's). True when the folder is gone."""
    from dropbench import locks, results

    if not created or results.stored_ids(out):
        return False
    try:
        recorded = read_commands(out)
    except UserError:
        return False
    if recorded is not None and (command is None or [_same_key(c) for c in recorded] != [_same_key(command)]):
        return False
    for name in (SWEEP_FILE, results.RUNS_CSV, results.CURVES_CSV, ".lock", locks.RUNNING):
        try:
            (out / name).unlink(missing_ok=True)
        except OSError:
            pass
    results.remove_dirs([*created, out / results.RUNS_DIR])
    return not out.exists()
