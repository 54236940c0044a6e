"""Property-based tests: whatever a user types, the loaders answer with a config or a UserError."""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropbench.config import build, load
from dropbench.data import load_dataset
from dropbench.errors import UserError

KEYS = ["p", "seed", "epochs", "eval_every", "dtype", "device", "engine", "model.hidden", "model.depth",
        "model.activation", "model.placement", "optim.lr", "data.n_train", "data.noise", "reg", "data", "optim",
        "launcher", "bogus", "model.bogus"]
VALUES = st.one_of(
    st.integers(-5, 5).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["relu", "tanh", "none", "dropout", "[dropout,l2]", "null", "true", "''", "csv", "sgd", "-1"]),
    st.text(string.ascii_letters + string.digits + "._-[],", max_size=8),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=4))
def test_config_loader_never_crashes(pairs):
    overrides = [f"{k}={v}" for k, v in pairs]
    try:
        cfg = load(overrides)
    except UserError as e:
        assert "\n" not in str(e) and str(e)
        return
    assert (cfg.p is None or 0 <= cfg.p < 1) and cfg.epochs > 0 and cfg.model.hidden > 0
    assert build(cfg.to_dict()) == cfg


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
                    lambda c: st.dictionaries(st.sampled_from(["data", "model", "reg", "optim", "name", "p", "seed", "x"]), c, max_size=4),
                    max_leaves=8))
def test_saved_config_loader_rejects_garbage_cleanly(d):
    try:
        build(d if isinstance(d, dict) else {"seed": d})
    except UserError as e:
        assert "\n" not in str(e)


CELL = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-9, 9).map(str),
                 st.text(string.printable.replace("\r", ""), max_size=6))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(CELL, min_size=1, max_size=4), max_size=8), st.booleans())
def test_csv_loader_never_crashes(tmp_path, rows, with_header):
    f = tmp_path / "fuzz.csv"
    lines = (["a,b,t"] if with_header else []) + [",".join(r) for r in rows]
    f.write_text("\n".join(lines))
    try:
        d = load_dataset(load(["data=csv", f"data.path={f}", "data.target=t"]))
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert d.x_train.isfinite().all() and d.y_train.isfinite().all()
