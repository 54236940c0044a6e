"""A sweep composes once per template (config/compose.py: _compose_sweep) and sets its free keys
directly: every job must be exactly what composing it alone gives, config and run id, for sweeps
over groups, experiments, keys read by interpolations (${p}, oc.select, the experiment's table)
and plain values."""

import dataclasses
import importlib
import itertools

import pytest

from dropbench.config import load_job, load_sweep
from dropbench.config.identity import _prune, run_id_of
from dropbench.errors import UserError

compose_mod = importlib.import_module("dropbench.config.compose")  # the package exports a function of that name

SWEEPS = [
    ["seed=range(12)", "epochs=1,2"],
    ["reg=none,dropout,l2", "p=0.1,0.5", "seed=0,1"],  # p is read by ${p} under dropout
    ["reg=dropout", "reg.dropout.p=0.1,0.3", "seed=range(3)"],  # sets the node that read ${p}
    ["reg=dropout,droppath", "p=0.2", "model.hidden=8,16", "seed=1,2"],
    ["data=noisy_linear,noisy_sine", "data.n_train=10,30", "data.noise=0.1,0.2", "seed=0,1"],
    ["+experiment=uci_mc_dropout_2018", "data.dataset=yacht,boston_housing", "data.split=0,1", "seed=1,2"],
    ["+experiment=uci_mc_dropout_2016", "data.dataset=yacht,energy", "data.split=range(3)", "epochs=2,3"],
    ["reg=l2", "reg.l2.weight_decay=1e-3,1e-4", "optim.lr=0.01,0.001", "seed=0,1"],  # oc.select node
    ["reg=l2,[dropout,l2]", "reg.l2.biases=true,false", "seed=0,1"],
    ["eval.mc_samples=0,10", "eval.tau=null,2.0", "batch_size=null,4"],
    ["dtype=float32,float64", "engine=batched,torch", "optim=adam,sgd", "optim.lr=0.1,0.2"],
    ["seed=+3,-0,0,1_0,17"],  # Hydra's INT forms, with and without the parser
    ["reg=dropout", "eval.tau=0.2,0.4", "p=${eval.tau}", "seed=0,1"],  # a swept key read by a value override
    ["reg=dropout", "p='${eval.tau}',0.3", "eval.tau=0.25", "seed=0,1"],  # an interpolation among swept values
    ["reg=dropout", "model.activation=relu,tanh", "model.init=default,glorot_uniform", "seed=5,6"],
]


def _per_job(overrides):
    dims = compose_mod._sweep_dims(overrides)
    return [load_job([d[2][k] for d, k in zip(dims, combo)])
            for combo in itertools.product(*(range(len(d[2])) for d in dims))]


@pytest.mark.parametrize("overrides", SWEEPS, ids=lambda o: " ".join(o))
def test_every_job_is_what_composing_it_alone_gives(overrides):
    fast, slow = load_sweep(overrides), _per_job(overrides)
    assert len(fast) == len(slow) > 1
    for (cfg, launcher), (want, want_launcher) in zip(fast, slow):
        assert cfg == want and launcher == want_launcher
        assert cfg.to_dict() == want.to_dict()
        assert run_id_of(cfg) == run_id_of(want)


def test_a_seed_sweep_composes_once_and_a_read_key_per_value(monkeypatch):
    calls = []
    real = compose_mod._compose
    monkeypatch.setattr(compose_mod, "_compose", lambda o, refs=False: calls.append(o) or real(o, refs))
    assert len(load_sweep(["seed=range(40)", "epochs=1,2"])) == 80
    assert len(calls) == 1
    calls.clear()
    load_sweep(["reg=dropout", "p=0.1,0.2,0.3", "seed=range(5)"])  # p is read by reg.dropout.p: ${p}
    assert len(calls) == 3


def test_the_first_bad_job_fails_as_it_would_alone():
    with pytest.raises(UserError) as fast:
        load_sweep(["seed=1,2,-5,3"])
    with pytest.raises(UserError) as alone:
        load_job(["seed=-5"])
    assert str(fast.value) == str(alone.value)
    with pytest.raises(UserError, match="unknown key"):
        load_sweep(["seed=1,2", "model.hiden=3,4"])


def test_paths_read_by_interpolations():
    read = compose_mod._paths_read({"a": "${protocol.datasets.${data.dataset}.l}", "b": "${oc.select:x.y,1}", "c": "${p}"})
    assert read is not None
    reads = lambda k: compose_mod._reads(read, k)  # noqa: E731
    assert reads("p") and reads("data.dataset") and reads("data") and reads("protocol.datasets.yacht.l")
    assert reads("x.y") and reads("x") and not reads("x.z") and not reads("seed") and not reads("data.split")
    for text in ("${..p}", "${${name}.x}", "${oc.env:HOME}", "${my_resolver:1}"):
        assert compose_mod._paths_read({"a": text}) is None


def test_asdict_is_dataclasses_asdict():
    for overrides in (["reg=[dropout,l2,max_norm]"], ["+experiment=uci_mc_dropout_2018", "data.dataset=yacht"],
                      ["launcher=submitit_slurm"], ["model.hidden=3", "eval.tau=2.0"]):
        cfg = load_job(overrides)[0]
        assert compose_mod.build(compose_mod.compose(overrides)).to_dict() == cfg.to_dict()
        assert cfg.to_dict() == _prune(dataclasses.asdict(cfg))


def test_config_yaml_is_safe_dump_text(tmp_path):
    import yaml

    from dropbench.results import config_yaml

    odd = tmp_path / "dir with spaces, 'quotes' and ünïcode: yes" / "d.csv"
    odd.parent.mkdir()
    odd.write_text("x,y\n1,2\n3,4\n")
    for overrides in (["reg=[dropout,l2,max_norm]", "p=0.123456789012345"], ["+experiment=uci_mc_dropout_2018", "data.dataset=yacht"],
                      ["data=csv", f"data.path={compose_mod.quote_value(str(odd))}", "data.target=y", "seed=4294967295", "optim.lr=1e-300"],
                      ["model.hidden=3", "eval.tau=2.0", "batch_size=7", "out=" + compose_mod.quote_value("a: b #c")]):
        cfg = load_job(overrides)[0]
        assert config_yaml(cfg) == yaml.safe_dump(cfg.to_dict(), sort_keys=False)


@pytest.mark.parametrize("kept", [2, 4096])
def test_config_yaml_sections_are_each_config_own(monkeypatch, kept):
    """Each section's text is dumped once and reused by the runs that share it: every config of
    every sweep above, in one process (the cache warm, and emptied where it holds two), must
    still read exactly as yaml.safe_dump writes it."""
    import yaml

    from dropbench import results

    monkeypatch.setattr(results, "_SECTIONS", {})
    monkeypatch.setattr(results, "SECTIONS_KEPT", kept)
    for sweep in SWEEPS:
        for cfg, _ in load_sweep(sweep):
            assert results.config_yaml(cfg) == yaml.safe_dump(cfg.to_dict(), sort_keys=False), sweep
    assert 0 < len(results._SECTIONS) <= kept


class _NoCache(dict):
    """coerce's cache of built sections, never keeping one: every config built afresh."""

    def __setitem__(self, key, value):
        pass


@pytest.mark.parametrize("overrides", SWEEPS, ids=lambda o: " ".join(o))
def test_shared_sections_are_each_config_own(overrides, monkeypatch):
    """from_dict builds each distinct frozen section once per process and shares it: every job
    must equal the job built with nothing shared, section by section and run id."""
    from dropbench.config import coerce

    monkeypatch.setattr(coerce, "_built", {})
    shared = load_sweep(overrides)
    monkeypatch.setattr(coerce, "_built", _NoCache())
    alone = load_sweep(overrides)
    assert len(shared) == len(alone) > 1
    for (cfg, _), (want, _) in zip(shared, alone):
        assert cfg == want and cfg.to_dict() == want.to_dict() and run_id_of(cfg) == run_id_of(want)


def test_an_unfrozen_plugin_section_is_not_shared():
    import dataclasses as dc

    from dropbench.config import coerce

    @dc.dataclass
    class Loose:
        a: int = 1

    @dc.dataclass(frozen=True)
    class Tight:
        a: int = 1

    assert coerce.from_dict(Loose, {"a": 2}, "x") is not coerce.from_dict(Loose, {"a": 2}, "x")
    assert coerce.from_dict(Tight, {"a": 2}, "x") is coerce.from_dict(Tight, {"a": 2}, "x")
    assert coerce.from_dict(Tight, {"a": 3}, "x").a == 3
    with pytest.raises(UserError, match="x.a"):
        coerce.from_dict(Tight, {"a": 1.5}, "x")
