"""scripts/uci_2018.py: the tuned protocol's one command builds each data set's tune from the
experiment's own grid table (never a second copy of the grids), and refuses bad input in one line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("uci_2018", ROOT / "scripts" / "uci_2018.py")
uci_2018 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(uci_2018)  # type: ignore[union-attr]


def test_grids_are_the_experiments_and_cover_the_eight_data_sets():
    table = yaml.safe_load((ROOT / "conf/experiment/uci_mc_dropout_2018.yaml").read_text())["protocol"]["datasets"]
    assert uci_2018.grids() == table and len(table) == 8


def test_each_tune_uses_its_data_sets_tau_grid(capsys):
    assert uci_2018.main(["--datasets", "naval,yacht", "--splits", "3", "--epochs", "40", "--out", "o", "--print-only",
                          "--", "eval.mc_samples=100"]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("$ ")]
    assert len(lines) == 2
    assert "data.dataset=naval" in lines[0] and "--over eval.tau=30000,40000,50000" in lines[0]
    assert "--over eval.tau=0.25,0.5,0.75" in lines[1] and "--over p=0.005,0.01,0.05,0.1" in lines[1]
    assert "data.split=range(3)" in lines[1] and "epochs=40" in lines[1] and lines[1].endswith("eval.mc_samples=100")
    assert "out=o/yacht" in lines[1]


def test_bad_input_is_one_line_and_exit_2(capsys):
    assert uci_2018.main(["--datasets", "yaht", "--print-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown data set(s) yaht" in err and "\n" not in err
    assert uci_2018.main(["--splits", "21", "--print-only"]) == 2
