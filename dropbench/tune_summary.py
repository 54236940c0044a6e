"""A tuning summed up for the CLI and the API's Tuning: how often each grid point was chosen per
setting, and the `dropbench report` line for the final runs."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from dropbench.results import FINAL_DIR
from dropbench.tune_edges import EdgeHit, edge_hits, setting_keys

if TYPE_CHECKING:
    from dropbench.tuning import TuneOutcome

def chosen_summary(t: TuneOutcome) -> list[dict[str, str]]:
    """Per setting (the swept base keys but seeds and splits), how often each grid point was
    chosen, and how often a key's choice sat at an end of its grid (edge_hits):
    {keys..., "chosen": "p=0.01 eval.tau=0.1 (12); ...", "at grid edge": "eval.tau=0.1 lowest (11/12)", "failed": n}."""
    from dropbench.analysis.taxonomy import sort_key

    keys = setting_keys(t)
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


def report_keys(t: TuneOutcome) -> list[str]:
    """The final runs' grouping: the swept base keys but seeds and splits (the tuned values differ
    from split to split, so report's default, every key that varies, would split the groups)."""
    from dropbench.analysis.taxonomy import REPETITION_KEYS

    return [k for k in t.plan.swept if k not in REPETITION_KEYS] or ["reg"]


def report_command(t: TuneOutcome) -> str:
    """The `dropbench report` line for the literature's table of the final runs."""
    return f"dropbench report {shlex.quote(str(t.out / FINAL_DIR))} --by {','.join(report_keys(t))} --layout wide --interval se --metric {t.plan.metric}"
