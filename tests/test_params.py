"""dropbench.params: every config class declares its constraints on its fields, one routine checks them.

The messages are pinned word for word, one per class and kind of rule: they were hand-written per
class before the constraints were declared, and a user (or a script) may match on them.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from typing import ClassVar

import pytest

from dropbench.config import load
from dropbench.errors import UserError

SEED_TEXT = "in [0, 4294967295] (2**32 - 1: the range numpy, scikit-learn and torch all accept)"
UCI_NAMES = "boston_housing, concrete, energy, kin8nm, naval, power_plant, wine_red, yacht"

MESSAGES = [
    # data: declared by the data set modules
    (["data.n_train=0"], "invalid value data.n_train=0: must be > 0"),
    (["data.noise=-1"], "invalid value data.noise=-1.0: must be >= 0"),
    (["data.x_max=-2"], "invalid value data.x_max=-2.0: must be > data.x_min (-1.0)"),
    (["data=noisy_sine", "data.x_min=5"], "invalid value data.x_max=3.0: must be > data.x_min (5.0)"),
    (["data.seed=-1"], f"invalid value data.seed=-1: must be {SEED_TEXT}"),
    (["data=friedman1", "data.n_features=4"], "invalid value data.n_features=4: must be >= 5 (friedman1 uses 5 informative features)"),
    (["data=diabetes", "data.test_fraction=1"], "invalid value data.test_fraction=1.0: must be in (0, 1)"),
    (["data=csv", "data.path=x.csv", "data.target=t", "data.sha256=abc"],
     "invalid value data.sha256='abc': must be 64 lowercase hex digits (or null: computed from the file)"),
    (["data=uci", "data.dataset=yachtt"], f"invalid value data.dataset='yachtt' (did you mean yacht?): must be one of {UCI_NAMES}"),
    (["data=uci", "data.dataset=yacht", "data.split=20"], "invalid value data.split=20: must be in 0..19 (yacht has 20 standard splits)"),
    # model
    (["model.depth=0"], "invalid value model.depth=0: must be > 0"),
    # optimizers
    (["optim.lr=0"], "invalid value optim.lr=0.0: must be > 0"),
    (["optim.beta1=1"], "invalid value optim.beta1=1.0: must be in [0, 1)"),
    (["optim.eps=-1e-8"], "invalid value optim.eps=-1e-08: must be > 0"),
    (["optim=sgd", "optim.momentum=-0.1"], "invalid value optim.momentum=-0.1: must be in [0, 1)"),
    # launchers
    (["launcher.workers=0"], "invalid value launcher.workers=0: must be > 0"),
    (["launcher=joblib", "launcher.n_jobs=-2"], "invalid value launcher.n_jobs=-2: must be > 0 or -1 (one per core)"),
    (["launcher=submitit_local", "launcher.timeout_min=0"], "invalid value launcher.timeout_min=0: must be > 0"),
    (["launcher=submitit_slurm", "launcher.gpus_per_node=-1"], "invalid value launcher.gpus_per_node=-1: must be >= 0"),
    # eval and the run
    (["eval.mc_samples=-1"], "invalid value eval.mc_samples=-1: must be >= 0 (0: eval-mode prediction only)"),
    (["eval.tau=0"], "invalid value eval.tau=0.0: must be a finite number > 0 (or null: no log-likelihood)"),
    (["epochs=0"], "invalid value epochs=0: must be > 0"),
    (["eval_every=-3"], "invalid value eval_every=-3: must be > 0"),
    (["batch_size=0"], "invalid value batch_size=0: must be an integer >= 1 (or null: full batch)"),
    (["p=1"], "invalid value p=1.0: must be in [0, 1) (p=1 would drop everything)"),
    (["seed=-1"], f"invalid value seed=-1: must be {SEED_TEXT}"),
    # regularizers
    (["reg=dropout", "reg.dropout.p=1"], "invalid value reg.dropout.p=1.0: must be in [0, 1) (p=1 would drop everything)"),
    (["reg=l2", "reg.l2.weight_decay=-1"], "invalid value reg.l2.weight_decay=-1.0: must be >= 0"),
    (["reg=l2", "reg.l2.weight_decay=null"],
     "reg.l2.weight_decay=null needs reg.l2.prior_length_scale to derive it from: set one of them"),
    (["reg=l2", "reg.l2.prior_length_scale=1", "reg.l2.decoupled=true", "eval.tau=1"],
     "reg.l2.prior_length_scale derives torch's coupled weight decay; it does not apply with reg.l2.decoupled=true: drop one of them"),
    (["reg=early_stopping", "reg.early_stopping.fraction=1"],
     "invalid value reg.early_stopping.fraction=1.0: must be in (0, 1) (the share of the training rows held out to validate on)"),
    (["reg=concrete_dropout", "reg.concrete_dropout.temperature=0"], "invalid value reg.concrete_dropout.temperature=0.0: must be > 0"),
    (["reg=[dropout,vanilla_dropout]"], "reg=[dropout,vanilla_dropout] combines two scalings of the same dropout; choose one"),
]


@pytest.mark.parametrize("overrides, msg", MESSAGES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_kind_of_constraint_keeps_its_words(overrides, msg):
    with pytest.raises(UserError) as e:
        load(overrides)
    assert str(e.value) == msg


def test_a_bound_reads_in_full_where_it_is_whole():
    from dropbench.params import PROB, SEED, Range

    assert SEED.text == SEED_TEXT
    assert PROB.text == "in [0, 1) (p=1 would drop everything)"
    assert Range(1e-8, lo_open=True).text == "> 1e-08" and Range(0.25, 2.5).text == "in [0.25, 2.5]"
    assert Range(1, says="an integer >= 1").text == "an integer >= 1"


def test_validate_checks_fields_then_rules_and_lets_null_through():
    from dropbench.params import POSITIVE, Rule, param, validate

    @dataclasses.dataclass(frozen=True)
    class Conf:
        a: int = param(1, POSITIVE)
        b: float | None = param(None, POSITIVE)
        RULES: ClassVar[tuple[Rule, ...]] = (Rule(lambda c: c.a < 10, lambda c, k: f"{k}.a too big"),)

    validate(Conf(), "x")
    validate(Conf(b=None), "x")  # null: not set
    with pytest.raises(UserError, match=r"^invalid value x.a=0: must be > 0$"):
        validate(Conf(a=0, b=-1.0), "x")  # the first field that fails
    with pytest.raises(UserError, match=r"^invalid value b=-1.0: must be > 0$"):
        validate(Conf(b=-1.0))
    with pytest.raises(UserError, match=r"^x.a too big$"):
        validate(Conf(a=11), "x")


def test_no_config_class_writes_its_own_validate():
    """One mechanism: every class the schema coerces declares its constraints, none checks by hand."""
    from dropbench import regs
    from dropbench.config import DATA, LAUNCHERS, MODELS, OPTIMS, Eval, Reg, RunConfig

    classes = [*DATA.values(), *MODELS.values(), *OPTIMS.values(), *LAUNCHERS.values(), Eval, Reg, RunConfig,
               *(r.Config for r in regs.REGISTRY.values())]
    assert [c.__name__ for c in classes if hasattr(c, "validate")] == []


def test_params_is_standard_library_only():
    code = "import sys, dropbench.params; print(sorted(m for m in sys.modules if m.startswith('dropbench')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['dropbench', 'dropbench.errors', 'dropbench.params']"


def test_range_outside_is_outside():
    from dropbench.params import FRACTION, NONNEG, POSITIVE, PROB, SEED

    for r in (FRACTION, NONNEG, POSITIVE, PROB, SEED):
        assert r.outside() and not any(r.ok(v) for v in r.outside())
        assert all(math.isfinite(v) for v in r.outside())
