"""Property-based tests: whatever a user types, the loaders answer with a config or a UserError."""

import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dropbench.config import build, load
from dropbench.data import load_dataset
from dropbench.errors import AllRunsFailed, UserError

KEYS = ["p", "seed", "epochs", "eval_every", "dtype", "device", "engine", "model.hidden", "model.depth",
        "model.activation", "model.placement", "optim.lr", "data.n_train", "data.noise", "reg", "data", "optim",
        "launcher", "bogus", "model.bogus"]
VALUES = st.one_of(
    st.integers(-5, 5).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["relu", "tanh", "none", "dropout", "[dropout,l2]", "null", "true", "''", "csv", "sgd", "-1"]),
    st.text(string.ascii_letters + string.digits + "._-[],", max_size=8),
)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
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


@settings(max_examples=60, deadline=None, derandomize=True)
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


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(CELL, min_size=1, max_size=4), max_size=8), st.booleans())
@example(rows=[['"'], ['"']], with_header=False)  # a header of one quoted newline: found by CI's fuzzing
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


VALID = {  # what dropbench writes in each column; the fuzzer damages about one cell in ten
    "run_id": st.text("0123456789abcdef", min_size=1, max_size=3), "reg": st.sampled_from(["none", "l2", "dropout", ""]),
    "seed": st.integers(0, 3).map(str), "status": st.sampled_from(["ok", "ok", "failed"]), "p": st.sampled_from(["", "0.5", "0.2"]),
    "final_train_mse": st.floats(0, 2).map(repr), "final_test_mse": st.floats(0, 2).map(repr), "junk": CELL,
    "seeds": st.integers(0, 5).map(str), "test_mean": st.floats(0, 2).map(repr), "test_std": st.floats(0, 1).map(repr),
    "train_mean": st.floats(0, 2).map(repr), "train_std": st.floats(0, 1).map(repr), "n_seeds": st.integers(0, 5).map(str),
    # The JSON columns of a baseline, CSV-quoted as dropbench writes them (a config that may
    # disagree with the runs, a platform list), or damaged.
    "config": st.sampled_from(['"{""reg"": ""none""}"', '"{""p"": """"}"', '"{""junk"": [""a"", ""b""]}"', '"{}"', '"[1]"', "{", '""']),
    "platform": st.sampled_from(['"[]"', '"[{""torch_version"": ""2.13.0"", ""cpu_capability"": ""AVX2"", ""runs"": 3}]"', '"[1]"', '"{}"']),
}
RUN_COLUMNS = ["run_id", "reg", "seed", "final_train_mse", "final_test_mse", "status", "p", "junk"]
BASELINE_COLUMNS = ["reg", "n_seeds", "test_mean", "test_std", "train_mean", "train_std", "p", "config", "platform"]


def _damaged(columns: list[str]) -> st.SearchStrategy[list[list[str]]]:
    cell = lambda c: st.sampled_from([True] * 9 + [False]).flatmap(lambda ok: VALID[c] if ok else CELL)  # noqa: E731
    return st.lists(st.tuples(*[cell(c) for c in columns]).map(list), max_size=10)


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n"


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.permutations(RUN_COLUMNS).flatmap(lambda cols: st.integers(len(cols) - 2, len(cols)).map(lambda n: cols[:n]))
       .flatmap(lambda h: st.tuples(st.just(h), _damaged(h))),
       st.permutations(BASELINE_COLUMNS).flatmap(lambda cols: st.integers(len(cols) - 3, len(cols)).map(lambda n: cols[:n]))
       .flatmap(lambda h: st.tuples(st.just(h), _damaged(h))))
@example(runs=(RUN_COLUMNS[:6], [["0", "none", "0", "0.0", "0.0", "failed"]]), baseline=(BASELINE_COLUMNS[:6], []))  # every run failed
def test_report_and_check_read_damaged_results_cleanly(tmp_path, runs, baseline):
    """report and check on a damaged runs.csv and baseline: a result or a one-line UserError
    (a folder whose runs all failed: that line, then one indented line per reason)."""
    from dropbench.check import run_check
    from dropbench.report import build_report

    folder = tmp_path / "sweep"
    folder.mkdir(exist_ok=True)
    (folder / "runs.csv").write_text(_table(*runs))
    base = tmp_path / "base.csv"
    base.write_text(_table(*baseline))
    from dropbench.check import read_baseline

    new = tmp_path / "new.csv"
    new.unlink(missing_ok=True)
    for call in (lambda: build_report([folder]), lambda: run_check(folder, base), lambda: run_check(folder, new, update=True)):
        try:
            call()
        except AllRunsFailed as e:
            first, *reasons = str(e).splitlines()
            assert first.startswith("every run in ") and reasons and all(r.startswith("  ") and "\n" not in r for r in reasons), str(e)
        except UserError as e:
            assert "\n" not in str(e)
    if new.exists():  # a baseline that was written reads back, and a sweep passes against its own baseline
        read_baseline(new)
        assert run_check(folder, new).passed
