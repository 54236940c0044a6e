"""What each runs.csv column is to an analysis, and how a key's value is spelled and ordered.

A column is config (a grouping key: reg, p, model.hidden, ...), a result (final_*, best_*,
status, ...), a repetition of one experiment (seed, data.split, data.seed), or none of these
(the platform, where a file was read from). Some config columns also tell data sets apart.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from dropbench.columns import PLATFORM_COLUMNS

Row = dict[str, Any]
RESULT_COLUMNS = ("final_train_mse", "final_test_mse", "best_test_mse", "best_epoch", "status", "reason", "seconds",
                  "stopped_epoch", "kept_epoch", "effective_p")
# What `report --epoch best` adds to each run and group: the curve column its epoch was chosen by,
# and whether that was measured on the test rows (an optimistic number).
SELECTION_COLUMNS = ("selected_on", "test_selected")
# Columns that are not part of a run's config: its id, its seed, its results, the folder label
# of a multi-folder report and the platform that computed it (reported, never grouped by).
NOT_KEYS = {"run_id", "seed", "sweep", *RESULT_COLUMNS, *PLATFORM_COLUMNS, *SELECTION_COLUMNS}
# Result columns beyond RESULT_COLUMNS (final_test_rmse, final_test_ll, best_val_ll, ...) are
# known by their prefix, so a new metric never becomes a grouping key.
RESULT_PREFIXES = ("final_", "best_")
# Where a csv data set lies: not its config once its contents are recorded (data.sha256), so
# the same file under another path (another machine, a relative path) is the same data.
LOCATION_COLUMNS = {"data.path": "data.sha256"}
# A csv data set is identified by its contents (data.sha256, a grouping key) but a person knows it
# by its file: reports name such a group by the file (labels.file_labels) in a column of its own.
FILE_KEY, FILE_LABEL = "data.sha256", "data.file"
# Where a UCI set's verified files were read from: never part of what was computed.
WHERE_COLUMNS = ("data.root",)
# What makes two runs' data different data sets, whose MSEs are not comparable: ranks restart
# and plots get a panel for each. A split, a data seed or a size is not among them: runs over
# those compare (and pair) like seeds.
DATA_SET_KEYS = ("data", "data.dataset", "data.path", "data.sha256", "data.target", "data.features")
# Keys whose values repeat one experiment rather than make another: runs that differ only in
# them pool into one group (its n counts them) and pair with the reference run of the same
# values. `--by data.split` still groups by a split explicitly.
REPETITION_KEYS = ("seed", "data.split", "data.seed")


def is_result(column: str) -> bool:
    """Whether a runs.csv column is a result (not config, not the seed or the sweep label)."""
    return (column in NOT_KEYS and column not in ("seed", "sweep")) or column.startswith(RESULT_PREFIXES)


def ok(row: Mapping[str, Any]) -> bool:
    """Whether a run finished (status ok): only those enter the statistics."""
    return row.get("status") == "ok"


def key_str(v: object) -> str:
    """A key value as text; "" where the key does not apply to the run (None/NaN/empty cell)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def sort_key(v: object) -> tuple[int, float, str]:
    """Order key values numerically where they are numbers (p=0.1 < p=0.5 < p=10), else as text."""
    s = key_str(v)
    try:
        return (0, float(s), s)
    except ValueError:
        return (1 if s else 2, 0.0, s)


def columns_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every column any row has, in the order the rows first name them."""
    cols: list[str] = []
    seen: set[str] = set()
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return cols


def config_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every column that is part of a run's config (all but NOT_KEYS), in column order."""
    cols = columns_of(rows)
    return [c for c in cols if c not in NOT_KEYS and not is_result(c) and c not in WHERE_COLUMNS and LOCATION_COLUMNS.get(c) not in cols]


def repetition(row: Mapping[str, Any]) -> tuple[str, ...]:
    """A run's repetition: its (seed, data.split, data.seed) values."""
    return tuple(key_str(row.get(k)) for k in REPETITION_KEYS)


def data_set(values: Mapping[str, Any], keys: Sequence[str]) -> tuple[str, ...]:
    """A group's data set, as far as the grouping keys tell data sets apart."""
    return tuple(key_str(values.get(k)) for k in keys if k in DATA_SET_KEYS)
