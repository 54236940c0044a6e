"""Finding the plug-in modules of a package: data sets (dropbench/data/) and models (dropbench/models/).

Each is one module (or package) named for its config option, declaring its `Config` dataclass
(with `name: Literal["<name>"] = "<name>"`) and its functions; the registry imports every module
of its package and refuses, at import, one that does not declare what it must. (Regularizers
declare an object instead, with more to check: dropbench/regs/__init__.py.) Plug-ins from outside
the package join the registries from the user's config directories and from installed packages'
entry points (below; docs/extending.md, "Plug-ins"). Standard library only (yaml to read a config
directory's YAMLs).
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable


def check(module: Any, where: str, declares: tuple[str, ...], what: str, name: str | None = None) -> None:
    """A plug-in module's declaration errors (a programming error): the names it must declare,
    `Config` a frozen dataclass named for the module (or `name`), the rest functions."""
    name = name or where.rsplit("/", 1)[-1]
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


# ---- plug-ins from outside the package --------------------------------------------------------
# A plug-in is a module outside dropbench that declares what a built-in of its group declares
# (a REGULARIZER for reg, Config/load/n_trained for data, Config/build for model). It is found
#   - in the user's config directories (`--config-dir DIR`, or DROPBENCH_CONFIG_DIR: folders
#     separated by os.pathsep): DIR/<group>/<name>.yaml whose top-level `_target_` names the
#     module (the rest of the YAML is the option as a built-in's YAML writes it); DIR itself is
#     put on sys.path, so a module beside the YAMLs imports;
#   - in installed packages, through the entry-point groups below (`name = "package.module"`);
#     the option's YAML is then its Config's defaults.
# Only these origins are imported: nothing a results folder names is (results are data).

CONFIG_DIR_ENV = "DROPBENCH_CONFIG_DIR"
ENTRY_POINTS = {"reg": "dropbench.regs", "data": "dropbench.data", "model": "dropbench.models"}
BUILTIN = "built-in"
TARGET = "_target_"


@dataclass(frozen=True)
class Found:
    """One plug-in: its option name, its module, where it came from (a config directory's path,
    an installed package's name, or "python" for dropbench.plugins.register), and its option's
    YAML as Hydra composes it (None: from its Config's defaults)."""

    group: str
    name: str
    module: ModuleType
    origin: str
    node: dict[str, Any] | None = None


# Every plug-in the registries hold, by group then name (the registries fill it as they load).
FOUND: dict[str, dict[str, Found]] = {g: {} for g in ENTRY_POINTS}


def config_dirs() -> list[Path]:
    """The user's config directories, from DROPBENCH_CONFIG_DIR (the CLI's --config-dir sets it,
    so worker processes and cluster jobs inherit it)."""
    raw = os.environ.get(CONFIG_DIR_ENV, "")
    return [Path(p) for p in raw.split(os.pathsep) if p]


def add_config_dir(path: str | Path) -> Path | None:
    """Add a config directory to DROPBENCH_CONFIG_DIR (worker processes and cluster jobs inherit
    it); returns it as an absolute path, or None where it was there already."""
    from dropbench.errors import UserError

    p = Path(path).expanduser().absolute()
    if not p.is_dir():
        raise UserError(f"--config-dir {path}: no such directory (it holds reg/, data/ or model/ folders of plug-in YAMLs)")
    dirs = [str(d) for d in config_dirs()]
    if str(p) in dirs:
        return None
    os.environ[CONFIG_DIR_ENV] = os.pathsep.join([*dirs, str(p)])
    return p


def _import(target: str, where: str) -> ModuleType:
    from dropbench.errors import UserError

    try:
        return importlib.import_module(target)
    except Exception as e:  # noqa: BLE001  the user's code: one line that names where it came from
        raise UserError(f"{where}: cannot import {target}: {type(e).__name__}: {' '.join(str(e).split())}") from None


def _from_config_dir(root: Path, group: str) -> list[Found]:
    import yaml

    from dropbench.errors import UserError

    if not root.is_dir():
        raise UserError(f"{CONFIG_DIR_ENV}: {root} is not a directory")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    found = []
    for f in sorted((root / group).glob("*.yaml")):
        try:
            node = yaml.safe_load(f.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise UserError(f"{f}: cannot read: {' '.join(str(e).split())}") from None
        target = node.get(TARGET) if isinstance(node, dict) else None
        if not isinstance(target, str) or not target:
            raise UserError(f"{f}: names no plug-in module: add a top-level line {TARGET}: mypackage.module")
        node = {k: v for k, v in node.items() if k != TARGET}
        if group == "reg" and set(node) - {f.stem}:
            raise UserError(f"{f}: a regularizer's YAML holds its keys under {f.stem}: (found {', '.join(sorted(set(node) - {f.stem}))})")
        if group != "reg" and node.setdefault("name", f.stem) != f.stem:
            raise UserError(f"{f}: name: {node['name']} must be the file's name, {f.stem}")
        found.append(Found(group, f.stem, _import(target, str(f)), f"config dir {root}", node))
    return found


def from_config_dir(root: Path, group: str) -> list[Found]:
    """The plug-ins of one config directory's group folder."""
    return _from_config_dir(root, group)


def _from_config_dirs(group: str) -> list[Found]:
    return [f for root in config_dirs() for f in _from_config_dir(root, group)]


@functools.cache
def _entry_points() -> Any:
    """The installed packages' entry points, read once (one scan of the installed metadata)."""
    from importlib.metadata import entry_points

    return entry_points()


def _from_entry_points(group: str) -> list[Found]:
    found = []
    for ep in sorted(_entry_points().select(group=ENTRY_POINTS[group]), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        origin = f"package {dist.name if dist is not None else ep.value}"
        module = _import(ep.module, f"entry point {ep.name} = {ep.value} ({ENTRY_POINTS[group]}, {origin})")
        found.append(Found(group, ep.name, module, origin))
    return found


def external(group: str, builtins: Iterable[str]) -> list[Found]:
    """The plug-ins of a group from the config directories, then the installed packages; a name
    taken twice (or a built-in's) is refused in one line."""
    from dropbench.errors import UserError

    seen = {n: BUILTIN for n in builtins}
    out = []
    for f in _from_config_dirs(group) + _from_entry_points(group):
        if f.name in seen:
            raise UserError(f"{group}={f.name} ({f.origin}) is already {seen[f.name]}'s: rename it")
        seen[f.name] = f.origin
        out.append(f)
    return out


def taken(group: str, name: str, by: Any, registry: dict[str, Any]) -> str | None:
    """Why `name` cannot be `by`'s in a registry (None: it can): whose name it is already."""
    held = registry.get(name)
    if held is None or held is by:
        return None
    owner = FOUND[group][name].origin if name in FOUND[group] else BUILTIN
    return f"{group}={name} is already {owner}'s: rename it"


def origins() -> dict[str, dict[str, str]]:
    """Each plug-in option's origin, by group (built-ins are not listed)."""
    return {g: {n: f.origin for n, f in found.items()} for g, found in FOUND.items()}


def check_plugin(module: Any, group: str, name: str, declares: tuple[str, ...], what: str, origin: str) -> None:
    """check() for a plug-in: its errors are the user's, so a UserError naming where it came from."""
    from dropbench.errors import UserError

    try:
        check(module, f"{group}={name} ({origin})", declares, what, name)
    except RuntimeError as e:
        raise UserError(str(e)) from None


def add_module(group: str, registry: dict[str, Any], module: Any, name: str | None, declares: tuple[str, ...],
               what: str, origin: str) -> str:
    """A plug-in module (a data set, a model) into its group's registry, checked; its errors are
    the user's, in one line. Returns the name it was added under."""
    from dropbench.errors import UserError

    name = name or "?"
    clash = taken(group, name, module, registry)
    if clash is not None:
        raise UserError(f"{group}={name} ({origin}): {clash}")
    check_plugin(module, group, name, declares, what, origin)
    registry[name] = module
    return name


def node(found: Found) -> dict[str, Any]:
    """The option's YAML node as Hydra composes it: the config directory's YAML, or the Config's
    defaults (a field without a default is Hydra's ??? , set on the command line; a regularizer
    whose p follows the top-level p reads ${p})."""
    if found.node is not None:
        return found.node
    if found.group == "reg":
        reg = found.module.REGULARIZER
        body = _defaults(reg.Config)
        if reg.shares_p:
            body["p"] = "${p}"
        return {found.name: body}
    return {**_defaults(found.module.Config), "name": found.name}


def _defaults(cls: type) -> dict[str, Any]:
    import dataclasses

    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        else:
            out[f.name] = "???"
    return out
