import pytest

from dropbench.config import build, expand_sweep, list_options, load, load_sweep
from dropbench.errors import UserError


def test_defaults_are_the_seed_experiment():
    c = load([])
    assert (c.data.name, c.data.n_train, c.data.noise) == ("noisy_linear", 20, 0.3)
    assert (c.model.hidden, c.model.depth, c.model.activation, c.model.placement) == (300, 2, "relu", "before")
    assert (c.optim.name, c.optim.lr, c.epochs, c.engine) == ("adam", 0.01, 500, "batched")
    assert c.reg.label == "none"


def test_p_reaches_every_dropout_family_regularizer():
    for reg in ("dropout", "vanilla_dropout", "droppath", "dropconnect"):
        c = load([f"reg={reg}", "p=0.25"])
        assert getattr(c.reg, reg).p == 0.25


def test_combined_regularizers_and_label():
    c = load(["reg=[l2,dropout]"])
    assert c.reg.label == "dropout+l2"
    assert c.choices()["reg"] == "dropout+l2"


def test_run_id_is_stable_and_ignores_out():
    a, b = load(["reg=dropout", "out=/x"]), load(["reg=dropout", "out=/y"])
    assert a.run_id == b.run_id and len(a.run_id) == 12
    assert load(["reg=dropout", "seed=2"]).run_id != a.run_id


def test_saved_config_round_trips():
    c = load(["reg=[dropout,l1]", "data=friedman1", "optim=sgd", "seed=4"])
    assert build(c.to_dict()) == c


@pytest.mark.parametrize(
    "overrides, msg",
    [
        (["reg=foo"], "unknown option reg=foo: choose from"),
        (["p=1"], "p=1.0: must be in [0, 1)"),
        (["p=-0.1"], "must be in [0, 1)"),
        (["reg=dropout", "reg.dropout.p=1.5"], "reg.dropout.p=1.5"),
        (["model.hidden=0"], "model.hidden=0: must be > 0"),
        (["model.activation=sigmoid"], "must be one of relu, tanh, gelu"),
        (["epochs=ten"], "epochs='ten': must be an integer"),
        (["+foo=1"], "unknown key foo"),
        (["optim.weight_decay=0.1"], "reg=l2"),
        (["data=csv"], "missing value for data.path"),
        (["seed=1,2"], "add -m"),
        (["engine=jax"], "engine='jax': must be one of"),
    ],
)
def test_bad_values_name_key_value_and_allowed(overrides, msg):
    with pytest.raises(UserError) as e:
        load(overrides)
    assert msg in str(e.value)
    assert "\n" not in str(e.value)


def test_sweep_expansion_uses_hydra_grammar():
    jobs = expand_sweep(["reg=none,l1", "seed=range(3)"])
    assert len(jobs) == 6
    assert ["reg=none", "seed=0"] in jobs
    assert [j[0] for j in expand_sweep(["reg=glob(drop*)"])] == ["reg=dropconnect", "reg=dropout", "reg=droppath"]
    assert len(expand_sweep(["p=choice(0.1,0.2)", "reg=dropout"])) == 2


def test_list_options():
    opts = list_options()
    assert set(opts["reg"]) >= {"none", "l1", "l2", "dropout", "vanilla_dropout", "droppath", "dropconnect"}
    assert set(opts["data"]) >= {"noisy_linear", "noisy_sine", "friedman1", "diabetes", "csv"}


# Pinned run ids, as the code computed them when this test was written. A run id names a run's
# folder and decides which runs a resumed or repeated sweep counts as finished, so a schema change
# that changes ids must be deliberate: update the ids here and say so in the commit message.
GOLDEN_RUN_IDS = [
    ([], "5b2c820cfcbb"),
    (["reg=dropout", "p=0.3"], "820a092d3474"),
    (["reg=[dropout,l2]"], "233390c80665"),
    (["reg=droppath", "model.depth=3"], "2690f186733f"),
    (["data=diabetes", "reg=l1"], "fe1bcd8c3b31"),
    (["optim=sgd"], "a6c85cdd7fa5"),
    (["dtype=float64"], "b1bf6c4e1cfd"),
    (["data=friedman1", "seed=7"], "74acd9d313d6"),
    (["reg=dropconnect", "model.activation=tanh", "epochs=100"], "8bbbb39b7641"),
    (["data=noisy_sine", "reg=vanilla_dropout", "engine=torch"], "1ba152172b7d"),
]


@pytest.mark.parametrize("overrides, run_id", GOLDEN_RUN_IDS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_run_ids_are_pinned(overrides, run_id):
    """A schema change that silently changes every id (and so re-runs every stored sweep) fails here."""
    assert load(overrides).run_id == run_id


# ---- seeds ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, key",
    [
        (["seed=18446744073709551616"], "seed=18446744073709551616"),
        (["data=friedman1", "seed=4294967296"], "seed=4294967296"),
        (["data=diabetes", "data.seed=-1"], "data.seed=-1"),
        (["data=friedman1", "data.seed=4294967296"], "data.seed=4294967296"),
        (["data=noisy_sine", "data.seed=-3"], "data.seed=-3"),
    ],
)
def test_seeds_outside_what_every_rng_accepts_are_refused(overrides, key):
    with pytest.raises(UserError, match=rf"invalid value {key}: must be in \[0, 4294967295\]"):
        load(overrides)


def test_the_largest_seed_reaches_every_data_set():
    from dropbench.data import load_dataset

    for data in ("noisy_linear", "friedman1", "diabetes"):
        assert load_dataset(load([f"data={data}", "seed=4294967295"])).n_features > 0


# ---- sweeps --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, msg",
    [
        (["seed=range(0)"], "seed=range(0) expands to no values"),
        (["reg=glob(xyz*)", "seed=1,2"], "reg=glob(xyz*) expands to no values, so the sweep has no runs; options of reg are"),
        (["reg=l1", "out=A,B"], "do not sweep over out (out=A,B)"),
        (["launcher=local,joblib"], "do not sweep over it (launcher=local,joblib)"),
        (["launcher.workers=1,2"], "do not sweep over it (launcher.workers=1,2)"),
        (["p=0.1,0.5", "reg=dropout", "reg.dropout.p=0.3"], "sweeping p changes no run: reg.dropout.p=0.3 overrides it"),
        (["reg=[dropout,l2]", "p=0.1,0.3", "reg.dropout.p=0.2"], "sweeping p changes no run: reg.dropout.p=0.2 overrides it"),
        (["reg=none", "p=0.2,0.5"], "sweeping p changes no run: no run has a dropout-family regularizer"),
        (["p=0.1,0.5", "p=0.3", "reg=dropout"], "p is given twice (p=0.1,0.5 and p=0.3)"),
        (["seed=range(1,5,0)"], "cannot expand the sweep"),
    ],
)
def test_bad_sweeps_are_one_line_errors(overrides, msg):
    with pytest.raises(UserError) as e:
        load_sweep(overrides)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_a_sweep_that_changes_only_some_runs_is_fine():
    # p changes the dropout runs; reg=none's two p values are one run (p is unused there).
    jobs = expand_sweep(["reg=none,dropout", "p=0.2,0.5"])
    assert len(jobs) == 4
    assert len({load(j).run_id for j in jobs}) == 3
    # The explicit key pins only the data's seed; the swept seed still changes the model's.
    assert len({load(j).run_id for j in expand_sweep(["seed=1,2", "data.seed=5"])}) == 2


# ---- did you mean --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, msg",
    [
        (["epoch=3"], "unknown key epoch (did you mean epochs?); list the keys with: dropbench run --cfg"),
        (["reg=dropout", "reg.dropout.pp=0.1"], "unknown key reg.dropout.pp (did you mean reg.dropout.p?)"),
        (["data.n_trian=3"], "unknown key data.n_trian (did you mean data.n_train?)"),
        (["hidden=3"], "unknown key hidden (did you mean model.hidden?)"),
        (["reg=dropot"], "unknown option reg=dropot (did you mean dropout?): choose from"),
        (["reg=[l2,dropot]"], "unknown option reg=[l2,dropot] (did you mean dropout?)"),
        (["launcher.worker=2"], "unknown key launcher.worker (did you mean launcher.workers?); launcher=local takes: workers"),
        (["launcher=joblib", "launcher.workers=2"], "unknown key launcher.workers; launcher=joblib takes: n_jobs"),
        (["+epoch=3"], "unknown key epoch (did you mean epochs?): known keys here are"),
    ],
)
def test_unknown_keys_and_options_suggest_the_closest(overrides, msg):
    with pytest.raises(UserError) as e:
        load(overrides)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(UserError) as e:
        load(["+foo=1"])
    assert "did you mean" not in str(e.value)


# ---- data=csv: the run id covers the file's contents, not its path ---------------------------
CSV_TEXT = "a,b,t\n" + "".join(f"{i},{i % 3},{2 * i - 1}\n" for i in range(12))


def _csv(path, text=CSV_TEXT, *extra):
    path.write_text(text)
    return load(["data=csv", f"data.path={path}", "data.target=t", *extra])


def test_csv_run_id_is_pinned(tmp_path):
    """Pinned like GOLDEN_RUN_IDS; it changed on purpose when the id began to hash the contents."""
    cfg = _csv(tmp_path / "d.csv")
    assert cfg.data.sha256 == "4747421312ad106ccad7c1ca52f809108a5c802a0eb3208dbf672c4def356875"
    assert cfg.run_id == "47f6078def19"


def test_editing_the_csv_changes_the_run_id(tmp_path):
    f = tmp_path / "d.csv"
    before = _csv(f)
    after = _csv(f, CSV_TEXT.replace("0,0,-1", "0,0,-2"))  # same size: only the contents differ
    assert after.run_id != before.run_id and after.data.sha256 != before.data.sha256


def test_one_file_at_two_paths_is_one_run(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    a = _csv(tmp_path / "d.csv")
    monkeypatch.chdir(tmp_path / "sub")
    b = _csv(tmp_path / "sub" / "copy.csv")
    c = load(["data=csv", "data.path=../sub/./copy.csv", "data.target=t"])
    assert a.run_id == b.run_id == c.run_id
    assert a.data.path != b.data.path


def test_a_relative_csv_path_is_saved_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _csv(tmp_path / "d.csv")
    rel = load(["data=csv", "data.path=d.csv", "data.target=t"])
    assert rel.data.path == str(tmp_path / "d.csv")
    monkeypatch.chdir("/")
    assert build(rel.to_dict()) == rel == cfg  # the saved config works from any folder


def test_a_saved_csv_config_refuses_an_edited_file(tmp_path):
    f = tmp_path / "d.csv"
    saved = _csv(f).to_dict()
    f.write_text(CSV_TEXT + "99,0,197\n")
    with pytest.raises(UserError, match=r"data.sha256=474742\w+ does not match .*d.csv .*the file changed since this config was saved"):
        build(saved)
    with pytest.raises(UserError, match="does not match"):
        load(["data=csv", f"data.path={f}", "data.target=t", f"data.sha256={saved['data']['sha256']}"])
    with pytest.raises(UserError, match="data.sha256='abc': must be 64 lowercase hex digits"):
        load(["data=csv", f"data.path={f}", "data.target=t", "data.sha256=abc"])


@pytest.mark.parametrize("make, msg", [(lambda p: None, "no such file"), (lambda p: p.mkdir(), "is a folder")])
def test_an_unreadable_csv_is_one_line(tmp_path, make, msg):
    make(tmp_path / "d.csv")
    with pytest.raises(UserError, match=f"data.path=.*d.csv: {msg}"):
        load(["data=csv", f"data.path={tmp_path / 'd.csv'}", "data.target=t"])


def test_a_cached_csv_hash_still_sees_an_edit(tmp_path, monkeypatch):
    from dropbench.config import identity  # the module that reads both names

    # Trust a file however recently it changed, so the cache is used; an edit of the same size
    # must still be seen (it changes the file's ctime).
    monkeypatch.setattr(identity, "_SETTLE_NS", -10**15)
    monkeypatch.setattr(identity, "_SHA_CACHE", {})
    f = tmp_path / "d.csv"
    before = _csv(f)
    assert identity._SHA_CACHE and load(["data=csv", f"data.path={f}", "data.target=t"]) == before
    assert _csv(f, CSV_TEXT.replace("0,0,-1", "0,0,-2")).run_id != before.run_id


# dropbench.config is one module per idea, each importing only those before it (no cycles).
CONFIG_LAYERS = ("coerce", "identity", "rules", "schema", "compose")


def test_config_is_one_module_per_idea_behind_one_api():
    import ast
    import importlib
    import subprocess
    import sys
    from pathlib import Path

    import dropbench.config as config

    mods = {n: importlib.import_module(f"dropbench.config.{n}") for n in CONFIG_LAYERS}
    assert all(m.__doc__ for m in mods.values())
    for name in config.__all__:  # every name callers use resolves, to the object its home module holds
        assert any(getattr(m, name, None) is getattr(config, name) for m in mods.values()), name
    home = {"from_dict": "coerce", "UNHASHED_KEYS": "identity", "TABLE_KEY": "rules", "RunConfig": "schema",
            "build": "schema", "load": "compose", "load_sweep": "compose"}
    assert all(getattr(mods[m], n) is getattr(config, n) for n, m in home.items())
    # Module state is not re-exported: a monkeypatch of the package would patch a copy nobody reads.
    assert not any(hasattr(config, s) for s in ("_SHA_CACHE", "_SETTLE_NS"))
    for i, name in enumerate(CONFIG_LAYERS):
        tree = ast.parse(Path(mods[name].__file__).read_text())
        used = {n.module.rsplit(".", 1)[1] for n in tree.body
                if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("dropbench.config.")}
        assert used <= set(CONFIG_LAYERS[:i]), (name, used)
    # Hydra, torch and numpy stay lazy (dropbench --help and report import the package; config never
    # reads data).
    code = "import sys, dropbench.config; print(sorted({'torch', 'numpy', 'hydra', 'omegaconf'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


# ---- non-finite numbers ----------------------------------------------------------------------
def _float_keys() -> list[tuple[list[str], str]]:
    """(the overrides that select its class, the key) for every float key of the schema: each
    option of data, model and optim, eval and the top level, and every registered regularizer's
    Config (read from the registry, so a new regularizer is covered)."""
    import dataclasses
    import typing

    from dropbench import regs
    from dropbench.config import DATA, MODELS, OPTIMS, RunConfig

    def floats(cls: type) -> list[str]:
        hints = typing.get_type_hints(cls)
        return [f.name for f in dataclasses.fields(cls) if hints[f.name] in (float, float | None)]

    required = {"csv": ["data.path=PATH", "data.target=y"], "uci": ["data.dataset=yacht"]}
    out = []
    for group, table in (("data", DATA), ("model", MODELS), ("optim", OPTIMS)):
        for name, cls in table.items():
            out += [([f"{group}={name}", *required.get(name, [])], f"{group}.{k}") for k in floats(cls)]
    for f in dataclasses.fields(RunConfig):
        nested = f.default if dataclasses.is_dataclass(f.default) else None
        out += [([], f"{f.name}.{k}") for k in floats(type(nested))] if nested is not None else []
    out += [([], k) for k in floats(RunConfig)]
    for name, reg in regs.REGISTRY.items():
        out += [([f"reg={name}"], f"reg.{name}.{k}") for k in floats(reg.Config)]
    return out


FLOAT_KEYS = _float_keys()


def test_the_float_keys_cover_the_schema():
    keys = {k for _, k in FLOAT_KEYS}
    assert {"optim.lr", "reg.l1.weight", "reg.input_noise.sigma", "eval.tau", "p", "data.noise", "reg.l2.prior_length_scale"} <= keys


@pytest.mark.parametrize("select, key", FLOAT_KEYS, ids=[k if not s else f"{s[0]}:{k}" for s, k in FLOAT_KEYS])
def test_every_float_key_refuses_non_finite_values_before_training(select, key, tmp_path):
    """inf passes a one-sided range (lr > 0) and NaN no range: both are refused where every value
    is coerced, in one line naming the key, not later as a run that "diverged"."""
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,2\n3,4\n5,6\n7,8\n")
    select = [s.replace("PATH", str(data)) for s in select]
    for value in ("inf", "-inf", "nan", "1e400"):
        with pytest.raises(UserError) as e:
            load([*select, f"{key}={value}"])
        shown = {"1e400": "inf"}.get(value, value)
        assert str(e.value) == f"invalid value {key}={shown}: must be a finite number"


# ---- a key's default (check compares a key its baseline predates with it) --------------------
def _every_option() -> list[list[str]]:
    from dropbench import regs
    from dropbench.config import DATA, OPTIMS

    required = {"csv": ["data.path=PATH", "data.target=y"], "uci": ["data.dataset=yacht"]}
    return ([[f"data={d}", *required.get(d, [])] for d in DATA] + [[f"optim={o}"] for o in OPTIMS]
            + [[f"reg={r}"] for r in regs.REGISTRY] + [["reg=[dropout,l2]"], ["reg=[droppath,l1]"]])


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("overrides", _every_option(), ids=" ".join)
def test_key_default_is_what_a_run_of_those_choices_composes(overrides, tmp_path):
    """key_default reads the dataclasses (no Hydra): it must agree with conf/ for every key of
    every option and regularizer, the derived ones (p, model.residual) included."""
    from dropbench.config import key_default

    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,2\n3,4\n5,6\n7,8\n")
    cfg = load([o.replace("PATH", str(data)) for o in overrides])
    no_default = {"data.path", "data.target", "data.dataset", "data.sha256"}  # given, or read from the file
    for key, value in cfg.flat().items():
        if key in no_default:
            with pytest.raises(KeyError):
                key_default(key, cfg.choices())
        else:
            assert key_default(key, cfg.choices()) == value, key
    assert key_default("reg.l2.biases", {**cfg.choices(), "reg": "none"}) is None, "a regularizer not chosen: no value"
    for unknown in ("reg.l2.future", "model.future", "future", "eval", "out"):
        with pytest.raises(KeyError):
            key_default(unknown, cfg.choices())


@pytest.mark.parametrize("folder", ["plain", "my results/it's", 'say "hi"', "a,b", "C:\\x\\", 'back\\"q', "tab\there", "x=y z"])
def test_a_folder_quoted_as_an_override_reads_back_as_itself(folder):
    """runner and tune re-plan sweeps into out=FOLDER; a space, quote or comma must survive."""
    from dropbench.config import out_override, quote_value

    assert out_override(f"out={quote_value(folder)}") == folder
    assert load([f"out={quote_value(folder)}"]).out == folder


def test_out_takes_one_folder():
    from dropbench.config import out_override

    assert out_override("out=null") is None and out_override("out=results/a") == "results/a"
    with pytest.raises(UserError, match="out takes one folder"):
        out_override("out=a,b")
