"""Cross-field rules: what one part of a config implies for another, across config groups.

Each group's dataclass checks its own keys (schema.py); the rules here need several groups at once:
the regularizers adjust the model, the drop probability in effect follows the dropout-family
regularizer chosen, device=auto is resolved before the id is taken, and reg.l2's weight decay is
derived from p, eval.tau and the rows trained on (which reads the data). Also the one check on a
composed experiment's per-data-set table. Kept apart so that every place where a value depends on
another is in one short module, rather than spread through the schema and build(); nothing here
imports the schema, so RunConfig and build() can both call these rules.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from dropbench import regs
from dropbench.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from dropbench.config.schema import MLP, RunConfig

# The dropout family, whose p is the top-level p: read from the registry.
DROP_FAMILY = regs.drop_family()
# A top-level node an experiment config reads by interpolation (conf/experiment/: `datasets`, the
# per-data-set table of the MC-dropout protocol; `l2`, read by conf/reg/l2.yaml while l2 is
# selected); composed and resolved, never part of a run.
TABLE_KEY = "protocol"


# ---- build(): the groups combined into one run -----------------------------------------------
def _adjust_model(model: MLP, reg: Any) -> MLP:
    """The model every selected regularizer needs (e.g. droppath turns residual blocks on)."""
    for r, conf in regs.active(reg):
        model = r.adjust_model(model, conf)
    return model


def _p_in_effect(reg: Any) -> float | None:
    """The top-level p as the run uses it."""
    # p only matters through the dropout-family regularizers: record the one in effect, so that
    # reg=none p=0.2 and reg=none p=0.5 are the same run.
    drops = [getattr(reg, n) for n in DROP_FAMILY if getattr(reg, n) is not None]
    return drops[0].p if drops else None


def _auto_device() -> str:
    """device=auto as the device that will run it."""
    # Saved and hashed as the device that will run it: a GPU run's numbers differ from a
    # CPU run's, so they must not share a run_id (a resumed sweep would mix them).
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_l2_given(given_reg: Any, cfg: RunConfig) -> None:
    """A reg.l2.weight_decay given beside reg.l2.prior_length_scale must be the one derived (cfg's)."""
    given, used = getattr(given_reg, "l2", None), getattr(cfg.reg, "l2", None)
    if given is not None and given.prior_length_scale is not None and given.weight_decay not in (None, used.weight_decay):
        # A saved config holds the derived value itself, which matches; anything else contradicts l.
        raise UserError(f"reg.l2.weight_decay={given.weight_decay} contradicts reg.l2.prior_length_scale="
                        f"{given.prior_length_scale}, which derives {used.weight_decay:.6g} here: set reg.l2.weight_decay=null "
                        "to derive it, or reg.l2.prior_length_scale=null to use the number")


# ---- values derived from the rest of the config (the one hook) -------------------------------
_ROWS_TRAINED: dict[tuple[str, int, float], int] = {}


def n_trained(cfg: RunConfig) -> int:
    """How many rows the run trains on (after a data.holdout=validation split, and without the
    validation rows a loop-slot regularizer holds out): loads its data once per process and data
    config (the UCI files are verified, a CSV is pinned by its sha256)."""
    key = (type(cfg.data).__name__ + json.dumps(dataclasses.asdict(cfg.data), sort_keys=True, default=str), cfg.data_seed,
           regs.holdout_fraction(cfg.reg))
    if key not in _ROWS_TRAINED:
        from dropbench.data import load_dataset

        _ROWS_TRAINED[key] = len(load_dataset(cfg).x_train)
    return _ROWS_TRAINED[key]


def _derive_l2(cfg: RunConfig) -> None:
    """reg.l2.prior_length_scale set: weight_decay = l^2 (1-p) / (N tau) from this config's p,
    eval.tau and rows trained on (dropbench/regs/l2.py), written into the config."""
    l2 = getattr(cfg.reg, "l2", None)
    if l2 is None or l2.prior_length_scale is None:
        return
    if cfg.eval.tau is None:
        raise UserError("reg.l2.prior_length_scale derives the weight decay from the model precision eval.tau: "
                        "set eval.tau (or give reg.l2.weight_decay and reg.l2.prior_length_scale=null)")
    from dropbench.regs.l2 import prior_weight_decay

    wd = prior_weight_decay(l2.prior_length_scale, cfg.p or 0.0, n_trained(cfg), cfg.eval.tau)
    object.__setattr__(cfg, "reg", dataclasses.replace(cfg.reg, l2=dataclasses.replace(l2, weight_decay=wd)))


# ---- an experiment's per-data-set table ------------------------------------------------------
def _check_table_key(cfg: Any) -> None:
    """An experiment's table (TABLE_KEY.datasets) is read by data.dataset: one line when it is not set or not
    in the table (else the interpolation fails in OmegaConf's words)."""
    from omegaconf import OmegaConf

    table, data = (cfg.get(TABLE_KEY) or {}).get("datasets"), cfg.get("data")
    if table is None or data is None or "dataset" not in data.keys():  # `in` is False for ???
        return
    if OmegaConf.is_missing(data, "dataset"):
        raise UserError(f"missing value for data.dataset: set it with data.dataset=VALUE (one of {', '.join(table)})")
    name = data.dataset
    if name not in table:
        raise UserError(f"unknown data.dataset={name}{did_you_mean(str(name), list(table))}: this experiment has values "
                        f"for {', '.join(table)}")
