"""The regularizer registry: every module in this package that defines REGULARIZER.

Adding a regularizer is adding dropbench/regs/<name>.py and conf/reg/<name>.yaml
(docs/extending.md); dropbench.config and both engines read everything else from here: the order,
the Reg config's fields, the dropout family, which may not combine, and what acts in each slot.
Plug-ins from the user's config directories and installed packages join them (dropbench.plugins).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Iterable

from dropbench import plugins
from dropbench.errors import UserError
from dropbench.regs.base import EXCLUSIVE_SLOTS, SLOTS, Regularizer


def discover(package: str = __name__, path: Iterable[str] | None = None) -> dict[str, Regularizer]:
    """Every REGULARIZER in `package`'s modules, by name, in canonical order."""
    found: dict[str, Regularizer] = {}
    for info in pkgutil.iter_modules(list(path) if path is not None else __path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        reg = getattr(module, "REGULARIZER", None)
        if reg is None:
            continue
        check(reg, info.name)
        found[reg.name] = reg
    orders = [r.order for r in found.values()]
    if len(set(orders)) != len(orders):
        raise RuntimeError(f"two regularizers share an order: {sorted(orders)}")
    return dict(sorted(found.items(), key=lambda kv: kv[1].order))


def check(reg: Regularizer, module: str, where: str | None = None) -> None:
    """A plug-in's declaration errors, caught when the registry loads (a programming error)."""
    where = where or f"dropbench/regs/{module}.py"
    if not isinstance(reg, Regularizer):
        raise RuntimeError(f"{where}: REGULARIZER must be an instance of dropbench.regs.base.Regularizer")
    for attr in ("name", "order", "slot", "Config"):
        if not hasattr(reg, attr):
            raise RuntimeError(f"{where}: the regularizer declares no {attr}")
    if reg.name != module:
        raise RuntimeError(f"{where} declares a regularizer named {reg.name!r}: name it {module!r}")
    if reg.slot not in SLOTS:
        raise RuntimeError(f"regularizer {reg.name}: slot {reg.slot!r} is not one of {', '.join(SLOTS)}")
    fields = getattr(reg.Config, "__dataclass_fields__", {})
    if reg.strength not in fields:
        raise RuntimeError(f"regularizer {reg.name}: strength field {reg.strength!r} is not in its Config")
    if reg.shares_p and "p" not in fields:
        raise RuntimeError(f"regularizer {reg.name}: shares_p needs a field p")
    unknown = [k for k in (reg.tune or {}) if k not in fields]
    if unknown:
        raise RuntimeError(f"regularizer {reg.name}: tune declares {', '.join(unknown)}, not in its Config")


def add(reg: Regularizer, origin: str, name: str | None = None) -> str:
    """A plug-in regularizer into the registry (checked; its errors are the user's, in one line)."""
    name = name or getattr(reg, "name", None) or "?"
    where = f"reg={name} ({origin})"
    clash = plugins.taken("reg", name, reg, REGISTRY)
    if clash is not None:
        raise UserError(f"{where}: {clash}")
    try:
        check(reg, name, where)
    except RuntimeError as e:
        raise UserError(str(e)) from None
    taken = {r.order: n for n, r in REGISTRY.items() if n != name}
    if not isinstance(reg.order, int) or reg.order in taken:
        free = max(taken) + 10
        raise UserError(f"reg={name} ({origin}): order {reg.order!r} is {'taken by ' + taken[reg.order] if reg.order in taken else 'not an integer'}; "
                        f"choose an unused one (e.g. {free})")
    REGISTRY[name] = reg
    ordered = sorted(REGISTRY.items(), key=lambda kv: kv[1].order)  # in place: importers hold this dict
    REGISTRY.clear()
    REGISTRY.update(ordered)
    return name


REGISTRY: dict[str, Regularizer] = discover()
for _found in plugins.external("reg", REGISTRY):
    add(getattr(_found.module, "REGULARIZER", None) or _found.module, _found.origin, _found.name)
    plugins.FOUND["reg"][_found.name] = _found


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def knob_key(reg: Regularizer, knob: str) -> str:
    """The override that sets one of a regularizer's Config fields: the top-level p for the
    dropout family's p (which its YAML follows, so reg=[input_dropout,dropout] share it), else
    reg.NAME.FIELD."""
    return "p" if reg.shares_p and knob == "p" else f"reg.{reg.name}.{knob}"


def drop_family() -> tuple[str, ...]:
    """The regularizers whose p is the top-level p."""
    return tuple(n for n, r in REGISTRY.items() if r.shares_p)


def conflict(active: list[str]) -> str | None:
    """Why these regularizers may not combine (None: they may)."""
    for a in active:
        for b, why in REGISTRY[a].excludes.items():
            if b in active:
                x, y = sorted((a, b), key=lambda n: REGISTRY[n].order)
                return f"reg=[{x},{y}] combines {why}; choose one"
    for slot in EXCLUSIVE_SLOTS:
        same = [n for n in active if REGISTRY[n].slot == slot]
        if len(same) > 1:
            return f"reg=[{','.join(same)}] are all {slot}-slot regularizers, which act one at a time; choose one"
    return None


def active(reg: Any, slot: str | None = None) -> list[tuple[Regularizer, Any]]:
    """(regularizer, its config) for each selected in `reg` (a config.Reg), in order; one slot's only."""
    return [(r, c) for n, r in REGISTRY.items()
            if (c := getattr(reg, n, None)) is not None and (slot is None or r.slot == slot)]


def holdout_fraction(reg: Any) -> float:
    """The fraction of the training rows the selected loop-slot regularizer holds out as
    validation rows (0: none; at most one loop-slot regularizer is selected)."""
    return next((float(r.holdout(c)) for r, c in active(reg, "loop")), 0.0)


def watcher(reg: Any) -> tuple[Regularizer, Any] | None:
    """The selected loop-slot regularizer and its config (early stopping), or None."""
    return next(iter(active(reg, "loop")), None)
