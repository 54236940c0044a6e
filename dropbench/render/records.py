"""The summary's records as CSV and JSON, every statistic at full precision (for scripts)."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Sequence

from dropbench.analysis.taxonomy import columns_of


def summary_csv(summary: Sequence[dict[str, Any]]) -> str:
    """A CSV row per record; undefined statistics (one seed, no pairs) are empty, floats exact (repr)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns_of(summary), lineterminator="\n")
    w.writeheader()
    for r in summary:
        w.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def summary_json(summary: Sequence[dict[str, Any]]) -> str:
    """A JSON list of records; undefined statistics (one seed, no pairs) are null."""
    def typed(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, str):  # key values are text; give numbers and booleans their JSON types
            if v in ("", "True", "False"):
                return None if v == "" else v == "True"
            for kind in (int, float):
                try:
                    x = kind(v)
                except ValueError:
                    continue
                return x if math.isfinite(x) else v
        return v

    clean = [{k: typed(v) for k, v in r.items()} for r in summary]
    return json.dumps(clean, indent=2) + "\n"
