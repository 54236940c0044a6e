"""Building a config reads no data and imports no torch; the values derived from data or the machine
(device=auto, reg.l2.weight_decay from reg.l2.prior_length_scale) are resolved by dropbench.derive,
once per data config, before runs are planned, and a config that still needs them gives no run id."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from dropbench import config, data, derive, runner
from dropbench.data.uci import catalog, fetch, splits
from dropbench.errors import UserError
from dropbench.regs.l2 import prior_weight_decay
from test_uci import write_tree

E16, E18 = "+experiment=uci_mc_dropout_2016", "+experiment=uci_mc_dropout_2018"
PRIOR = ["data=friedman1", "reg=[dropout,l2]", "p=0.2", "eval.tau=0.5", "reg.l2.weight_decay=null",
         "reg.l2.prior_length_scale=0.3"]
PACKAGE = Path(data.__file__).resolve().parents[1]


def test_importing_config_imports_neither_torch_nor_numpy():
    code = "import dropbench.config, sys; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def no_data(monkeypatch):
    """Every way of reading a data set raises: building a config must not need one."""
    def refuse(*a, **k):
        raise AssertionError("a config was built by reading data")

    for mod in data.REGISTRY.values():
        monkeypatch.setattr(mod, "load", refuse)
        monkeypatch.setattr(mod, "n_trained", refuse)
    for mod, names in ((data, ("load_dataset", "n_trained")), (fetch, ("fetch", "download")),
                       (splits, ("load_split", "dataset"))):
        for name in names:
            monkeypatch.setattr(mod, name, refuse)


@pytest.mark.parametrize("overrides", [
    *([f"data={d}"] for d in data.REGISTRY if d not in ("csv", "uci")),
    ["data=uci", "data.dataset=naval", "data.split=7", "data.holdout=validation"],
    [E16, "data.dataset=yacht", "data.split=3"],
    [E18, "data.dataset=power_plant", "reg=[dropout,l2,early_stopping]"],
    ["device=auto", *PRIOR],
], ids=" ".join)
def test_building_any_config_reads_no_data(overrides, no_data):
    cfg = config.load(overrides)
    assert config.build(cfg.to_dict()) == cfg  # and rebuilding it from its saved form
    assert len(config.load_sweep([*overrides, "seed=1,2"])) == 2


def test_a_csv_config_hashes_its_file_but_does_not_load_it(tmp_path, no_data):
    f = tmp_path / "d.csv"
    f.write_text("a,t\n1,2\n3,4\n5,6\n")
    cfg = config.load(["data=csv", f"data.path={f}", "data.target=t"])
    assert len(cfg.data.sha256) == 64 and len(cfg.run_id) == 12


@pytest.mark.parametrize("overrides, key", [(PRIOR, "reg.l2.weight_decay"), (["device=auto"], "device")])
def test_a_config_that_needs_deriving_gives_no_run_id(overrides, key):
    cfg = config.load(overrides)
    assert cfg.unresolved == (key,)
    with pytest.raises(ValueError, match=rf"^{key} not resolved yet: dropbench.derive.resolve"):
        cfg.run_id
    (done,) = derive.resolve([cfg])
    assert done.unresolved == () and len(done.run_id) == 12
    assert derive.resolve([done]) == [done]  # resolving again changes nothing


def test_device_auto_is_saved_as_the_device_that_runs():
    import torch

    (cfg,), _ = runner.plan(["device=auto"])
    assert cfg.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert cfg.run_id == config.load([f"device={cfg.device}"]).run_id


def test_planning_reads_each_data_configs_size_once(monkeypatch):
    read = []
    for name, mod in data.REGISTRY.items():
        real = mod.n_trained
        monkeypatch.setattr(mod, "n_trained", lambda conf, v, real=real: read.append(conf) or real(conf, v))
    cfgs, _ = runner.plan([*PRIOR, "seed=range(6)", "data.n_train=50,100"], multirun=True)
    assert len(cfgs) == 12 and len(read) == 2  # 6 seeds share each data config (friedman1 draws from the seed, not its size)
    n = {c.data.n_train: c.reg.l2.weight_decay for c in cfgs}
    assert n == {m: pytest.approx(prior_weight_decay(0.3, 0.2, m, 0.5), rel=1e-15) for m in (50, 100)}


@pytest.fixture
def uci_root(tmp_path, monkeypatch) -> Path:
    """tests/test_uci.py's fixture tree: yacht with 3 splits of 8 training rows."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(fetch.ENV_URL, "http://127.0.0.1:9/closed")
    monkeypatch.setattr(fetch, "_VERIFIED", {})
    monkeypatch.setattr(catalog, "MANIFEST", {**catalog.MANIFEST, **write_tree(tmp_path / "uci")})
    return tmp_path / "uci"


def test_the_uci_experiment_derives_n_from_the_index_file_alone(uci_root, monkeypatch):
    """N of a UCI split is its index_train file's length: planning reads no data.txt (a data set's
    n_trained reads no more than it must), and the decay uses it per split."""
    read = []
    real = fetch._read_verified
    monkeypatch.setattr(fetch, "_read_verified", lambda path, *a, **k: read.append(path.name) or real(path, *a, **k))
    cfgs, _ = runner.plan([E16, "data.dataset=yacht", "data.split=0,1", f"data.root={uci_root}"], multirun=True)
    assert sorted(read) == ["index_train_0.txt", "index_train_1.txt"]
    p, tau, l = 0.01, 0.541869562034, 0.1  # the 2016 table's yacht row
    assert [c.reg.l2.weight_decay for c in cfgs] == [pytest.approx(prior_weight_decay(l, p, 8, tau), rel=1e-15)] * 2


def test_a_saved_config_with_another_weight_decay_is_refused(tmp_path):
    (cfg,), _ = runner.plan(PRIOR)
    saved = cfg.to_dict()
    saved["reg"]["l2"]["weight_decay"] = 0.5
    with pytest.raises(UserError, match=r"^reg.l2.weight_decay=0.5 contradicts reg.l2.prior_length_scale=0.3, which derives"):
        derive.resolve([config.build(saved)])


# ---- layers: what sits below config never imports it -------------------------------------------
LOWER = ["params.py", "atomic.py", "plugins.py", "errors.py", "data", "models"]
HIGHER = ("dropbench.config", "dropbench.derive", "dropbench.runner", "dropbench.engines", "dropbench.tuning", "dropbench.tune_spec",
          "dropbench.tune_grid", "dropbench.tune_edges", "dropbench.tune_summary", "dropbench.cli", "dropbench.api", "dropbench.sweep")


def _imports(path: Path) -> set[str]:
    """Modules a file imports outside `if TYPE_CHECKING:` blocks (at any depth: lazy imports count)."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_data_models_and_params_never_import_what_builds_on_them():
    files = [f for p in LOWER for f in ([PACKAGE / p] if p.endswith(".py") else sorted((PACKAGE / p).rglob("*.py")))]
    assert len(files) > 10
    bad = {str(f.relative_to(PACKAGE)): sorted(m for m in _imports(f) if m.startswith(HIGHER)) for f in files}
    assert {f: m for f, m in bad.items() if m} == {}
    for name in ("params.py", "atomic.py", "plugins.py", "data/base.py", "data/uci/catalog.py"):
        ours = {m for m in _imports(PACKAGE / name) if m.startswith("dropbench")}
        assert ours <= {"dropbench", "dropbench.errors", "dropbench.errors.UserError", "dropbench.errors.did_you_mean",
                        "dropbench.params", "dropbench.params.param"}, (name, ours)
