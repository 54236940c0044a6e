"""Cross-group rules: what one part of a config implies for another, across config groups.

Each group's dataclass declares its own keys' constraints (schema.py, dropbench.params); the rules
here need several groups at once: the regularizers adjust the model, the drop probability in
effect follows the dropout-family regularizer chosen, and reg.l2.prior_length_scale needs
eval.tau. Also the one check on a composed experiment's per-data-set table. Values that depend on
more than the config (device=auto, reg.l2's weight decay from the rows trained on) are not
resolved here but by dropbench.derive, before runs are planned: config never reads data. Kept
apart so that every place where a value depends on another is in one short module; nothing here
imports the schema, so RunConfig and build() can both call these rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dropbench import regs
from dropbench.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from dropbench.config.schema import RunConfig

# The dropout family, whose p is the top-level p: read from the registry.
DROP_FAMILY = regs.drop_family()
# A top-level node an experiment config reads by interpolation (conf/experiment/: `datasets`, the
# per-data-set table of the MC-dropout protocol; `l2`, read by conf/reg/l2.yaml while l2 is
# selected); composed and resolved, never part of a run.
TABLE_KEY = "protocol"


# ---- build(): the groups combined into one run -----------------------------------------------
def _adjust_model(model: Any, reg: Any) -> Any:
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


def _check_l2_prior(cfg: RunConfig) -> None:
    """reg.l2.prior_length_scale derives the weight decay from eval.tau (dropbench.derive): it must be set."""
    l2 = getattr(cfg.reg, "l2", None)
    if l2 is not None and l2.prior_length_scale is not None and cfg.eval.tau is None:
        raise UserError("reg.l2.prior_length_scale derives the weight decay from the model precision eval.tau: "
                        "set eval.tau (or give reg.l2.weight_decay and reg.l2.prior_length_scale=null)")


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
