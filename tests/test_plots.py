"""`dropbench plot`: the three figures, their series, bad input, and the command end to end."""

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer

from conftest import write_sweep
from dropbench.errors import UserError
from dropbench.plots import curves_figure, final_test_figure, fit_figure, load_sweep, make_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def dropbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dropbench", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "160"})


def run_sweep_at(folder: Path, *overrides: str) -> Path:
    """A small sweep (model.hidden=16); later overrides win, so callers can set epochs."""
    out = folder / "sweep"
    p = dropbench("run", "-m", "epochs=20", "eval_every=5", "model.hidden=16", *overrides, f"out={out}", "-q")
    assert p.returncode == 0, p.stderr
    return out


def run_sweep(factory: pytest.TempPathFactory, name: str, *overrides: str) -> Path:
    return run_sweep_at(factory.mktemp(name), *overrides)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 groups (reg=none, reg=dropout) x seeds 0-2 on the 1-D seed data set."""
    return run_sweep(tmp_path_factory, "sweep", "reg=none,dropout", "seed=range(3)")


@pytest.fixture(scope="module")
def friedman_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10-feature data: no fit.csv, hence no fit picture."""
    return run_sweep(tmp_path_factory, "friedman", "data=friedman1", "seed=range(2)")


def bands(ax) -> list[PolyCollection]:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_import_is_light():
    code = "import sys, dropbench.plots; print(sorted(m for m in ('matplotlib', 'numpy', 'torch') if m in sys.modules))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout.strip() == "[]", p.stderr


def test_make_plots_writes_three_valid_pngs(sweep_dir, tmp_path):
    paths = make_plots(sweep_dir, tmp_path / "figs", None, False, None)
    assert [p.name for p in paths] == ["curves.png", "final_test.png", "fit.png"]
    for p in paths:
        assert p.parent == tmp_path / "figs"
        assert p.read_bytes()[:8] == PNG_MAGIC
        img = matplotlib.image.imread(p)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400


def test_default_out_is_folder_plots(sweep_dir):
    paths = make_plots(sweep_dir, None, None, True, "mean")
    assert {p.parent for p in paths} == {sweep_dir / "plots"}


def test_curves_one_line_and_one_band_per_group(sweep_dir):
    sweep = load_sweep(sweep_dir)
    fig = curves_figure(sweep)
    assert len(fig.axes) == 2
    for ax, what in zip(fig.axes, ("train MSE", "test MSE")):
        assert what in ax.get_title()
        assert [line.get_label() for line in ax.get_lines()] == [f"{g.label} (n=3)" for g in sweep.groups]
        assert len(bands(ax)) == 2
        assert list(ax.get_lines()[0].get_xdata()) == [5, 10, 15, 20]
        assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale()) == ("epoch", "MSE (eval mode)", "linear")
        assert ax.get_legend() is not None
    assert {g.label for g in sweep.groups} == {"reg=none", "reg=dropout"}
    title = fig.get_suptitle()
    assert "noisy_linear" in title and "mlp hidden=16 depth=2" in title and "3 seeds" in title
    # Same colour for a group in the curves and the fit picture.
    fit = fit_figure(sweep)
    colours = {line.get_label(): line.get_color() for line in fig.axes[1].get_lines()}
    for line in fit.axes[0].get_lines():
        label = line.get_label().removesuffix(" fit")
        assert colours[f"{label} (n=3)"] == line.get_color()


def test_curves_log_scale(sweep_dir):
    fig = curves_figure(load_sweep(sweep_dir), log=True)
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log"]
    lo, hi = fig.axes[0].get_ylim()
    assert 0 < lo < hi < 10  # clipped band edges do not stretch the axis


def test_final_test_one_errorbar_per_group_best_first(sweep_dir):
    sweep = load_sweep(sweep_dir)
    fig = final_test_figure(sweep)
    ax = fig.axes[0]
    # One errorbar call per group: one ErrorbarContainer each, its data line at (mean, position).
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    means = [float(c.lines[0].get_xdata()[0]) for c in bars]
    assert means == sorted(means)
    assert means == pytest.approx([g.stats["test_mean"] for g in sweep.groups])
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks == [f"{c.get_label()} (n=3)" for c in bars]
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # the first (best) group at the top
    assert "best first" in ax.get_title() and "noisy_linear" in ax.get_title()


@pytest.mark.parametrize("seed, in_title", [(None, "seed 0"), ("1", "seed 1"), ("mean", "averaged over seeds")])
def test_fit_points_and_one_line_per_group(sweep_dir, seed, in_title):
    fig = fit_figure(load_sweep(sweep_dir), seed)
    ax = fig.axes[0]
    points = [c for c in ax.collections if not isinstance(c, PolyCollection)]
    assert [c.get_label() for c in points] == ["train points (n=20)", "test points (n=20)"]
    assert len(ax.get_lines()) == 2
    assert all(len(line.get_xdata()) == 200 for line in ax.get_lines())
    assert in_title in fig.get_suptitle()


def test_fit_seeds_differ_and_mean_is_their_average(sweep_dir):
    import numpy as np

    sweep = load_sweep(sweep_dir)
    ys = [np.asarray(fit_figure(sweep, s).axes[0].get_lines()[0].get_ydata()) for s in ("0", "1", "2")]
    assert not np.allclose(ys[0], ys[1])
    mean = np.asarray(fit_figure(sweep, "mean").axes[0].get_lines()[0].get_ydata())
    assert mean == pytest.approx(np.mean(ys, axis=0), abs=1e-6)


@pytest.mark.parametrize("seed, msg", [("7", "--seed 7: no successful run has that seed; choose one of 0, 1, 2"),
                                       ("abc", "--seed 'abc' is not a seed")])
def test_bad_seed_is_a_user_error(sweep_dir, tmp_path, seed, msg):
    with pytest.raises(UserError, match=msg.replace("(", r"\(")):
        make_plots(sweep_dir, tmp_path / "figs", None, False, seed)
    assert not (tmp_path / "figs").exists()


@pytest.mark.slow  # trains a sweep (a few seconds on 2 cores)
def test_no_fit_for_data_that_is_not_1d(friedman_dir, tmp_path):
    paths = make_plots(friedman_dir, tmp_path, None, False, None)
    assert [p.name for p in paths] == ["curves.png", "final_test.png"]
    assert not (tmp_path / "fit.png").exists()
    assert fit_figure(load_sweep(friedman_dir)) is None


def test_by(sweep_dir, tmp_path):
    sweep = load_sweep(sweep_dir, ["reg"])
    assert [g.label for g in sweep.groups] == [g.label for g in load_sweep(sweep_dir).groups]
    assert len(make_plots(sweep_dir, tmp_path, ["reg"], False, None)) == 3
    single = curves_figure(load_sweep(sweep_dir, []))
    assert [line.get_label() for line in single.axes[0].get_lines()] == ["all runs (n=6)"]
    fit = fit_figure(load_sweep(sweep_dir, []), "0")  # two runs of seed 0 in the one group
    assert [line.get_label() for line in fit.axes[0].get_lines()] == ["all runs fit (mean of 2 runs)"]
    with pytest.raises(UserError, match="unknown --by key nope: choose from .*reg"):
        make_plots(sweep_dir, tmp_path, ["nope"], False, None)


def test_failed_runs_are_left_out_and_counted(tmp_path):
    runs = [{"reg": "none", "seed": s, "final_train_mse": 0.1, "final_test_mse": 1.0 + s} for s in range(3)]
    runs.append({"reg": "none", "seed": 3, "final_train_mse": "nan", "final_test_mse": "nan", "status": "failed", "reason": "loss is nan"})
    curves = [{"run_id": f"r{i:03d}", "epoch": e, "train_mse": 0.1, "test_mse": 1.0} for i in range(3) for e in (50, 100)]
    folder = write_sweep(tmp_path / "hand", runs, curves)
    sweep = load_sweep(folder)
    assert sweep.failed == 1 and len(sweep.runs) == 3
    fig = curves_figure(sweep)
    assert "1 failed run(s) left out" in fig.get_suptitle()
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["all runs (n=3)"]
    assert fit_figure(sweep) is None  # hand-written folder: no run folders, no fits


@pytest.mark.slow  # trains a sweep (a few seconds on 2 cores)
def test_cli_plot(sweep_dir, tmp_path):
    out = tmp_path / "cli"
    p = dropbench("plot", str(sweep_dir), "--out", str(out), "--by", "reg", "--log")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [str(out / n) for n in ("curves.png", "final_test.png", "fit.png")]


def test_cli_plot_bad_folder_is_one_line(tmp_path):
    p = dropbench("plot", str(tmp_path / "missing"))
    assert p.returncode == 2
    assert p.stderr.startswith("dropbench: error: ") and "no such folder" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert p.stdout == ""


def test_results_and_pngs_get_the_umask_modes(sweep_dir, tmp_path):
    """Atomic writes go through mkstemp/mkdtemp (0600/0700); the renamed files must not keep that."""
    umask = os.umask(0o022)
    os.umask(umask)
    paths = make_plots(sweep_dir, tmp_path / "figs", None, False, None)
    run_dir = next(d for d in (sweep_dir / "runs").iterdir() if not d.name.startswith("."))
    for p in [*paths, sweep_dir / "runs.csv", sweep_dir / "curves.csv", run_dir / "config.yaml"]:
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p
    assert run_dir.stat().st_mode & 0o777 == 0o777 & ~umask


@pytest.mark.slow  # trains a sweep (a few seconds on 2 cores)
def test_a_single_evaluated_epoch_is_drawn_as_a_dot(tmp_path):
    out = run_sweep_at(tmp_path, "reg=none,dropout", "seed=range(2)", "epochs=5", "eval_every=50")
    line = curves_figure(load_sweep(out)).axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [5] and line.get_marker() == "o"


def spread_sweep(folder: Path, datasets=("noisy_linear",)) -> Path:
    """3 seeds whose MSEs spread so widely that mean - t·s/√n < 0 (t(0.975, 2) = 4.3)."""
    runs, curves, i = [], [], 0
    for data in datasets:
        for reg in ("none", "dropout"):
            for s, v in enumerate((0.01, 0.02, 0.9)):
                runs.append({"data": data, "reg": reg, "seed": s, "model.activation": "tanh", "final_train_mse": v, "final_test_mse": v})
                curves += [{"run_id": f"r{i:03d}", "epoch": e, "train_mse": v, "test_mse": v} for e in (50, 100)]
                i += 1
    return write_sweep(folder, runs, curves)


@pytest.mark.parametrize("log", [False, True])
def test_intervals_of_mse_stay_at_or_above_zero(tmp_path, log):
    from dropbench.plots import CLIP_NOTE, CLIP_NOTE_LOG

    sweep = load_sweep(spread_sweep(tmp_path / "s"))
    assert all(g.stats["test_mean"] - g.stats["test_ci"] < 0 for g in sweep.groups), "the raw intervals reach below zero"
    fig = curves_figure(sweep, log)
    floor = fig.axes[0].get_ylim()[0] if log else 0.0
    for ax in fig.axes:
        for band in bands(ax):
            ys = band.get_paths()[0].vertices[:, 1]
            assert ys.min() == pytest.approx(floor) and ys.min() >= (0 if not log else 1e-3)
    assert (CLIP_NOTE_LOG if log else CLIP_NOTE) in fig.get_suptitle()
    fig = final_test_figure(sweep, log)
    ax = fig.axes[0]
    left = ax.get_xlim()[0] if log else 0.0
    for c in (c for c in ax.containers if isinstance(c, ErrorbarContainer)):
        xs = c[2][0].get_segments()[0][:, 0]  # the horizontal bar: (lower, y), (upper, y)
        assert xs.min() == pytest.approx(left) and xs.max() == pytest.approx(c.lines[0].get_xdata()[0] + sweep.groups[0].stats["test_ci"])
    assert (CLIP_NOTE_LOG if log else CLIP_NOTE) in ax.get_title()


def test_data_sets_get_a_panel_each_and_titles_show_shared_settings(tmp_path):
    sweep = load_sweep(spread_sweep(tmp_path / "two", ("noisy_sine", "friedman1")))
    fig = curves_figure(sweep)
    assert len(fig.axes) == 4
    for ax, data in zip(fig.axes, ("friedman1", "friedman1", "noisy_sine", "noisy_sine")):
        assert ax.get_title().startswith(f"data={data}:")
        assert [line.get_label() for line in ax.get_lines()] == [f"data={data} reg={r} (n=3)" for r in ("dropout", "none")]
    colours = [[line.get_color() for line in ax.get_lines()] for ax in fig.axes]
    assert colours[0] == colours[2], "reg=dropout has one colour in both panels"
    assert "settings: model.activation=tanh" in fig.get_suptitle()
    final = final_test_figure(sweep)
    assert [ax.get_title(loc="left") for ax in final.axes] == ["data=friedman1", "data=noisy_sine"]
    assert [len([c for c in ax.containers if isinstance(c, ErrorbarContainer)]) for ax in final.axes] == [2, 2]
    assert "settings: model.activation=tanh" in final.get_suptitle()


def test_a_csv_edited_after_the_run_still_plots_its_fits(tmp_path):
    """The points of an edited file are not the run's: the fit picture says so and is still drawn,
    and the other figures are written too (it used to refuse all three)."""
    from dropbench import runner

    f = tmp_path / "d.csv"
    f.write_text("x,y\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(8)))
    cfgs, launcher = runner.plan([f"data.path={f}", "data.target=y", "data=csv", "epochs=5", "model.hidden=8", f"out={tmp_path / 'r'}"])
    runner.execute(cfgs, launcher)
    f.write_text(f.read_text() + "9,19\n")
    fig = fit_figure(load_sweep(tmp_path / "r"))
    assert "no data points" in fig.get_suptitle() and fig.axes[0].get_lines(), fig.get_suptitle()
    assert [p.name for p in make_plots(tmp_path / "r", tmp_path / "png")] == ["curves.png", "final_test.png", "fit.png"]


# --- the regularization path -----------------------------------------------------------------------

def p_sweep(tmp_path: Path, datasets=("yacht",), key="p", values=(0.1, 0.3, 0.5)) -> Path:
    """data=uci, splits 0-1: reg=dropout at three values of `key` (test = value + split, train =
    value / 10) and reg=none (test 5 + split), per data set (times 10 for the second)."""
    rows = []
    for i, ds in enumerate(datasets):
        scale = 10.0 ** i
        for split in (0, 1):
            base = {"data": "uci", "data.dataset": ds, "data.split": split, "seed": 0}
            rows.append({**base, "reg": "none", "final_train_mse": 0.01, "final_test_mse": (5.0 + split) * scale})
            for v in values:
                extra = {"p": v} if key == "p" else {key: v, "p": 0.5}
                rows.append({**base, "reg": "dropout", **extra, "final_train_mse": v / 10 * scale, "final_test_mse": (v + split) * scale})
    return write_sweep(tmp_path / "path", rows)


def test_path_figure_plots_means_against_the_key_and_the_reference_level(tmp_path):
    from dropbench.plots import path_figure

    sweep = load_sweep(p_sweep(tmp_path))
    fig = path_figure(sweep, "p")
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.lines}
    test = lines["reg=dropout: test (n=2)"]
    assert list(test.get_xdata()) == [0.1, 0.3, 0.5]
    assert list(test.get_ydata()) == pytest.approx([0.6, 0.8, 1.0]), "mean over the two splits of p + split"
    assert list(lines["reg=dropout: train (n=2)"].get_ydata()) == pytest.approx([0.01, 0.03, 0.05])
    assert lines["reg=dropout: train (n=2)"].get_linestyle() == "--"
    assert list(lines["reg=none: test, no p (n=2)"].get_ydata()) == pytest.approx([5.5, 5.5]), "reg=none: a level"
    assert len(bands(ax)) == 2 and ax.get_xscale() == "linear"
    assert "mean over splits" in fig.get_suptitle()


@pytest.mark.parametrize("values, scale", [((1e-4, 1e-3, 1e-2, 1e-1), "log"), ((0.0, 1e-4, 1e-2), "symlog"), ((1.0, 2.0, 4.0), "linear")])
def test_path_x_axis_is_logarithmic_where_values_span_decades(tmp_path, values, scale):
    from dropbench.plots import path_figure

    sweep = load_sweep(p_sweep(tmp_path, ("yacht", "energy"), "reg.l2.weight_decay", values))
    fig = path_figure(sweep, "reg.l2.weight_decay")
    assert len(fig.axes) == 2, "a panel per data set"
    assert [ax.get_xscale() for ax in fig.axes] == [scale, scale]
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    energy = fig.axes[titles.index("data.dataset=energy")]
    test = next(line for line in energy.lines if line.get_label().startswith("reg=dropout: test"))
    assert list(test.get_ydata()) == pytest.approx([(v + 0.5) * 10 for v in values])


def test_make_plots_draws_a_path_for_a_swept_numeric_key_and_refuses_a_bad_one(tmp_path):
    folder = p_sweep(tmp_path)
    paths = make_plots(folder, tmp_path / "figs")
    assert [p.name for p in paths] == ["curves.png", "final_test.png", "path_p.png"]
    assert matplotlib.image.imread(paths[-1]).shape[1] > 400
    with pytest.raises(UserError, match=r"--path epochs: needs a key swept over at least 2 numbers .* swept numeric keys: p"):
        make_plots(folder, tmp_path / "bad", path="epochs")
    with pytest.raises(UserError, match="--path nope: not a config key"):
        make_plots(folder, tmp_path / "bad", path="nope")
    assert not (tmp_path / "bad").exists()
    p = dropbench("plot", str(folder), "--out", str(tmp_path / "cli"), "--path", "p")
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == str(tmp_path / "cli" / "path_p.png"), p.stderr


# --- csv data sets: split by contents, named by file as reports name them ---------------------------

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def csv_plot_sweep(folder: Path, files: list[tuple[str, str]], failed: list[tuple[str, str]] = ()) -> Path:
    """Per (sha256, data.path) file: reg=none and reg=dropout at p 0.1 and 0.5, seeds 0-1 (test =
    file index + p + seed / 10), with curves; plus one failed run per `failed` file."""
    runs, curves = [], []
    for i, (sha, path) in enumerate(files):
        for reg, p in (("none", ""), ("dropout", 0.1), ("dropout", 0.5)):
            for s in (0, 1):
                v = i + (p or 1.0) + s / 10
                curves += [{"run_id": f"r{len(runs):03d}", "epoch": e, "train_mse": v, "test_mse": v} for e in (50, 100)]
                runs.append({"data": "csv", "data.path": path, "data.target": "y", "data.sha256": sha, "reg": reg, "p": p,
                             "seed": s, "final_train_mse": v, "final_test_mse": v})
    runs += [{"data": "csv", "data.path": path, "data.target": "y", "data.sha256": sha, "reg": "none", "seed": 0,
              "final_train_mse": "nan", "final_test_mse": "nan", "status": "failed", "reason": "loss is nan"} for sha, path in failed]
    return write_sweep(folder, runs, curves)


def panel_and_line_labels(sweep) -> tuple[list[str], list[str], list[str], list[str]]:
    """The data-set parts of every figure's text: curves' panel titles and line labels, the final
    test figure's panel titles and tick labels, the path figure's panel titles."""
    from dropbench.plots import path_figure

    curves, final = curves_figure(sweep), final_test_figure(sweep)
    return ([ax.get_title() for ax in curves.axes], [line.get_label() for ax in curves.axes for line in ax.get_lines()],
            [ax.get_title(loc="left") for ax in final.axes] + [ax.get_title(loc="left") for ax in path_figure(sweep, "p").axes],
            [t.get_text() for ax in final.axes for t in ax.get_yticklabels()])


def test_csv_files_of_one_basename_are_named_by_their_folders_not_their_hash(tmp_path):
    sweep = load_sweep(csv_plot_sweep(tmp_path / "s", [(SHA_A, "/data/a/train.csv"), (SHA_B, "/data/b/train.csv")]))
    assert [g.values["data.sha256"] for g in sweep.groups] == [SHA_A] * 3 + [SHA_B] * 3, "the grouping is by contents"
    titles, lines, panels, ticks = panel_and_line_labels(sweep)
    assert [t.split(":")[0] for t in titles] == ["data.file=a/train.csv"] * 2 + ["data.file=b/train.csv"] * 2
    assert lines[:3] == ["reg=dropout p=0.1 data.file=a/train.csv (n=2)", "reg=dropout p=0.5 data.file=a/train.csv (n=2)",
                         "reg=none data.file=a/train.csv (n=2)"]
    assert panels == ["data.file=a/train.csv", "data.file=b/train.csv"] * 2
    assert ticks[3:] == [f"{line.removesuffix(' (n=2)').replace('a/', 'b/')} (n=2)" for line in lines[:3]]
    shown = " ".join([*titles, *lines, *panels, *ticks])
    assert "sha256" not in shown and SHA_A[:7] not in shown and SHA_B[:7] not in shown


def test_a_csv_file_edited_between_sweeps_plots_as_two_data_sets_told_apart_by_hash(tmp_path):
    sweep = load_sweep(csv_plot_sweep(tmp_path / "s", [(SHA_B, "/data/train.csv"), (SHA_A, "/data/train.csv")]))
    assert len(sweep.facets()) == 2 and len(sweep.groups) == 6
    titles, lines, panels, ticks = panel_and_line_labels(sweep)
    assert panels == ["data.file=train.csv@aaaaaaa", "data.file=train.csv@bbbbbbb"] * 2
    assert {t.split(":")[0] for t in titles} == {"data.file=train.csv@aaaaaaa", "data.file=train.csv@bbbbbbb"}
    assert lines[0] == "reg=dropout p=0.1 data.file=train.csv@aaaaaaa (n=2)" and ticks[3] == "reg=dropout p=0.1 data.file=train.csv@bbbbbbb (n=2)"


def test_csv_names_are_the_reports_even_where_a_file_only_failed(tmp_path):
    """A failed run's file of the same basename makes report call the drawn one a/train.csv; the
    plot must call it that too, not train.csv (names are made over every run, as report does)."""
    from dropbench.readback import read_runs
    from dropbench.analysis.summary import summarize

    folder = csv_plot_sweep(tmp_path / "s", [(SHA_A, "/data/a/train.csv")], failed=[(SHA_C, "/data/c/train.csv")])
    sweep = load_sweep(folder)
    reported = {s["data.sha256"]: s["data.file"] for s in summarize(read_runs(folder), sweep.keys)}
    assert reported == {SHA_A: "a/train.csv", SHA_C: "c/train.csv"}
    assert sweep.failed == 1 and [g.label.split("data.file=")[1] for g in sweep.groups] == ["a/train.csv"] * 3
    assert [ax.get_title(loc="left") for ax in final_test_figure(sweep).axes] == ["data.file=a/train.csv"]
