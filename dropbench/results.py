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
import math
import os
import re
import shlex
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

# make_dirs and remove_dirs too: the results folder's writers (runner, plots) take them from here.
from dropbench.atomic import UMASK, atomic_file, atomic_write, chmod, host, make_dirs, owner, remove_dirs, unlink_quietly  # noqa: F401
from dropbench.columns import (
    CURVE_COLUMNS, CURVE_REQUIRED, FIT_COLUMNS, LEAD_COLUMNS, METRIC_COLUMNS, PLATFORM_COLUMNS, RESULT_COLUMNS, TEXT_COLUMNS,
)
from dropbench.engines.result import RunResult
from dropbench.errors import UserError

if TYPE_CHECKING:
    from datetime import datetime

    from dropbench.analysis.budgets import Tuning
    from dropbench.config import RunConfig

RUNS_CSV, CURVES_CSV, RUNS_DIR = "runs.csv", "curves.csv", "runs"
# A tuning's folder (tuning.py): its spec, and a results folder for each phase. Named here, with
# the sweep folder's files, so that a reader told a tuning's folder can say where its runs are.
TUNE_FILE, SEARCH_DIR, FINAL_DIR = "tune.yaml", "search", "final"


# .<name>.<host>-<pid>.<random>[.tmp]
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+(\.tmp)?$")
STALE_SECONDS = 24 * 3600  # a temporary entry this old is a leftover whatever made it


def _is_leftover(entry: Path) -> bool:
    import time

    m = _TEMP.match(entry.name)
    if m and m["host"] == host():
        try:
            os.kill(int(m["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError):
            pass
        else:
            return False
    try:
        return time.time() - entry.lstat().st_mtime > STALE_SECONDS
    except FileNotFoundError:
        return False


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
    """A run's config.yaml: yaml.safe_dump's text. Where every string is short printable ASCII,
    libyaml's emitter writes the same text several times faster (it wraps long lines and escapes
    other characters otherwise); tests/test_sweep_fast.py compares the two."""
    import yaml

    d = cfg.to_dict()
    fast = getattr(yaml, "CSafeDumper", None)
    if fast is None or not all(_plain_ascii(s) for s in _strings(d)):
        return yaml.safe_dump(d, sort_keys=False)
    return yaml.dump(d, Dumper=fast, sort_keys=False)


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


def row_of(result: RunResult) -> dict[str, Any]:
    """A run's row: its config, the platform of this process (the one that trained it: a
    joblib or submitit worker stores its own runs), then its results."""
    cfg = result.cfg
    row: dict[str, Any] = {"run_id": cfg.run_id, **cfg.choices(), "seed": cfg.seed}
    row.update({k: v for k, v in cfg.flat().items() if k != "seed"})
    row.update(_platform(cfg.device))
    row.update(result.summary())
    row.update({"status": result.status, "reason": result.reason, "seconds": round(result.seconds, 4)})
    return row


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
    tmp = Path(tempfile.mkdtemp(dir=runs, prefix=f".{result.run_id}.{owner()}."))
    try:
        chmod(tmp, 0o777 & ~UMASK)
        (tmp / "config.yaml").write_text(config_yaml(result.cfg))
        (tmp / "curve.csv").write_text(_curve_text(result))
        if result.fit:
            (tmp / "fit.csv").write_text(",".join(FIT_COLUMNS) + "\n" + "".join(f"{x!r},{y!r}\n" for x, y in result.fit))
        (tmp / "result.json").write_text(json.dumps(row_of(result), indent=1, allow_nan=True))
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


# --- OS errors while writing: one line naming the path and the fix ---------------------------


def shown_path(path: str | Path) -> str:
    """A path as the user knows it: a temporary entry (.runs.csv.host-1.x.tmp, a run's
    .<run_id>.host-1.x folder) by the name it was to get, the lock by its folder."""
    p = Path(path)
    parts = [m["name"] if (m := _TEMP.match(part)) else part for part in p.parts]
    if parts and parts[-1] == ".lock":
        parts.pop()
    return str(Path(*parts)) if parts else str(p)


def os_error(e: OSError, option: str | None, where: str | Path | None = None) -> UserError:
    """The one-line UserError for an OSError met while writing results: what failed, where, and
    the fix. `option`: how the user names another place (out=DIR, --out DIR, -o FILE; None where
    there is none, as for --resume); `where`: the output as the user gave it, whose spelling the
    failing path takes (tempfile makes paths absolute)."""
    import errno

    path = shown_path(e.filename) if e.filename is not None else None
    if where is not None:
        path = _as_given(path, where)
    path = path or "."
    folder = path if Path(path).is_dir() else str(Path(path).parent)
    elsewhere = f"give another {option}" if option else ""
    if e.errno == errno.EROFS:
        why = "the file system is read-only"
        fix = f"{elsewhere} on a writable file system" if option else "remount it writable, or copy the folder to a writable file system"
    elif e.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "no space left on the device" if e.errno == errno.ENOSPC else "the disk quota is exceeded"
        fix = "free some space" + (f", or {elsewhere} on a disk with room" if option else "")
    elif e.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied"
        fix = f"check the permissions and owner of {folder} (ls -ld {folder})" + (f", or {elsewhere}" if option else "")
    else:
        why, fix = e.strerror or type(e).__name__, elsewhere or f"check {folder}"
    return UserError(f"cannot write to {path}: {why}; {fix}")


def _same_path(a: str | Path, b: str | Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def _as_given(path: str | None, where: str | Path) -> str:
    """`path` spelled from `where` as the user gave it, where it is `where` or lies inside it
    (tempfile makes paths absolute)."""
    if path is None or _same_path(path, where):
        return str(where)
    inside = os.path.relpath(os.path.abspath(path), os.path.abspath(where))
    return path if inside.startswith(os.pardir) else os.path.join(str(where), inside)


@contextmanager
def writing(option: str | None | dict[Path, str], where: str | Path | None = None) -> Iterator[None]:
    """Around code that writes results: an OSError becomes os_error's one-line UserError.
    `option` names the setting that moves the output elsewhere, `where` the output; a dict
    {output: option} where several outputs are written (the one that failed is named)."""
    try:
        yield
    except OSError as e:
        if isinstance(option, dict):
            failed = shown_path(e.filename) if e.filename is not None else None
            where, option = next(((p, o) for p, o in option.items() if failed is not None and _same_path(p, failed)),
                                 (None, next(iter(option.values()), "")))
        raise os_error(e, option, where) from None  # type: ignore[arg-type]


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
        if _is_leftover(d):
            shutil.rmtree(d, ignore_errors=True)
    for f in out.glob(".*.tmp"):
        if _is_leftover(f):
            unlink_quietly(f)


@contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Serialise CSV rebuilds of one folder across processes (and machines sharing it)."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


RUNNING = ".running"  # flock'ed (shared) by every process training runs into the folder


PLAN = "plan"  # .plan.<host>-<pid>.<random>.tmp: the run ids a live writer is training (training_into)


@contextmanager
def training_into(out: Path, plan: Iterable[str] = ()) -> Iterator[None]:
    """Held while this process trains runs into `out` and rebuilds its CSVs, so that report can
    tell a sweep in progress from one that was stopped. A lock, not a marker file: it goes with
    the process however that ends (kill -9 included), and concurrent writers share it.

    `plan`: the run ids this process trains, listed in a temporary file of this process's own
    (removed when the block ends; a killed process's is a leftover that readers skip), so that a
    report of the folder meanwhile can say how many runs are still to come (progress)."""
    import fcntl

    with open(out / RUNNING, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        listed = None
        ids = list(plan)
        if ids:
            fd, listed = tempfile.mkstemp(dir=out, prefix=f".{PLAN}.{owner()}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write("".join(f"{i}\n" for i in ids))
        try:
            yield
        finally:
            if listed is not None:
                unlink_quietly(Path(listed))


@dataclass(frozen=True)
class Progress:
    """A folder's runs as a reader sees them while a sweep may be training into it."""

    running: bool  # a live dropbench is training into it (is_being_written)
    finished: int  # runs stored, whatever their status
    failed: int
    to_come: int  # runs the live writers plan that are not stored yet (0 where none says)

    def note(self, folder: Path | str) -> str:
        failed = f", {self.failed} of them failed" if self.failed else ""
        left = f"{self.to_come} still running or queued" if self.to_come else "how many are still to come is not recorded"
        return (f"partial: {folder} is still being written by a running dropbench; this shows the {self.finished} run(s) "
                f"finished so far{failed}; {left}")


def progress(out: Path) -> Progress:
    """How far a sweep being written has come: its stored runs, and the planned ones of every
    live writer (their plan files) not stored yet."""
    out = Path(out)
    try:  # what a partial read shows: the run folders, and runs an earlier command's runs.csv lists
        rows = {r["run_id"]: r for r in _live_rows(out, RUNS_CSV, RUNS_REQUIRED)}
    except UserError:  # a damaged runs.csv: the run folders alone
        rows = stored_rows(out)
    planned: set[str] = set()
    for f in out.glob(f".{PLAN}.*.tmp"):
        if _is_leftover(f):
            continue
        with contextlib.suppress(OSError, UnicodeDecodeError):
            planned.update(f.read_text().split())
    return Progress(is_being_written(out), len(rows), sum(1 for r in rows.values() if r.get("status") != "ok"),
                    len(planned - set(rows)))


def is_being_written(out: Path) -> bool:
    """Whether a live process (here, or on a host sharing the folder) is training runs into `out`
    (training_into). False where that cannot be told (no lock file; a file system without flock)."""
    import fcntl

    try:
        fh = open(out / RUNNING, "rb")
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


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
    rows, texts = _tables(out, plan)
    if all(_holds(out / name, text) for name, text in texts.items()):
        return rows
    with folder_lock(out):
        if _state(out) != seen:  # another writer stored or replaced runs meanwhile: read them again
            rows, texts = _tables(out, plan)
        for name, text in texts.items():
            write_if_changed(out / name, text)
        return rows


def _state(out: Path) -> tuple[tuple[tuple[str, int], ...], bytes | None]:
    """What _tables reads, cheaply: each run folder by name and inode (writers only ever rename a
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


def _tables(out: Path, plan: list[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
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
    if entries and not any(e in ours or _TEMP.match(e) for e in entries):
        raise UserError(f"out={out} is a non-empty folder that holds no dropbench results; choose a new or empty folder")


# --- reading a results folder (report, plot, check): csv module only, no pandas or torch ------

def float_cell(v: str) -> float:
    """A float cell: empty is NaN (a metric the run does not compute, or a column it predates)."""
    return float(v) if v != "" else math.nan


def int_cell(v: str) -> int | None:
    """An integer cell: empty is None (a stopped_epoch of a run that trained every epoch)."""
    return int(v) if v != "" else None


# The cells read_csv parses in a results folder's CSVs; the others stay text as written.
CELLS: dict[str, Callable[[str], Any]] = {
    **{c: float_cell for c in METRIC_COLUMNS}, "best_test_mse": float_cell, "seconds": float_cell, "final_val_mse": float_cell,
    "best_epoch": int_cell, "seed": int_cell, "epoch": int_cell, "stopped_epoch": int_cell, "kept_epoch": int_cell,
    **{c: float_cell for c in CURVE_COLUMNS[1:]},
}
for _c in (*TEXT_COLUMNS, *(f"final_{c}" for c in TEXT_COLUMNS)):  # text: kept as written
    del CELLS[_c]


@dataclass(frozen=True)
class Wording:
    """How read_csv words each kind of damage in its one-line UserError: str.format templates
    over {file} (the file as the user knows it), {path}, {fix} (what to do about it) and the
    damage's own fields. The defaults are a results folder's; a check's baseline words its own."""

    missing: str = "{file}: no such file; {fix}"
    unreadable: str = "{file} cannot be read ({error}); check its permissions (ls -l {path})"
    not_text: str = "{file} is not a text CSV; {fix}"
    invalid: str = "{file} is not a valid CSV ({error}); {fix}"
    empty: str = "{file} is empty; {fix}"
    lacks: str = "{file} lacks column(s) {columns}; {fix}"
    width: str = "{file} line {line} has {fields} fields where the header has {width}; the file is damaged ({fix})"
    not_number: str = "{file} line {line}: {column}={value!r} is not a number; the file is damaged"


def read_csv(path: Path, required: Sequence[str], fix: str, cells: Mapping[str, Callable[[str], Any]] = CELLS,
             file: str | None = None, wording: Wording = Wording(), text: str | None = None) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """The header of a CSV this tool wrote, and its rows, each with its line number and its
    `cells` parsed (column -> parser raising ValueError; other cells are kept as written). Any
    damage is a one-line UserError worded by `wording`, naming the file as `file` (default: its
    path) and ending in `fix`. `text`: the file's contents, built in memory (a sweep still
    running, read from its run folders), in place of reading `path`."""
    def damage(template: str, **fields: Any) -> UserError:
        return UserError(template.format(file=path if file is None else file, path=path, fix=fix, **fields))

    if text is None and not path.is_file():
        raise damage(wording.missing)
    try:
        with (io.StringIO(text, newline="") if text is not None else path.open(newline="")) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise damage(wording.empty)
            missing = [c for c in required if c not in header]
            if missing:
                raise damage(wording.lacks, columns=", ".join(missing))
            rows = []
            for line in reader:
                if not line:
                    continue
                if len(line) != len(header):
                    raise damage(wording.width, line=reader.line_num, fields=len(line), width=len(header))
                row: dict[str, Any] = dict(zip(header, line))
                for c, parse in cells.items():
                    if c in row:
                        try:
                            row[c] = parse(row[c])
                        except ValueError:
                            raise damage(wording.not_number, line=reader.line_num, column=c, value=row[c]) from None
                rows.append((reader.line_num, row))
    except UnicodeDecodeError:
        raise damage(wording.not_text) from None
    except csv.Error as e:
        raise damage(wording.invalid, error=e) from None
    except OSError as e:
        raise damage(wording.unreadable, error=e.strerror or type(e).__name__) from None
    return header, rows


READ_FIX = "give a results folder written by dropbench run"


def _sweep_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; {READ_FIX}")
    if not (folder / RUNS_CSV).is_file():
        raise UserError(_why_no_runs(folder))
    return folder


def _finished(folder: Path) -> str:
    rows = stored_rows(folder).values()
    failed = sum(1 for r in rows if r.get("status") != "ok")
    return f"{len(rows)} run(s) finished so far" + (f" ({failed} failed)" if failed else "")


def _why_no_runs(folder: Path) -> str:
    """Why a folder has no runs.csv to read, and what to do: wait for the command writing it,
    give a tuning's final runs, finish a stopped sweep, or give a results folder."""
    if (folder / TUNE_FILE).is_file():
        final = folder / FINAL_DIR
        if (final / RUNS_CSV).is_file():
            return f"{folder} holds a tuning ({TUNE_FILE}), not one sweep: its final runs are in {final}; give that folder"
        phase = next((d for d in (FINAL_DIR, SEARCH_DIR) if is_being_written(folder / d)), None)
        if phase is not None:
            return (f"{folder} holds a tuning still running, in its {phase} phase ({_finished(folder / phase)}); "
                    f"its final runs will be in {final}: give that folder when it ends")
        return f"{folder} holds a tuning whose final runs were never written; finish it with: dropbench tune --resume {shlex.quote(str(folder))}"
    if is_being_written(folder):
        return (f"{folder} is still being written by a running dropbench ({_finished(folder)}); "
                f"its {RUNS_CSV} is written when that command ends: give the folder again then")
    if (folder / RUNS_DIR).is_dir():
        return f"{folder} holds no {RUNS_CSV}; finish it with: dropbench run --resume {shlex.quote(str(folder))}"
    return f"{folder} holds no {RUNS_CSV}; give a folder written by dropbench run"


RUNS_REQUIRED = ("run_id", "seed", "final_train_mse", "final_test_mse", "status")


def is_partial(folder: Path) -> bool:
    """Whether reading `folder` with partial=True reads its run folders: a live writer trains into it."""
    return Path(folder).is_dir() and is_being_written(Path(folder))


def _live_rows(folder: Path, name: str, required: Sequence[str]) -> list[dict[str, Any]]:
    """A CSV of a folder being written, as it would be rebuilt now from the run folders stored so
    far, after the rows its file (from an earlier command) lists of runs not stored there."""
    text = _tables(folder, [])[1][name]
    _, built = read_csv(folder / name, required, READ_FIX, text=text)
    rows = [row for _, row in built]
    if (folder / name).is_file():
        have = {r["run_id"] for r in rows}
        _, listed = read_csv(folder / name, required, READ_FIX)
        rows = [row for _, row in listed if row["run_id"] not in have] + rows
    return rows


def read_runs(folder: Path, partial: bool = False) -> list[dict[str, Any]]:
    """runs.csv of a results folder, one dict per run. partial: a folder a live dropbench is
    still training into is read from its run folders (what has finished so far; progress says
    how much is still to come) rather than refused or read from a runs.csv not yet rebuilt."""
    folder = Path(folder)
    if partial and is_partial(folder):
        rows = _live_rows(folder, RUNS_CSV, RUNS_REQUIRED)
        if not rows:
            raise UserError(f"{folder} is still being written by a running dropbench and no run has finished yet; "
                            "give the folder again when one has")
        return rows
    _, lines = read_csv(_sweep_folder(folder) / RUNS_CSV, RUNS_REQUIRED, READ_FIX)
    rows = [row for _, row in lines]
    if not rows:
        raise UserError(f"{folder}/{RUNS_CSV} lists no runs; run a sweep into it first")
    return rows


def read_tuning(folder: Path) -> "Tuning | None":
    """The tuning whose final runs a folder holds (OUT/final beside OUT/tune.yaml and OUT/tuned.csv):
    its tuned.csv and the source of its grids; None for a folder of plain runs. Read as data only."""
    import yaml

    from dropbench.analysis.budgets import Tuning

    folder = Path(folder)
    out = folder.resolve().parent
    tuned = out / "tuned.csv"
    if folder.resolve().name != FINAL_DIR or not (out / TUNE_FILE).is_file() or not tuned.is_file():
        return None
    try:
        with tuned.open(newline="") as f:
            rows = list(csv.DictReader(f))
        spec = yaml.safe_load((out / TUNE_FILE).read_text())
    except (OSError, UnicodeDecodeError, csv.Error, yaml.YAMLError) as e:
        raise UserError(f"{out}: cannot read the tuning beside {folder} ({type(e).__name__}: {e}); run dropbench tune --resume "
                        f"{shlex.quote(str(out))} to write it again") from None
    source = spec.get("source") if isinstance(spec, dict) else None
    return Tuning(rows, str(source) if source else None, str(out))


def read_curves(folder: Path, partial: bool = False) -> list[dict[str, Any]]:
    """curves.csv of a results folder, one dict per (run, evaluated epoch); partial as read_runs."""
    folder = Path(folder)
    if partial and is_partial(folder):
        return _live_rows(folder, CURVES_CSV, ("run_id", *CURVE_REQUIRED))
    _, lines = read_csv(_sweep_folder(folder) / CURVES_CSV, ("run_id", *CURVE_REQUIRED), READ_FIX)
    return [row for _, row in lines]
