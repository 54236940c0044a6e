"""The model registry: every module of this package that declares a model (conf/model/<name>.yaml).

A model is dropbench/models/<name>.py plus conf/model/<name>.yaml; the module declares

- `Config`: a frozen dataclass of its keys, with `name: Literal["<name>"] = "<name>"`, each
  constraint declared with dropbench.params.param;
- `build(n_in, n_out, conf, reg) -> torch.nn.Module`: the network with every selected
  regularizer in its slot (dropbench/regs/), its weights drawn from torch's global generator.

layers.py holds the torch.nn pieces models are built from. Modules are imported when the registry
loads (dropbench.config reads the Configs): torch only inside build. Plug-ins from the user's
config directories and installed packages join them (dropbench.plugins): a plug-in's build takes
the same arguments and may place the selected regularizers with models.layers.hidden_layer.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from dropbench import plugins

if TYPE_CHECKING:
    from torch import nn

    from dropbench.config import RunConfig
    from dropbench.regs.base import Regularizer

SHARED = ("layers",)  # modules of this package that hold no model
DECLARES = ("Config", "build")

REGISTRY: dict[str, ModuleType] = plugins.discover(__name__, __path__, SHARED, DECLARES, "a model")
# The models the batched program computes itself (engines/program.py); others train member by
# member through the generic path (engines/generic.py).
PROGRAM = ("mlp",)


def add(module: Any, name: str | None, origin: str) -> str:
    """A plug-in model into the registry (checked; its errors are the user's, in one line)."""
    return plugins.add_module("model", REGISTRY, module, name, DECLARES, "a model", origin)


for _found in plugins.external("model", REGISTRY):
    add(_found.module, _found.name, _found.origin)
    plugins.FOUND["model"][_found.name] = _found


def configs() -> dict[str, type]:
    """Each model's Config, by name (the config schema's table of model= options)."""
    return {n: m.Config for n, m in REGISTRY.items()}


def build_model(cfg: "RunConfig", n_in: int) -> "nn.Module":
    """The run's network with its initial weights: a function of cfg.seed alone."""
    import torch

    torch.manual_seed(cfg.seed)
    return REGISTRY[cfg.model.name].build(n_in, 1, cfg.model, cfg.reg)


def acts_after(reg: "Regularizer", model: Any) -> bool:
    """Whether an activation-slot regularizer acts after the activation: where model.placement puts
    it, unless it declares its own `placement` (alpha dropout acts on SELU's output by definition)."""
    return (reg.placement or model.placement) == "after"
