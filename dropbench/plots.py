"""`dropbench plot`: learning curves, final test MSE per group and, for 1-D data, the fits.

Figures are built as bare `matplotlib.figure.Figure` objects, never through pyplot: they need
no display (PNG output goes through the Agg canvas), leave pyplot's global state and the user's
backend alone, and are freed like any object, so nothing has to be closed. matplotlib, numpy and
torch are imported inside functions, keeping `import dropbench.plots` (and `dropbench --help`)
instant.

Groups are the summary's groups (every swept key but the seed, or --by), in rank order (best
mean test MSE first); a group has the same colour in every figure. Only runs with status ok are
drawn; failed ones are counted in the titles.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from dropbench.errors import UserError
from dropbench.results import atomic_file
from dropbench.stats import by_keys, group_label, key_str, members, summarize, t_halfwidth

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Row = dict[str, Any]
DPI = 120
MSE_LABEL = "MSE (eval mode)"


@dataclass
class Group:
    """One line of the summary: its key values, its successful runs and its colour."""

    label: str
    values: dict[str, str]
    runs: list[Row]
    stats: Row
    colour: Any = None


@dataclass
class Sweep:
    """What a results folder holds, grouped for plotting."""

    folder: Path
    keys: list[str]
    groups: list[Group]
    failed: int
    curves: list[Row]

    @property
    def runs(self) -> list[Row]:
        return [r for g in self.groups for r in g.runs]


def load_sweep(folder: Path, by: Sequence[str] | None = None) -> Sweep:
    """Read runs.csv and curves.csv and group the successful runs (by `by` or the swept keys)."""
    from dropbench.results import read_curves, read_runs

    folder = Path(folder)
    rows = read_runs(folder)
    keys = by_keys(rows, by)
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        raise UserError(f"{folder}: all {len(rows)} run(s) failed, nothing to plot; see the reason column of runs.csv")
    groups = []
    for s in summarize(ok, keys):
        values = {k: s[k] for k in keys}
        groups.append(Group(group_label(values), values, members(ok, values), s))
    for g, colour in zip(groups, _colours(len(groups))):
        g.colour = colour
    ids = {r["run_id"] for r in ok}
    curves = [c for c in read_curves(folder) if c["run_id"] in ids]
    return Sweep(folder, keys, groups, len(rows) - len(ok), curves)


def _colours(n: int) -> list[Any]:
    """tab10 without its grey (grey marks the test points); a sampled colormap beyond 9 groups."""
    import matplotlib

    if n <= 9:
        tab = matplotlib.colormaps["tab10"].colors
        return [c for i, c in enumerate(tab) if i != 7][:n]
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(0.05 + 0.9 * i / (n - 1)) for i in range(n)]


def _constant(rows: Sequence[Row], column: str) -> str | None:
    """The column's value where every run shares it (and it is set), else None."""
    values = {key_str(r.get(column)) for r in rows}
    return values.pop() if len(values) == 1 and "" not in values else None


def describe(sweep: Sweep) -> str:
    """One line saying what was run: data, model size, epochs, seeds, failed runs."""
    runs = sweep.runs
    data = _constant(runs, "data")
    n_train = _constant(runs, "data.n_train")
    parts = [f"data={data}" + (f" ({n_train} train points)" if n_train else "") if data else "several data sets"]
    model = [f"{k.split('.')[-1]}={v}" for k in ("model.hidden", "model.depth") if (v := _constant(runs, k))]
    parts.append(" ".join([_constant(runs, "model") or "model", *model]))
    if epochs := _constant(runs, "epochs"):
        parts.append(f"{epochs} epochs")
    n_seeds = sorted({len({r["seed"] for r in g.runs}) for g in sweep.groups})
    seeds = str(n_seeds[0]) if len(n_seeds) == 1 else f"{n_seeds[0]}-{n_seeds[-1]}"
    parts.append(f"{seeds} seed{'s' if n_seeds[-1] > 1 else ''}" + (" per group" if len(sweep.groups) > 1 else ""))
    if sweep.failed:
        parts.append(f"{sweep.failed} failed run(s) left out")
    return ", ".join(parts)


def curves_figure(sweep: Sweep, log: bool = False) -> "Figure":
    """Train and test MSE against epoch: per group the mean over seeds and a 95% t-interval band.

    One Line2D per group on each axis; one band per group that has at least two seeds (at
    epochs where fewer than two runs recorded a value the band has a gap).
    """
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    by_run: dict[str, list[Row]] = {}
    for c in sweep.curves:
        by_run.setdefault(c["run_id"], []).append(c)
    shown: list[float] = []  # means and positive band edges: the range a log axis has to show
    for ax, metric, name in zip(axes, ("train_mse", "test_mse"), ("train MSE", "test MSE")):
        for g in sweep.groups:
            per_epoch: dict[int, list[float]] = {}
            for r in g.runs:
                for c in by_run.get(r["run_id"], []):
                    per_epoch.setdefault(c["epoch"], []).append(float(c[metric]))
            epochs = sorted(per_epoch)
            mean = np.array([math.fsum(per_epoch[e]) / len(per_epoch[e]) for e in epochs])
            half = np.array([t_halfwidth(per_epoch[e]) for e in epochs])
            # Markers where evaluations are sparse: a curve of one evaluated epoch is a dot, not nothing.
            marker = "o" if len(epochs) <= 12 else None
            ax.plot(epochs, mean, color=g.colour, marker=marker, markersize=3, label=f"{g.label} (n={len(g.runs)})")
            shown.extend(mean[mean > 0])
            if len(g.runs) > 1:
                lower = mean - half
                shown.extend([*lower[lower > 0], *(mean + half)])
                if log:  # a band reaching to zero or below runs off the bottom of the log axis
                    lower = np.where(lower > 0, lower, np.finfo(float).tiny)
                ax.fill_between(epochs, lower, mean + half, color=g.colour, alpha=0.2, linewidth=0)
        ax.set_title(f"{name}: mean over seeds, shaded 95% CI")
        ax.set_xlabel("epoch")
        ax.set_ylabel(MSE_LABEL)
        if log:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    axes[1].yaxis.set_tick_params(labelleft=True)
    if log:  # the clipped band edges would otherwise stretch the autoscaled range over 600 decades
        axes[0].set_ylim(min(shown) / 1.5, max(shown) * 1.5)
    fig.suptitle(f"Learning curves: {describe(sweep)}")
    return fig


def final_test_figure(sweep: Sweep, log: bool = False) -> "Figure":
    """Final test MSE per group, best (lowest mean) at the top: the mean with its 95% CI bar
    (one errorbar call, hence one ErrorbarContainer, per group) and each seed as a faint dot."""
    from matplotlib.figure import Figure

    n = len(sweep.groups)
    fig = Figure(figsize=(9, 1.5 + 0.45 * n), layout="constrained")
    ax = fig.add_subplot()
    for i, g in enumerate(sweep.groups):
        ci = g.stats["test_ci"]
        ax.errorbar([g.stats["test_mean"]], [i], xerr=None if math.isnan(ci) else [[ci], [ci]], fmt="o",
                    color=g.colour, capsize=4, label=g.label)
        ax.scatter([float(r["final_test_mse"]) for r in g.runs], [i] * len(g.runs), color=g.colour, alpha=0.35, s=12)
    ax.set_yticks(range(n), [f"{g.label} (n={len(g.runs)})" for g in sweep.groups])
    ax.set_ylim(n - 0.5, -0.5)  # best first, at the top
    ax.set_xlabel(f"final test {MSE_LABEL}: mean and 95% CI over seeds (dots: single seeds)")
    if log:
        ax.set_xscale("log")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(textwrap.fill(f"Final test MSE per group, best first: {describe(sweep)}", 90), fontsize="medium")
    return fig


def _seeds(sweep: Sweep) -> list[int]:
    return sorted({r["seed"] for r in sweep.runs})


def parse_seed(sweep: Sweep, seed: str | None) -> int | None:
    """--seed as a seed of the sweep; None for 'mean'. Default: the smallest seed."""
    seeds = _seeds(sweep)
    listed = ", ".join(map(str, seeds[:20])) + (", ..." if len(seeds) > 20 else "")
    if seed is None:
        return seeds[0]
    if seed.strip().lower() == "mean":
        return None
    try:
        n = int(seed)
    except ValueError:
        raise UserError(f"--seed {seed!r} is not a seed: give an integer (the sweep's seeds: {listed}) or 'mean'") from None
    if n not in seeds:
        raise UserError(f"--seed {n}: no successful run has that seed; choose one of {listed}, or 'mean'")
    return n


def _read_fit(path: Path) -> tuple[list[float], list[float]]:
    import csv

    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    try:
        return [float(r["x"]) for r in rows], [float(r["y_pred"]) for r in rows]
    except (KeyError, ValueError, TypeError):
        raise UserError(f"{path} is not an x,y_pred CSV; the run folder is damaged: delete it and train it again with dropbench run --resume {path.parent.parent.parent}") from None


def _mean_fit(fits: list[tuple[list[float], list[float]]]) -> tuple[Any, Any]:
    """Average fitted curves over seeds, on a common grid: the x range every fit covers.

    Grids coincide for linspace data sets; a 1-D csv split differently per seed only overlaps.
    """
    import numpy as np

    lo, hi = max(min(x) for x, _ in fits), min(max(x) for x, _ in fits)
    grid = np.linspace(lo, hi, len(fits[0][0]))
    return grid, np.mean([np.interp(grid, x, y) for x, y in fits], axis=0)


def _data_config(row: Row) -> tuple[str, ...]:
    return tuple(f"{k}={key_str(v)}" for k, v in row.items() if k == "data" or k.startswith("data."))


def fit_figure(sweep: Sweep, seed: str | None = None) -> "Figure | None":
    """The seed experiment's picture: training and test points and each group's fitted curve.

    seed: None (the smallest seed), a seed of the sweep, or "mean" (each group's fit averaged
    over its seeds, drawn over the points of the smallest seed). A group holding several runs of
    one seed (a coarse --by) gets their mean fit. Returns None where the data is
    not 1-D (no run folder holds a fit.csv). Where the drawn runs use different data configs (a
    sweep over data sets), the points are those of the first (best) group's data and the title
    says so: one picture cannot hold several data sets' points without confusing them.
    """
    from matplotlib.figure import Figure

    from dropbench.data import load_dataset
    from dropbench.runner import load_saved

    chosen = parse_seed(sweep, seed)
    runs_dir = sweep.folder / "runs"
    fits: list[tuple[Group, list[Row]]] = []
    for g in sweep.groups:
        drawn = [r for r in g.runs if (runs_dir / r["run_id"] / "fit.csv").is_file() and (chosen is None or r["seed"] == chosen)]
        if drawn:
            fits.append((g, drawn))
    if not fits:
        return None
    first = min(fits[0][1], key=lambda r: r["seed"])
    data = load_dataset(load_saved(runs_dir / first["run_id"]))
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(data.x_train[:, 0].tolist(), data.y_train[:, 0].tolist(), color="black", s=22, zorder=3,
               label=f"train points (n={len(data.x_train)})")
    ax.scatter(data.x_test[:, 0].tolist(), data.y_test[:, 0].tolist(), color="0.55", marker="x", s=22, zorder=3,
               label=f"test points (n={len(data.x_test)})")
    for g, drawn in fits:
        curves = [_read_fit(runs_dir / r["run_id"] / "fit.csv") for r in drawn]
        x, y = _mean_fit(curves) if len(curves) > 1 else curves[0]
        ax.plot(x, y, color=g.colour, linewidth=2, label=f"{g.label} fit" + (f" (mean of {len(curves)} runs)" if len(curves) > 1 else ""))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    what = f"fits of seed {chosen}" if chosen is not None else f"fits averaged over seeds, points of seed {first['seed']}"
    notes = []
    if len({_data_config(r) for _, drawn in fits for r in drawn}) > 1:
        notes.append(f"points: data of {fits[0][0].label} only (the runs use several data configs)")
    drawn_labels = {g.label for g, _ in fits}
    if missing := [g.label for g in sweep.groups if g.label not in drawn_labels]:
        notes.append(f"no fit for {', '.join(missing)}")
    fig.suptitle(f"Fit in eval mode, {what}\n{describe(sweep)}" + "".join(f"\n{n}" for n in notes))
    return fig


def make_plots(folder: Path, out: Path | None = None, by: list[str] | None = None, log: bool = False,
               seed: str | None = None) -> list[Path]:
    """Write curves.png, final_test.png and (1-D data) fit.png into `out` (default FOLDER/plots).

    Every figure is built before the folder is created, so bad input writes nothing.
    """
    out = Path(out) if out is not None else Path(folder) / "plots"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose another --out")
    sweep = load_sweep(Path(folder), by)
    figures = {"curves.png": curves_figure(sweep, log), "final_test.png": final_test_figure(sweep, log),
               "fit.png": fit_figure(sweep, seed)}
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        if fig is not None:
            with atomic_file(out / name) as fh:  # an interrupted plot leaves no half PNG
                fig.savefig(fh, format="png", dpi=DPI)
            paths.append(out / name)
    return paths
