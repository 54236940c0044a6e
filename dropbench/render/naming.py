"""What names a run for people: the keys that tell runs apart, or for a lone run the config
values that differ from the defaults of its group choices (the overrides that made it)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

from dropbench.analysis.grouping import group_keys
from dropbench.analysis.taxonomy import FILE_KEY, FILE_LABEL, config_columns, key_str
from dropbench.errors import UserError
from dropbench.render.text import fmt

SINGLE_KEYS = ("data", "reg", "p", "seed")  # what names a run when its defaults cannot be composed
CHOICES = ("data", "model", "reg", "optim")
# Data keys without a default (??? in conf/data/): the defaults compose only with them given,
# and they are always among the overrides that made a run.
REQUIRED_DATA_KEYS = {"csv": ("data.path", "data.target"), "uci": ("data.dataset",)}


def config_label(row: dict[str, Any], varying: Sequence[str], files: dict[str, str] | None = None) -> str:
    """k=v for each key the run has a value of; a csv file's sha256 as data.file=NAME (files)."""
    def one(k: str, v: Any) -> str:
        return f"{FILE_LABEL}={files[v]}" if k == FILE_KEY and files and v in files else f"{k}={fmt(v)}"
    return " ".join(one(k, v) for k in varying if (v := row.get(k)) is not None and v != "")


def varying_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """What distinguishes the runs: the swept keys (a column that varies only along with an
    earlier one, such as reg.dropout.p with p, is left out), then the seed if it varies."""
    keys = group_keys(rows)
    return keys + (["seed"] if len({r.get("seed") for r in rows}) > 1 else [])


def _choice_overrides(row: dict[str, Any]) -> tuple[str, ...]:
    """The group choices of a row as overrides (reg=dropout+l2 as reg=[dropout,l2]); a csv
    data set also needs its path and target to compose."""
    out = []
    for g in CHOICES:
        v = key_str(row.get(g))
        if v:
            out.append(f"reg=[{v.replace('+', ',')}]" if g == "reg" and "+" in v else f"{g}={v}")
    out += [f"{c}={key_str(row.get(c))}" for c in _required(row) if key_str(row.get(c))]
    return tuple(out)


def _required(row: dict[str, Any]) -> tuple[str, ...]:
    return REQUIRED_DATA_KEYS.get(key_str(row.get("data")), ())


@lru_cache(maxsize=64)
def _defaults(overrides: tuple[str, ...]) -> dict[str, str] | None:
    """Every config value of the group choices' defaults, as runs.csv spells it (None where they
    cannot be composed, e.g. a csv data set whose file is gone). Imports Hydra: never on the
    path of `report` or `check`."""
    from dropbench.config import default_options, load

    try:
        cfg = load(list(overrides))
    except UserError:
        return None
    return {**default_options(), **{k: key_str(v) for k, v in cfg.flat().items()}}


def non_default(row: dict[str, Any]) -> dict[str, str] | None:
    """The config values of a run that differ from the defaults of its group choices, plus the
    non-default group choices (None where the defaults cannot be composed). A value that only
    mirrors p (reg.dropout.p) is left out."""
    defaults = _defaults(_choice_overrides(row))
    if defaults is None:
        return None
    out = {}
    required = _required(row)
    for c in config_columns([row]):
        v = key_str(row.get(c))
        if c not in required and v == defaults.get(c, "") or (c.startswith("reg.") and c.endswith(".p") and v == key_str(row.get("p"))):
            continue
        out[c] = v
    return out


def common_non_default(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The non-default config values every run shares (empty where any run's defaults cannot
    be composed): what a title or caption must add for the runs to be reproducible."""
    diffs = [non_default(r) for r in rows]
    if not diffs or any(d is None for d in diffs):
        return {}
    first = diffs[0] or {}
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in diffs[1:] if d is not None)}


def settings_label(values: dict[str, str]) -> str:
    return " ".join(f"{k}={v if v != '' else 'null'}" for k, v in values.items())
