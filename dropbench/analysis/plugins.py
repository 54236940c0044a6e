"""What regularizer plug-ins declare that analysis and reports read, so that the core names no
regularizer: the config keys outside reg.* a regularizer sets itself (DropPath turns
model.residual on), and the note a table prints where it holds that regularizer's runs.

The registry is read when asked, not at import: its declarations are plain class attributes, so
this imports no torch, and a test may add an entry.
"""

from __future__ import annotations

from typing import Any, Iterable

from dropbench.analysis.taxonomy import key_str


def _registry() -> dict[str, Any]:
    from dropbench.regs import REGISTRY

    return REGISTRY


def set_by() -> dict[str, str]:
    """Config keys that a regularizer sets itself -> the choice that sets them (reg)."""
    return {k: "reg" for r in _registry().values() for k in r.sets}


def sets_itself(reg: object, column: str) -> bool:
    """Whether a run's regularizers (its reg value: dropout+droppath) set `column` themselves."""
    registry = _registry()
    return any(column in registry[n].sets for n in key_str(reg).split("+") if n in registry)


def notes(regs: Iterable[object]) -> list[str]:
    """The notes of the regularizers that any of these reg values select, in registry order;
    a name the registry does not know (a folder from elsewhere) has none."""
    named = {n for r in regs for n in str(r).split("+")}
    return [r.note for n, r in _registry().items() if n in named and r.note]
