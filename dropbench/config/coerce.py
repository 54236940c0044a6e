"""Coercion: a composed plain dict (from Hydra or a saved config.yaml) into typed, checked dataclasses.

Generic machinery that knows no particular config: from_dict walks any dataclass's fields, coerces
each value to its annotated type (unions, Literal, lists, nested dataclasses), rejects unknown keys
and checks the constraints the class declares (dropbench.params.validate). Kept apart from the
schema so that the schema reads as a list of keys, types and ranges; every error a user sees for a
bad value is worded as params.invalid words it: the key, the bad value, what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import cache
from typing import Any, Literal

from dropbench.errors import UserError, did_you_mean
from dropbench.params import invalid, validate


def _check(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise invalid(key, value, allowed)


# ---- dict -> dataclass with checks ---------------------------------------------------------
def _coerce(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(key, value, a)
            except UserError as e:
                errors.append(e)
        raise errors[0]
    if origin is Literal:
        allowed = typing.get_args(tp)
        _check(value in allowed, key, value, "one of " + ", ".join(map(str, allowed)))
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        _check(isinstance(value, (list, tuple)), key, value, "a list")
        return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is bool:
        _check(isinstance(value, bool), key, value, "true or false")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, value, "an integer")
        return value
    if tp is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, value, "a number")
        # Every float key, here once rather than in each range: inf and NaN pass a one-sided range
        # (lr > 0) or none, and would only show up later as a "diverged" run. An int too large
        # for a float is not finite either.
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        _check(math.isfinite(number), key, value, "a finite number")
        return number
    if tp is str:
        _check(isinstance(value, str), key, value, "a string")
        return value
    raise TypeError(f"unsupported schema type {tp!r} for {key}")  # pragma: no cover - schema bug


def from_dict(cls: type, d: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a plain dict, rejecting unknown keys and bad values."""
    if prefix and isinstance(d, dict) and _frozen(cls):
        # A sweep's configs share most sections (a seed sweep: all but the top level); a frozen
        # section can be shared, so each distinct one is built and checked once (a plug-in's
        # unfrozen config is built for each run). repr tells apart every value coercion tells
        # apart (1, 1.0, True, "1").
        key = (cls, prefix, repr(d))
        obj = _built.get(key)
        if obj is None:
            obj = _from_dict(cls, d, prefix)
            if len(_built) >= BUILT_KEPT:
                _built.clear()
            _built[key] = obj
        return obj
    return _from_dict(cls, d, prefix)


def _frozen(cls: type) -> bool:
    params = getattr(cls, "__dataclass_params__", None)
    return bool(getattr(params, "frozen", False))


_built: dict[tuple[type, str, str], Any] = {}
BUILT_KEPT = 4096  # a sweep of many distinct sections empties the cache rather than grow it


def _from_dict(cls: type, d: Any, prefix: str) -> Any:
    where = prefix or "config"
    if not isinstance(d, dict):
        raise UserError(f"invalid value {where}={d!r}: must be a mapping of keys")
    hints, fields = _schema_of(cls)
    unknown = sorted(set(d) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise UserError(f"unknown key {key}{did_you_mean(unknown[0], fields)}: known keys here are {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in d:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise UserError(f"missing value for {key}: set it with {key}=VALUE")
            continue
        kwargs[name] = _coerce(key, d[name], hints[name])
    obj = cls(**kwargs)
    validate(obj, prefix)
    return obj


@cache
def _schema_of(cls: type) -> tuple[dict[str, Any], dict[str, "dataclasses.Field[Any]"]]:
    """A dataclass's resolved annotations and fields: evaluating string annotations is most of
    from_dict's cost, and a sweep builds one config per run from the same few classes."""
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


# ---- a config group: its option chosen by name -------------------------------------------
def _unknown_option_error(group: str, bad: str, opts: list[str]) -> UserError:
    names = [n.strip() for n in bad.strip("[]").split(",") if n.strip()]
    wrong = next((n for n in names if n not in opts), bad)
    return UserError(f"unknown option {group}={bad}{did_you_mean(wrong, opts)}: choose from {', '.join(opts)}")


def _select(table: dict[str, type], group: str, d: Any) -> Any:
    if not isinstance(d, dict):
        raise UserError(f"invalid value {group}={d!r}: must be a mapping with a name (one of {', '.join(table)})")
    name = d.get("name")
    if not isinstance(name, str) or name not in table:
        raise _unknown_option_error(group, str(name), list(table))
    return from_dict(table[name], d, group)
