"""One record per group of a sweep: its repetitions, train/test means and spreads, the gap, a
rank within its data set and, against a reference group, the paired difference.

A group's repetitions are its runs over the REPETITION_KEYS (seed, data.split, data.seed): a UCI
sweep over 20 splits and one seed has 20 repetitions per group, which pair with the reference
group's run of the same seed and split. The spreads are spread.py's (std, se, ci).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from dropbench.analysis.grouping import group_keys, groups_of
from dropbench.analysis.labels import file_labels
from dropbench.analysis.metrics import MSE, Metric
from dropbench.analysis.pairing import paired
from dropbench.analysis.spread import mean, spread, std
from dropbench.analysis.taxonomy import (
    DATA_SET_KEYS, FILE_KEY, FILE_LABEL, REPETITION_KEYS, Row, data_set, key_str, ok, sort_key,
)


def summarize(rows: Sequence[Mapping[str, Any]], by: Sequence[str] | None = None, reference: Mapping[str, str] | None = None,
              metric: Metric | None = None) -> list[Row]:
    """One row per group: its repetitions, train/test mean and spreads, the gap and a rank.

    Failed runs are left out of the statistics and counted in `failed`; `n_seeds` counts the
    group's successful runs, its repetitions (seeds, or (seed, split) pairs: REPETITION_KEYS).
    test_std / test_se / test_ci are the three spreads (spread.py). With `reference` (e.g.
    {"reg": "none"}), groups whose repetitions pair up with the reference group's (same seed and
    split, equal config but for the reference key) also get the mean paired difference and its
    spreads (pairing.paired).
    metric (default test MSE) says which columns are "test" and "train" and which way is better:
    rank 1 is the lowest mean, or the highest for a higher-is-better metric.
    Ranks restart for each data set where the groups span several (DATA_SET_KEYS).
    Rows come sorted by data set, then rank, ties and unranked groups by key.
    """
    metric = metric or MSE
    keys = list(by) if by is not None else group_keys(rows)
    files = file_labels(rows) if FILE_KEY in keys else {}
    out: list[Row] = []
    for key, members in groups_of(rows, keys).items():
        good = [r for r in members if ok(r)]
        test = [float(r[metric.test]) for r in good]
        train = [float(r[metric.train]) for r in good] if metric.train else []
        sp = spread(test)
        named = dict(zip(keys, key))
        out.append({
            **named, **({FILE_LABEL: files.get(named[FILE_KEY], "")} if files else {}),
            "n_seeds": len(good), "failed": len(members) - len(good),
            "train_mean": mean(train), "train_std": std(train),
            "test_mean": mean(test), "test_std": sp["std"], "test_ci": sp["ci"],
            "gap": mean(test) - mean(train),
        })
        repeats = [k for k in REPETITION_KEYS if k not in keys and len({key_str(r.get(k)) for r in good}) > 1]
        out[-1].update(test_se=sp["se"], metric=metric.name, higher_is_better=metric.higher, repeats="+".join(repeats))
        chosen = sorted({str(r["selected_on"]) for r in good if r.get("selected_on")})
        if chosen:  # report --epoch best: what the group's epochs were chosen on (selection.at_epoch)
            out[-1].update(selected_on="+".join(chosen), test_selected=any(r.get("test_selected") for r in good))
    # Ranks compare groups of one data set only: MSEs of two data sets are not comparable.
    part = lambda s: data_set(s, keys)  # noqa: E731
    sign = -1.0 if metric.higher else 1.0
    for s in out:
        ranked = sorted(sign * o["test_mean"] for o in out if part(o) == part(s) and not math.isnan(o["test_mean"]))
        s["rank"] = None if math.isnan(s["test_mean"]) else 1 + ranked.index(sign * s["test_mean"])
    if reference and all(k in keys for k in reference):
        for s, fields in zip(out, paired(out, [r for r in rows if ok(r)], keys, reference, metric.test)):
            s.update(fields)
    # Files in the order of their names, not of their hashes.
    shown = lambda s: [sort_key(s.get(FILE_LABEL, s[k]) if k == FILE_KEY else s[k]) for k in keys if k in DATA_SET_KEYS]  # noqa: E731
    out.sort(key=lambda s: (shown(s), s["rank"] is None, s["rank"] or 0, [sort_key(s[k]) for k in keys]))
    return out
