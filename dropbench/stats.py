"""Statistics across seeds: group summaries, confidence intervals and paired differences.

Pure numpy/scipy/pandas (no torch), so `dropbench report` stays fast. Intervals are 95%
Student-t intervals over seeds: mean ± t(0.975, n-1) · s / √n, with s the sample std (ddof=1).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

RESULT_COLUMNS = ("final_train_mse", "final_test_mse", "best_test_mse", "best_epoch", "status", "reason", "seconds")
NOT_KEYS = {"run_id", "seed", *RESULT_COLUMNS}


def key_str(v: object) -> str:
    """A key value as text; "" where the key does not apply to the run (None/NaN in the data)."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return ""
    return str(v)


def t_halfwidth(values: Sequence[float], level: float = 0.95) -> float:
    """Half-width of the Student-t confidence interval of the mean (NaN for fewer than 2 values)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    n = len(v)
    if n < 2:
        return float("nan")
    return float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))


def group_keys(runs: pd.DataFrame) -> list[str]:
    """What a sweep swept (the seed aside): config columns that split the runs further.

    A column that only varies along with an earlier one (reg.dropout.p appears whenever
    reg=dropout does) adds nothing and is left out; p swept within reg=dropout is kept.
    """
    keys: list[str] = []
    n_groups = 1
    for c in (c for c in runs.columns if c not in NOT_KEYS):
        n = runs[keys + [c]].map(key_str).drop_duplicates().shape[0]
        if n > n_groups:
            keys.append(c)
            n_groups = n
    return keys


def summarize(runs: pd.DataFrame, by: Sequence[str] | None = None, reference: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per group: seeds, train/test mean and std, the test CI, the gap and a rank.

    Failed runs are left out of the statistics and counted in `failed`. With `reference` (e.g.
    {"reg": "none"}), groups whose seeds pair up with the reference group (same other keys, same
    seeds) also get the mean paired test-MSE difference and its 95% interval: seed-to-seed noise
    shared by both groups cancels, so it is much tighter than comparing two means.
    """
    keys = list(by) if by is not None else group_keys(runs)
    df = runs.copy()
    for k in keys:
        df[k] = df[k].map(key_str)
    ok = df[df["status"] == "ok"]
    rows = []
    grouped = df.groupby(keys, sort=False, dropna=False) if keys else [((), df)]
    for key, g in grouped:
        key = key if isinstance(key, tuple) else (key,)
        good = g[g["status"] == "ok"]
        test, train = good["final_test_mse"].astype(float), good["final_train_mse"].astype(float)
        row = dict(zip(keys, key))
        row.update(
            n_seeds=len(good), failed=int((g["status"] != "ok").sum()),
            train_mean=train.mean(), train_std=train.std(ddof=1) if len(train) > 1 else float("nan"),
            test_mean=test.mean(), test_std=test.std(ddof=1) if len(test) > 1 else float("nan"),
            test_ci=t_halfwidth(test), gap=test.mean() - train.mean(),
        )
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["rank"] = out["test_mean"].rank(method="min").astype("Int64")
    if reference and all(k in keys for k in reference):
        _paired(out, ok, keys, reference)
    return out.sort_values(["rank"] + keys, kind="stable").reset_index(drop=True)


def _paired(out: pd.DataFrame, ok: pd.DataFrame, keys: list[str], reference: dict[str, str]) -> None:
    """Add paired_diff / paired_ci / n_pairs columns (group minus its reference, per seed)."""
    diffs, cis, pairs = [], [], []
    for _, row in out.iterrows():
        is_ref = all(row[k] == v for k, v in reference.items())
        mine = ok[np.logical_and.reduce([ok[k] == row[k] for k in keys])]
        ref = ok[np.logical_and.reduce([ok[k] == v for k, v in reference.items()])]
        for k in keys:
            # Match the reference on the other keys, except those that do not apply to it
            # (reg=none has no p): its runs serve every p.
            if k not in reference and (ref[k] != "").any():
                ref = ref[ref[k] == row[k]]
        joined = mine.merge(ref, on="seed", suffixes=("", "_ref"))[["final_test_mse", "final_test_mse_ref"]]
        if is_ref or joined.empty:
            diffs.append(float("nan")), cis.append(float("nan")), pairs.append(0)
            continue
        d = joined["final_test_mse"].astype(float) - joined["final_test_mse_ref"].astype(float)
        diffs.append(float(d.mean())), cis.append(t_halfwidth(d)), pairs.append(len(d))
    out["paired_diff"], out["paired_ci"], out["n_pairs"] = diffs, cis, pairs
