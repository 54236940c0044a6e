"""The data-set registry: every module (or package) of this package that declares a data set.

A data set is dropbench/data/<name>.py (or a package, as uci/) plus conf/data/<name>.yaml (docs,
"Adding a data set"); the module declares

- `Config`: a frozen dataclass of its keys, with `name: Literal["<name>"] = "<name>"`, each
  constraint declared with dropbench.params.param (checked when a config is built);
- `load(conf, seed, validation) -> Dataset`: the run's data as float32 CPU tensors (base.py),
  drawn from `seed` where it draws anything, with the last `validation` share of the training
  rows held out as validation rows (base.validation_split) where it is > 0;
- `n_trained(conf, validation) -> int`: how many rows `load` trains on, by base.rows_trained,
  reading no more than it must (values derived from N are resolved from it before planning).

Modules are imported when the registry loads, by dropbench.config among others: a data set
imports numpy, torch or its reader inside load and n_trained, never at the top. Plug-ins from the
user's config directories and installed packages join them (dropbench.plugins).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from dropbench import plugins
from dropbench.data.base import Dataset

if TYPE_CHECKING:
    from dropbench.config import RunConfig

SHARED = ("base",)  # modules of this package that hold no data set
DECLARES = ("Config", "load", "n_trained")


def discover(package: str = __name__, path: Iterable[str] | None = None) -> dict[str, ModuleType]:
    """Every data-set module of `package`, by name, in name order."""
    return plugins.discover(package, __path__ if path is None else path, SHARED, DECLARES, "a data set")


def add(module: Any, name: str | None, origin: str) -> str:
    """A plug-in data set into the registry (checked; its errors are the user's, in one line)."""
    return plugins.add_module("data", REGISTRY, module, name, DECLARES, "a data set", origin)


REGISTRY: dict[str, ModuleType] = discover()
for _found in plugins.external("data", REGISTRY):
    add(_found.module, _found.name, _found.origin)
    plugins.FOUND["data"][_found.name] = _found


def configs() -> dict[str, type]:
    """Each data set's Config, by name (the config schema's table of data= options)."""
    return {n: m.Config for n, m in REGISTRY.items()}


def load_dataset(cfg: "RunConfig") -> Dataset:
    """Build the run's data set (float32 on CPU); the engine moves it to its dtype and device."""
    return REGISTRY[cfg.data.name].load(cfg.data, cfg.data_seed, cfg.validation_fraction)


def data_key(cfg: "RunConfig") -> tuple:
    """What load_dataset reads of a run's config: runs with equal keys have the same rows (a grid
    over p or tau on one split), which a caller loads once."""
    return repr(cfg.data), cfg.data_seed, cfg.validation_fraction


def load_datasets(cfgs: Sequence["RunConfig"]) -> list[Dataset]:
    """Each run's data set, in order, loaded once per data_key (runs on one split share its rows)."""
    loaded: dict[tuple, Dataset] = {}
    out = []
    for c in cfgs:
        k = data_key(c)
        if k not in loaded:
            loaded[k] = load_dataset(c)
        out.append(loaded[k])
    return out


def n_trained(cfg: "RunConfig") -> int:
    """How many rows the run trains on (after data.holdout=validation and a loop-slot
    regularizer's validation rows), without loading its data where the data set can say."""
    return REGISTRY[cfg.data.name].n_trained(cfg.data, cfg.validation_fraction)
