"""A reproduced table beside a published one (`report --reference`).

A reference is a CSV with the columns dataset, metric, mean, se, n (sd optional); lines starting
with # are comments (the shipped files carry their citation there). `--reference NAME` names a
file shipped in dropbench/references/ (gal2016: Gal & Ghahramani's 2016 MC-dropout UCI table),
`--reference FILE` any other. Every cell of ours whose data set and metric the reference lists is
compared: ours, theirs, the difference, and the difference in units of the two-sample standard
error sqrt(se_ours² + se_theirs²), marked where that exceeds 2. Our se is the summary's test_se
(SD with ddof=0 / √n), the published tables' convention.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from dropbench.analysis.metrics import canonical_metric
from dropbench.analysis.wide import wide
from dropbench.errors import UserError

REQUIRED = ("dataset", "metric", "mean", "se", "n")
SHIPPED = {"gal2016": "gal2016.csv"}  # --reference NAME -> dropbench/references/FILE
MARK_AT = 2.0  # |difference| / two-sample SE beyond which a cell is marked


@dataclass(frozen=True)
class Reference:
    name: str  # the shipped name, or the file's path as given
    citation: str  # its first comment line ("" for a file without)
    rows: list[dict[str, Any]]  # dataset, metric, mean, se, n, sd (None where absent)


def shipped_names() -> list[str]:
    return sorted(SHIPPED)


def read_reference(spec: str | Path) -> Reference:
    """A shipped reference by name, else the CSV at that path; a bad file is one line saying what to fix."""
    path = Path(spec)
    if str(spec) in SHIPPED and not path.exists():
        text = (resources.files("dropbench") / "references" / SHIPPED[str(spec)]).read_text(encoding="utf-8")
        return parse_reference(text, str(spec))
    if not path.is_file():
        raise UserError(f"--reference {spec}: no such file, and not a shipped reference ({', '.join(shipped_names())})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--reference {spec}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    return parse_reference(text, str(spec))


def parse_reference(text: str, name: str) -> Reference:
    lines = text.splitlines()
    citation = next((line.lstrip("#").strip() for line in lines if line.startswith("#")), "")  # the first comment line
    reader = csv.DictReader(io.StringIO("\n".join(line for line in lines if not line.startswith("#"))))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"--reference {name}: missing column(s) {', '.join(missing)}; a reference has the columns "
                        f"{', '.join(REQUIRED)} (sd optional)")
    rows = []
    for i, r in enumerate(reader, start=2):
        try:
            mean, se, n = float(r["mean"]), float(r["se"]), int(r["n"])
            sd = float(r["sd"]) if r.get("sd") not in (None, "") else None
        except (TypeError, ValueError):
            raise UserError(f"--reference {name}: row {i} ({r.get('dataset')}, {r.get('metric')}) has a mean, se, n or sd "
                            "that is not a number") from None
        if not math.isfinite(mean) or not se >= 0 or n < 1:
            raise UserError(f"--reference {name}: row {i} ({r['dataset']}, {r['metric']}) needs a finite mean, se >= 0 and n >= 1")
        rows.append({"dataset": r["dataset"].strip(), "metric": canonical_metric(r["metric"].strip()), "mean": mean, "se": se,
                     "n": n, "sd": sd})
    keys = [(r["dataset"], r["metric"]) for r in rows]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice:
        raise UserError(f"--reference {name}: {twice[0]}, {twice[1]} is listed twice; give each data set and metric once")
    if not rows:
        raise UserError(f"--reference {name}: no rows")
    return Reference(name, citation, rows)


def compare(summary: Sequence[dict[str, Any]], keys: Sequence[str], reference_group: Mapping[str, str] | None,
            ref: Reference) -> list[dict[str, Any]]:
    """A record per (data set, group) of ours that the reference lists for the summary's metric:
    ours, theirs, diff (ours - theirs), se2 (the two-sample SE), z = diff / se2, and beyond
    (|z| > 2). None of ours matching is an error that names what each side has."""
    from dropbench.analysis.metrics import summary_metric

    metric = canonical_metric(summary_metric(summary).name)
    theirs = {r["dataset"]: r for r in ref.rows if r["metric"] == metric}
    w = wide(summary, keys, reference_group)
    out: list[dict[str, Any]] = []
    for row in w.rows:
        t = theirs.get(row)
        if t is None:
            continue
        for col in w.cols:
            cell = w.cells.get((row, col))
            if cell is None:
                continue
            ours, se = float(cell["test_mean"]), float(cell["test_se"])
            diff = ours - t["mean"]
            se2 = math.sqrt(se**2 + t["se"] ** 2) if math.isfinite(se) else math.nan
            z = diff / se2 if se2 > 0 else (math.nan if diff == 0 or math.isnan(se2) else math.copysign(math.inf, diff))
            out.append({"table": "reference", "reference": ref.name, "dataset": row, "group": col, "metric": metric,
                        "ours": ours, "ours_se": se, "ours_n": cell["n_seeds"], "theirs": t["mean"], "theirs_se": t["se"],
                        "theirs_n": t["n"], "diff": diff, "se2": se2, "z": z, "beyond": bool(abs(z) > MARK_AT)})
    if not out:
        have = sorted({r["metric"] for r in ref.rows})
        sets = sorted({r["dataset"] for r in ref.rows})
        raise UserError(f"--reference {ref.name} has nothing to compare with: it lists {', '.join(have)} on {', '.join(sets)}; "
                        f"this report is of {metric} on {', '.join(w.rows)} (choose one with --metric)")
    return out
