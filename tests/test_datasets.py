"""Every registered data set (dropbench/data/), read from the registry: a new data set module and
its YAML are covered without editing this file.

The data sets that need more than their defaults get it here (REQUIRED): a small CSV, and the UCI
fixture tree of tests/test_uci.py behind a fixture manifest (no network, no real files).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import pytest
import torch

from dropbench import data, params
from dropbench.config import build, list_options, load
from dropbench.data import base
from dropbench.data.uci import catalog, fetch
from dropbench.errors import UserError
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


def rows(x: torch.Tensor, y: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in torch.cat([x, y], 1).tolist()}


def test_every_data_set_is_one_module_and_one_yaml():
    assert set(list_options()["data"]) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_a_data_set_loads_with_its_defaults_in_the_shapes_engines_expect(name, given):
    d = data.load_dataset(load(given(name)))
    n, f = d.x_train.shape
    assert f == d.n_features >= 1 and n >= base.MIN_TRAIN_ROWS
    assert d.y_train.shape == (n, 1) and d.x_test.shape[1] == f and d.y_test.shape == (len(d.x_test), 1)
    assert len(d.x_test) >= 1 and d.x_val is None and d.y_val is None
    for t in (d.x_train, d.y_train, d.x_test, d.y_test):
        assert t.dtype == torch.float32 and t.device.type == "cpu" and torch.isfinite(t).all()
    assert d.y_std > 0


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_data_and_another_seed_other_data_where_it_draws(name, given):
    a, b = (data.load_dataset(load([*given(name), "seed=3"])) for _ in range(2))
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    c = data.load_dataset(load([*given(name), "seed=4"]))
    if "seed" in fields_of(name):  # a data set with a seed draws from it (data=uci's splits are fixed)
        assert not all(torch.equal(getattr(a, k), getattr(c, k)) for k in ("x_train", "y_train", "x_test", "y_test"))


@pytest.mark.parametrize("name", NAMES)
def test_training_and_test_rows_are_disjoint(name, given):
    if name in SHARED_X:
        pytest.skip(f"data={name}: {SHARED_X[name]}")
    d = data.load_dataset(load(given(name)))
    assert not rows(d.x_train, d.y_train) & rows(d.x_test, d.y_test)


def _holdouts(name: str) -> list[str]:
    return ["none", "validation"] if "holdout" in fields_of(name) else ["none"]


@pytest.mark.parametrize("name", NAMES)
def test_n_trained_is_what_load_trains_on_without_loading(name, given):
    """The count derived values use (reg.l2.prior_length_scale) before planning, for every
    hold-out: data.holdout and a loop-slot regularizer's validation rows."""
    mod = data.REGISTRY[name]
    for held in _holdouts(name):
        conf = load([*given(name), f"data.holdout={held}"] if held != "none" else given(name)).data
        for fraction in (0.0, 0.2, 0.5):
            assert mod.n_trained(conf, fraction) == len(mod.load(conf, 1, fraction).x_train), (held, fraction)


@pytest.mark.parametrize("name", NAMES)
def test_the_holdout_rule(name, given):
    """data.holdout=validation: the first int(0.8 n) training rows are trained on, the rest are
    the test rows; a loop-slot regularizer's validation rows come out of the rows trained on."""
    mod = data.REGISTRY[name]
    plain = load(given(name)).data
    if "standardize" in fields_of(name):  # compare the rows themselves, not their scaling
        plain = dataclasses.replace(plain, standardize=False)
    full = mod.load(plain, 1, 0.0)
    n = len(full.x_train)
    if "holdout" in fields_of(name):
        held = mod.load(dataclasses.replace(plain, holdout="validation"), 1, 0.0)
        k = int(base.HOLDOUT_FIT * n)
        assert (len(held.x_train), len(held.x_test)) == (k, n - k)
        if "standardize" in fields_of(name):
            assert torch.equal(held.x_train, full.x_train[:k]) and torch.equal(held.x_test, full.x_train[k:])
    val = mod.load(plain, 1, 0.25)
    n_val = base.validation_rows(n, 0.25, name)
    assert (len(val.x_train), len(val.x_val), len(val.y_val)) == (n - n_val, n_val, n_val)
    if "standardize" in fields_of(name) or name in SHARED_X:  # unscaled: the same rows, split in two
        assert rows(val.x_train, val.y_train) | rows(val.x_val, val.y_val) == rows(full.x_train, full.y_train)
        assert not rows(val.x_train, val.y_train) & rows(val.x_val, val.y_val)


def _bad_values(name: str) -> list[tuple[str, object]]:
    """(key, a value its declared constraint refuses) for every constrained key of the Config."""
    hints = typing.get_type_hints(data.REGISTRY[name].Config)
    out = []
    for key, c in params.constraints(data.REGISTRY[name].Config):
        for v in c.outside():
            if hints[key] in (int, int | None) and isinstance(v, float):
                lo = getattr(c, "lo", -math.inf)
                v = math.floor(v) if v < lo or (v == lo and c.lo_open) else math.ceil(v)
            out.append((key, v))
    return out


@pytest.mark.parametrize("name, key, value", [(n, k, v) for n in NAMES for k, v in _bad_values(n)],
                         ids=lambda x: str(x))
def test_a_bad_value_is_one_line_naming_the_key(name, key, value, given):
    d = {o.split("=", 1)[0].removeprefix("data."): o.split("=", 1)[1] for o in given(name)[1:]}
    with pytest.raises(UserError) as e:
        build({"data": {"name": name, **d, key: value}})
    msg = str(e.value)
    assert msg.startswith(f"invalid value data.{key}={value!r}") and "must be" in msg and "\n" not in msg


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
