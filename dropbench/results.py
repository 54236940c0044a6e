"""The results folder: one atomic sub-folder per finished run, and the CSVs built from them.

Layout of a results folder:
    runs.csv                one row per run
    curves.csv              run_id and columns.CURVE_COLUMNS (epoch, train_mse, test_mse, ...)
    runs/<run_id>/config.yaml   the run's resolved config (train it again with run --from)
    runs/<run_id>/result.json   its summary row
    runs/<run_id>/curve.csv     its curve
    runs/<run_id>/fit.csv       1-D data only: x, y_pred (eval mode) on a grid over the training x

A run's sub-folder appears by one rename, so a crash leaves either nothing or a complete run,
and parallel workers never touch each other's files. runs.csv and curves.csv are rebuilt from
the sub-folders and replaced atomically too.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import re
import shutil
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

# make_dirs and remove_dirs too: the results folder's writers (runner, plots) take them from here.
from dropbench.atomic import TEMP, atomic_file, atomic_write, is_leftover, make_dirs, make_temp_dir, remove_dirs, unlink_quietly  # noqa: F401
from dropbench.columns import CURVE_COLUMNS, FIT_COLUMNS, LEAD_COLUMNS, PLATFORM_COLUMNS, RESULT_COLUMNS
from dropbench.engines.result import RunResult
from dropbench.errors import UserError
from dropbench.locks import RUNNING, folder_lock

if TYPE_CHECKING:
    from datetime import datetime

    from dropbench.config import RunConfig

RUNS_CSV, CURVES_CSV, RUNS_DIR = "runs.csv", "curves.csv", "runs"
# A tuning's folder (tuning.py): its spec, and a results folder for each phase. Named here, with
# the sweep folder's files, so that a reader told a tuning's folder can say where its runs are.
TUNE_FILE, SEARCH_DIR, FINAL_DIR = "tune.yaml", "search", "final"


def atomic_writes(files: dict[Path, str]) -> None:
    """Several files that change together (a baseline and its JUnit report): every one is
    written and synced to a temporary file before the first is renamed into place, so a full
    disk or a refused folder leaves all of them as they were."""
    with contextlib.ExitStack() as stack:
        handles = [(stack.enter_context(atomic_file(path)), text) for path, text in files.items()]
        for f, text in handles:
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())


def write_if_changed(path: Path, text: str) -> None:
    """atomic_write, skipped where the file already holds `text`: a folder with nothing new
    (a finished sweep resumed, on a read-only disk too) is only read."""
    if not _holds(path, text):
        atomic_write(path, text)


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_bytes() == text.encode()
    except OSError:
        return False


def config_yaml(cfg: "RunConfig") -> str:
    """A run's config.yaml: yaml.safe_dump's text. A block mapping's text is its keys' texts one
    after another, and the runs of a sweep share most sections (only the seed, say, differs),
    so each section is dumped once (_section_yaml); tests/test_sweep_fast.py compares the texts."""
    return "".join(_section_yaml(k, v) for k, v in cfg.to_dict().items())


_SECTIONS: dict[tuple[str, str], str] = {}  # (key, repr(value)) -> its YAML text
SECTIONS_KEPT = 4096  # a sweep of many distinct sections empties the cache rather than grow it


def _section_yaml(name: str, value: Any) -> str:
    """One top-level key's YAML text, dumped once per distinct value. repr tells apart every
    value the dump tells apart (1, 1.0, True and "1"), in the dict's own order. Where every
    string is short printable ASCII, libyaml's emitter writes safe_dump's text several times
    faster (it wraps long lines and escapes other characters otherwise)."""
    key = (name, repr(value))
    text = _SECTIONS.get(key)
    if text is None:
        import yaml

        if len(_SECTIONS) >= SECTIONS_KEPT:
            _SECTIONS.clear()
        section = {name: value}
        fast = getattr(yaml, "CSafeDumper", None)
        if fast is not None and all(_plain_ascii(s) for s in _strings(section)):
            text = yaml.dump(section, Dumper=fast, sort_keys=False)
        else:
            text = yaml.safe_dump(section, sort_keys=False)
        _SECTIONS[key] = text
    return text


_PLAIN_ASCII = re.compile(r"[ -~]{0,40}")


def _plain_ascii(s: str) -> bool:
    return _PLAIN_ASCII.fullmatch(s) is not None


def _strings(d: Any) -> Iterator[str]:
    """Every string in a config dict, keys included."""
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(d, list):
        for v in d:
            yield from _strings(v)
    elif isinstance(d, str):
        yield d


@cache
def _platform(device: str) -> dict[str, str]:
    from dropbench import provenance

    return provenance.current(device)


def config_row(cfg: "RunConfig") -> dict[str, Any]:
    """A run's config columns, as runs.csv holds them: its id, the group choices, the seed, every key."""
    return {"run_id": cfg.run_id, **cfg.choices(), "seed": cfg.seed, **{k: v for k, v in cfg.flat().items() if k != "seed"}}


def row_of(result: RunResult) -> dict[str, Any]:
    """A run's row: its config, the platform of this process (the one that trained it: a
    joblib or submitit worker stores its own runs), then its results."""
    cfg = result.cfg
    row = config_row(cfg)
    row.update(_platform(cfg.device))
    row.update(result.summary())
    row.update({"status": result.status, "reason": result.reason, "seconds": round(result.seconds, 4)})
    row["effective_p"] = _effective_p(cfg)
    return row


def _effective_p(cfg: "RunConfig") -> str:
    """runs.csv's effective_p: "name=p" for each regularizer whose p the fast mask stream
    represents otherwise than requested (dropbench/masks.py), space separated."""
    return " ".join(f"{name}={p!r}" for name, p in effective_ps(cfg).items())


def effective_ps(cfg: "RunConfig") -> dict[str, float]:
    """The drop probabilities in force where the fast stream rounds a requested one: for each
    selected regularizer with counter masks that draws from it (training under masks: fast; MC
    passes under eval.mc_masks: fast), its p as represented."""
    mc = cfg.fast_mc_passes
    if cfg.masks != "fast" and not mc:
        return {}  # no draw from the fast stream (and numpy left unimported)
    from dropbench import regs
    from dropbench.masks import effective_p

    out: dict[str, float] = {}
    for r, c in regs.active(cfg.reg):
        if getattr(r, "counter_masks", False) and (cfg.masks == "fast" or (mc and r.mc)):
            if (eff := effective_p(c.p)) != c.p:
                out[r.name] = eff
    return out


def _curve_text(result: RunResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CURVE_COLUMNS)
    w.writerows(result.rows())
    return buf.getvalue()


def write_run(out: Path, result: RunResult) -> Path:
    """Store one finished run under out/runs/<run_id>, atomically (a complete folder or none)."""
    runs = out / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    final = runs / result.run_id
    tmp = make_temp_dir(runs, result.run_id)
    try:
        _write_new(tmp / "config.yaml", config_yaml(result.cfg))
        _write_new(tmp / "curve.csv", _curve_text(result))
        if result.fit:
            _write_new(tmp / "fit.csv", ",".join(FIT_COLUMNS) + "\n" + "".join(f"{x!r},{y!r}\n" for x, y in result.fit))
        _write_new(tmp / "result.json", json.dumps(row_of(result), indent=1, allow_nan=True))
        # Under the lock: a CSV rebuild never sees a run folder half replaced.
        with folder_lock(out):
            if _status(final) == "ok":
                # A concurrent writer stored this same run; its numbers are ours (invariance).
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                if final.exists():  # a re-run of a failed run replaces it
                    shutil.rmtree(final)
                os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_new(path: Path, text: str) -> None:
    """A new file in a folder of this writer's own: one open, one write, one close (a run's
    files are written thousands of times a sweep; Path.write_text adds a few system calls)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def stored_ids(out: Path) -> set[str]:
    """Runs stored in `out`, whatever their status."""
    runs = out / RUNS_DIR
    if not runs.is_dir():
        return set()
    return {d.name for d in runs.iterdir() if not d.name.startswith(".") and (d / "result.json").is_file()}


def remove_leftovers(out: Path) -> None:
    """Temporary files and run folders that a killed process never finished storing (those of a
    live writer, on this host or, for a day, on another, are left alone). Best effort: a
    leftover that cannot be removed (a read-only folder) is harmless, since readers skip it."""
    runs = out / RUNS_DIR
    for d in runs.glob(".*") if runs.is_dir() else []:
        if is_leftover(d):
            shutil.rmtree(d, ignore_errors=True)
    for f in out.glob(".*.tmp"):
        if is_leftover(f):
            unlink_quietly(f)


def _read_row(run_dir: Path) -> tuple[dict[str, Any] | None, str]:
    """A stored run's row, or None and why the folder holds no complete, readable run."""
    result = run_dir / "result.json"
    if not result.is_file():
        return None, f"{result} is missing"
    if not (run_dir / "curve.csv").is_file():
        return None, f"{run_dir / 'curve.csv'} is missing"
    try:
        row = json.loads(result.read_text())
    except json.JSONDecodeError:
        return None, f"{result} is damaged (not valid JSON)"
    except UnicodeDecodeError:
        return None, f"{result} is damaged (not UTF-8 text)"
    except OSError as e:
        return None, f"{result} cannot be read ({e.strerror or type(e).__name__})"
    if not isinstance(row, dict):
        return None, f"{result} is damaged (not a JSON object)"
    if row.get("run_id") != run_dir.name:
        return None, f"{result} is damaged (its run_id is {row.get('run_id')!r}, not the folder's name)"
    return row, ""


def _stored_row(run_dir: Path) -> dict[str, Any] | None:
    """A stored run's row; None where the folder holds no complete, readable run (a folder
    damaged by hand then counts as not finished, so running the sweep again replaces it)."""
    return _read_row(run_dir)[0]


def damaged(out: Path, run_ids: Iterable[str]) -> dict[str, str]:
    """Of `run_ids`, the runs whose folder exists in `out` but holds no complete, readable run:
    run_id -> why (a sweep trains them again, and says so)."""
    runs = out / RUNS_DIR
    found = {}
    for rid in run_ids:
        if (runs / rid).is_dir():
            row, why = _read_row(runs / rid)
            if row is None:
                found[rid] = why
    return found


def _status(run_dir: Path) -> str | None:
    row = _stored_row(run_dir)
    return row.get("status") if row else None


def finished_rows(out: Path) -> list[dict[str, Any]]:
    """The stored rows of runs finished with status ok: a resumed sweep skips them, and a new run
    would join their numbers."""
    return [r for r in stored_rows(out).values() if r.get("status") == "ok"]


def stored_rows(out: Path) -> dict[str, dict[str, Any]]:
    """Every stored run's row, by run id, whatever its status; only reads."""
    runs = out / RUNS_DIR
    dirs = sorted(d for d in runs.iterdir() if not d.name.startswith(".")) if runs.is_dir() else []
    return {d.name: row for d in dirs if (row := _stored_row(d)) is not None}


def _existing_order(out: Path) -> list[str]:
    f = out / RUNS_CSV
    if not f.is_file():
        return []
    with f.open(newline="") as fh:
        return [r["run_id"] for r in csv.DictReader(fh) if r.get("run_id")]


def consolidate(out: Path, plan: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Rebuild runs.csv and curves.csv from the run folders, one process at a time. Where both
    already hold what they would be rebuilt to, nothing is written (nor locked): a finished
    folder is only read, so it may be read-only."""
    plan = list(plan)
    seen = _state(out)
    rows, texts = tables(out, plan)
    if all(_holds(out / name, text) for name, text in texts.items()):
        return rows
    with folder_lock(out):
        if _state(out) != seen:  # another writer stored or replaced runs meanwhile: read them again
            rows, texts = tables(out, plan)
        for name, text in texts.items():
            write_if_changed(out / name, text)
        return rows


def _state(out: Path) -> tuple[tuple[tuple[str, int], ...], bytes | None]:
    """What tables reads, cheaply: each run folder by name and inode (writers only ever rename a
    complete folder into place, so a stored or replaced run is a new inode) and runs.csv's bytes."""
    try:
        with os.scandir(out / RUNS_DIR) as it:
            dirs = tuple(sorted((e.name, e.inode()) for e in it if not e.name.startswith(".")))
    except OSError:
        dirs = ()
    try:
        listed = (out / RUNS_CSV).read_bytes()
    except OSError:
        listed = None
    return dirs, listed


def tables(out: Path, plan: list[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The rows of runs.csv, and the text of runs.csv and curves.csv, built from the run folders.

    Row order: runs the folder already listed (earlier invocations) keep their place; the
    current plan's runs go, in plan order, where the first of them was listed (after the listed
    runs if none was); then any others by id. So a sweep that was interrupted and resumed ends
    with the same files as one that never stopped, whichever of its runs had finished first.
    """
    stored = stored_rows(out)
    in_plan, listed, placed = set(plan), [], False
    for rid in _existing_order(out):
        if rid not in in_plan:
            listed.append(rid)
        elif not placed:
            listed += plan
            placed = True
    order: list[str] = []
    seen: set[str] = set()
    for rid in [*listed, *plan, *sorted(stored)]:
        if rid in stored and rid not in seen:
            order.append(rid)
            seen.add(rid)
    rows = [stored[r] for r in order]
    columns: list[str] = list(LEAD_COLUMNS)
    for r in rows:
        columns += [k for k in r if k not in columns and k not in RESULT_COLUMNS and k not in PLATFORM_COLUMNS]
    # The platform between config and results, always (empty for runs stored before dropbench
    # recorded it), so the columns do not move with the rows a folder holds.
    columns += [*PLATFORM_COLUMNS, *RESULT_COLUMNS]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", restval="")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(v) for k, v in r.items()})
    curves = io.StringIO()
    cw = csv.writer(curves, lineterminator="\n")
    cw.writerow(("run_id", *CURVE_COLUMNS))
    for rid in order:
        cw.writerows([rid, *row] for row in _curve_rows(out / RUNS_DIR / rid / "curve.csv"))
    return rows, {RUNS_CSV: buf.getvalue(), CURVES_CSV: curves.getvalue()}


def _curve_rows(path: Path) -> list[list[str]]:
    """A stored curve's rows as CURVE_COLUMNS, cells as written (full precision kept); a column
    its header lacks (a run stored before the column existed) is empty."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        if tuple(header) == CURVE_COLUMNS:
            return [line for line in reader if line]
        pos = [header.index(c) if c in header else None for c in CURVE_COLUMNS]
        return [["" if i is None or i >= len(line) else line[i] for i in pos] for line in reader if line]


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)  # full precision, stable across runs
    return v


def _now() -> "datetime":
    from datetime import datetime

    return datetime.now()


def default_out(root: Path = Path("results")) -> Path:
    """A new, empty folder results/<timestamp>, made here. mkdir is atomic, so commands started
    in the same second (or on hosts sharing the folder) never get the same one: the first is
    <timestamp>, the next ones <timestamp>-2, -3, ... (names still sort by time)."""
    stamp = _now().strftime("%Y-%m-%d_%H-%M-%S")
    root.mkdir(parents=True, exist_ok=True)
    for i in itertools.count(1):
        path = root / (stamp if i == 1 else f"{stamp}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")  # pragma: no cover


def remove_if_empty(folder: Path) -> None:
    """Remove a folder this command made (default_out) that it left empty, having failed."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def check_out_dir(out: Path) -> None:
    """An existing out folder must be a dropbench results folder (or empty)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"out={out} is a file, not a folder; choose another out=DIR")
    # A concurrent `dropbench run` into the same folder may so far have made only its lock
    # or the temporary file of its sweep.yaml.
    ours = {RUNS_DIR, RUNS_CSV, CURVES_CSV, "sweep.yaml", ".lock", RUNNING}
    entries = [e.name for e in out.iterdir()] if out.is_dir() else []
    if entries and not any(e in ours or TEMP.match(e) for e in entries):
        raise UserError(f"out={out} is a non-empty folder that holds no dropbench results; choose a new or empty folder")
