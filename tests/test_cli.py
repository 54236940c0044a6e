"""End to end through the `dropbench` command, as a user runs it."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dropbench.cli import app

runner = CliRunner()


def dropbench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dropbench", *args], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, "COLUMNS": "160"},
    )


def test_run_writes_results(tmp_path):
    out = tmp_path / "r"
    p = dropbench("run", "reg=dropout", "p=0.5", "epochs=20", "eval_every=5", f"out={out}")
    assert p.returncode == 0, p.stderr
    assert "results:" in p.stdout and "test MSE" in p.stdout
    assert p.stdout.splitlines()[-1] == f"results: {out}"
    assert re.fullmatch(r"dropbench: 1/1 runs done, \d+\.\d s", p.stderr.strip()), p.stderr  # piped: a progress line
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == 1
    r = rows[0]
    for col in ("run_id", "data", "model", "reg", "optim", "seed", "final_train_mse", "final_test_mse",
                "best_test_mse", "best_epoch", "status", "seconds", "reg.dropout.p", "optim.lr", "epochs",
                "device", "dtype", "dropbench_version", "torch_version", "cpu", "cpu_capability", "gpu"):
        assert col in r, col
    assert (r["reg"], r["status"], r["reg.dropout.p"]) == ("dropout", "ok", "0.5")
    curves = list(csv.DictReader((out / "curves.csv").open()))
    assert [int(c["epoch"]) for c in curves] == [5, 10, 15, 20]
    assert list(curves[0]) == ["run_id", "epoch", "train_mse", "test_mse", "train_loss",
                              "train_rmse", "test_rmse", "test_mc_mse", "test_mc_rmse", "test_ll", "learned_p", "val_mse"]
    assert (out / "runs" / r["run_id"] / "config.yaml").is_file()


def test_same_seed_gives_identical_csvs(tmp_path):
    outs = []
    for name in ("a", "b"):
        res = runner.invoke(app, ["run", "reg=[dropout,l1]", "epochs=15", "eval_every=5", f"out={tmp_path / name}"])
        assert res.exit_code == 0, res.output
        outs.append(tmp_path / name)
    assert (outs[0] / "curves.csv").read_bytes() == (outs[1] / "curves.csv").read_bytes()

    def strip_seconds(f: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f.open())]

    assert strip_seconds(outs[0] / "runs.csv") == strip_seconds(outs[1] / "runs.csv")


def test_rerun_from_saved_config_reproduces(tmp_path):
    res = runner.invoke(app, ["run", "reg=droppath", "epochs=10", f"out={tmp_path / 'a'}"])
    assert res.exit_code == 0, res.output
    run_dir = next((tmp_path / "a" / "runs").iterdir())
    res = runner.invoke(app, ["run", "--from", str(run_dir), f"out={tmp_path / 'b'}"])
    assert res.exit_code == 0, res.output
    assert "already finished" not in res.output
    a, b = (json.loads(next((tmp_path / d / "runs").iterdir()).joinpath("result.json").read_text()) for d in "ab")
    assert a.pop("seconds") > 0 and b.pop("seconds") > 0
    assert a == b  # trained again, the same numbers
    for bad in (["reg=none"], ["-m", f"out={tmp_path / 'c'}"]):
        res = runner.invoke(app, ["run", "--from", str(run_dir), *bad])
        assert res.exit_code == 2 and "the only override it takes is out=DIR" in res.output
    assert not (tmp_path / "c").exists()
    assert "model:\n  name: mlp\n  hidden: 300\n  depth: 2\n  activation: relu\n  placement: before\n  residual: true" in (run_dir / "config.yaml").read_text()


@pytest.mark.parametrize(
    "args, msg",
    [
        (["reg=foo"], "unknown option reg=foo"),
        (["p=1"], "must be in [0, 1)"),
        (["p=1.5", "reg=dropout"], "must be in [0, 1)"),
        (["+bogus=3"], "unknown key bogus"),
        (["data=csv", "data.path=/does/not/exist.csv", "data.target=y"], "no such file"),
        (["optim.lr=-1"], "optim.lr=-1.0: must be > 0"),
        (["--bogus-flag"], "No such option"),
    ],
)
def test_bad_input_one_line_no_traceback_no_files(tmp_path, args, msg):
    out = tmp_path / "never"
    p = dropbench("run", *args, f"out={out}")
    assert p.returncode != 0
    assert msg in p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, msg", [
    (["check", "somewhere"], "Missing option '--baseline'. (see: dropbench check --help)"),
    (["plot"], "Missing argument 'folder'. (see: dropbench plot --help)"),
    (["nosuch"], "No such command 'nosuch'."),
    (["report", "x", "--desc=maybe"], "Option '--desc' does not take a value."),
])
def test_usage_errors_are_one_line(args, msg):
    p = dropbench(*args)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("dropbench: error: ") and msg in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_diverging_run_fails_cleanly(tmp_path):
    out = tmp_path / "div"
    res = runner.invoke(app, ["run", "optim=sgd", "optim.lr=1e6", "epochs=30", f"out={out}"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)  # a clean exit, not an exception
    assert "diverged" in res.output.strip().splitlines()[-1]
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert rows[0]["status"] == "failed" and "diverged" in rows[0]["reason"]


def test_cfg_prints_without_running(tmp_path):
    p = dropbench("run", "--cfg", "reg=l1", f"out={tmp_path / 'x'}")
    assert p.returncode == 0 and "l1:\n    weight: 0.0001" in p.stdout
    assert not (tmp_path / "x").exists()


def test_groups_and_help():
    p = dropbench("groups")
    # Every conf/reg/*.yaml is an option, the default starred; a new regularizer joins by its YAML.
    from dropbench.config import config_dir

    regs = sorted(f.stem for f in (config_dir() / "reg").glob("*.yaml"))
    assert {"dropconnect", "dropout", "droppath", "gaussian_dropout", "l1", "l2", "none", "vanilla_dropout"} <= set(regs)
    assert p.returncode == 0 and "reg: " + ", ".join(r + "*" * (r == "none") for r in regs) in p.stdout
    p = dropbench("run", "--help")
    assert p.returncode == 0 and "--multirun" in p.stdout


def test_groups_lists_the_experiments_with_how_to_use_them():
    """conf/experiment/*.yaml are no group option (+experiment=NAME adds one): listed apart, none
    starred, each with its YAML's first comment line."""
    from dropbench.config import config_dir

    names = sorted(f.stem for f in (config_dir() / "experiment").glob("*.yaml"))
    assert {"uci_mc_dropout_2016", "uci_mc_dropout_2018"} <= set(names)
    res = runner.invoke(app, ["groups"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    head = next(line for line in lines if line.startswith("experiment"))
    assert "+experiment=NAME" in head and head.endswith(": " + ", ".join(names)) and "*" not in head
    # Each YAML's first comment line, citing the protocol's page in the repository (never a path
    # outside it: a user's clone has no ../shared).
    for line in ("  uci_mc_dropout_2016  The MC-dropout UCI protocol, 2016 version (Gal & Ghahramani, ICML 2016; docs/uci-protocol.md)",
                 "  uci_mc_dropout_2018  The MC-dropout UCI protocol, 2018 re-run (docs/uci-protocol.md)"):
        assert line in lines, line
    assert "+experiment=NAME" in lines[-1]


def test_an_experiments_description_is_its_first_comment_line(tmp_path):
    from dropbench.cli import _first_comment

    f = tmp_path / "x.yaml"
    f.write_text("# @package _global_\n#\n# A protocol: details follow\n# more\nseed: 1\n")
    assert _first_comment(f) == "A protocol"
    f.write_text("seed: 1  # not a description\n")
    assert _first_comment(f) == ""
    f.write_text("# One line. Then more.\n")
    assert _first_comment(f) == "One line"


def test_help_does_not_import_torch():
    code = "import sys; from dropbench.cli import app; from typer.testing import CliRunner; CliRunner().invoke(app, ['--help']); print('torch' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout.strip() == "False", p.stderr


def test_run_and_tune_share_their_common_options():
    """The options both commands take are declared once (cli.py): the same flags, kind and
    default in each, and each command's own help."""
    import typer.main

    commands = typer.main.get_command(app).commands
    run, tune = ({p.name: p for p in commands[c].params} for c in ("run", "tune"))
    shared = run.keys() & tune.keys()
    assert shared == {"overrides", "multirun", "resume", "allow_mixed_platforms", "allow_failures", "quiet", "config_dir"}
    for name in shared:
        a, b = run[name], tune[name]
        same = lambda p: (p.param_type_name, p.opts, p.secondary_opts, p.default, p.multiple, p.nargs, getattr(p, "is_flag", None))  # noqa: E731
        assert same(a) == same(b), name
        assert a.help and b.help, name
    assert run["multirun"].opts == ["-m", "--multirun"] and run["quiet"].help == tune["quiet"].help


def test_version():
    p = dropbench("--version")
    assert (p.returncode, p.stdout, p.stderr) == (0, "dropbench 0.1.0\n", "")


def test_shell_completion():
    """--show-completion prints a script (the shell named, as detection needs a real shell), and
    the completion protocol it installs completes commands and options."""
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    p = subprocess.run([sys.executable, "-m", "dropbench", "--show-completion", "bash"], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and "_dropbench_completion()" in p.stdout and "_DROPBENCH_COMPLETE=complete_bash" in p.stdout, p.stderr
    assert "--install-completion" in dropbench("--help").stdout

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {**os.environ, "_DROPBENCH_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
        p = subprocess.run([sys.executable, "-m", "dropbench"], capture_output=True, text=True, env=env)
        assert p.returncode == 0, p.stderr
        return p.stdout.split()

    assert complete("dropbench re") == ["report"]
    assert sorted(complete("dropbench run --allow")) == ["--allow-failures", "--allow-mixed-platforms"]


def test_progress_lines_are_rate_limited():
    """Without a bar: a line at most every interval, later at most every tenth of the elapsed
    time, and always a last one; 1000 runs over 100 s give tens of lines, not 1000."""
    from dropbench.cli import ProgressLines

    now = [0.0]
    lines: list[str] = []
    prog = ProgressLines(lines.append, clock=lambda: now[0], interval=2.0)
    prog.start(1000)
    for _ in range(1000):
        now[0] += 0.1
        prog.advance()
    prog.finish()
    assert 10 < len(lines) < 40, lines
    assert lines[0] == "dropbench: 20/1000 runs done, 2.0 s, eta 98 s"
    assert lines[-1] == "dropbench: 1000/1000 runs done, 100.0 s"
    gaps = [float(b.split(", ")[1][:-2]) - float(a.split(", ")[1][:-2]) for a, b in zip(lines, lines[1:-1])]
    assert all(g >= 2.0 - 1e-9 for g in gaps)
    lines.clear()
    prog.start(0)  # nothing to train: no line
    prog.finish()
    prog.start(24)  # interrupted after 5: the last line says how far it got
    now[0] += 1
    for _ in range(5):
        prog.advance()
    prog.finish()
    assert lines == ["dropbench: 5/24 runs done, 1.0 s"]


def test_check_example_in_help_is_a_claim_that_holds_everywhere():
    p = dropbench("check", "--help")
    assert '--expect "l2 < none"' in p.stdout and "dropout < none" not in p.stdout
