"""+experiment=uci_mc_dropout_2016 / _2018: the MC-dropout UCI protocol (docs/uci-protocol.md)
as Hydra experiment configs, the L2 factor derived from the prior length-scale, Keras' init."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from dropbench import config, derive
from dropbench import tuning as tune
from dropbench.config import build, load
from dropbench.data.base import holdout_rows
from dropbench.errors import UserError
from dropbench.models import build_model
from dropbench.regs.l2 import prior_weight_decay

E16, E18 = "+experiment=uci_mc_dropout_2016", "+experiment=uci_mc_dropout_2018"

# PROTOCOL.md's 2016 table, typed here from the document: (folder, p, tau, l).
TABLE = {"yacht": ("yacht", 0.01, 0.541869562034, 1e-1), "naval": ("naval-propulsion-plant", 0.05, 42173.5152106, 1.0)}


@pytest.fixture
def root(uci_dir: Path) -> str:
    """The override that points a config at the real files (deriving the L2 factor reads the
    split's row count; composing the experiment reads nothing)."""
    return f"data.root={uci_dir}"


def derived(overrides: list[str]) -> config.RunConfig:
    """The config of one run as planning gives it: its derived values resolved."""
    (cfg,) = derive.resolve([load(overrides)])
    return cfg


def n_train_rows(uci_dir: Path, folder: str, split: int) -> int:
    return len((uci_dir / folder / f"index_train_{split}.txt").read_text().split())


def check_network_and_training(cfg: config.RunConfig) -> None:
    """What both versions share: PROTOCOL.md's "Common to every version"."""
    m = cfg.model
    assert (m.hidden, m.depth, m.activation, m.placement, m.residual, m.init) == (50, 1, "relu", "after", False, "glorot_uniform")
    assert sorted(cfg.reg.names) == ["dropout", "input_dropout", "l2"]
    assert cfg.reg.input_dropout.p == cfg.reg.dropout.p == cfg.p
    assert (cfg.reg.l2.biases, cfg.reg.l2.decoupled) == (False, False)
    o = cfg.optim
    assert (o.name, o.lr, o.beta1, o.beta2, o.eps) == ("adam", 1e-3, 0.9, 0.999, 1e-8)
    assert cfg.eval.mc_samples == 10_000


@pytest.mark.parametrize("name", sorted(TABLE))
def test_the_2016_experiment_is_protocol_md_point_by_point(name, uci_dir, root):
    folder, p, tau, l = TABLE[name]
    cfg = derived([E16, f"data.dataset={name}", "data.split=3", root])
    check_network_and_training(cfg)
    assert (cfg.data.name, cfg.data.dataset, cfg.data.split, cfg.data.holdout) == ("uci", name, 3, "none")
    assert (cfg.p, cfg.eval.tau, cfg.reg.l2.prior_length_scale) == (p, tau, l)
    assert (cfg.epochs, cfg.batch_size) == (400, 32)
    n = n_train_rows(uci_dir, folder, 3)
    # the loss factor reg = l^2 (1-p) / (2 N tau); torch's coupled weight_decay is 2 reg
    assert cfg.reg.l2.weight_decay == pytest.approx(2 * l**2 * (1 - p) / (2 * n * tau), rel=1e-12)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_the_2018_experiment_trains_longer_on_larger_batches_with_l_1e_2(name):
    folder, p, tau, _ = TABLE[name]
    cfg = load([E18, f"data.dataset={name}"])
    check_network_and_training(cfg)
    assert (cfg.epochs, cfg.batch_size, cfg.reg.l2.prior_length_scale) == (4000, 128, 1e-2)
    assert (cfg.p, cfg.eval.tau) == (p, tau)  # tune replaces them; a plain run uses the 2016 table's


@pytest.mark.parametrize("name", sorted(TABLE))
def test_the_2018_grids_are_the_source_repositorys_files(name, uci_dir):
    """The grids written in the experiment are the data set's dropout_rates.txt and tau_values.txt
    (files of the source repository the loader never reads: a download cache has none)."""
    folder = TABLE[name][0]
    grids = [uci_dir / folder / f"{key}.txt" for key in ("dropout_rates", "tau_values")]
    if not all(f.is_file() for f in grids):
        pytest.skip(f"{uci_dir / folder} lacks dropout_rates.txt or tau_values.txt (the 2018 grids): "
                    "point DROPBENCH_UCI_DIR at a full copy of the UCI folder, see README")
    table = config.compose([E18, f"data.dataset={name}"])[config.TABLE_KEY]["datasets"][name]
    for key, f in zip(("dropout_rates", "tau_values"), grids):
        assert table[key] == [float(v) for v in f.read_text().split()]


def test_the_2016_table_is_protocol_md_for_every_data_set():
    """All eight rows, without loading data (compose only)."""
    text = (Path(config.config_dir()) / "experiment" / "uci_mc_dropout_2016.yaml").read_text()
    assert "yacht: {p: 0.01, tau: 0.541869562034, l: 1.0e-1}" in text  # the table is plain YAML a reader can check
    rows = {"boston_housing": (0.05, 0.159707652696, 1e-2), "concrete": (0.01, 0.0557319157756, 1e-2),
            "energy": (0.05, 0.427114830213, 1e-2), "kin8nm": (0.05, 192.482910156, 1e-2),
            "naval": (0.05, 42173.5152106, 1.0), "power_plant": (0.005, 0.0871109017617, 1e-2),
            "wine_red": (0.05, 2.95833720839, 1e-2), "yacht": (0.01, 0.541869562034, 1e-1)}
    for name, (p, tau, l) in rows.items():
        d = config.compose([E16, f"data.dataset={name}"])
        assert (d["p"], d["eval"]["tau"], d["reg"]["l2"]["prior_length_scale"]) == (p, tau, l), name


# ---- the derived L2 factor ---------------------------------------------------------------------
def prior_cfg(*extra: str) -> list[str]:
    return ["data=friedman1", "data.n_train=100", "reg=[dropout,l2]", "p=0.2", "eval.tau=0.5",
            "reg.l2.weight_decay=null", "reg.l2.prior_length_scale=0.3", *extra]


def test_the_l2_factor_is_the_formula():
    assert prior_weight_decay(0.3, 0.2, 100, 0.5) == pytest.approx(0.09 * 0.8 / 50, rel=1e-15)
    assert derived(prior_cfg()).reg.l2.weight_decay == pytest.approx(0.3**2 * 0.8 / (100 * 0.5), rel=1e-15)
    # without dropout p is 0
    assert derived([*prior_cfg(), "reg=l2"]).reg.l2.weight_decay == pytest.approx(0.09 / 50, rel=1e-15)


def test_the_l2_factor_uses_the_rows_of_the_holdout_and_is_derived_again_for_tunes_final_run():
    """data.holdout=validation trains on the first 80%: N is those rows. dropbench tune's final run
    (the chosen config without the hold-out) gets the full N again."""
    n_fit = holdout_rows(100, "test")
    assert n_fit == 80
    held = derived(prior_cfg("data.holdout=validation"))
    assert held.reg.l2.weight_decay == pytest.approx(0.09 * 0.8 / (n_fit * 0.5), rel=1e-15)
    (final,) = tune.finals([held])
    assert final.data.holdout == "none"
    assert final.reg.l2.weight_decay == derived(prior_cfg()).reg.l2.weight_decay
    assert final.run_id == derived(prior_cfg()).run_id
    # A replace alone keeps the number derived for the hold-out: planning refuses it, in one line.
    stale = dataclasses.replace(held, data=dataclasses.replace(held.data, holdout="none"))
    with pytest.raises(UserError, match="contradicts reg.l2.prior_length_scale=0.3"):
        derive.resolve([stale])


def test_a_saved_config_reloads_to_the_same_run():
    cfg = derived(prior_cfg())
    again = build(cfg.to_dict())  # holds the derived weight_decay: it matches, so it is accepted
    assert again == cfg and again.run_id == cfg.run_id
    assert derive.resolve([again]) == [cfg]


def test_a_plain_weight_decay_is_unchanged():
    cfg = load(["reg=l2", "reg.l2.weight_decay=0.01"])
    assert (cfg.reg.l2.weight_decay, cfg.reg.l2.prior_length_scale) == (0.01, None)


@pytest.mark.parametrize("extra, match", [
    (["reg.l2.weight_decay=0.01"], r"reg.l2.weight_decay=0.01 contradicts reg.l2.prior_length_scale=0.3, which derives 0.00144"),
    (["eval.tau=null"], r"derives the weight decay from the model precision eval.tau: set eval.tau"),
    (["reg.l2.decoupled=true"], r"coupled weight decay; it does not apply with reg.l2.decoupled=true"),
    (["reg.l2.prior_length_scale=null"], r"reg.l2.weight_decay=null needs reg.l2.prior_length_scale"),
    (["reg.l2.prior_length_scale=0"], r"invalid value reg.l2.prior_length_scale=0.0: must be > 0"),
    (["reg.l2.prior_length_scale=inf"], r"prior_length_scale=inf: must be a finite number$"),
])
def test_bad_prior_settings_are_one_line(extra, match):
    with pytest.raises(UserError, match=match):
        derived(prior_cfg(*extra))


# ---- everything overridable ----------------------------------------------------------------
@pytest.mark.parametrize("override, get, value", [
    ("p=0.1", lambda c: (c.p, c.reg.dropout.p, c.reg.input_dropout.p), (0.1, 0.1, 0.1)),
    ("eval.tau=2.0", lambda c: c.eval.tau, 2.0),
    ("eval.mc_samples=100", lambda c: c.eval.mc_samples, 100),
    ("reg.l2.prior_length_scale=0.5", lambda c: c.reg.l2.prior_length_scale, 0.5),
    ("model.hidden=100", lambda c: c.model.hidden, 100),
    ("model.depth=2", lambda c: c.model.depth, 2),
    ("model.init=default", lambda c: c.model.init, "default"),
    ("model.placement=before", lambda c: c.model.placement, "before"),
    ("optim.lr=0.01", lambda c: c.optim.lr, 0.01),
    ("batch_size=64", lambda c: c.batch_size, 64),
    ("epochs=40", lambda c: c.epochs, 40),
    ("reg.l2.biases=true", lambda c: c.reg.l2.biases, True),
    ("reg=[dropout]", lambda c: c.reg.names, ["dropout"]),  # drops L2 and its settings
    ("reg=[input_dropout,dropout]", lambda c: c.reg.names, ["dropout", "input_dropout"]),
    ("reg.l2.decoupled=false", lambda c: c.reg.l2.decoupled, False),
    ("optim=sgd", lambda c: c.optim.name, "sgd"),
    ("data.holdout=validation", lambda c: c.data.holdout, "validation"),
])
@pytest.mark.parametrize("experiment", [E16, E18])
def test_every_key_stays_overridable(experiment, override, get, value):
    cfg = load([experiment, "data.dataset=yacht", override])
    assert get(cfg) == value


def test_a_plain_weight_decay_replaces_the_derived_one():
    cfg = load([E16, "data.dataset=yacht", "reg.l2.prior_length_scale=null", "reg.l2.weight_decay=1e-4"])
    assert (cfg.reg.l2.weight_decay, cfg.reg.l2.prior_length_scale) == (1e-4, None)


@pytest.mark.parametrize("extra, match", [
    ([], r"missing value for data.dataset: set it with data.dataset=VALUE \(one of boston_housing, "),
    (["data.dataset=yachtt"], r"unknown data.dataset=yachtt \(did you mean yacht\?\)"),
])
def test_a_missing_or_unknown_data_set_is_one_line(extra, match):
    with pytest.raises(UserError, match=match):
        config.compose([E16, *extra])


def test_the_experiment_sweeps(tmp_path):
    jobs = config.expand_sweep([E16, "data.dataset=yacht,naval", "data.split=range(3)"])
    assert len(jobs) == 6 and all(j[0] == E16 for j in jobs)


# ---- Keras' Glorot-uniform init --------------------------------------------------------------
def test_glorot_uniform_is_keras_bounds_and_zero_biases():
    cfg = load(["data=friedman1", "data.n_features=30", "model.hidden=400", "model.depth=2", "model.init=glorot_uniform"])
    model = build_model(cfg, 30)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(30, 400), (400, 400), (400, 1)]
    for lin in linears:
        a = math.sqrt(6 / (lin.in_features + lin.out_features))
        w = lin.weight.detach()
        assert w.abs().max() <= a
        if w.numel() >= 400:  # a uniform on [-a, a] reaches near both ends and has variance a^2/3
            assert w.max() > 0.97 * a and w.min() < -0.97 * a
            assert w.var().item() == pytest.approx(a * a / 3, rel=0.1)
        assert torch.count_nonzero(lin.bias) == 0


def test_the_network_is_dropout_linear_relu_dropout_linear():
    """PROTOCOL.md: Dropout(p) -> Linear(d, 50) -> ReLU -> Dropout(p) -> Linear(50, 1)."""
    cfg = load([E16, "data.dataset=yacht"])
    model = build_model(cfg, 6)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["InputRegs", "Linear", "ReLU", "Dropout", "Linear"]
    assert [(m.in_features, m.out_features) for m in model if isinstance(m, nn.Linear)] == [(6, 50), (50, 1)]
    assert isinstance(model[0].layers[0], nn.Dropout) and model[0].layers[0].p == model[3].p == 0.01
    assert torch.count_nonzero(model[1].bias) == 0  # Keras' zero biases


@pytest.mark.parametrize("overrides, msg", [
    (["+experiment=uci_mc_dropout_2016", "data=diabetes"],
     "+experiment=uci_mc_dropout_2016 reads data.dataset, which data=diabetes does not have; drop the data= override"),
    (["+experiment=uci_mc_dropout_2O16"], "unknown option +experiment=uci_mc_dropout_2O16 (did you mean uci_mc_dropout_2016?)"),
])
def test_a_bad_experiment_is_one_line(overrides, msg):
    from dropbench.config import load

    with pytest.raises(UserError) as e:
        load(overrides)
    assert msg in str(e.value) and "\n" not in str(e.value)
