"""dropbench run on a terminal: the best and worst groups so far under the progress bar
(live.Leaderboard), from the runs stored so far; the folder known once runner.execute makes it."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from dropbench import runner
from dropbench.live import Leaderboard


def plan(*args: str):
    cfgs, launcher = runner.plan(["model.hidden=8", "epochs=4", "eval_every=2", *args], multirun=True)
    return cfgs, launcher


def store(out: Path, run_id: str, value: float) -> None:
    (out / "runs" / run_id).mkdir(parents=True)
    (out / "runs" / run_id / "result.json").write_text(json.dumps({"final_test_mse": value}, allow_nan=True))


def test_best_and_worst_group_means_of_the_runs_stored_so_far(tmp_path):
    cfgs, _ = plan("reg=none,dropout,l2", "seed=1,2")
    board = Leaderboard(cfgs)
    ids = {c.run_id: ("+".join(c.reg.names) or "none", c.seed) for c in cfgs}
    rid = {v: k for k, v in ids.items()}
    board.add(rid[("none", 1)], "ok")  # no folder yet: nothing counted
    assert board.line() == ""
    board.into(tmp_path)
    values = {("none", 1): 0.3, ("none", 2): 0.5, ("dropout", 1): 0.2, ("dropout", 2): float("nan"), ("l2", 1): 0.25}
    for key, v in values.items():
        store(tmp_path, rid[key], v)
    board.add(rid[("none", 1)], "ok")
    assert board.line() == ""  # one group: nothing to compare yet
    for key in [("none", 2), ("dropout", 1), ("dropout", 2), ("l2", 1)]:
        board.add(rid[key], "ok")
    board.add(rid[("l2", 2)], "failed")  # a failed run (no folder here) counts nowhere
    assert board.line() == "test MSE so far: best reg=dropout 0.2 (n=1), worst reg=none 0.4 (n=2)"
    assert not math.isnan(min(v for vs in board.scores.values() for v in vs))


def test_the_line_is_drawn_under_the_bar_on_a_terminal(tmp_path):
    from rich.console import Console

    from dropbench.cli import _progress

    cfgs, _ = plan("reg=none,dropout")
    board = Leaderboard(cfgs, tmp_path)
    for c, v in zip(cfgs, (0.5, 0.25)):
        store(tmp_path, c.run_id, v)
    buf = io.StringIO()
    with _progress(Console(file=buf, force_terminal=True, width=150), False, board) as (start, stored):
        start(len(cfgs))
        for c in cfgs:
            stored(c.run_id, "ok")
    assert "test MSE so far: best reg=dropout 0.25 (n=1), worst reg=none 0.5 (n=1)" in buf.getvalue()


def test_execute_names_the_folder_it_made_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfgs, launcher = plan("reg=none,dropout")
    seen: list[Path] = []
    outcome = runner.execute(cfgs, launcher, on_folder=seen.append, on_result=lambda r, s: seen.append(Path(r)))
    assert seen[0] == outcome.out and seen[0].parent == Path("results") and len(seen) == 3
