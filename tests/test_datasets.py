"""Every registered data set (dropbench/data/), read from the registry: a new data set module and
its YAML are covered without editing this file.

The data sets that need more than their defaults get it here (REQUIRED): a small CSV, and the UCI
fixture tree of tests/test_uci.py behind a fixture manifest (no network, no real files).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dropbench import data, params, testing
from dropbench.config import list_options
from dropbench.data.uci import catalog, fetch
from test_uci import write_tree

NAMES = list(data.REGISTRY)
# Data sets whose test rows share the training rows' inputs, by design (not a leak).
SHARED_X = {"noisy_linear": "seed 003 tests on the training x with fresh noise", "noisy_sine": "noisy_linear's recipe"}


def _csv(tmp_path: Path) -> list[str]:
    f = tmp_path / "d.csv"
    f.write_text("a,b,t\n" + "".join(f"{i},{(i * 7) % 5},{2 * i - 1}\n" for i in range(40)))
    return [f"data.path={f}", "data.target=t"]


def _uci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(fetch.ENV_URL, "http://127.0.0.1:9/closed")
    monkeypatch.setattr(fetch, "_VERIFIED", {})
    monkeypatch.setattr(catalog, "MANIFEST", {**catalog.MANIFEST, **write_tree(tmp_path / "uci")})
    return ["data.dataset=yacht", f"data.root={tmp_path / 'uci'}"]


REQUIRED = {"csv": _csv, "uci": _uci}


@pytest.fixture
def given(tmp_path, monkeypatch):
    """name -> the overrides that select it with everything it requires."""
    def overrides(name: str) -> list[str]:
        need = REQUIRED.get(name)
        if need is None:
            return [f"data={name}"]
        return [f"data={name}", *(need(tmp_path, monkeypatch) if name == "uci" else need(tmp_path))]

    return overrides


def fields_of(name: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(data.REGISTRY[name].Config)}


def test_every_data_set_is_one_module_and_one_yaml():
    assert set(list_options()["data"]) == set(NAMES)


# The properties are dropbench.testing's (check_dataset runs them on a plug-in).
@pytest.mark.parametrize("name", NAMES)
def test_a_data_set_loads_with_its_defaults_in_the_shapes_engines_expect(name, given):
    testing.data_loads_in_shape(given(name))


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_data_and_another_seed_other_data_where_it_draws(name, given):
    testing.data_seeded(name, given(name))


@pytest.mark.parametrize("name", NAMES)
def test_training_and_test_rows_are_disjoint(name, given):
    if name in SHARED_X:
        pytest.skip(f"data={name}: {SHARED_X[name]}")
    testing.data_disjoint(name, given(name))


@pytest.mark.parametrize("name", NAMES)
def test_n_trained_is_what_load_trains_on_without_loading(name, given):
    """The count derived values use (reg.l2.prior_length_scale) before planning, for every
    hold-out: data.holdout and a loop-slot regularizer's validation rows."""
    testing.data_n_trained(name, given(name))


@pytest.mark.parametrize("name", NAMES)
def test_the_holdout_rule(name, given):
    """data.holdout=validation: the first int(0.8 n) training rows are trained on, the rest are
    the test rows; a loop-slot regularizer's validation rows come out of the rows trained on."""
    testing.data_holdout_rule(name, given(name), shared_x=name in SHARED_X)


@pytest.mark.parametrize("name, key, value", [(n, k, v) for n in NAMES for k, v in testing.data_bad_values(n)],
                         ids=lambda x: str(x))
def test_a_bad_value_is_one_line_naming_the_key(name, key, value, given):
    testing.data_bad_value_is_one_line(name, key, value, given(name))


def test_every_data_set_declares_its_constraints():
    """Most keys of the built-in data sets are constrained; a Config declares them, never a validate()."""
    for name, mod in data.REGISTRY.items():
        assert not hasattr(mod.Config, "validate"), name
    assert {k for k, _ in params.constraints(data.REGISTRY["noisy_linear"].Config)} == {"n_train", "n_test", "noise", "seed"}


# ---- the registry refuses a module that does not declare a data set ---------------------------
@pytest.mark.parametrize("source, msg", [
    ("from dataclasses import dataclass\nfrom typing import Literal\n\n@dataclass(frozen=True)\nclass Config:\n"
     "    name: Literal['broken'] = 'broken'\n",
     "PKG/broken declares no load, n_trained: a data set declares Config, load, n_trained"),
    ("def load(conf, seed, validation): ...\ndef n_trained(conf, validation): ...\n",
     "PKG/broken declares no Config"),
    ("from dataclasses import dataclass\nfrom typing import Literal\n\n@dataclass(frozen=True)\nclass Config:\n"
     "    name: Literal['other'] = 'other'\n\ndef load(c, s, v): ...\ndef n_trained(c, v): ...\n",
     "PKG/broken: Config needs the field name: Literal['broken'] = 'broken'"),
    ("from dataclasses import dataclass\nfrom typing import Literal\n\n@dataclass\nclass Config:\n"
     "    name: Literal['broken'] = 'broken'\n\ndef load(c, s, v): ...\ndef n_trained(c, v): ...\n",
     "PKG/broken: Config must be a frozen dataclass"),
    ("from dataclasses import dataclass\nfrom typing import Literal\n\n@dataclass(frozen=True)\nclass Config:\n"
     "    name: Literal['broken'] = 'broken'\n\nload = 1\ndef n_trained(c, v): ...\n",
     "PKG/broken: load must be a function"),
])
def test_a_module_without_the_declarations_is_refused_in_one_line(source, msg, tmp_path, monkeypatch):
    name = f"pkg_{tmp_path.name}"  # a package of its own: a module imported once stays imported
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text("SHARED = True\n")  # shared code, skipped as data/base.py is
    (pkg / "broken.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeError) as e:
        data.discover(name, [str(pkg)])
    assert str(e.value).startswith(msg.replace("PKG", name)) and "\n" not in str(e.value)


def test_a_module_with_the_declarations_is_found(tmp_path, monkeypatch):
    pkg = tmp_path / "okdata"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tiny.py").write_text(
        "from dataclasses import dataclass\nfrom typing import Literal\n\n@dataclass(frozen=True)\nclass Config:\n"
        "    name: Literal['tiny'] = 'tiny'\n\ndef load(conf, seed, validation): ...\ndef n_trained(conf, validation): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(data.discover("okdata", [str(pkg)])) == ["tiny"]
