"""dropbench export: a results folder read back from MLflow (MlflowClient on a temporary SQLite
store) and from TensorBoard's event files (EventAccumulator); again, adding nothing twice; a
sweep exported while running, then the rest; the trackers imported only by export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dropbench import readback, results
from dropbench.cli import app
from test_folders import holder  # noqa: F401 - the fixture: a process holding a folder's training lock

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    from dropbench import runner as run_mod

    out = tmp_path_factory.mktemp("exp") / "small"
    cfgs, launcher = run_mod.plan(["reg=none,l2", "seed=1,2", "epochs=4", "eval_every=2", "model.hidden=4", f"out={out}"], True)
    run_mod.execute(cfgs, launcher)
    return out


def report_json(folder: Path) -> dict[str, dict]:
    res = cli("report", str(folder), "--format", "json")
    assert res.exit_code == 0, res.output
    return {g["reg"]: g for g in json.loads(res.stdout)}


def test_neither_help_nor_report_imports_a_tracker(sweep):
    code = ("import sys; from typer.testing import CliRunner; from dropbench.cli import app\n"
            "CliRunner().invoke(app, ['--help']); CliRunner().invoke(app, ['export', '--help'])\n"
            f"r = CliRunner().invoke(app, ['report', {str(sweep)!r}]); assert r.exit_code == 0, r.output\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'tensorboard', 'sqlalchemy', 'alembic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_export_needs_a_target_and_names_the_extra_when_its_package_is_missing(sweep, tmp_path, monkeypatch):
    res = cli("export", str(sweep))
    assert res.exit_code == 2 and "--mlflow URI and/or --tensorboard LOGDIR" in res.output
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    res = cli("export", str(sweep), "--mlflow", f"sqlite:///{tmp_path}/m.db")
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "exporting to MLflow needs the mlflow extra (mlflow is not installed): pip install 'dropbench[mlflow]'" in res.output
    res = cli("export", str(sweep), "--tensorboard", str(tmp_path / "tb"))
    assert res.exit_code == 2 and "pip install 'dropbench[tensorboard]'" in res.output and not (tmp_path / "tb").exists()


# ---- MLflow -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed: pip install -e '.[test]'")
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def children(client, parent: str) -> list:
    exp = client.get_run(parent).info.experiment_id
    return [r for r in client.search_runs([exp], max_results=1000) if r.data.tags.get("mlflow.parentRunId") == parent]


def test_mlflow_read_back_equals_the_folder_and_a_second_export_adds_nothing(sweep, store):
    from mlflow import MlflowClient

    res = cli("export", str(sweep), "--mlflow", store)
    assert res.exit_code == 0, res.output
    assert "mlflow: 4 run(s) added, 0 already there" in res.output
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("small")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("dropbench.kind") == "sweep"]
    kids = children(client, parent.info.run_id)
    rows = {r["run_id"]: r for r in readback.read_runs(sweep)}
    assert sorted(k.data.tags["run_id"] for k in kids) == sorted(rows)
    curves = readback.read_curves(sweep)
    for k in kids:
        row = rows[k.data.tags["run_id"]]
        assert k.info.status == "FINISHED" and k.data.tags["status"] == "ok"
        assert k.data.tags["torch_version"] == row["torch_version"] and k.data.tags["cpu"] == row["cpu"]
        assert k.data.params["reg"] == row["reg"] and k.data.params["seed"] == str(row["seed"]) and k.data.params["model.hidden"] == "4"
        assert k.data.metrics["final_test_mse"] == row["final_test_mse"]
        history = client.get_metric_history(k.info.run_id, "test_mse")
        want = [(c["epoch"], c["test_mse"]) for c in curves if c["run_id"] == row["run_id"]]
        assert sorted((m.step, m.value) for m in history) == want, "doubles, exactly"
        config = Path(client.download_artifacts(k.info.run_id, "config.yaml")).read_text()
        assert config == (sweep / "runs" / row["run_id"] / "config.yaml").read_text()
    report = report_json(sweep)
    for reg in ("none", "l2"):
        assert parent.data.metrics[f"reg:{reg}/test_mean"] == pytest.approx(report[reg]["test_mean"], rel=1e-6)
        assert parent.data.metrics[f"reg:{reg}/test_ci"] == pytest.approx(report[reg]["test_ci"], rel=1e-6)
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "plots")} >= {"plots/curves.png", "plots/final_test.png"}
    assert parent.data.tags["dropbench.partial"] == "false" and parent.info.status == "FINISHED"

    res = cli("export", str(sweep), "--mlflow", store)
    assert res.exit_code == 0 and "mlflow: 0 run(s) added, 4 already there" in res.output
    assert len(client.search_runs([exp.experiment_id], max_results=1000)) == len(runs)
    assert len(client.get_metric_history(parent.info.run_id, "reg:none/test_mean")) == 1
    assert [len(client.get_metric_history(k.info.run_id, "test_mse")) for k in kids] == [2] * 4, "epochs 2 and 4, once each"


def test_mlflow_export_while_running_then_the_rest(sweep, store, tmp_path, holder):  # noqa: F811
    from mlflow import MlflowClient

    live = tmp_path / "live"
    shutil.copytree(sweep, live)
    ids = [r["run_id"] for r in readback.read_runs(live)]
    for f in (results.RUNS_CSV, results.CURVES_CSV):
        (live / f).unlink()
    aside = tmp_path / "aside"
    aside.mkdir()
    for rid in ids[2:]:
        shutil.move(live / "runs" / rid, aside / rid)
    proc = holder(live, tuple(ids))
    res = cli("export", str(live), "--mlflow", store, "--experiment", "named")
    assert res.exit_code == 0, res.output
    assert "mlflow: 2 run(s) added" in res.output and "2 still running or queued" in " ".join(res.stderr.split())
    client = MlflowClient(store)
    (parent,) = [r for r in client.search_runs([client.get_experiment_by_name("named").experiment_id])
                 if r.data.tags.get("dropbench.kind") == "sweep"]
    assert parent.data.tags["dropbench.partial"] == "true" and parent.info.status == "RUNNING"
    proc.kill()
    proc.wait()
    for rid in ids[2:]:  # the sweep ends: its last runs stored, its CSVs rebuilt
        shutil.move(aside / rid, live / "runs" / rid)
    results.consolidate(live, ids)
    res = cli("export", str(live), "--mlflow", store, "--experiment", "named")
    assert res.exit_code == 0 and "mlflow: 2 run(s) added, 2 already there" in res.output
    kids = children(client, parent.info.run_id)
    assert sorted(k.data.tags["run_id"] for k in kids) == sorted(ids)
    parent = client.get_run(parent.info.run_id)
    assert parent.data.tags["dropbench.partial"] == "false" and parent.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(parent.info.run_id, "reg:none/n_seeds")]
    assert sorted(steps) == [2, 4], "group statistics over the runs finished at each export"


def test_an_unreachable_mlflow_uri_is_one_line(sweep, store, tmp_path):
    res = cli("export", str(sweep), "--mlflow", "http://127.0.0.1:9")
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "cannot use the MLflow tracking URI http://127.0.0.1:9" in res.output
    (tmp_path / "a_file").write_text("")
    res = cli("export", str(sweep), "--mlflow", f"sqlite:///{tmp_path}/a_file/m.db")
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "cannot use the MLflow tracking URI sqlite:///" in res.output


# ---- TensorBoard --------------------------------------------------------------------------------
def accumulate(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir))
    ea.Reload()
    return ea


def test_tensorboard_read_back_equals_the_folder_with_hparams_and_a_second_export_adds_nothing(sweep, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed: pip install -e '.[test]'")
    from tensorboard.plugins.hparams import plugin_data_pb2

    res = cli("export", str(sweep), "--tensorboard", str(tmp_path / "tb"))
    assert res.exit_code == 0 and "tensorboard: 4 run(s) added, 0 already there" in res.output, res.output
    curves = readback.read_curves(sweep)
    for row in readback.read_runs(sweep):
        ea = accumulate(tmp_path / "tb" / "small" / row["run_id"])
        want = [(c["epoch"], c["test_mse"]) for c in curves if c["run_id"] == row["run_id"]]
        got = [(e.step, e.value) for e in ea.Scalars("test_mse")]
        assert [s for s, _ in got] == [e for e, _ in want] and [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
        assert ea.Scalars("final/final_test_mse")[0].value == pytest.approx(row["final_test_mse"], rel=1e-6)
        content = ea.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
        assert start.hparams["reg"].string_value == row["reg"] and start.hparams["seed"].number_value == row["seed"]
        exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        assert {m.name.tag for m in exp.metric_infos} >= {"final/final_test_mse", "final/final_train_mse"}
    res = cli("export", str(sweep), "--tensorboard", str(tmp_path / "tb"))
    assert res.exit_code == 0 and "tensorboard: 0 run(s) added, 4 already there" in res.output
    assert sorted(p.name for p in (tmp_path / "tb" / "small").iterdir()) == sorted(r["run_id"] for r in readback.read_runs(sweep))


def test_the_api_exports_as_the_command_does(sweep, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed: pip install -e '.[test]'")
    import dropbench as db

    first = db.load(sweep).to_tensorboard(tmp_path / "tb")
    again = db.load(sweep).to_tensorboard(tmp_path / "tb")
    assert [(len(r.added), len(r.skipped)) for r in first] == [(4, 0)] and [(len(r.added), len(r.skipped)) for r in again] == [(0, 4)]
    assert sorted(p.name for p in (tmp_path / "tb" / "small").iterdir()) == sorted(r["run_id"] for r in readback.read_runs(sweep))
