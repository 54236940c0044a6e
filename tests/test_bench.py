"""dropbench bench uci-2016 / uci-2018 (issue 20 §2): the protocols as commands for pip users.
Each data set's sweep or tuning is built from the experiment's own table (never a second copy of
the grids), resumes, is timed, and the final table follows; tiny settings on the real UCI files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dropbench import bench
from dropbench.cli import app
from dropbench.config import config_dir
from dropbench.data.uci import fetch

TINY = ["model.hidden=8", "eval.mc_samples=5"]


@pytest.fixture
def real_uci(uci_dir, monkeypatch):
    monkeypatch.setenv(fetch.ENV_DIR, str(uci_dir))
    return uci_dir


def invoke(*args: str):
    return CliRunner().invoke(app, ["bench", *args])


def test_each_tuning_uses_its_data_sets_published_grid_from_the_experiment(tmp_path):
    doc = yaml.safe_load((config_dir() / "experiment" / "uci_mc_dropout_2018.yaml").read_text())["protocol"]["datasets"]
    p = bench.PROTOCOLS["uci-2018"]
    assert bench.table(p) == doc and len(doc) == 8
    naval, yacht = bench.steps(p, tmp_path, ["naval", "yacht"], 3, 40, ["eval.mc_samples=100"])
    assert naval.over == ["p=0.005,0.01,0.05,0.1", "eval.tau=30000,40000,50000"]
    assert yacht.over == ["p=0.005,0.01,0.05,0.1", "eval.tau=0.25,0.5,0.75"]
    assert yacht.overrides[:5] == ["+experiment=uci_mc_dropout_2018", "data.dataset=yacht", "data.split=range(3)", "epochs=40",
                                   "eval_every=40"]
    assert "eval.mc_samples=100" in yacht.overrides and yacht.out == tmp_path / "yacht"
    assert "--over eval.tau=0.25,0.5,0.75" in yacht.command(p) and "--metric test_ll" in yacht.command(p)
    (fixed,) = bench.steps(bench.PROTOCOLS["uci-2016"], tmp_path, ["yacht"])
    assert fixed.over == [] and "data.split=range(20)" in fixed.overrides and not any(o.startswith("epochs=") for o in fixed.overrides)


@pytest.mark.parametrize("args, msg", [
    (["uci-2018", "--datasets", "yaht"], "unknown data set(s) yaht; choose from boston_housing"),
    (["uci-2016", "--splits", "21"], "--splits 21: give 1 to 20"),
    (["uci-2018", "--epochs", "0"], "--epochs 0: give at least 1"),
    (["uci-2016", "data.split=3"], "bench sets data.split itself"),
    (["uci-2018", "--format", "csv"], "unknown --format 'csv'"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, args, msg):
    monkeypatch.chdir(tmp_path)
    res = invoke(*args, "--out", "o")
    assert res.exit_code == 2 and msg in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "o").exists()


def test_uci_2018_tunes_each_data_set_times_it_prints_the_table_and_resumes(real_uci, tmp_path):
    out = tmp_path / "u18"
    args = ["uci-2018", "--datasets", "yacht", "--splits", "2", "--epochs", "2", "--out", str(out), "-f", "markdown", *TINY]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert "yacht (1/1) search:" in res.stdout and "yacht (1/1) final:" in res.stdout
    assert "dropbench: $ dropbench tune -m +experiment=uci_mc_dropout_2018 data.dataset=yacht 'data.split=range(2)'" in res.stderr
    assert "dropbench: yacht: " in res.stderr and res.stdout.strip().splitlines()[-2].startswith("wall time: yacht ")
    assert "test MC RMSE: mean ± standard error" in res.stdout and "test log-likelihood: mean ± standard error" in res.stdout
    assert "tuned on the published grids of uci_mc_dropout_2018" in res.stdout and "| grid points | 12 |" in res.stdout
    tuned = (out / "yacht" / "tuned.csv").read_text()
    assert len(tuned.splitlines()) == 3
    assert "dropbench: yacht: " in res.stderr and "(26 run(s) trained, 0 already finished)" in res.stderr
    again = invoke(*args)
    assert again.exit_code == 0 and "(0 run(s) trained, 26 already finished)" in again.stderr, again.output
    assert (out / "yacht" / "tuned.csv").read_text() == tuned


def test_uci_2016_runs_the_papers_settings_per_data_set(real_uci, tmp_path):
    out = tmp_path / "u16"
    res = invoke("uci-2016", "--datasets", "yacht", "--splits", "2", "--epochs", "2", "--out", str(out), "-f", "markdown", *TINY)
    assert res.exit_code == 0, res.output
    assert res.stdout.count("| yacht |") == 4, "a table per metric, each with the published comparison"
    assert "test MC RMSE against gal2016" in res.stdout and "test log-likelihood against gal2016" in res.stdout
    runs = (out / "yacht" / "runs.csv").read_text().splitlines()
    assert len(runs) == 3 and "grid points" not in res.stdout, "fixed settings: nothing tuned"
    cfg = yaml.safe_load(next((out / "yacht" / "runs").glob("*/config.yaml")).read_text())
    assert cfg["p"] == 0.01 and cfg["eval"]["tau"] == pytest.approx(0.541869562034), "the 2016 table's yacht row"
    assert Path(out / "yacht" / "sweep.yaml").is_file(), "resumable with dropbench run --resume too"


def test_bench_says_when_the_fast_stream_runs_without_its_compiled_kernels(real_uci, tmp_path, monkeypatch):
    from dropbench import masks

    monkeypatch.setattr(masks, "_compiled", [None])  # as where numba is not installed
    res = invoke("uci-2016", "--datasets", "yacht", "--splits", "1", "--epochs", "1", "--out", str(tmp_path / "u"), *TINY)
    assert res.exit_code == 0, res.output
    assert "dropbench: numba is not installed" in res.stderr and "pip install 'dropbench[fast]'" in res.stderr
    monkeypatch.setattr(masks, "_compiled", [object()])  # kernels loaded: nothing to say
    assert bench.kernels_note() is None
