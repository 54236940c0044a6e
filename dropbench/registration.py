"""Plug-ins added to the registries in a running process: a config directory given after they
loaded (`--config-dir` in a process that imported them already), and dropbench.testing's checks
or a notebook registering a class. Plug-ins found when the registries load need none of this
(dropbench.plugins finds them); here the registries, the config schema built from them and Hydra's
store of options are brought up to date, and taken back by unregister().

Kept apart from dropbench.plugins, which the registries import: this module imports them.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from dropbench import data, models, plugins, regs
from dropbench.regs.base import Regularizer


def use_config_dir(path: str | Path) -> None:
    """A config directory's plug-ins join the registries (and DROPBENCH_CONFIG_DIR, for workers)."""
    p = plugins.add_config_dir(path)
    if p is None:
        return
    for group in plugins.ENTRY_POINTS:
        for f in plugins.from_config_dir(p, group):
            if f.name not in plugins.FOUND[group]:
                register(f.module.REGULARIZER if group == "reg" else f.module, group, f.origin, f.name, f.node)


def group_of(obj: Any, group: str | None = None) -> str:
    if group is not None:
        return group
    if isinstance(obj, Regularizer) or (isinstance(obj, type) and issubclass(obj, Regularizer)):
        return "reg"
    return "model" if hasattr(obj, "build") else "data"


def register(obj: Any, group: str | None = None, origin: str = "python", name: str | None = None,
             node: dict[str, Any] | None = None) -> str:
    """Add a plug-in: a Regularizer (class or instance), or a data set's or model's module (any
    object with its declarations). Returns its option name. The config schema follows; Hydra
    composes the option from `node` (a config directory's YAML) or its Config's defaults."""
    group = group_of(obj, group)
    module: Any
    if group == "reg":
        reg = obj() if isinstance(obj, type) else obj
        name = regs.add(reg, origin, name)
        module = type("Module", (), {"REGULARIZER": reg})
    else:
        name = name or getattr(getattr(obj, "Config", None), "name", None)
        name = (data if group == "data" else models).add(obj, name, origin)
        module = obj
    plugins.FOUND[group][name] = plugins.Found(group, name, module, origin, node)
    _schema_follows()
    return name


def unregister(group: str, name: str) -> None:
    """Take out a plug-in that register() added."""
    if plugins.FOUND[group].pop(name, None) is None:
        return
    registry = regs.REGISTRY if group == "reg" else data.REGISTRY if group == "data" else models.REGISTRY
    registry.pop(name, None)  # type: ignore[attr-defined]
    schema = sys.modules.get("dropbench.config.schema")
    if schema is not None and group != "reg":
        (schema.DATA if group == "data" else schema.MODELS).pop(name, None)
    _schema_follows()
    if "hydra" in sys.modules:
        from hydra.core.config_store import ConfigStore

        ConfigStore.instance().repo.get(group, {}).pop(f"{name}.yaml", None)


def _schema_follows() -> None:
    """The config schema's tables and Reg, and Hydra's store, as the registries are now (only where
    they were built already: otherwise they are built from the registries when first imported)."""
    schema = sys.modules.get("dropbench.config.schema")
    if schema is not None:
        schema.registry_changed()
        config = sys.modules["dropbench.config"]
        rules = sys.modules["dropbench.config.rules"]
        config.Reg, config.REG_ORDER, config.DROP_FAMILY = schema.Reg, schema.REG_ORDER, rules.DROP_FAMILY
    if "hydra" in sys.modules and "dropbench.config.compose" in sys.modules:
        sys.modules["dropbench.config.compose"].store_plugin_nodes()


def registered_name(obj: Any, group: str | None = None) -> str | None:
    """The option name `obj` is registered under (a built-in, or a plug-in found), else None."""
    group = group_of(obj, group)
    if group == "reg":
        return next((n for n, r in regs.REGISTRY.items() if r is obj or type(r) is obj), None)
    return next((n for n, m in (data if group == "data" else models).REGISTRY.items() if m is obj), None)


@contextmanager
def registered(obj: Any, group: str | None = None) -> Iterator[str]:
    """register(obj) for the block, unless it is registered already; taken out again after."""
    name = registered_name(obj, group)
    if name is not None:
        yield name
        return
    name = register(obj, group)
    try:
        yield name
    finally:
        unregister(group_of(obj, group), name)
