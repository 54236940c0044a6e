"""dropbench report: the summary rebuilt from CSVs, against hand computations."""

import csv
import io
import json
import math
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import platform, write_sweep
from dropbench.cli import app

runner = CliRunner()
T975_2 = 4.302653  # t(0.975, df=2), from tables


def report(*args: str) -> list[dict]:
    res = runner.invoke(app, ["report", *args, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def by_reg(groups: list[dict]) -> dict[str, dict]:
    return {g["reg"]: g for g in groups}


def test_groups_means_intervals_and_paired_difference_by_hand(hand_sweep):
    g = by_reg(report(str(hand_sweep)))
    none, drop = g["none"], g["dropout"]
    assert none["n_seeds"] == 3 and none["failed"] == 0
    assert none["test_mean"] == pytest.approx(2.0) and none["test_std"] == pytest.approx(1.0)
    assert none["test_ci"] == pytest.approx(T975_2 * 1.0 / math.sqrt(3), rel=1e-6)
    assert none["train_mean"] == pytest.approx(0.2) and none["gap"] == pytest.approx(1.8)
    assert drop["test_mean"] == pytest.approx(0.7) and drop["test_ci"] == pytest.approx(T975_2 * 0.2 / math.sqrt(3), rel=1e-6)
    assert (drop["rank"], none["rank"]) == (1, 2)
    # Paired, seed by seed: .5-1, .7-2, .9-3 = -.5, -1.3, -2.1: mean -1.3, s = 0.8.
    assert drop["n_pairs"] == 3 and drop["paired_diff"] == pytest.approx(-1.3)
    assert drop["paired_ci"] == pytest.approx(T975_2 * 0.8 / math.sqrt(3), rel=1e-6)
    assert none["paired_diff"] is None and "p" not in none, "p only varies along with reg: not a key of its own"


def test_epoch_best_and_a_recorded_epoch(hand_sweep):
    best = by_reg(report(str(hand_sweep), "--epoch", "best"))
    assert best["none"]["test_mean"] == pytest.approx(1.0), "none is best at epoch 50: half of 1, 2, 3"
    assert best["none"]["train_mean"] == pytest.approx(0.05)
    assert best["dropout"]["test_mean"] == pytest.approx(0.7), "dropout is best at its final epoch"
    at50 = by_reg(report(str(hand_sweep), "--epoch", "50"))
    assert at50["dropout"]["test_mean"] == pytest.approx(1.4) and at50["none"]["rank"] == 1
    res = runner.invoke(app, ["report", str(hand_sweep), "--epoch", "70"])
    assert res.exit_code == 2 and "recorded epochs: 50, 100" in res.stderr


def test_by_and_sort(hand_sweep):
    only_seeds = report(str(hand_sweep), "--by", "data")
    assert len(only_seeds) == 1 and only_seeds[0]["n_seeds"] == 6
    assert only_seeds[0]["test_mean"] == pytest.approx((6 + 2.1) / 6)
    assert [g["reg"] for g in report(str(hand_sweep), "--sort", "std")] == ["dropout", "none"]
    assert [g["reg"] for g in report(str(hand_sweep), "--sort", "gap", "--desc")] == ["none", "dropout"]
    assert [g["reg"] for g in report(str(hand_sweep), "--sort", "reg")] == ["dropout", "none"]
    for bad, says in ((["--by", "nope"], "unknown --by key nope"), (["--sort", "speed"], "unknown --sort 'speed'"),
                      (["--format", "xml"], "unknown --format 'xml'"), (["--epoch", "last"], "invalid --epoch 'last'")):
        res = runner.invoke(app, ["report", str(hand_sweep), *bad])
        assert res.exit_code == 2 and says in res.stderr and res.stderr.count("\n") == 1, res.stderr


def test_formats(hand_sweep, tmp_path):
    md = runner.invoke(app, ["report", str(hand_sweep), "--format", "markdown"]).stdout.splitlines()
    assert md[0].startswith("| reg | seeds |") and md[1].startswith("|---|---:|")
    assert md[2].startswith("| **dropout** | **3** |"), "the best group is bold"
    with_p = runner.invoke(app, ["report", str(hand_sweep), "--format", "markdown", "--by", "reg,p"]).stdout.splitlines()
    assert with_p[2].startswith("| **dropout** | **0.5** | **3** |") and with_p[3].startswith("| none |  | 3 |")
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["report", str(hand_sweep), "--format", "csv"]).stdout)))
    assert [r["reg"] for r in rows] == ["dropout", "none"] and float(rows[1]["test_mean"]) == pytest.approx(2.0)
    table = runner.invoke(app, ["report", str(hand_sweep)]).stdout
    assert "dropout" in table and "vs reg=none" in table
    res = runner.invoke(app, ["report", str(hand_sweep), "--format", "markdown", "-o", str(tmp_path / "r.md")])
    assert res.exit_code == 0 and (tmp_path / "r.md").read_text().startswith("| reg |")


def test_several_folders_side_by_side(hand_sweep, tmp_path):
    other = write_sweep(tmp_path / "other", [{"reg": "none", "seed": s, "final_train_mse": 0.1, "final_test_mse": 4.0 + s} for s in range(3)])
    groups = report(str(hand_sweep), str(other))
    assert [(g["reg"], g["sweep"]) for g in groups] == [("dropout", "hand"), ("none", "hand"), ("none", "other")]
    assert groups[2]["test_mean"] == pytest.approx(5.0)
    assert groups[0]["paired_diff"] == pytest.approx(-1.3), "pairs within its own sweep only"


def test_failed_runs_are_counted_not_averaged(tmp_path):
    d = write_sweep(tmp_path / "f", [{"reg": "none", "seed": 0, "final_train_mse": 0.1, "final_test_mse": 1.0},
                                     {"reg": "none", "seed": 1, "final_train_mse": "nan", "final_test_mse": "nan", "status": "failed"}])
    (g,) = report(str(d))
    assert (g["n_seeds"], g["failed"], g["test_mean"], g["test_ci"]) == (1, 1, 1.0, None)


def test_a_folder_whose_runs_all_failed_says_so_and_why(tmp_path):
    """Not `0 (3 failed) | nan ± nan`: every run failed, the reasons most frequent first with a
    count and a run id, exit 1 as for failed runs (not 2: the input is fine), in every format."""
    diverged = "diverged at epoch 3 (training loss nan); lower optim.lr or the regularizer strength"
    failed = {"final_train_mse": "nan", "final_test_mse": "nan", "status": "failed"}
    d = write_sweep(tmp_path / "f", [{"reg": "none", "seed": 0, **failed, "reason": "RuntimeError: out of memory"},
                                     {"reg": "none", "seed": 1, **failed, "reason": diverged},
                                     {"reg": "l2", "seed": 0, **failed, "reason": diverged}])
    for fmt in ("table", "json"):
        res = runner.invoke(app, ["report", str(d), "--format", fmt])
        assert res.exit_code == 1 and res.stdout == "", res.output
        assert res.stderr.splitlines() == [
            f"dropbench: error: every run in {d} failed (3 of 3), so there is nothing to summarize; why:",
            f"  2 run(s), e.g. r001: {diverged}",
            "  1 run(s), e.g. r000: RuntimeError: out of memory",
        ]
    many = write_sweep(tmp_path / "m", [{"reg": "none", "seed": s, **failed, "reason": f"reason {s}"} for s in range(7)])
    res = runner.invoke(app, ["report", str(many)])
    assert res.exit_code == 1 and len(res.stderr.splitlines()) == 7
    assert res.stderr.splitlines()[-1] == f"  and 2 other reason(s): see the reason column of {many / 'runs.csv'}"
    # One run ok is a summary, its failed runs counted (test_failed_runs_are_counted_not_averaged).
    ok = write_sweep(tmp_path / "ok", [{"reg": "none", "seed": 0, **failed}, {"reg": "l2", "seed": 0, "final_train_mse": 0.1, "final_test_mse": 1.0}])
    assert runner.invoke(app, ["report", str(ok)]).exit_code == 0


@pytest.mark.parametrize("damage, says", [
    (None, "no such folder"),
    ("", "is empty"),
    ("run_id,reg\nx,none\n", "lacks column(s) seed, final_train_mse, final_test_mse, status"),
    ("run_id,seed,final_train_mse,final_test_mse,status\nx,0,0.1\n", "line 2 has 3 fields where the header has 5"),
    ("run_id,seed,final_train_mse,final_test_mse,status\nx,0,0.1,lots,ok\n", "final_test_mse='lots' is not a number"),
    ("run_id,seed,final_train_mse,final_test_mse,status\n", "lists no runs"),
    (b"\xff\xfe\x00garbage", "is not a text CSV"),
    ('run_id,seed,final_train_mse,final_test_mse,status\n"' + "x" * 200_000 + '",0,0.1,0.2,ok\n', "is not a valid CSV (field larger than"),
])
def test_bad_folders_give_one_line(tmp_path, damage, says):
    d = tmp_path / "d"
    if damage is not None:
        d.mkdir()
        (d / "runs.csv").write_bytes(damage if isinstance(damage, bytes) else damage.encode())
    res = runner.invoke(app, ["report", str(d)])
    assert res.exit_code == 2 and says in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.output


def test_a_folder_without_runs_csv_suggests_resume(tmp_path):
    (tmp_path / "d" / "runs").mkdir(parents=True)
    res = runner.invoke(app, ["report", str(tmp_path / "d")])
    assert res.exit_code == 2 and "dropbench run --resume" in res.stderr


def test_report_imports_neither_torch_nor_matplotlib_nor_pandas(hand_sweep):
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom dropbench.cli import app\n"
        f"r = CliRunner().invoke(app, ['report', {str(hand_sweep)!r}, '--epoch', 'best'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'pandas', 'scipy', 'hydra') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_runs_table_names_what_distinguishes_each_run():
    """The swept keys, as the summary groups them (p, varying only along with reg here, adds
    nothing), and the seed; never p=None for a run without dropout."""
    from dropbench.render.runs import runs_table

    base = {"final_train_mse": 0.1, "final_test_mse": 0.2, "best_test_mse": 0.2, "best_epoch": 10, "status": "ok"}
    rows = [{"run_id": "a", "reg": "none", "p": None, "reg.dropout.p": None, "seed": 0, **base},
            {"run_id": "b", "reg": "dropout", "p": 0.5, "reg.dropout.p": 0.5, "seed": 0, **base},
            {"run_id": "c", "reg": "dropout", "p": 0.5, "reg.dropout.p": 0.5, "seed": 1, **base}]
    labels = list(runs_table(rows).columns[1].cells)
    assert labels == ["reg=none seed=0", "reg=dropout seed=0", "reg=dropout seed=1"]
    rows.append({**rows[1], "run_id": "d", "p": 0.2, "reg.dropout.p": 0.2})
    assert list(runs_table(rows).columns[1].cells)[1:] == ["reg=dropout p=0.5 seed=0", "reg=dropout p=0.5 seed=1",
                                                           "reg=dropout p=0.2 seed=0"]


def test_a_single_run_is_named_and_droppath_says_it_uses_residual_blocks():
    from dropbench.analysis.summary import summarize
    from dropbench.regs import REGISTRY
    from dropbench.render.long import summary_markdown, summary_table
    from dropbench.render.runs import runs_table

    DROPPATH_NOTE = REGISTRY["droppath"].note
    assert DROPPATH_NOTE == "reg=droppath runs use residual blocks (it turns model.residual on: DropPath drops residual branches)"

    base = {"final_train_mse": 0.1, "final_test_mse": 0.2, "best_test_mse": 0.2, "best_epoch": 10, "status": "ok",
            "data": "noisy_linear", "seed": 1}
    one = [{"run_id": "a", "reg": "dropout+l2", "p": 0.5, **base}]
    t = runs_table(one)
    assert list(t.columns[1].cells) == ["data=noisy_linear reg=dropout+l2 seed=1"] and t.caption is None, "p=0.5 is the default"
    two = [{"run_id": "b", "reg": "droppath", "p": 0.5, **base}, {"run_id": "c", "reg": "none", "p": None, **base}]
    assert runs_table(two).caption == DROPPATH_NOTE
    summary = summarize(two, ["reg"])
    assert DROPPATH_NOTE in summary_table(summary, ["reg"]).caption and DROPPATH_NOTE in summary_markdown(summary, ["reg"])
    assert DROPPATH_NOTE not in summary_table(summarize(one, ["reg"]), ["reg"]).caption


def test_the_core_reads_what_a_regularizer_declares(monkeypatch):
    """No regularizer is named by the report: a plug-in that sets a config key itself (as
    droppath sets model.residual) and declares it is paired with reg=none across that key and
    not grouped by it, and its declared note captions every table holding its runs."""
    from dropbench import regs
    from dropbench.analysis.grouping import group_keys
    from dropbench.analysis.summary import summarize
    from dropbench.regs.base import Regularizer
    from dropbench.render.long import summary_markdown, summary_table
    from dropbench.render.runs import runs_table
    from dropbench.render.wide import wide_markdown

    class Widen(Regularizer):
        name, order, slot = "widen", 999, "activation"
        sets = ("model.hidden",)
        note = "reg=widen runs are twice as wide (it doubles model.hidden)"

    rows = [{"run_id": f"{reg}{s}", "reg": reg, "model.hidden": 64 if reg == "widen" else 32, "seed": s, "final_train_mse": 0.1,
             "final_test_mse": mse + s / 10 + (s == 2) * (reg == "widen") / 10, "best_test_mse": 0.1, "best_epoch": 10, "status": "ok"}
            for reg, mse in (("none", 2.0), ("widen", 1.0)) for s in range(3)]

    def tables(keys: list[str]) -> list[str]:
        summary = summarize(rows, keys, {"reg": "none"})
        return [str(summary_table(summary, keys).caption), summary_markdown(summary, keys), wide_markdown(summary, keys, {"reg": "none"}),
                str(runs_table(rows).caption)]

    # Undeclared, model.hidden is a config value of its own: a key, and nothing pairs across it.
    assert group_keys(rows) == ["reg", "model.hidden"]
    assert [s["n_pairs"] for s in summarize(rows, ["reg"], {"reg": "none"})] == [0, 0]
    assert not any(Widen.note in t for t in tables(["reg"]))
    monkeypatch.setitem(regs.REGISTRY, "widen", Widen())
    assert group_keys(rows) == ["reg"], "model.hidden follows reg=widen"
    widen = next(s for s in summarize(rows, ["reg"], {"reg": "none"}) if s["reg"] == "widen")
    assert widen["n_pairs"] == 3 and widen["paired_diff"] == pytest.approx(-1.0 + 0.1 / 3)
    assert all(Widen.note in t for t in tables(["reg"]))


def test_the_same_folder_twice_is_refused(hand_sweep):
    from dropbench.errors import UserError
    from dropbench.report import build_report

    folder = hand_sweep
    with pytest.raises(UserError, match="is given twice"):
        build_report([folder, folder.parent / ".." / folder.parent.name / folder.name])


def test_a_single_run_shows_the_overrides_that_made_it():
    """Everything that differs from the defaults of its group choices, and nothing else."""
    from dropbench.config import load
    from dropbench.render.runs import runs_table

    cfg = load(["reg=dropout", "p=0.3", "model.activation=tanh", "model.hidden=64", "optim=sgd", "optim.lr=0.05", "epochs=40", "seed=2"])
    row = {"run_id": cfg.run_id, **cfg.choices(), "seed": cfg.seed, **{k: v for k, v in cfg.flat().items() if k != "seed"},
           "final_train_mse": 0.1, "final_test_mse": 0.2, "best_test_mse": 0.2, "best_epoch": 10, "status": "ok"}
    (label,) = runs_table([row]).columns[1].cells
    assert label == "data=noisy_linear reg=dropout optim=sgd model.hidden=64 model.activation=tanh optim.lr=0.05 epochs=40 p=0.3 seed=2"
    # Several runs: what tells them apart, and a caption with what they share.
    rows = [row, {**row, "run_id": "b", "seed": 3}]
    t = runs_table(rows)
    assert list(t.columns[1].cells) == ["seed=2", "seed=3"]
    assert t.caption == "every run: reg=dropout optim=sgd model.hidden=64 model.activation=tanh optim.lr=0.05 epochs=40 p=0.3"


def test_a_single_run_names_the_required_data_keys(tmp_path):
    """Keys without a default (a CSV's path and target, a UCI set's name) are overrides too."""
    from dropbench.render.runs import runs_table

    row = {"run_id": "a", "data": "uci", "model": "mlp", "reg": "none", "optim": "adam", "seed": 1, "data.dataset": "yacht",
           "data.split": 3, "data.root": "", "final_train_mse": 0.1, "final_test_mse": 0.2, "best_test_mse": 0.2,
           "best_epoch": 10, "status": "ok"}
    (label,) = runs_table([row]).columns[1].cells
    assert label == "data=uci reg=none data.dataset=yacht data.split=3 seed=1"


MIX = [{"reg": reg, "seed": s, "epochs": 100 if reg == "l1" else 200, "final_train_mse": 0.1,
        "final_test_mse": 1.0 + s + {"none": 0.5, "l1": 0.1, "l2": 0.3}[reg]} for reg in ("none", "l1", "l2") for s in range(3)]


def test_a_folder_that_mixes_epochs_shows_them_and_pairs_within_them(tmp_path):
    """The issue's `cp -r sweepA mix; dropbench run reg=l1 epochs=100 out=mix`."""
    d = write_sweep(tmp_path / "mix", MIX)
    g = by_reg(report(str(d)))
    assert (g["l1"]["epochs"], g["l2"]["epochs"]) == (100, 200), "epochs is a key of its own"
    assert g["l1"]["n_pairs"] == 0 and g["l1"]["paired_diff"] is None, "no reg=none run of 100 epochs"
    assert g["l2"]["n_pairs"] == 3 and g["l2"]["paired_diff"] == pytest.approx(-0.2)
    md = runner.invoke(app, ["report", str(d), "--format", "markdown"]).stdout
    assert md.startswith("| reg | epochs |") and "pool" not in md
    # An explicit, coarser --by: groups pool configs, and the caption says so.
    res = runner.invoke(app, ["report", str(d), "--by", "reg", "--format", "markdown"])
    assert "groups pool runs of different configs: epochs (100, 200)" not in res.stdout, "each reg ran one epochs value"
    write_sweep(d, MIX + [{**r, "epochs": 100, "final_test_mse": r["final_test_mse"] + 1} for r in MIX if r["reg"] == "none"])
    res = runner.invoke(app, ["report", str(d), "--by", "reg", "--format", "markdown"])
    assert "groups pool runs of different configs: epochs (100, 200)" in res.stdout
    assert by_reg(report(str(d), "--by", "reg"))["l1"]["paired_diff"] == pytest.approx(-1.4), "l1 pairs with none at 100 epochs"


def test_ranks_restart_per_data_set_and_the_best_of_each_is_bold(tmp_path):
    rows = [{**r, "data": data, "final_test_mse": r["final_test_mse"] * scale} for data, scale in (("noisy_sine", 1), ("friedman1", 10))
            for r in MIX if r["reg"] != "l1"]
    d = write_sweep(tmp_path / "two", rows)
    groups = report(str(d))
    assert [(g["data"], g["reg"], g["rank"]) for g in groups] == [
        ("friedman1", "l2", 1), ("friedman1", "none", 2), ("noisy_sine", "l2", 1), ("noisy_sine", "none", 2)]
    assert groups[0]["paired_diff"] == pytest.approx(-2.0) and groups[2]["paired_diff"] == pytest.approx(-0.2)
    md = runner.invoke(app, ["report", str(d), "--format", "markdown"]).stdout.splitlines()
    assert [line.startswith("| **") for line in md[2:6]] == [True, False, True, False]
    assert "ranks within each data set" in "\n".join(md)


def test_a_data_set_named_by_a_sub_key_ranks_apart_and_where_its_files_lie_is_no_key(tmp_path):
    """data=uci data.dataset=yacht,energy keeps `data` constant: the data sets still rank and
    pair apart; data.root (where the verified files were read) splits nothing."""
    rows = [{**r, "data": "uci", "data.dataset": ds, "data.root": f"/copy{r['seed'] % 2}",
             "final_test_mse": r["final_test_mse"] * scale} for ds, scale in (("yacht", 1), ("energy", 10))
            for r in MIX if r["reg"] != "l1"]
    d = write_sweep(tmp_path / "uci", rows)
    groups = report(str(d))
    assert [(g["data.dataset"], g["reg"], g["rank"], g["n_seeds"]) for g in groups] == [
        ("energy", "l2", 1, 3), ("energy", "none", 2, 3), ("yacht", "l2", 1, 3), ("yacht", "none", 2, 3)]
    assert "data.root" not in groups[0] and groups[2]["paired_diff"] == pytest.approx(-0.2)


def test_a_folder_that_mixes_platforms_says_so(tmp_path):
    rows = [{**r, **platform(capability="AVX512" if r["seed"] < 2 else "AVX2")} for r in MIX]
    d = write_sweep(tmp_path / "plat", rows)
    table = runner.invoke(app, ["report", str(d)], env={"COLUMNS": "300"}).stdout
    assert "WARNING: these numbers come from 2 platforms" in table and "AVX512, cpu: 6 runs" in table
    assert "AVX2, cpu: 3 runs" in table
    md = runner.invoke(app, ["report", str(d), "--format", "markdown"]).stdout
    assert "WARNING: these numbers come from 2 platforms" in md
    for fmt in ("csv", "json"):  # no caption there: the warning goes to stderr, the data stays clean
        res = runner.invoke(app, ["report", str(d), "--format", fmt])
        assert "WARNING: these numbers come from 2 platforms" in res.stderr and "WARNING" not in res.stdout
    g = by_reg(report(str(d)))
    assert g["none"]["platform"] == "torch 2.13.0, Some CPU, CPU capability AVX512, cpu (2); torch 2.13.0, Some CPU, CPU capability AVX2, cpu (1)"
    # One platform, or an old folder that records none: nothing to say.
    one = write_sweep(tmp_path / "one", [{**r, **platform()} for r in MIX])
    assert "WARNING" not in runner.invoke(app, ["report", str(one), "--format", "markdown"]).stdout
    old = write_sweep(tmp_path / "old", MIX)
    assert "platform" not in runner.invoke(app, ["report", str(old), "--format", "markdown"]).stdout


# --- UCI splits: repetitions like seeds; --interval; --metric; --layout wide ----------------------

def uci_rows(seeds=(0,), scale_of=(("yacht", 1.0), ("energy", 10.0))) -> list[dict]:
    """data=uci over 3 splits: reg=none tests 1, 2, 3 and reg=l2 0.1, 0.2, 0.3 lower (times the
    data set's scale; each further seed adds 0.5 to both)."""
    rows = []
    for ds, scale in scale_of:
        for seed in seeds:
            for split, te in enumerate([1.0, 2.0, 3.0]):
                base = {"data": "uci", "data.dataset": ds, "data.split": split, "seed": seed}
                rows.append({**base, "reg": "none", "final_train_mse": 0.1, "final_test_mse": (te + 0.5 * seed) * scale})
                rows.append({**base, "reg": "l2", "final_train_mse": 0.2, "final_test_mse": (te + 0.5 * seed - 0.1 * (split + 1)) * scale})
    return rows


def test_splits_are_repetitions_that_pair_like_seeds(tmp_path):
    d = write_sweep(tmp_path / "uci", uci_rows())
    groups = report(str(d))
    assert [(g["data.dataset"], g["reg"], g["n_seeds"], g["rank"]) for g in groups] == [
        ("energy", "l2", 3, 1), ("energy", "none", 3, 2), ("yacht", "l2", 3, 1), ("yacht", "none", 3, 2)]
    assert "data.split" not in groups[0] and groups[0]["repeats"] == "data.split"
    yacht_l2 = groups[2]
    # Per split: -.1, -.2, -.3: mean -.2, sample SD .1.
    assert yacht_l2["n_pairs"] == 3 and yacht_l2["paired_diff"] == pytest.approx(-0.2)
    assert yacht_l2["paired_ci"] == pytest.approx(T975_2 * 0.1 / math.sqrt(3), rel=1e-6)
    assert groups[0]["paired_diff"] == pytest.approx(-2.0)
    md = runner.invoke(app, ["report", str(d), "--format", "markdown"]).stdout
    assert md.startswith("| reg | data.dataset | splits |") and "over splits; paired: per-split difference" in md
    per_split = report(str(d), "--by", "reg,data.dataset,data.split")
    assert len(per_split) == 12 and {g["n_seeds"] for g in per_split} == {1}


def test_seeds_and_splits_pair_on_both(tmp_path):
    """Two seeds x three splits: six runs per group, each paired with reg=none's run of the
    same seed and split (not averaged over the seed's splits)."""
    d = write_sweep(tmp_path / "both", uci_rows(seeds=(0, 1), scale_of=(("yacht", 1.0),)))
    g = by_reg(report(str(d)))
    assert g["l2"]["n_seeds"] == 6 and g["l2"]["repeats"] == "seed+data.split"
    assert g["l2"]["n_pairs"] == 6 and g["l2"]["paired_diff"] == pytest.approx(-0.2)
    # diffs -.1 -.2 -.3 twice: sample SD sqrt(0.04/5).
    assert g["l2"]["paired_std"] == pytest.approx(math.sqrt(0.04 / 5))
    md = runner.invoke(app, ["report", str(d), "--format", "markdown"]).stdout
    assert md.startswith("| reg | runs |") and "over runs (seed × data.split)" in md


def test_interval_se_ci95_std(tmp_path, hand_sweep):
    d = write_sweep(tmp_path / "uci", uci_rows())
    g = {(x["data.dataset"], x["reg"]): x for x in report(str(d), "--interval", "se")}
    none = g[("yacht", "none")]
    # tests 1, 2, 3: population SD sqrt(2/3), as numpy's default (PROTOCOL.md of the UCI splits).
    assert none["test_se"] == pytest.approx(math.sqrt(2 / 3) / math.sqrt(3))
    assert none["test_std"] == pytest.approx(1.0) and none["test_ci"] == pytest.approx(T975_2 / math.sqrt(3), rel=1e-6)
    assert none["interval"] == "se" and none["test_interval"] == none["test_se"]
    assert g[("yacht", "l2")]["paired_interval"] == pytest.approx(math.sqrt(0.02 / 3) / math.sqrt(3))
    md = runner.invoke(app, ["report", str(d), "--format", "markdown", "--interval", "se"]).stdout
    assert "test MSE (mean ± SE)" in md and "vs reg=none (paired, SE)" in md and "ddof=0" in md
    assert "| 2 ± 0.47 |" in md.replace("**", ""), md
    md = runner.invoke(app, ["report", str(d), "--format", "markdown", "--interval", "std"]).stdout
    assert "test MSE (mean ± std)" in md and "| 2 ± 1 |" in md and "sample standard deviation" in md
    # The default is today's output, to the character.
    default = runner.invoke(app, ["report", str(hand_sweep), "--format", "markdown"]).stdout
    assert default.splitlines()[0] == ("| reg | seeds | train MSE (mean ± std) | test MSE (mean ± 95% CI) | gap | rank "
                                       "| vs reg=none (paired, 95% CI) |")
    assert default.splitlines()[-1] == ("test: mean ± 95% t-interval over seeds; paired: per-seed difference to the "
                                        "reference group, 95% t-interval")
    res = runner.invoke(app, ["report", str(d), "--interval", "sem"])
    assert res.exit_code == 2 and "unknown --interval 'sem': choose from ci95, se, std" in res.stderr


def test_wide_layout_is_the_literature_table(tmp_path):
    rows = uci_rows()
    # reg=dropout: 1, 1.1, 1.2 below reg=none (times the scale): a paired interval clear of 0.
    rows += [{**r, "reg": "dropout", "final_test_mse": r["final_test_mse"] - (1.0 + 0.1 * r["data.split"]) * (10.0 if r["data.dataset"] == "energy" else 1.0)}
             for r in rows if r["reg"] == "none"]
    d = write_sweep(tmp_path / "uci", rows)
    md = runner.invoke(app, ["report", str(d), "--layout", "wide", "--interval", "se", "--format", "markdown"]).stdout
    lines = md.splitlines()
    assert lines[0] == "| data set | none | dropout | l2 |", "the reference group first"
    assert lines[2] == "| energy | 20 ± 4.7 (3) | **9 ± 4.2 (1)** | 18 ± 4.2 (2) |"
    assert lines[3] == "| yacht | 2 ± 0.47 (3) | **0.9 ± 0.42 (1)** | 1.8 ± 0.42 (2) |"
    assert lines[4] == "| mean rank | 3 | 1 | 2 |"
    assert "over splits" in md and "standard error" in md
    paired = lines[lines.index("| data set | dropout − reg=none | l2 − reg=none |"):]
    # l2's differences -.1, -.2, -.3 have a 95% t-interval of ±.25: no star; dropout's ±.025 has.
    assert paired[2] == "| energy | -11 ± 0.47* | -2 ± 0.47 |" and paired[3] == "| yacht | -1.1 ± 0.047* | -0.2 ± 0.047 |"
    records = json.loads(runner.invoke(app, ["report", str(d), "--layout", "wide", "--format", "json"]).stdout)
    assert [r["data.dataset"] for r in records] == ["energy", "yacht"]
    assert records[1]["l2 test_mean"] == pytest.approx(1.8) and records[1]["l2 rank"] == 2
    assert records[1]["none test_se"] == pytest.approx(math.sqrt(2 / 3) / math.sqrt(3)) and records[1]["interval"] == "ci95"
    table = runner.invoke(app, ["report", str(d), "--layout", "wide"], env={"COLUMNS": "200"}).stdout
    assert "mean rank" in table and "paired differences" in table
    res = runner.invoke(app, ["report", str(d), "--layout", "tall"])
    assert res.exit_code == 2 and "unknown --layout 'tall'" in res.stderr


def test_metric_chooses_a_column_and_a_log_likelihood_ranks_highest_first(tmp_path):
    rows = uci_rows(scale_of=(("yacht", 1.0),))
    for r in rows:  # a log-likelihood that favours reg=none: -test MSE of the other reg
        r["final_test_ll"] = -r["final_test_mse"] + (0.5 if r["reg"] == "none" else 0.0)
    d = write_sweep(tmp_path / "ll", rows)
    g = by_reg(report(str(d), "--metric", "test_ll"))
    assert g["none"]["rank"] == 1 and g["l2"]["rank"] == 2 and g["none"]["higher_is_better"] is True
    assert g["none"]["test_mean"] == pytest.approx(-1.5) and g["none"]["metric"] == "test_ll"
    assert math.isnan(g["none"]["train_mean"] if g["none"]["train_mean"] is not None else math.nan), "no train_ll column"
    md = runner.invoke(app, ["report", str(d), "--metric", "test_ll", "--format", "markdown"]).stdout
    assert md.startswith("| reg | splits | test log-likelihood (mean ± 95% CI) | rank |")
    assert "higher is better" in md and md.splitlines()[2].startswith("| **none** |")
    wide = runner.invoke(app, ["report", str(d), "--metric", "test_ll", "--layout", "wide", "--format", "markdown"]).stdout
    assert wide.splitlines()[2] == "| yacht | **-1.5 ± 2.5 (1)** | -1.8 ± 2.2 (2) |", wide
    assert "best (highest mean)" in wide
    lower = by_reg(report(str(d), "--metric", "test_ll", "--better", "lower"))
    assert lower["l2"]["rank"] == 1
    # final_ is optional, any numeric result column works, an unknown one is one line.
    assert by_reg(report(str(d), "--metric", "final_test_mse"))["l2"]["rank"] == 1
    res = runner.invoke(app, ["report", str(d), "--metric", "test_rmse"])
    assert res.exit_code == 2 and "unknown --metric 'test_rmse': these runs carry" in res.stderr and "test_ll" in res.stderr


def test_a_metric_no_run_computed_is_one_line_that_says_how(tmp_path):
    """test_ll is empty where eval.tau was not set: say so, rather than print nan ± nan."""
    d = write_sweep(tmp_path / "noll", [{**r, "final_test_ll": ""} for r in MIX])
    res = runner.invoke(app, ["report", str(d), "--metric", "test_ll"])
    assert res.exit_code == 2 and "no run computed final_test_ll" in res.output and "eval.tau" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1


def test_values_tuned_split_by_split_still_pair_on_the_split(tmp_path):
    """dropbench tune picks eval.tau per split and per regularizer: no run has a reference of
    equal config, so the pooled tau is left out of the match; the split never is."""
    taus = {"none": [0.1, 0.2, 0.1, 0.2], "dropout": [0.2, 0.2, 0.1, 0.1]}
    rows = [{"reg": reg, "seed": 1, "data.split": i, "eval.tau": taus[reg][i], "final_train_mse": 0.1,
             "final_test_mse": 1.0 + i + (0.0 if reg == "none" else -0.25)} for reg in taus for i in range(4)]
    d = write_sweep(tmp_path / "tuned", rows)
    g = by_reg(report(str(d), "--by", "reg"))
    assert g["dropout"]["n_pairs"] == 4 and g["dropout"]["paired_diff"] == pytest.approx(-0.25)


def test_wide_table_keeps_per_data_set_settings_out_of_its_columns(tmp_path):
    """The 2016 UCI protocol sets p and tau per data set: one column per regularizer still, and
    the caption says which values follow the data set."""
    rows = [{"data": "uci", "data.dataset": ds, "reg": "dropout", "p": p, "eval.tau": tau, "seed": 1, "data.split": i,
             "final_train_mse": 0.1, "final_test_mse": 1.0 + i} for ds, p, tau in (("yacht", 0.01, 0.5), ("energy", 0.05, 0.4))
            for i in range(3)]
    d = write_sweep(tmp_path / "proto", rows)
    md = runner.invoke(app, ["report", str(d), "--layout", "wide", "--format", "markdown"]).stdout
    assert md.startswith("| data set | dropout |"), md
    assert "set per data set (as configured): p, eval.tau" in md



def test_wide_table_over_one_folder_per_data_set_has_no_sweep_caption(tmp_path):
    """dropbench bench uci-2018 tunes each data set into its own folder; the folder then follows the
    data set, and the caption must not list `sweep` as a per-data-set setting."""
    folders = []
    for ds in ("yacht", "energy"):
        rows = [{"data": "uci", "data.dataset": ds, "reg": "dropout", "seed": 1, "data.split": i,
                 "final_train_mse": 0.1, "final_test_mse": 1.0 + i} for i in range(3)]
        folders.append(str(write_sweep(tmp_path / ds, rows)))
    md = runner.invoke(app, ["report", *folders, "--by", "data.dataset,reg", "--layout", "wide", "--format", "markdown"]).stdout
    assert md.startswith("| data set | dropout |") and "| yacht |" in md and "| energy |" in md, md
    assert "sweep" not in md, md

# ---- csv data sets: grouped by contents, named by file --------------------------------------------

def csv_sweep(tmp_path, files: list[tuple[str, str]]):
    """reg=none and l2 over 3 seeds on each (sha256, data.path) file; l2 0.1 lower on each seed."""
    rows = [{"data": "csv", "data.path": path, "data.target": "y", "data.sha256": sha, "reg": reg, "seed": s,
             "final_train_mse": 0.1, "final_test_mse": 1.0 + i + s / 10 - (0.1 if reg == "l2" else 0.0)}
            for i, (sha, path) in enumerate(files) for reg in ("none", "l2") for s in range(3)]
    return write_sweep(tmp_path / "csv", rows)


A, B = "a" * 64, "b" * 64


def test_csv_groups_are_labelled_by_file_in_every_format(tmp_path):
    d = str(csv_sweep(tmp_path, [(A, "/data/a/train.csv"), (B, "/data/b/train.csv")]))
    groups = report(d)
    assert [(g["data.file"], g["reg"], g["n_seeds"], g["rank"]) for g in groups] == [
        ("a/train.csv", "l2", 3, 1), ("a/train.csv", "none", 3, 2), ("b/train.csv", "l2", 3, 1), ("b/train.csv", "none", 3, 2)]
    assert [g["data.sha256"] for g in groups] == [A, A, B, B], "the grouping is by contents"
    table = runner.invoke(app, ["report", d], env={"COLUMNS": "200"}).stdout
    assert "a/train.csv" in table and "b/train.csv" in table and A[:12] not in table
    md = runner.invoke(app, ["report", d, "--format", "markdown"]).stdout.splitlines()
    assert md[0].startswith("| reg | data.file | seeds |") and md[2].startswith("| **l2** | **a/train.csv** |")
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["report", d, "--format", "csv"]).stdout)))
    assert [(r["data.sha256"], r["data.file"]) for r in rows][::2] == [(A, "a/train.csv"), (B, "b/train.csv")]


def test_the_wide_table_has_a_row_per_csv_file(tmp_path):
    """Two files of one basename were one row ("csv target=y"), one overwriting the other."""
    d = str(csv_sweep(tmp_path, [(A, "/data/a/train.csv"), (B, "/data/b/train.csv")]))
    md = runner.invoke(app, ["report", d, "--layout", "wide", "--format", "markdown"]).stdout
    assert "| a/train.csv target=y | 1.1 ± 0.25 (2) | **1 ± 0.25 (1)** |" in md and "| b/train.csv target=y | 2.1 ± 0.25 (2) |" in md, md
    records = json.loads(runner.invoke(app, ["report", d, "--layout", "wide", "--format", "json"]).stdout)
    assert [(r["data.file"], r["none n_seeds"]) for r in records] == [("a/train.csv", 3), ("b/train.csv", 3)]
    one = str(csv_sweep(tmp_path / "one", [(A, "/data/a/train.csv")]))
    assert "| train.csv target=y |" in runner.invoke(app, ["report", one, "--layout", "wide", "--format", "markdown"]).stdout


def test_a_csv_file_edited_between_sweeps_is_two_groups_told_apart(tmp_path):
    d = str(csv_sweep(tmp_path, [(B, "/data/train.csv"), (A, "/data/train.csv")]))
    groups = report(d, "--by", "data.sha256")
    assert [(g["data.file"], g["n_seeds"]) for g in groups] == [("train.csv@aaaaaaa", 6), ("train.csv@bbbbbbb", 6)]
    table = runner.invoke(app, ["report", d], env={"COLUMNS": "200"}).stdout
    assert table.count("train.csv@aaaaaaa") == 2 and table.count("train.csv@bbbbbbb") == 2


def test_csv_groups_are_labelled_by_file_in_a_check(tmp_path):
    d = str(csv_sweep(tmp_path, [(A, "/data/a/train.csv"), (B, "/data/b/train.csv")]))
    base = tmp_path / "base.csv"
    res = runner.invoke(app, ["check", d, "--baseline", str(base), "--update-baseline", "--expect", "l2,a/train.csv < data.file=a/train.csv,none"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "b/train.csv" in res.stdout and A[:12] not in res.stdout, res.output
    assert "l2,a/train.csv < data.file=a/train.csv,none │ holds" in res.stdout
    from dropbench.check import run_check

    labels = [v.label for v in run_check(csv_sweep(tmp_path / "only_a", [(A, "/data/a/train.csv")]), base).verdicts]
    assert labels == ["reg=l2 data.file=train.csv", f"reg=l2 data.sha256={B[:12]}",
                      "reg=none data.file=train.csv", f"reg=none data.sha256={B[:12]}"], "a missing file's group: its hash, short"
