"""A results folder's rows (runs.csv, curves.csv, a summary's records) as pandas DataFrames with
the dtypes a notebook wants: whole numbers as ints (Int64 where some are missing), numbers as
floats, True/False as bools, words as categoricals, the learned rates (learned_p) as lists.

The rows come from the CSV readers report and check use (readback.read_runs/read_curves), so the
frames hold exactly the numbers the commands compute with; only their types change here. pandas
is imported by the functions that build a frame, never by `import dropbench`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from dropbench.columns import PLATFORM_COLUMNS, TEXT_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

# Text whatever it looks like: ids, free text, paths and hashes (a run id may be all digits).
STRINGS = ("run_id", "reason", "data.path", "data.sha256", "data.root", "search_run_id")
# Labels with few values: categoricals even where they look like numbers (torch_version 2.2).
CATEGORIES = ("status", "sweep", *PLATFORM_COLUMNS)
# Space-separated numbers per cell (one per layer): lists of floats, None where empty.
LISTS = (*TEXT_COLUMNS, *(f"final_{c}" for c in TEXT_COLUMNS))


def _missing(v: Any) -> bool:
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def number_list(v: Any) -> list[float] | None:
    """"0.1 0.25" -> [0.1, 0.25]; an empty cell (a run that learns no rate) -> None.

    >>> number_list("0.1 0.25"), number_list("")
    ([0.1, 0.25], None)
    """
    if _missing(v):
        return None
    if isinstance(v, list):
        return [float(x) for x in v]
    return [float(x) for x in str(v).split()]


def _kind(values: Sequence[Any]) -> str:
    """bool, int, float or text: what every present value of a column of text cells is."""
    present = [v for v in values if not _missing(v)]
    if not present:
        return "empty"
    if all(isinstance(v, bool) or v in ("True", "False") for v in present):
        return "bool"
    for kind, parse in (("int", int), ("float", float)):
        try:
            for v in present:
                if isinstance(v, bool) or (kind == "int" and isinstance(v, float)):
                    raise ValueError
                parse(v)
        except (TypeError, ValueError):
            continue
        return kind
    return "text"


def column(name: str, values: Sequence[Any]) -> "pd.Series":
    """One column, typed by its name (STRINGS, CATEGORIES, LISTS) or else by its values."""
    import pandas as pd

    if name in LISTS:
        return pd.Series([number_list(v) for v in values], dtype=object, name=name)
    if name in STRINGS:
        return pd.Series([None if _missing(v) else str(v) for v in values], dtype="string", name=name)
    if name in CATEGORIES:
        return pd.Series([None if _missing(v) else str(v) for v in values], dtype="category", name=name)
    kind = _kind(values)
    has_gaps = any(_missing(v) for v in values)
    if kind == "bool":
        cells = [None if _missing(v) else (v if isinstance(v, bool) else v == "True") for v in values]
        return pd.Series(cells, dtype="boolean" if has_gaps else bool, name=name)
    if kind == "int":
        cells = [None if _missing(v) else int(v) for v in values]
        return pd.Series(cells, dtype="Int64" if has_gaps else "int64", name=name)
    if kind in ("float", "empty"):  # empty: a metric no run computed (NaN), as runs.csv leaves it
        return pd.Series([math.nan if _missing(v) else float(v) for v in values], dtype="float64", name=name)
    return pd.Series([None if _missing(v) else str(v) for v in values], dtype="category", name=name)


def frame(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> "pd.DataFrame":
    """Rows (dicts, as the CSV readers give them) as a typed DataFrame, columns in first-seen order."""
    import pandas as pd

    from dropbench.analysis.taxonomy import columns_of

    rows = list(rows)
    cols = list(columns) if columns is not None else columns_of(rows)
    return pd.DataFrame({c: column(c, [r.get(c) for r in rows]) for c in cols}, index=pd.RangeIndex(len(rows)))
