"""The library API (`import dropbench as db`): its tables are report's numbers, its errors the
commands' lines, it prints and writes nothing unless asked, `import dropbench` stays light, and
its docstring examples and docs/api.md's notebook example run."""

from __future__ import annotations

import csv
import doctest
import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import dropbench as db
from dropbench.cli import app
from conftest import write_sweep

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny_sweep"  # reg=none,dropout x 3 seeds, 20 epochs: runs, curves, configs, fits
REFERENCE = ROOT / "results" / "reference" / "default_sweep"  # runs.csv alone
runner = CliRunner()


def cli(*args: str) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def _missing(v: Any) -> bool:
    import pandas as pd

    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def assert_same_records(df: Any, records: list[dict[str, Any]], text_cells: bool = False) -> None:
    """The frame holds the records: same columns in order, same rows in order, every value equal
    (numbers exactly; an undefined statistic is null in JSON, empty in CSV, missing in the frame)."""
    assert list(df.columns) == list(records[0]), (list(df.columns), list(records[0]))
    assert len(df) == len(records)
    for got, want in zip(df.to_dict("records"), records):
        for k, w in want.items():
            g = got[k]
            if w is None or w == "":
                assert _missing(g), (k, g, w)
            elif text_cells:
                assert (str(g) == w) or (float(w) == float(g)), (k, g, w)
            elif isinstance(w, bool) or isinstance(w, str):
                assert g == w, (k, g, w)
            else:
                assert float(g) == float(w), (k, g, w)


# ---- the tables are exactly report's --------------------------------------------------------------
@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("two")
    a = shutil.copytree(TINY, base / "a")
    b = write_sweep(base / "b", [{"reg": r, "seed": s, "p": 0.5 if r == "dropout" else "", "final_train_mse": 0.1 * s + 0.1,
                                  "final_test_mse": (1.0 if r == "none" else 0.8) + 0.1 * s} for r in ("none", "dropout") for s in range(3)])
    return [a, b]


CASES = [
    ([TINY], {}, []),
    ([TINY], {"by": "reg,p", "interval": "se"}, ["--by", "reg,p", "--interval", "se"]),
    ([TINY], {"epoch": "best"}, ["--epoch", "best"]),
    ([TINY], {"epoch": 10, "interval": "std"}, ["--epoch", "10", "--interval", "std"]),
    ([TINY], {"metric": "best_test_mse", "sort": "test", "descending": True}, ["--metric", "best_test_mse", "--sort", "test", "--desc"]),
    ([REFERENCE], {}, []),
    ("two", {}, []),
]


@pytest.mark.parametrize("folders, kwargs, options", CASES)
def test_summary_is_reports_json_and_wide_is_reports_wide_csv(folders, kwargs, options, two_sweeps):
    folders = two_sweeps if folders == "two" else folders
    sweep = db.load(folders)
    printed = cli("report", *folders, *options, "--format", "json")
    assert printed.exit_code == 0, printed.output
    assert_same_records(sweep.summary(**kwargs), json.loads(printed.stdout))
    wide_kwargs = {k: v for k, v in kwargs.items() if k not in ("sort", "descending")}
    wide_options = [o for o in options if o not in ("--sort", "test", "--desc")]
    wide_csv = cli("report", *folders, *wide_options, "--layout", "wide", "--format", "csv").stdout
    assert_same_records(sweep.wide(**wide_kwargs), list(csv.DictReader(io.StringIO(wide_csv))), text_cells=True)


def test_paired_is_the_summarys_paired_columns_without_the_reference_group():
    sweep = db.load(REFERENCE)
    summary = sweep.summary(interval="se")
    paired = sweep.paired(interval="se")
    assert paired["reg"].tolist() == [r for r in summary["reg"] if r != "none"]
    for col in ("paired_diff", "paired_std", "paired_se", "paired_ci", "paired_interval", "n_pairs"):
        assert paired[col].tolist() == summary[col][summary["reg"] != "none"].tolist(), col
    assert paired["paired_interval"].tolist() == paired["paired_se"].tolist()
    summary = summary.set_index(summary["reg"].astype(str))
    # Another reference: every group against l2, by the same pairing function.
    against_l2 = sweep.paired(reference={"reg": "l2"})
    assert "l2" not in set(against_l2["reg"]) and "none" in set(against_l2["reg"])
    none_vs_l2 = against_l2.set_index("reg").loc["none", "paired_diff"]
    assert none_vs_l2 == pytest.approx(-summary.loc["l2", "paired_diff"], rel=1e-12)
    with pytest.raises(db.UserError, match="no finished run has reg=ridge"):
        sweep.paired(reference={"reg": "ridge"})


def test_report_text_is_what_the_command_prints():
    assert db.load(TINY).report(format="markdown", by="reg,p") == cli("report", TINY, "--format", "markdown", "--by", "reg,p").stdout


# ---- data frames with proper types -----------------------------------------------------------------
def test_runs_curves_and_configs_are_typed_data():
    sweep = db.load(TINY)
    runs, curves = sweep.runs, sweep.curves
    assert len(runs) == 6 and list(runs.columns) == list(csv.DictReader((TINY / "runs.csv").open()).fieldnames)
    types = runs.dtypes.astype(str)
    assert types["seed"] == "int64" and types["epochs"] == "int64" and types["final_test_mse"] == "float64"
    assert types["reg"] == "category" and types["status"] == "category" and types["model.residual"] == "bool"
    assert types["p"] == "float64" and runs["p"].isna().sum() == 3  # empty for reg=none
    assert str(curves.dtypes["epoch"]) == "int64" and sorted(set(curves["epoch"])) == [10, 20]
    assert curves["learned_p"].isna().all()
    assert set(sweep.configs) == set(runs["run_id"])
    configs = [sweep.configs[i] for i in runs["run_id"]]
    assert [c["epochs"] for c in configs] == [20] * 6 and [c["data"]["name"] for c in configs] == ["noisy_linear"] * 6
    assert [sorted(c["reg"]) for c in configs] == [[] if r == "none" else ["dropout"] for r in runs["reg"]]
    # The numbers are runs.csv's to the last bit.
    with (TINY / "runs.csv").open() as f:
        assert [float(r["final_test_mse"]) for r in csv.DictReader(f)] == runs["final_test_mse"].tolist()


def test_learned_rates_are_lists_and_flags_with_gaps_are_nullable(tmp_path):
    folder = write_sweep(tmp_path / "s", [
        {"reg": "concrete_dropout", "seed": 0, "final_train_mse": 0.1, "final_test_mse": 0.2, "final_learned_p": "0.125 0.25",
         "model.residual": "True"},
        {"reg": "none", "seed": 0, "final_train_mse": 0.1, "final_test_mse": 0.3, "final_learned_p": "", "model.residual": ""},
    ])
    runs = db.load(folder).runs
    assert runs["final_learned_p"].tolist() == [[0.125, 0.25], None]
    assert str(runs.dtypes["model.residual"]) == "boolean" and runs.loc[0, "model.residual"] is True or runs.loc[0, "model.residual"]


def test_configs_are_read_as_data_never_instantiated(tmp_path):
    folder = shutil.copytree(TINY, tmp_path / "s")
    run_id = next((folder / "runs").iterdir()).name
    cfg = folder / "runs" / run_id / "config.yaml"
    cfg.write_text(cfg.read_text() + "callback:\n  _target_: dropbench_no_such_module.boom\n")
    configs = db.load(folder).configs
    assert configs[run_id]["callback"] == {"_target_": "dropbench_no_such_module.boom"}
    assert "dropbench_no_such_module" not in sys.modules


# ---- errors, output, files ------------------------------------------------------------------------
def _cli_error(*args: str) -> str:
    r = cli(*args)
    assert r.exit_code == 2, r.output
    (line,) = [x for x in r.stderr.splitlines() if x]
    return line.removeprefix("dropbench: error: ")


@pytest.mark.parametrize("call, args", [
    (lambda: db.load("no/such/folder"), ["report", "no/such/folder"]),
    (lambda: db.load(TINY).summary(interval="95"), ["report", TINY, "--interval", "95"]),
    (lambda: db.load(TINY).summary(by="regg"), ["report", TINY, "--by", "regg"]),
    (lambda: db.load(TINY).summary(epoch="last"), ["report", TINY, "--epoch", "last"]),
    (lambda: db.load(TINY).summary(metric="test_ll"), ["report", TINY, "--metric", "test_ll"]),
    (lambda: db.load(TINY).plot("fit", seed=7), ["plot", TINY, "--seed", "7", "--out", "/nonexistent/never"]),
    (lambda: db.run("reg=nonsense", out="never"), ["run", "reg=nonsense", "out=never"]),
    (lambda: db.run("epochs=-1", out="never"), ["run", "epochs=-1", "out=never"]),
    (lambda: db.tune("data=friedman1", out="never"), ["tune", "data=friedman1", "out=never"]),
])
def test_bad_input_raises_the_commands_one_line_and_prints_nothing(call, args, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = _cli_error(*args)
    capsys.readouterr()
    with pytest.raises(db.UserError) as e:
        call()
    assert str(e.value) == expected and "\n" not in str(e.value)
    assert capsys.readouterr() == ("", "")
    assert list(tmp_path.iterdir()) == [], "bad input writes nothing"


def test_a_folder_whose_runs_all_failed_loads_and_its_summary_says_why(tmp_path):
    folder = write_sweep(tmp_path / "f", [{"reg": "none", "seed": 0, "final_train_mse": "", "final_test_mse": "", "status": "failed",
                                          "reason": "diverged at epoch 3"}])
    sweep = db.load(folder)
    assert sweep.failed["reason"].tolist() == ["diverged at epoch 3"]
    with pytest.raises(db.UserError, match="every run in .* failed") as e:
        sweep.summary()
    assert e.value.exit_code == 1


def test_run_trains_prints_nothing_and_reports_progress_through_the_callback(tmp_path, capsys):
    events: list[db.Progress] = []
    sweep = db.run("reg=none,dropout", "seed=range(2)", "epochs=6", "eval_every=3", "model.hidden=8", multirun=True,
                   out=tmp_path / "s", progress=events.append)
    assert capsys.readouterr() == ("", "")
    assert isinstance(sweep, db.Sweep) and len(sweep) == 4 and sweep.folders == [tmp_path / "s"]
    assert events[0] == db.Progress("run", 0, 4) and [e.done for e in events] == [0, 1, 2, 3, 4]
    assert {e.run_id for e in events[1:]} == set(sweep.runs["run_id"]) and {e.status for e in events[1:]} == {"ok"}
    # The same command again trains nothing; progress=True prints the command's progress lines on stderr.
    again = db.run("reg=none,dropout", "seed=range(2)", "epochs=6", "eval_every=3", "model.hidden=8", multirun=True,
                   out=tmp_path / "s", progress=True)
    out, err = capsys.readouterr()
    assert out == "" and re.fullmatch(r"(dropbench: 0/0 runs done.*\n)?", err)
    assert again.runs["final_test_mse"].tolist() == sweep.runs["final_test_mse"].tolist()
    with pytest.raises(db.UserError, match="out is given twice"):
        db.run("out=x", out=tmp_path / "y")


def test_failed_runs_raise_with_the_results_unless_allowed(tmp_path, capsys):
    bad = ("seed=3", "epochs=30", "eval_every=10", "optim=sgd", "optim.lr=1e6")
    with pytest.raises(db.RunsFailed, match=r"1 of 1 run\(s\) failed; first: \w+: diverged") as e:
        db.run(*bad, out=tmp_path / "s")
    assert e.value.exit_code == 1 and e.value.result.failed["status"].tolist() == ["failed"]
    assert len(db.run(*bad, out=tmp_path / "s", allow_failures=True)) == 1
    assert capsys.readouterr() == ("", "")


def test_plot_returns_a_figure_and_writes_only_when_asked(tmp_path):
    folder = shutil.copytree(TINY, tmp_path / "s")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    sweep = db.load(folder)
    for kind in ("curves", "final_test", "fit"):
        fig = sweep.plot(kind)
        assert type(fig).__name__ == "Figure" and fig.axes
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    sweep.plot("curves", log=True, save=tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(db.UserError, match="unknown plot kind 'bars'"):
        sweep.plot("bars")
    with pytest.raises(db.UserError, match="kind='path' needs a swept numeric key"):
        sweep.plot("path")
    with pytest.raises(db.UserError, match="load it alone"):
        db.load([folder, REFERENCE]).plot()


def test_check_is_the_commands_and_writes_only_when_asked(tmp_path):
    sweep = db.load(TINY)
    result = sweep.check(ROOT / "tests/data/tiny_baseline.csv", expect=["none < dropout"])
    assert not result.passed and [e.passed for e in result.expectations] == [False]
    line = cli("check", TINY, "--baseline", ROOT / "tests/data/tiny_baseline.csv", "--expect", "none < dropout", "-q").stderr
    assert f"dropbench: error: {result.message(str(ROOT / 'tests/data/tiny_baseline.csv'))}" in line
    sweep.check(tmp_path / "api.csv", update=True, by="reg")
    assert cli("check", TINY, "--baseline", tmp_path / "cli.csv", "--update-baseline", "--by", "reg").exit_code == 0
    assert (tmp_path / "api.csv").read_text() == (tmp_path / "cli.csv").read_text()
    with pytest.raises(db.UserError, match="--by only applies with --update-baseline"):
        sweep.check(tmp_path / "api.csv", by="reg")


@pytest.mark.slow
def test_tune_and_load_of_its_folder_agree_with_the_commands(tmp_path, capsys):
    t = db.tune("data=friedman1", "data.n_train=40", "epochs=6", "eval_every=3", "model.hidden=8", "reg=dropout", "seed=range(2)",
                multirun=True, over={"p": [0.1, 0.2, 0.3]}, out=tmp_path / "t")
    assert capsys.readouterr() == ("", "")
    assert len(t.search) == 6 and len(t) == 2 and t.keys == ["reg"]
    loaded = db.load(tmp_path / "t")
    assert isinstance(loaded, db.Tuning) and loaded.keys == t.keys
    assert loaded.chosen.to_dict("records") == t.chosen.to_dict("records") and loaded.warnings == t.warnings
    printed = cli("report", tmp_path / "t" / "final", "--by", "reg", "--format", "json")
    assert_same_records(loaded.summary(), json.loads(printed.stdout))
    assert loaded.tuned["p"].isin([0.1, 0.2, 0.3]).all() and str(loaded.tuned.dtypes["seed"]) == "int64"


# ---- import dropbench stays light; the package is typed --------------------------------------------
def test_import_dropbench_is_light_and_reading_results_needs_no_torch():
    code = (
        "import sys, dropbench as db\n"
        "heavy = lambda: [m for m in ('torch', 'pandas', 'hydra', 'numpy', 'matplotlib', 'typer', 'rich') if m in sys.modules]\n"
        "assert not heavy(), heavy()\n"
        "assert {'run', 'tune', 'load', 'Sweep', 'UserError'} <= set(dir(db))\n"
        f"s = db.load({str(TINY)!r}); s.summary(); s.wide(); s.runs\n"
        "assert not [m for m in ('torch', 'hydra', 'matplotlib') if m in sys.modules], heavy()\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        db.nonsense  # noqa: B018


def test_the_package_ships_py_typed():
    import tomllib

    assert (ROOT / "dropbench" / "py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in data["dropbench"]


# ---- the examples run ---------------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["dropbench.api", "dropbench.sweep", "dropbench.frames"])
def test_docstring_examples(module, monkeypatch):
    import importlib

    monkeypatch.chdir(ROOT)
    mod = importlib.import_module(module)
    finder = doctest.DocTestFinder()
    runner_ = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(mod) if t.examples]
    assert tests, f"{module} has docstring examples"
    for t in tests:
        runner_.run(t)
    assert runner_.failures == 0, f"{runner_.failures} docstring example(s) of {module} failed (run pytest -s for the report)"


def notebook_blocks() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_docs_notebook_example_runs(tmp_path, monkeypatch, capsys):
    """docs/api.md's code blocks, in order, in one namespace, in an empty folder."""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    blocks = notebook_blocks()
    assert len(blocks) >= 4
    namespace: dict[str, Any] = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)
    assert isinstance(namespace["sweep"], db.Sweep) and len(namespace["summary"]) > 0
    assert (tmp_path / "results" / "notebook").is_dir()
