"""Which keys name a sweep's groups, the rows of each group, and what a coarse grouping pools.

A group is one distinct config; its runs are repetitions of it (taxonomy.REPETITION_KEYS).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from dropbench.analysis import plugins
from dropbench.analysis.labels import file_labels
from dropbench.analysis.taxonomy import FILE_KEY, REPETITION_KEYS, columns_of, config_columns, is_result, key_str, sort_key
from dropbench.errors import UserError

# Group choices whose options have parameters of their own by nature (noisy_sine has freq,
# friedman1 n_features; their defaults differ): a sub-key that only changes along with the
# choice says nothing the choice does not. Regularizers combine, so reg.* is judged by values.
OWN_PARAMETERS = ("data", "model", "optim")


def groups_of(rows: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> dict[tuple[str, ...], list[Mapping[str, Any]]]:
    """The rows of each group, by the groups' key values (as key_str spells them), in first-seen order."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(key_str(r.get(k)) for k in keys), []).append(r)
    return groups


def members(rows: Iterable[Mapping[str, Any]], group: Mapping[str, str]) -> list[Any]:
    """The rows of a group: those whose key values (as key_str spells them) are the group's."""
    return [r for r in rows if all(key_str(r.get(k)) == v for k, v in group.items())]


def owner(c: str, set_by: Mapping[str, str]) -> str | None:
    """The group choice a column belongs to: reg.dropout.p and p to reg, data.noise to data, and
    a key a regularizer sets itself (plugins.set_by: model.residual) to reg."""
    return set_by.get(c) or (c.split(".", 1)[0] if "." in c else ("reg" if c == "p" else None))


def _implied(c: str, keys: Sequence[str], groups: Sequence[Mapping[str, Any]], set_by: Mapping[str, str]) -> bool:
    """Whether column c, constant within each group, adds nothing to the displayed keys.

    It does not where it merely mirrors a key (reg.dropout.p is p), only exists for one
    option of a displayed choice (reg.l1.weight, empty for the other regs), is a parameter of a
    displayed data set or optimizer, or is what a displayed regularizer sets itself
    (model.residual for reg=droppath). Anything else that differs between groups (epochs that
    co-vary with reg in a folder that mixes two sweeps) is shown: the groups would otherwise
    look alike.
    """
    values = [key_str(g.get(c)) for g in groups]
    present = {v for v in values if v != ""}
    choice = owner(c, set_by)
    if c in set_by and choice in keys:
        # model.residual: explained by reg only where the groups whose regularizers leave it alone agree on it.
        return len({v for g, v in zip(groups, values) if not plugins.sets_itself(g.get(choice), c)}) <= 1
    if choice in keys and (len(present) <= 1 or choice in OWN_PARAMETERS):
        return True
    return any(all(v == "" or v == key_str(g.get(k)) for g, v in zip(groups, values)) for k in keys)


def group_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The keys that name a sweep's groups (the seed aside): one group per distinct config.

    First the config columns that split the runs further, in column order (a column that only
    varies along with an earlier one adds no group). Then every other config column whose
    value differs between those groups, unless it is implied by the keys (see _implied): runs
    that differ in a config value are never shown as if they did not.
    """
    columns = [c for c in config_columns(rows) if c not in REPETITION_KEYS]
    keys: list[str] = []
    n_groups = 1
    for c in columns:
        n = len({tuple(key_str(r.get(k)) for k in [*keys, c]) for r in rows})
        if n > n_groups:
            keys.append(c)
            n_groups = n
    groups = [g[0] for g in groups_of(rows, keys).values()]
    set_by = plugins.set_by()
    shown = [c for c in columns if c not in keys and len({key_str(g.get(c)) for g in groups}) > 1
             and not _implied(c, keys, groups, set_by)]
    return [c for c in columns if c in keys or c in shown]


def by_keys(rows: Sequence[Mapping[str, Any]], by: Sequence[str] | None) -> list[str]:
    """The grouping keys: `by` when given (every key checked against the runs' config columns,
    the seed and sweep included), else the swept keys."""
    if by is None:
        return group_keys(rows)
    columns = columns_of(rows)
    unknown = [k for k in by if k not in columns or is_result(k)]
    if unknown:
        known = ", ".join(c for c in columns if not is_result(c))
        raise UserError(f"unknown --by key {', '.join(unknown)}: choose from {known}")
    return list(by)


def repeated_over(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[str]:
    """The repetition keys that vary within some group of `rows` grouped by `keys`: what a
    group's n counts ("seed", "data.split" or both)."""
    groups = groups_of(rows, keys)
    return [k for k in REPETITION_KEYS if k not in keys
            and any(len({key_str(r.get(k)) for r in g}) > 1 for g in groups.values())]


def pooled_configs(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, list[str]]:
    """Config columns that differ within a group (a --by coarser than the config) and their
    values: such groups pool runs of different configs."""
    groups = groups_of(rows, keys)
    out: dict[str, set[str]] = {}
    for c in config_columns(rows):
        if c in keys or c in REPETITION_KEYS:
            continue
        for members_ in groups.values():
            values = {key_str(r.get(c)) for r in members_}
            if len(values) > 1:
                out.setdefault(c, set()).update(values)
    files = file_labels(rows) if FILE_KEY in out else {}
    return {c: sorted((files.get(x, x) for x in v) if c == FILE_KEY else v, key=sort_key) for c, v in out.items()}


def pooled_note(pooled: Mapping[str, Sequence[str]], keys: Sequence[str]) -> str | None:
    """The caption that says a group pools different configs, and how to separate them."""
    if not pooled:
        return None
    what = "; ".join(f"{c} ({', '.join(v or '(unset)' for v in vals[:4])}{', ...' if len(vals) > 4 else ''})"
                     for c, vals in list(pooled.items())[:4])
    more = f" and {len(pooled) - 4} more" if len(pooled) > 4 else ""
    sep = ",".join([*[k for k in keys if k != "sweep"], *list(pooled)[:2]])
    return (f"groups pool runs of different configs: {what}{more} differ within a group (--by {sep} separates them); "
            "paired differences still compare runs of equal config")
