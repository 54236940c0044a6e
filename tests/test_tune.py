"""dropbench tune: select on the validation hold-out inside each split, retrain, test.

A fixture UCI folder (tests/test_uci.py's layout) whose two splits want opposite values of the
model precision tau: split 0's validation rows lie on the training rows' target level, split 1's
far from it. The Gaussian log-likelihood's best tau is 1/(squared error), so split 0 must choose
the large tau and split 1 the small one, whatever the tiny network learns (its predictions stay
within a few training SDs of the training mean, 0.01 here, against residuals of ~0.05 and ~45).
"""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dropbench import tune_edges
from dropbench import tuning as tune
from dropbench.data.uci import catalog, fetch
from dropbench.cli import app
from test_uci import write_tree

# 20 rows: x1, x2, y. Training rows 0-9 of each split: rows 0-7 are trained on (int(0.8 * 10)),
# rows 8-9 validate. Split 0 validates on rows at y ~ 5, split 1 on rows at y ~ 50.
_rng = np.random.default_rng(0)
_x = _rng.normal(size=(20, 2))
_y = np.r_[5 + 0.01 * _rng.normal(size=8), 5.0, 5.0, 50.0, 50.0, 5 + 0.01 * _rng.normal(size=8)]
DATA = np.c_[_x, _y, np.zeros(20)]
SPLITS = [
    (list(range(8)) + [8, 9], [18, 19]),  # validation rows 8, 9: y = 5
    (list(range(8)) + [10, 11], [18, 19]),  # validation rows 10, 11: y = 50
]
TINY = ["model.hidden=8", "model.depth=1", "epochs=5", "eval_every=5"]


@pytest.fixture
def uci_root(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(fetch.ENV_URL, "http://127.0.0.1:9/closed")
    monkeypatch.setattr(fetch, "_VERIFIED", {})
    m = write_tree(tmp_path / "uci", data=DATA, splits=SPLITS)
    monkeypatch.setattr(catalog, "MANIFEST", {**catalog.MANIFEST, **m})
    monkeypatch.setenv(fetch.ENV_DIR, str(tmp_path / "uci"))
    return tmp_path / "uci"


def invoke(*args: str):
    return CliRunner().invoke(app, ["tune", *args])


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


BASE = ["-m", "data=uci", "data.dataset=yacht", "data.split=0,1", *TINY]


def test_each_split_chooses_its_own_value_and_the_final_run_uses_it(uci_root, tmp_path):
    out = tmp_path / "t"
    res = invoke(*BASE, "reg=none", "--over", "eval.tau=0.01,100", "--metric", "test_ll", f"out={out}")
    assert res.exit_code == 0, res.output
    tuned = {r["data.split"]: r for r in rows(out / "tuned.csv")}
    assert tuned["0"]["eval.tau"] == "100.0" and tuned["1"]["eval.tau"] == "0.01"
    # The search ran on the hold-out (the last 2 of 10 training rows), the final runs on all 10 rows.
    search = {r["run_id"]: r for r in rows(out / "search" / "runs.csv")}
    final = {r["run_id"]: r for r in rows(out / "final" / "runs.csv")}
    assert len(search) == 4 and {r["data.holdout"] for r in search.values()} == {"validation"}
    assert len(final) == 2 and {r["data.holdout"] for r in final.values()} == {"none"}
    for split, t in tuned.items():
        s, f = search[t["search_run_id"]], final[t["run_id"]]
        assert (s["data.split"], s["eval.tau"]) == (f["data.split"], f["eval.tau"]) == (split, t["eval.tau"])
        assert float(t["val_ll"]) == float(s["final_test_ll"]) and float(t["test_ll"]) == float(f["final_test_ll"])
        others = [r for r in search.values() if r["data.split"] == split and r["run_id"] != s["run_id"]]
        assert all(float(o["final_test_ll"]) < float(s["final_test_ll"]) for o in others)  # higher is better
    # The final runs are ordinary runs: the same config trained by `dropbench run` has the same id.
    from dropbench.config import load

    plain = load(["data=uci", "data.dataset=yacht", "data.split=1", *TINY, "reg=none", "eval.tau=0.01"])
    assert plain.run_id == tuned["1"]["run_id"]


def test_lower_is_better_for_an_mse_and_better_overrides_it(uci_root, tmp_path):
    # Split 1's validation rows lie far from what is trained on: its test_mse is the larger. Tuning
    # over the split itself is not allowed, so tune over data.split as --over with one base job.
    args = ["data=uci", "data.dataset=yacht", *TINY, "reg=none", "--over", "data.split=0,1"]
    res = invoke(*args, "--metric", "test_mse", f"out={tmp_path / 'low'}")
    assert res.exit_code == 0, res.output
    assert rows(tmp_path / "low" / "tuned.csv")[0]["data.split"] == "0"
    res = invoke(*args, "--metric", "test_mse", "--better", "higher", f"out={tmp_path / 'high'}")
    assert res.exit_code == 0, res.output
    assert rows(tmp_path / "high" / "tuned.csv")[0]["data.split"] == "1"


def _cfg(run_id: str):
    from types import SimpleNamespace

    return SimpleNamespace(run_id=run_id)


def test_select_direction_ties_and_failures():
    cands = [_cfg(i) for i in "abcd"]
    r = lambda v, status="ok": {"status": status, "final_test_ll": v}  # noqa: E731
    got = tune.select(cands, {"a": r(-3.0), "b": r(-1.0), "c": r(-1.0), "d": r(-2.0)}, "final_test_ll", True)
    assert (got[0].run_id, got[1], got[2], got[3]) == ("b", -1.0, 4, 0)  # highest; the tie b = c goes to b, first in grid order
    got = tune.select(cands, {"a": r(-3.0), "b": r(-1.0), "c": r(-1.0), "d": r(-3.0)}, "final_test_ll", False)
    assert got[0].run_id == "a"  # lowest; a = d: the first
    # A failed run, a non-finite score and a missing run are left out, however good their number.
    got = tune.select(cands, {"a": r(5.0, "failed"), "b": r(math.nan), "c": r(-9.0), "d": r(math.inf)}, "final_test_ll", True)
    assert (got[0].run_id, got[2], got[3]) == ("c", 1, 3)
    assert tune.select(cands, {"a": r(1.0, "failed")}, "final_test_ll", True)[0] is None


def test_ties_go_to_the_first_grid_point_as_given(uci_root, tmp_path):
    # eval_every changes the run id but not a number: an exact tie.
    args = ["data=uci", "data.dataset=yacht", "model.hidden=8", "model.depth=1", "epochs=5", "reg=none"]
    for grid, want in (("5,1", "5"), ("1,5", "1")):
        out = tmp_path / grid.replace(",", "_")
        res = invoke(*args, "--over", f"eval_every={grid}", f"out={out}")
        assert res.exit_code == 0, res.output
        search = rows(out / "search" / "runs.csv")
        assert len({r["final_test_mse"] for r in search}) == 1 and len(search) == 2
        assert rows(out / "tuned.csv")[0]["eval_every"] == want


def test_a_grid_key_a_regularizer_does_not_use_does_not_multiply_its_runs(uci_root, tmp_path):
    out = tmp_path / "t"
    res = invoke("-m", "data=uci", "data.dataset=yacht", "data.split=0", *TINY, "reg=none,dropout",
                 "--over", "p=0.1,0.2,0.3", f"out={out}")
    assert res.exit_code == 0, res.output
    tuned = {r["reg"]: r for r in rows(out / "tuned.csv")}
    assert (tuned["none"]["grid_points"], tuned["dropout"]["grid_points"]) == ("1", "3")
    assert tuned["none"]["p"] == "" and tuned["dropout"]["p"] in ("0.1", "0.2", "0.3")
    assert len(rows(out / "search" / "runs.csv")) == 4


def test_a_failed_grid_point_is_left_out_and_a_group_with_none_left_fails(uci_root, tmp_path):
    # SGD at lr=1e30 diverges (status failed); the group still selects among the others.
    out = tmp_path / "t"
    res = invoke("data=uci", "data.dataset=yacht", *TINY, "optim=sgd", "--over", "optim.lr=1e30,0.01", f"out={out}")
    assert res.exit_code == 0, res.output
    (t,) = rows(out / "tuned.csv")
    assert (t["optim.lr"], t["failed_points"], t["status"]) == ("0.01", "1", "ok")
    assert "1 grid point(s) failed" in res.output
    out = tmp_path / "all"
    res = invoke("data=uci", "data.dataset=yacht", *TINY, "optim=sgd", "--over", "optim.lr=1e30,1e31", f"out={out}")
    assert res.exit_code == 1 and "1 of 1 group(s) could not be tuned" in res.output
    (t,) = rows(out / "tuned.csv")
    assert (t["status"], t["run_id"], t["optim.lr"]) == ("failed", "", "")
    assert not (out / "final").exists()


def test_running_again_resumes_without_retraining(uci_root, tmp_path):
    out = tmp_path / "t"
    args = [*BASE, "reg=none", "--over", "eval.tau=0.01,100", "--metric", "test_ll", f"out={out}"]
    assert invoke(*args).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("result.json")}
    tuned = (out / "tuned.csv").read_text()
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert "(0 trained, 4 already finished)" in res.output and "(0 trained, 2 already finished)" in res.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("result.json")} == before
    # A final run lost (killed before it was stored) is trained again, and only it; --resume too.
    import shutil

    final_id = rows(out / "tuned.csv")[0]["run_id"]
    shutil.rmtree(out / "final" / "runs" / final_id)
    res = invoke("--resume", str(out))
    assert res.exit_code == 0, res.output
    assert "(0 trained, 4 already finished)" in res.output and "(1 trained, 1 already finished)" in res.output
    assert (out / "tuned.csv").read_text() == tuned
    # Another tuning into the same folder is refused, and nothing changes.
    res = invoke(*BASE, "reg=none", "--over", "eval.tau=0.5,1", "--metric", "test_ll", f"out={out}")
    assert res.exit_code == 2 and "already holds another tuning" in res.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("result.json")} == before | {
        p: p.stat().st_mtime_ns for p in (out / "final" / "runs" / final_id).rglob("result.json")}


@pytest.mark.parametrize("args, msg", [
    (["--over", "nope=1,2"], "unknown key nope"),
    (["--over", "eval.tau=0.1,0.2", "--metric", "test_r2"], "unknown --metric 'test_r2'"),
    (["--over", "p=0.1,0.2", "reg=dropout", "--metric", "test_ll"], "--metric test_ll is not computed without eval.tau"),
    ([], "nothing to tune: give the grid with --over"),
    (["--over", "eval.tau=range(0)"], "expands to no values"),
    (["--over", "eval.tau"], "--over eval.tau: write it as KEY=VALUES"),
    (["--over", "p=0.1,0.2", "reg=l2"], "sweeping p changes no run"),
    (["--over", "eval.tau=0.1,0.2", "eval.tau=0.3"], "eval.tau is given both as an override and in --over"),
    (["--over", "eval.tau=0.1,0.2", "data.holdout=validation"], "dropbench tune sets data.holdout itself"),
    (["--over", "eval.tau=0.1,0.2", "reg=none,l2"], "lists several values: to tune each of them add -m"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(uci_root, tmp_path, args, msg):
    out = tmp_path / "never"
    res = invoke("data=uci", "data.dataset=yacht", *TINY, *args, f"out={out}")
    assert res.exit_code == 2, res.output
    assert msg in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def test_a_data_set_without_a_holdout_is_one_line(tmp_path):
    res = invoke("data=noisy_linear", "--over", "p=0.1,0.2", "reg=dropout", f"out={tmp_path / 'x'}")
    assert res.exit_code == 2 and "needs a validation hold-out" in res.output and not (tmp_path / "x").exists()


# ---- a choice at the edge of its grid ---------------------------------------------------------

def test_edges_are_the_ends_of_a_numeric_grid_of_three_or_more_values():
    from types import SimpleNamespace

    p = SimpleNamespace(grid={"eval.tau": ["0.1", "0.15", "0.2"], "p": ["0.5", "0.05", "0.1"], "two": ["1", "2"],
                              "optim": ["adam", "sgd", "x"], "lr": ["1e-3", "0.01", "0.1"]})
    assert [tune_edges.edge_of(p, "eval.tau", v) for v in ("0.1", "0.15", "0.2")] == ["lowest", None, "highest"]
    assert [tune_edges.edge_of(p, "p", v) for v in ("0.5", "0.05", "0.1")] == ["highest", "lowest", None], "by value, not grid order"
    assert tune_edges.edge_of(p, "lr", "0.001") == "lowest", "the config's spelling of 1e-3"
    assert tune_edges.edge_of(p, "two", "1") is None and tune_edges.edge_of(p, "optim", "adam") is None, "no inside: no edge"
    assert tune_edges.edge_of(p, "p", "") is None, "a key the run does not use"


def _outcome(rows, over_keys=("eval.tau",), grid=None, swept=("reg", "data.split")):
    from types import SimpleNamespace

    grid = grid or {"eval.tau": ["0.1", "0.15", "0.2"]}
    return SimpleNamespace(plan=SimpleNamespace(swept=list(swept), over_keys=list(over_keys), grid=grid), rows=rows)


def test_an_edge_chosen_by_half_of_a_settings_groups_or_more_is_warned_with_its_count():
    rows = [{"reg": "dropout", "data.split": str(i), "eval.tau": "0.1" if i < 11 else "0.15", "search_run_id": "x"}
            for i in range(12)]
    rows += [{"reg": "l2", "data.split": str(i), "eval.tau": "0.2" if i < 5 else "0.15", "search_run_id": "x"} for i in range(12)]
    rows.append({"reg": "l2", "data.split": "12", "eval.tau": "", "search_run_id": ""})  # every grid point failed
    t = _outcome(rows)
    assert tune_edges.edge_warnings(t) == ["eval.tau=0.1 is the lowest value of its grid and was chosen in 11 of 12 splits of "
                                     "reg=dropout; extend the grid below it"]
    hits = tune_edges.edge_hits(t)
    assert [(h.setting, h.value, h.side, h.count, h.of, h.warned) for h in hits] == [
        ({"reg": "dropout"}, "0.1", "lowest", 11, 12, True), ({"reg": "l2"}, "0.2", "highest", 5, 12, False)]
    one = _outcome([{"data.split": "0", "eval.tau": "0.2", "search_run_id": "x"}], swept=("data.split",))
    assert tune_edges.edge_warnings(one) == ["eval.tau=0.2 is the highest value of its grid and was chosen in 1 of 1 splits; "
                                       "extend the grid above it"]


def test_a_tune_warns_of_edges_and_records_them(uci_root, tmp_path):
    """Split 0 wants a large tau, split 1 a small one (module docstring): at the ends of a grid
    around them each is an edge, warned and counted; a grid reaching beyond both has none."""
    out = tmp_path / "edge"
    res = invoke(*BASE, "reg=none", "--over", "eval.tau=0.01,1,100", "--metric", "test_ll", f"out={out}")
    assert res.exit_code == 0, res.output
    assert ("dropbench: warning: eval.tau=100.0 is the highest value of its grid and was chosen in 1 of 2 splits; "
            "extend the grid above it") in res.stderr
    assert "dropbench: warning: eval.tau=0.01 is the lowest value of its grid and was chosen in 1 of 2 splits" in res.stderr
    assert {r["data.split"]: r["at_edge"] for r in rows(out / "tuned.csv")} == {"0": "eval.tau=highest", "1": "eval.tau=lowest"}
    assert "eval.tau=0.01 lowest (1/2); eval.tau=100.0 highest (1/2)" in " ".join(res.stdout.split())
    header = (out / "tuned.csv").read_text().splitlines()[0].split(",")
    assert header[-4:] == ["status", "reason", "at_edge", "budget"], "appended after the earlier columns"
    inside = tmp_path / "inside"
    res = invoke(*BASE, "reg=none", "--over", "eval.tau=1e-5,5e-4,400,1e6", "--metric", "test_ll", f"out={inside}")
    assert res.exit_code == 0 and "warning" not in res.stderr, res.output
    assert {r["eval.tau"]: r["at_edge"] for r in rows(inside / "tuned.csv")} == {"400.0": "", "0.0005": ""}
    two = tmp_path / "two"
    res = invoke(*BASE, "reg=none", "--over", "eval.tau=0.01,100", "--metric", "test_ll", f"out={two}")
    assert res.exit_code == 0 and "warning" not in res.stderr, "a grid of two values has no inside"
