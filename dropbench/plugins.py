"""Finding the plug-in modules of a package: data sets (dropbench/data/) and models (dropbench/models/).

Each is one module (or package) named for its config option, declaring its `Config` dataclass
(with `name: Literal["<name>"] = "<name>"`) and its functions; the registry imports every module
of its package and refuses, at import, one that does not declare what it must. (Regularizers
declare an object instead, with more to check: dropbench/regs/__init__.py.) Standard library only.
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
from types import ModuleType
from typing import Iterable


def check(module: ModuleType, where: str, declares: tuple[str, ...], what: str) -> None:
    """A plug-in module's declaration errors (a programming error): the names it must declare,
    `Config` a frozen dataclass named for the module, the rest functions."""
    name = where.rsplit("/", 1)[-1]
    missing = [d for d in declares if not hasattr(module, d)]
    if missing:
        raise RuntimeError(f"{where} declares no {', '.join(missing)}: {what} declares {', '.join(declares)}")
    cfg = module.Config
    fields = getattr(cfg, "__dataclass_fields__", None)
    if fields is None or not cfg.__dataclass_params__.frozen:
        raise RuntimeError(f"{where}: Config must be a frozen dataclass")
    f = fields.get("name")
    if f is None or f.default != name or typing.get_args(typing.get_type_hints(cfg).get("name")) != (name,):
        raise RuntimeError(f"{where}: Config needs the field name: Literal[{name!r}] = {name!r}")
    for d in declares:
        if d != "Config" and not callable(getattr(module, d)):
            raise RuntimeError(f"{where}: {d} must be a function")


def discover(package: str, path: Iterable[str], skip: tuple[str, ...], declares: tuple[str, ...], what: str) -> dict[str, ModuleType]:
    """Every plug-in module of `package` (at `path`), by name in name order, each checked;
    modules named in `skip` or starting with _ hold shared code, not plug-ins."""
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in skip:
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        check(module, f"{package.replace('.', '/')}/{info.name}", declares, what)
        found[info.name] = module
    return found
