"""`report --epoch best` chooses each run's epoch on its validation rows where it has them, and says
so; where it chose on the test set, every output marks the numbers as optimistic."""

import csv
import json

import pytest
from typer.testing import CliRunner

from conftest import write_sweep
from dropbench.cli import app

runner = CliRunner()


def report(*args: str):
    return runner.invoke(app, ["report", *args])


def by_reg(res) -> dict[str, dict]:
    assert res.exit_code == 0, res.output
    return {g["reg"]: g for g in json.loads(res.stdout)}


def val_sweep(tmp_path, with_val=("early_stopping",)):
    """reg=none and reg=early_stopping, seeds 0-2, evaluated at epochs 10, 20, 30. Test MSE is lowest
    at 10, validation MSE at 20, train MSE at 30, so each selection picks another epoch: the
    test MSEs at 10, 20, 30 are 1, 2, 3 (+ the seed / 10)."""
    runs = [{"reg": reg, "seed": s, "final_train_mse": 0.1, "final_test_mse": 3 + s / 10, "best_test_mse": 1.0,
             "best_epoch": 10} for reg in ("none", "early_stopping") for s in range(3)]
    folder = write_sweep(tmp_path / "sel", runs)
    with (folder / "curves.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["run_id", "epoch", "train_mse", "test_mse", "train_loss", "val_mse"])
        for i, r in enumerate(runs):
            for e, (tr, va) in zip((10, 20, 30), [(0.3, 0.5), (0.2, 0.1), (0.1, 0.4)]):
                w.writerow([f"r{i:03d}", e, tr, e / 10 + r["seed"] / 10, 1.0, va if r["reg"] in with_val else ""])
    return folder


def test_best_chooses_on_validation_rows_where_a_run_has_them_and_flags_the_test_chosen_groups(tmp_path):
    folder = val_sweep(tmp_path)
    g = by_reg(report(str(folder), "--epoch", "best", "--format", "json"))
    assert g["early_stopping"]["test_mean"] == pytest.approx(2.1), "epoch 20, the lowest validation MSE"
    assert (g["early_stopping"]["selected_on"], g["early_stopping"]["test_selected"]) == ("val_mse", False)
    assert g["none"]["test_mean"] == pytest.approx(1.1), "no validation rows: the test set's best, epoch 10"
    assert (g["none"]["selected_on"], g["none"]["test_selected"]) == ("test_mse", True)
    for fmt in ("table", "markdown"):
        res = report(str(folder), "--epoch", "best", "--format", fmt)
        text = " ".join(res.stdout.split())  # the terminal table wraps its caption
        assert "WARNING: epoch chosen on the test set (optimistic): each run at its best test_mse in reg=none" in text, fmt
        assert "the other groups' chosen by val_mse on the validation rows" in text, fmt
    res = report(str(folder), "--epoch", "best", "--format", "csv")
    rows = {r["reg"]: r for r in csv.DictReader(res.stdout.splitlines())}
    assert (rows["none"]["selected_on"], rows["none"]["test_selected"]) == ("test_mse", "True")
    assert (rows["early_stopping"]["selected_on"], rows["early_stopping"]["test_selected"]) == ("val_mse", "False")
    assert "dropbench: WARNING: epoch chosen on the test set (optimistic)" in res.stderr, "machine formats: on stderr"
    wide = json.loads(report(str(folder), "--epoch", "best", "--layout", "wide", "--format", "json").stdout)
    assert wide[0]["none selected_on"] == "test_mse" and wide[0]["early_stopping test_selected"] is False
    md = report(str(folder), "--epoch", "best", "--layout", "wide", "--format", "markdown").stdout
    assert "WARNING: epoch chosen on the test set (optimistic)" in md


def test_runs_that_all_have_validation_rows_are_not_flagged(tmp_path):
    folder = val_sweep(tmp_path, with_val=("none", "early_stopping"))
    res = report(str(folder), "--epoch", "best", "--format", "markdown")
    assert "each run's epoch chosen by val_mse on the validation rows, never on the test rows" in res.stdout
    assert "WARNING" not in res.stdout and "optimistic" not in res.stdout
    g = by_reg(report(str(folder), "--epoch", "best", "--format", "json"))
    assert g["none"]["test_mean"] == pytest.approx(2.1) and not g["none"]["test_selected"]


def test_a_folder_without_validation_rows_is_chosen_on_the_test_set_and_says_so(hand_sweep):
    """A folder written before val_mse existed (no such column) still reads: every run test-chosen."""
    res = report(str(hand_sweep), "--epoch", "best", "--format", "markdown")
    assert res.exit_code == 0 and "WARNING: epoch chosen on the test set (optimistic): each run at its best test_mse\n" in res.stdout
    final = report(str(hand_sweep), "--format", "markdown").stdout
    assert "optimistic" not in final and "chosen" not in final, "--epoch final chooses nothing"


def test_select_on_names_the_selection_metric(tmp_path):
    folder = val_sweep(tmp_path)
    g = by_reg(report(str(folder), "--select-on", "train_mse", "--format", "json"))  # implies --epoch best
    assert g["none"]["test_mean"] == pytest.approx(3.1) and g["early_stopping"]["test_mean"] == pytest.approx(3.1)
    assert {x["selected_on"] for x in g.values()} == {"train_mse"} and not any(x["test_selected"] for x in g.values())
    md = report(str(folder), "--select-on", "train_mse", "--format", "markdown").stdout
    assert "each run's epoch chosen by train_mse on the training rows, never on the test rows" in md
    # the test metric may be named explicitly: the oracle, flagged
    g = by_reg(report(str(folder), "--epoch", "best", "--select-on", "test_mse", "--format", "json"))
    assert g["early_stopping"]["test_mean"] == pytest.approx(1.1) and g["early_stopping"]["test_selected"] is True


@pytest.mark.parametrize("args, message", [
    (["--select-on", "val_mse"], "--select-on val_mse: run r000 recorded none (only runs with validation rows record it: reg=early_stopping)"),
    (["--select-on", "gap"], "--select-on gap: curves.csv records no such metric; choose from train_mse, test_mse, train_loss, val_mse"),
    (["--select-on", "val_mse", "--epoch", "final"], "--select-on val_mse chooses each run's epoch: use it with --epoch best (not --epoch final)"),
    (["--select-on", "val_mse", "--epoch", "20"], "use it with --epoch best (not --epoch 20)"),
])
def test_bad_selections_are_one_line_errors(tmp_path, args, message):
    res = report(str(val_sweep(tmp_path)), *args)
    assert res.exit_code == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.output


def test_the_runs_table_marks_the_test_chosen_best():
    from dropbench.render.runs import runs_table

    base = {"final_train_mse": 0.1, "final_test_mse": 0.2, "best_test_mse": 0.15, "best_epoch": 10, "status": "ok"}
    t = runs_table([{"run_id": "a", "reg": "none", "seed": 0, **base},
                    {"run_id": "b", "reg": "early_stopping", "seed": 0, "kept_epoch": 20, "stopped_epoch": 30, **base}])
    heads = [c.header for c in t.columns]
    assert "best test MSE (optimistic)" in heads and list(t.columns[heads.index("kept (stopped)")].cells) == ["", "20 (30)"]


def test_comparing_best_test_mse_is_flagged_in_report_and_check(tmp_path):
    """best_test_mse (each run's lowest test MSE) is an oracle's number wherever it is compared."""
    folder = val_sweep(tmp_path)
    warning = "WARNING: best_test_mse is each run's best test value over its evaluations, chosen on the test set (optimistic)"
    assert warning in report(str(folder), "--metric", "best_test_mse", "--format", "markdown").stdout
    res = report(str(folder), "--metric", "best_test_mse", "--format", "json")
    assert all(g["test_selected"] is True for g in json.loads(res.stdout)) and warning in res.stderr
    base = tmp_path / "b.csv"
    res = runner.invoke(app, ["check", str(folder), "--baseline", str(base), "--update-baseline", "--metric", "best_test_mse"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["check", str(folder), "--baseline", str(base)])
    assert res.exit_code == 0 and warning in " ".join(res.stdout.split())
    assert "optimistic" not in runner.invoke(app, ["report", str(folder)]).stdout
