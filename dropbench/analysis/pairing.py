"""Paired differences: each run against the reference run of its repetition and config.

Noise shared by a seed or a split cancels in a run minus its reference twin, so a paired
difference is much tighter than the difference of two groups' means.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from dropbench.analysis import plugins
from dropbench.analysis.grouping import members, owner
from dropbench.analysis.spread import NAN, mean, spread
from dropbench.analysis.taxonomy import REPETITION_KEYS, config_columns, key_str, repetition


def default_reference(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, str] | None:
    """{"reg": "none"} where the runs are grouped by reg and include unregularized runs."""
    if "reg" in keys and any(key_str(r.get("reg")) == "none" for r in rows):
        return {"reg": "none"}
    return None


def _twin(run: Mapping[str, Any], ref: Mapping[str, Any], columns: Sequence[str], reference: Mapping[str, str],
          set_by: Mapping[str, str]) -> bool:
    """Whether `ref` is the reference run of the same config as `run`: equal in every config
    value (and folder) but the reference keys, those of the reference's choice that do not apply
    to one of the two (empty there: p for reg=none; reg.l2.weight_decay for reg=dropout against
    a reg=l2 reference) and what the run's regularizers set themselves (model.residual for
    reg=droppath: plugins.set_by). The split (data.split) is a config value: runs pair within a
    split."""
    for c in columns:
        if c in reference:
            continue
        rv, mine = key_str(ref.get(c)), key_str(run.get(c))
        if rv == mine:
            continue
        if owner(c, set_by) in reference and ("" in (rv, mine) or (c in set_by and plugins.sets_itself(run.get(set_by[c]), c))):
            continue  # p of reg=none; model.residual, which reg=droppath turns on
        return False
    return True


def _varying(runs: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> set[str]:
    return {c for c in columns if len({key_str(r.get(c)) for r in runs}) > 1}


def paired(groups: Sequence[Mapping[str, Any]], ok: Sequence[Mapping[str, Any]], keys: Sequence[str],
           reference: Mapping[str, str], column: str = "final_test_mse") -> list[dict[str, Any]]:
    """For each group (its values of `keys`), its mean paired difference to the reference in
    `column` (a group minus its reference, repetition by repetition) and its spreads: paired_diff,
    paired_ci, n_pairs, paired_se, paired_std; NaN and n_pairs 0 where nothing pairs (the
    reference group itself). `ok`: the successful runs.

    Each run is paired with the reference run of its seed and its config (_twin), split
    included, so a group never borrows a reference that ran, say, other epochs. Only where it
    has no such twin, the values that vary within the group or within its reference runs (what a
    --by coarser than the config pools, such as the values `dropbench tune` chose split by split)
    are left out of the match; the repetition (seed, split) never is. A run still without a
    reference is left unpaired. Where a group pools several runs of one repetition, their
    differences are averaged per repetition: the (seed, split) pairs are the independent samples.
    """
    refs = members(ok, reference)
    columns = [*config_columns(ok), *(["sweep"] if any("sweep" in r for r in ok) else [])]
    set_by = plugins.set_by()
    out = []
    for s in groups:
        fields: dict[str, Any] = dict(paired_diff=NAN, paired_ci=NAN, n_pairs=0, paired_se=NAN, paired_std=NAN)
        out.append(fields)
        if all(s[k] == v for k, v in reference.items()):
            continue
        mine = members(ok, {k: s[k] for k in keys})
        # The reference runs of this group's other key values (p does not apply to reg=none).
        candidates = [t for t in refs if mine and _twin(mine[0], t, [k for k in keys if k not in reference], reference, set_by)]
        pooled = (_varying(mine, columns) | _varying(candidates, columns)) - set(keys) - set(REPETITION_KEYS)
        loose = [c for c in columns if c not in pooled]
        per_rep: dict[tuple[str, ...], list[float]] = {}
        for r in mine:
            same_rep = [t for t in candidates if t["seed"] == r["seed"]]
            twins = [float(t[column]) for t in same_rep if _twin(r, t, columns, reference, set_by)]
            if not twins and pooled:
                twins = [float(t[column]) for t in same_rep if _twin(r, t, loose, reference, set_by)]
            if twins:
                per_rep.setdefault(repetition(r), []).append(float(r[column]) - mean(twins))
        d = [mean(v) for v in per_rep.values()]
        if d:
            sp = spread(d)
            fields.update(paired_diff=mean(d), paired_ci=sp["ci"], n_pairs=len(d), paired_se=sp["se"], paired_std=sp["std"])
    return out
