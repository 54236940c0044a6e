"""Values derived from data and the machine, resolved once, before runs are planned.

A config (dropbench.config) is validated and hashed without reading data or importing torch. Two
of its values depend on more than the config, and both enter the run id:

- device=auto: the device that will run it (cuda where torch sees a GPU, else cpu); a GPU run's
  numbers differ from a CPU run's, so they must not share a run id;
- reg.l2.weight_decay under reg.l2.prior_length_scale=l: l^2 (1-p) / (N tau) (regs/l2.py), N the
  rows the run trains on, after data.holdout and a loop-slot regularizer's validation rows.

resolve() fills them in, reading each data config's N once however many runs share it (the data
set's n_trained: for data=uci one verified index file). Every path that plans runs calls it before
runs are told apart by id: runner.plan and plan_command, runner.load_saved, tune's search and its
final runs. A config that still needs them (RunConfig.unresolved) refuses to give a run id.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Iterable

from dropbench import data
from dropbench.errors import UserError
from dropbench.regs.l2 import prior_weight_decay

if TYPE_CHECKING:
    from dropbench.config import RunConfig


def auto_device() -> str:
    """device=auto as the device that will run it."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve(cfgs: Iterable["RunConfig"]) -> list["RunConfig"]:
    """Each config with its derived values filled in (unchanged where it has none). A value a
    config gives itself (a saved config.yaml holds the derived weight decay) must be the one
    derived here: anything else contradicts its source, in one line."""
    rows: dict[tuple[str, float], int] = {}  # N per data config and hold-out fraction
    device: str | None = None
    out = []
    for cfg in cfgs:
        if cfg.device == "auto":
            device = device or auto_device()
            cfg = dataclasses.replace(cfg, device=device)
        out.append(_derive_l2(cfg, rows))
    return out


def underived(cfg: "RunConfig") -> "RunConfig":
    """The config with its derived weight decay cleared, for resolve() to derive again after a
    change of what it derives from (tune's final runs train on the rows the search held out)."""
    l2 = getattr(cfg.reg, "l2", None)
    if l2 is None or l2.prior_length_scale is None:
        return cfg
    return dataclasses.replace(cfg, reg=dataclasses.replace(cfg.reg, l2=dataclasses.replace(l2, weight_decay=None)))


def _derive_l2(cfg: "RunConfig", rows: dict[tuple[str, float], int]) -> "RunConfig":
    """reg.l2.prior_length_scale set: weight_decay = l^2 (1-p) / (N tau) from this config's p,
    eval.tau (which config.build requires) and rows trained on."""
    l2 = getattr(cfg.reg, "l2", None)
    if l2 is None or l2.prior_length_scale is None:
        return cfg
    assert cfg.eval.tau is not None, "config.build refuses prior_length_scale without eval.tau"
    key = (repr(cfg.data), cfg.validation_fraction)
    if key not in rows:
        rows[key] = data.n_trained(cfg)
    wd = prior_weight_decay(l2.prior_length_scale, cfg.p or 0.0, rows[key], cfg.eval.tau)
    if l2.weight_decay not in (None, wd):
        raise UserError(f"reg.l2.weight_decay={l2.weight_decay} contradicts reg.l2.prior_length_scale="
                        f"{l2.prior_length_scale}, which derives {wd:.6g} here: set reg.l2.weight_decay=null "
                        "to derive it, or reg.l2.prior_length_scale=null to use the number")
    return dataclasses.replace(cfg, reg=dataclasses.replace(cfg.reg, l2=dataclasses.replace(l2, weight_decay=wd)))
