"""Reading a results folder (report, plot, check, load, export): runs.csv and curves.csv, parsed
with the csv module only (no pandas or torch), each damage a one-line UserError; a folder still
being written is read from its run folders, with how far it has come (progress)."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from dropbench.atomic import is_leftover
from dropbench.columns import CURVE_COLUMNS, CURVE_REQUIRED, METRIC_COLUMNS, TEXT_COLUMNS
from dropbench.errors import UserError
from dropbench.locks import PLAN, is_being_written, is_partial
from dropbench.results import CURVES_CSV, FINAL_DIR, RUNS_CSV, RUNS_DIR, SEARCH_DIR, TUNE_FILE, stored_rows, tables

if TYPE_CHECKING:
    from dropbench.analysis.budgets import Tuning


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
        raise UserError(why_no_runs(folder))
    return folder


def _finished(folder: Path) -> str:
    rows = stored_rows(folder).values()
    failed = sum(1 for r in rows if r.get("status") != "ok")
    return f"{len(rows)} run(s) finished so far" + (f" ({failed} failed)" if failed else "")


def why_no_runs(folder: Path) -> str:
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


def _live_rows(folder: Path, name: str, required: Sequence[str]) -> list[dict[str, Any]]:
    """A CSV of a folder being written, as it would be rebuilt now from the run folders stored so
    far, after the rows its file (from an earlier command) lists of runs not stored there."""
    text = tables(folder, [])[1][name]
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
        if is_leftover(f):
            continue
        with contextlib.suppress(OSError, UnicodeDecodeError):
            planned.update(f.read_text().split())
    return Progress(is_being_written(out), len(rows), sum(1 for r in rows.values() if r.get("status") != "ok"),
                    len(planned - set(rows)))
