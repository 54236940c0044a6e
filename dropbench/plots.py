"""`dropbench plot`: learning curves, final test MSE per group and, for 1-D data, the fits.

Figures are built as bare `matplotlib.figure.Figure` objects, never through pyplot: they need
no display (PNG output goes through the Agg canvas), leave pyplot's global state and the user's
backend alone, and are freed like any object, so nothing has to be closed. matplotlib, numpy and
torch are imported inside functions, keeping `import dropbench.plots` (and `dropbench --help`)
instant.

Groups are the summary's groups (one per distinct config, or --by), in rank order (best mean
test MSE first); a group has the same colour in every figure, and groups that differ only in
their data set share it. Where the runs span several data sets, every figure has one panel per
data set (a row of panels for the curves): MSEs of two data sets never share an axis. A csv
data set is split by its contents (data.sha256) but named by its file, as reports name it
(labels.file_labels: data.file=train.csv). Only runs with status ok are drawn; failed ones are
counted in the titles.

MSE is never negative, so the lower ends of intervals (mean - t·s/√n can fall below zero with
few seeds) are clipped at 0, or on a log axis at its lower edge, and the figure says so.
"""

from __future__ import annotations

import math
import shlex
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from dropbench.errors import UserError
from dropbench.oserrors import writing
from dropbench.results import atomic_file, make_dirs, remove_dirs
from dropbench.analysis.grouping import by_keys, members, pooled_configs, pooled_note
from dropbench.analysis.labels import file_labels, group_label
from dropbench.analysis.metrics import DEFAULT_METRIC, Metric, metric_label, resolve_metric
from dropbench.analysis.spread import t_halfwidth
from dropbench.analysis.summary import summarize
from dropbench.analysis.taxonomy import DATA_SET_KEYS, FILE_KEY, REPETITION_KEYS, data_set, is_result, key_str, repetition, sort_key

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from dropbench.analysis.crossdata import CrossStats

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
    pooled: str | None = None  # the note for groups that pool several configs (a coarse --by)
    files: dict[str, str] = field(default_factory=dict)  # data.sha256 -> the file's name (labels.file_labels)
    partial: str | None = None  # a sweep still running: what the figures show of it (readback.Progress.note)

    @property
    def runs(self) -> list[Row]:
        return [r for g in self.groups for r in g.runs]

    def facets(self) -> list[tuple[str, list[Group]]]:
        """(data set, its groups in rank order): one panel each; a single ("", all) where the
        groups do not differ in their data set. A data set is named by every grouping key that
        tells data sets apart (data=uci data.dataset=yacht), not only by `data`; a csv file by its
        name (data.file=train.csv, as reports do) but split by its contents (data.sha256)."""
        data_keys = [k for k in self.keys if k in DATA_SET_KEYS]
        out: dict[tuple[str, ...], tuple[str, list[Group]]] = {}
        for g in self.groups:
            values = dict(zip(data_keys, data_set(g.values, self.keys)))
            label = group_label(values, self.files) if any(values.values()) else ""
            out.setdefault(tuple(values.values()), (label, []))[1].append(g)
        return list(out.values())


def load_sweep(folder: Path, by: Sequence[str] | None = None, rows: Sequence[Row] | None = None,
               curves: Sequence[Row] | None = None) -> Sweep:
    """Read runs.csv and curves.csv (rebuilt from the run folders while a sweep is running) and
    group the successful runs (by `by` or the swept keys). rows, curves: the folder's, where the
    caller has read them already (the API's Sweep)."""
    from dropbench.locks import is_partial
    from dropbench.readback import progress, read_curves, read_runs

    folder = Path(folder)
    rows = read_runs(folder, partial=True) if rows is None else list(rows)
    keys = by_keys(rows, by)
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        raise UserError(f"{folder}: all {len(rows)} run(s) failed, nothing to plot; see the reason column of runs.csv")
    # Named over every run, failed ones too, so that a file is called what `dropbench report` calls it.
    files = file_labels(rows) if FILE_KEY in keys else {}
    groups = []
    for s in summarize(ok, keys):
        values = {k: s[k] for k in keys}
        groups.append(Group(group_label(values, files), values, members(ok, values), s))
    # One colour per group across data sets: reg=dropout is the same colour in every panel.
    hue = [group_label({k: v for k, v in g.values.items() if k not in DATA_SET_KEYS}) for g in groups]
    distinct = list(dict.fromkeys(hue))
    palette = dict(zip(distinct, _colours(len(distinct))))
    for g, h in zip(groups, hue):
        g.colour = palette[h]
    ids = {r["run_id"] for r in ok}
    curves = [c for c in (read_curves(folder, partial=True) if curves is None else curves) if c["run_id"] in ids]
    partial = progress(folder).note(folder) if is_partial(folder) else None
    return Sweep(folder, keys, groups, len(rows) - len(ok), curves, pooled_note(pooled_configs(ok, keys), keys), files, partial)


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
    n_seeds = sorted({len({repetition(r) for r in g.runs}) for g in sweep.groups})
    seeds = str(n_seeds[0]) if len(n_seeds) == 1 else f"{n_seeds[0]}-{n_seeds[-1]}"
    word = _repeats_word(runs)
    parts.append(f"{seeds} {word if n_seeds[-1] > 1 else word[:-1]}" + (" per group" if len(sweep.groups) > 1 else ""))
    if sweep.failed:
        parts.append(f"{sweep.failed} failed run(s) left out")
    return ", ".join(parts)


def settings(sweep: Sweep) -> str:
    """The config values every run shares that differ from the defaults of their group choices
    (activation, optimizer, learning rate, ...), not already in describe(): the rest of what it
    takes to reproduce the figure. Empty where there are none."""
    from dropbench.render.naming import common_non_default, settings_label

    said = {"data", "model", "model.hidden", "model.depth", "epochs", "reg", *sweep.keys}
    common = {k: v for k, v in common_non_default(sweep.runs).items() if k not in said}
    return f"settings: {settings_label(common)}" if common else ""


def subtitle(sweep: Sweep, *extra: str) -> str:
    """describe(), the shared settings and notes, wrapped to fit a figure's width."""
    lines = [sweep.partial or "", describe(sweep), settings(sweep), sweep.pooled or "", *extra]
    return "\n".join(textwrap.fill(line, 110) for line in lines if line)


CLIP_NOTE = "intervals clipped at 0 (MSE >= 0)"
CLIP_NOTE_LOG = "intervals clipped at the log axis' lower edge (MSE > 0)"


def _facet_title(data: str, text: str) -> str:
    return f"{data}: {text}" if data else text


def curves_figure(sweep: Sweep, log: bool = False) -> "Figure":
    """Train and test MSE against epoch: per group the mean over seeds and a 95% t-interval band.

    One Line2D per group on each axis; one band per group that has at least two seeds (at
    epochs where fewer than two runs recorded a value the band has a gap).
    """
    import numpy as np
    from matplotlib.figure import Figure

    facets = sweep.facets()
    fig = Figure(figsize=(12, 1 + 4 * len(facets)), layout="constrained")
    grid = fig.subplots(len(facets), 2, sharey="row", squeeze=False)
    by_run: dict[str, list[Row]] = {}
    for c in sweep.curves:
        by_run.setdefault(c["run_id"], []).append(c)
    clipped = False
    for axes, (data, groups) in zip(grid, facets):
        shown: list[float] = []  # means and positive band edges: the range a log axis has to show
        bands = []
        for ax, metric, name in zip(axes, ("train_mse", "test_mse"), ("train MSE", "test MSE")):
            for g in groups:
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
                    bands.append((ax, epochs, lower, mean + half, g.colour))
            ax.set_title(_facet_title(data, f"{name}: mean over seeds, shaded 95% CI"))
            ax.set_xlabel("epoch")
            ax.set_ylabel(MSE_LABEL)
            if log:
                ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
        # An interval of MSE ends at 0; on a log axis at the axis' lower edge, which the
        # means and the positive band edges fix (a band to 1e-308 would fill the axis).
        floor = min(shown) / 1.5 if log and shown else 0.0
        for ax, epochs, lower, upper, colour in bands:
            clipped |= bool(np.any(np.isfinite(lower) & (lower < floor)))
            ax.fill_between(epochs, np.where(lower < floor, floor, lower), upper, color=colour, alpha=0.2, linewidth=0)
        axes[1].yaxis.set_tick_params(labelleft=True)
        if log and shown:
            axes[0].set_ylim(floor, max(shown) * 1.5)
    note = (CLIP_NOTE_LOG if log else CLIP_NOTE) if clipped else ""
    fig.suptitle(f"Learning curves: {subtitle(sweep, note)}")
    return fig


def final_test_figure(sweep: Sweep, log: bool = False) -> "Figure":
    """Final test MSE per group, best (lowest mean) at the top: the mean with its 95% CI bar
    (one errorbar call, hence one ErrorbarContainer, per group) and each seed as a faint dot."""
    from matplotlib.figure import Figure

    facets = sweep.facets()
    fig = Figure(figsize=(9, 1.5 * len(facets) + 0.45 * len(sweep.groups) + 0.5), layout="constrained")
    axes = fig.subplots(len(facets), 1, squeeze=False, height_ratios=[len(gs) + 1 for _, gs in facets])[:, 0]
    clipped = False
    for ax, (data, groups) in zip(axes, facets):
        values = [float(r["final_test_mse"]) for g in groups for r in g.runs]
        means = [g.stats["test_mean"] for g in groups]
        # A log axis ends at the smallest positive value drawn, with some room; intervals stop there.
        floor = min(v for v in [*values, *means] if v > 0) / 1.5 if log and any(v > 0 for v in [*values, *means]) else 0.0
        for i, g in enumerate(groups):
            mean, ci = g.stats["test_mean"], g.stats["test_ci"]
            xerr = None
            if not math.isnan(ci):
                below = min(ci, max(mean - floor, 0.0))
                clipped |= below < ci
                xerr = [[below], [ci]]
            ax.errorbar([mean], [i], xerr=xerr, fmt="o", color=g.colour, capsize=4, label=g.label)
            ax.scatter([float(r["final_test_mse"]) for r in g.runs], [i] * len(g.runs), color=g.colour, alpha=0.35, s=12)
        ax.set_yticks(range(len(groups)), [f"{g.label} (n={len(g.runs)})" for g in groups])
        ax.set_ylim(len(groups) - 0.5, -0.5)  # best first, at the top
        ax.set_xlabel(f"final test {MSE_LABEL}: mean and 95% CI over seeds (dots: single seeds)")
        if log:
            ax.set_xscale("log")
            ax.set_xlim(left=floor)
        ax.grid(True, axis="x", alpha=0.3)
        if data:
            ax.set_title(data, fontsize="medium", loc="left")
    note = (CLIP_NOTE_LOG if log else CLIP_NOTE) if clipped else ""
    title = f"Final test MSE per group, best first\n{subtitle(sweep, note)}"
    if len(facets) == 1:
        axes[0].set_title(title, fontsize="medium")
    else:
        fig.suptitle(title, fontsize="medium")
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
        raise UserError(f"{path} is not an x,y_pred CSV; the run folder is damaged: delete it and train it again with dropbench run --resume {shlex.quote(str(path.parent.parent.parent))}") from None


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
    not 1-D (no run folder holds a fit.csv). One panel per 1-D data set, with its own points;
    where a panel's runs still use different data configs (a swept data.noise), the points
    are those of its first (best) group's data and the title says so.
    """
    from matplotlib.figure import Figure

    from dropbench.data import load_dataset
    from dropbench.runner import load_saved

    chosen = parse_seed(sweep, seed)
    runs_dir = sweep.folder / "runs"
    panels: list[tuple[str, list[tuple[Group, list[Row]]]]] = []
    for data, groups in sweep.facets():
        fits: list[tuple[Group, list[Row]]] = []
        for g in groups:
            drawn = [r for r in g.runs if (runs_dir / r["run_id"] / "fit.csv").is_file() and (chosen is None or r["seed"] == chosen)]
            if drawn:
                fits.append((g, drawn))
        if fits:
            panels.append((data, fits))
    if not panels:
        return None
    fig = Figure(figsize=(9, 1 + 5 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    notes, first_seeds = [], set()
    for ax, (data, fits) in zip(axes, panels):
        first = min(fits[0][1], key=lambda r: r["seed"])
        first_seeds.add(first["seed"])
        try:
            points = load_dataset(load_saved(runs_dir / first["run_id"]))
        except UserError as e:  # e.g. the run's CSV was edited or moved: its fits are still the run's
            points = None
            notes.append(f"no data points: {e}")
        if points is not None:
            ax.scatter(points.x_train[:, 0].tolist(), points.y_train[:, 0].tolist(), color="black", s=22, zorder=3,
                       label=f"train points (n={len(points.x_train)})")
            ax.scatter(points.x_test[:, 0].tolist(), points.y_test[:, 0].tolist(), color="0.55", marker="x", s=22, zorder=3,
                       label=f"test points (n={len(points.x_test)})")
        for g, drawn in fits:
            curves = [_read_fit(runs_dir / r["run_id"] / "fit.csv") for r in drawn]
            x, y = _mean_fit(curves) if len(curves) > 1 else curves[0]
            ax.plot(x, y, color=g.colour, linewidth=2, label=f"{g.label} fit" + (f" (mean of {len(curves)} runs)" if len(curves) > 1 else ""))
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        if data:
            ax.set_title(data, loc="left")
        if len({_data_config(r) for _, drawn in fits for r in drawn}) > 1:
            notes.append(f"points: data of {fits[0][0].label} only (the runs use several data configs)")
    what = (f"fits of seed {chosen}" if chosen is not None
            else f"fits averaged over seeds, points of seed {', '.join(map(str, sorted(first_seeds)))}")
    drawn_labels = {g.label for _, fits in panels for g, _ in fits}
    if missing := [g.label for g in sweep.groups if g.label not in drawn_labels]:
        notes.append(f"no fit for {', '.join(missing)}")
    fig.suptitle(f"Fit in eval mode, {what}\n{subtitle(sweep, *notes)}")
    return fig


# --- the regularization path ---------------------------------------------------------------------

def _number(v: object) -> float | None:
    try:
        x = float(key_str(v))
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def path_keys(sweep: Sweep) -> list[str]:
    """The swept numeric keys a path figure is drawn for by default: grouping keys (not a data
    set's) whose set values are all numbers, at least 3 distinct ones."""
    out = []
    for k in sweep.keys:
        if k in DATA_SET_KEYS or k == "sweep":
            continue
        values = {key_str(g.values.get(k)) for g in sweep.groups} - {""}
        if len(values) >= 3 and all(_number(v) is not None for v in values):
            out.append(k)
    return out


def _repeats_word(runs: Sequence[Row]) -> str:
    varying = [k for k in REPETITION_KEYS if len({key_str(r.get(k)) for r in runs}) > 1]
    return {(): "seeds", ("seed",): "seeds", ("data.split",): "splits"}.get(tuple(varying), "runs")


def _x_scale(xs: Sequence[float]) -> tuple[str, dict[str, Any]]:
    """log where the positive values span two decades or more (symlog when 0 is among them:
    weight_decay=0,1e-4,1e-3), else linear."""
    pos = [x for x in xs if x > 0]
    if len(pos) >= 2 and max(pos) / min(pos) >= 100 and all(x >= 0 for x in xs):
        return ("log", {}) if len(pos) == len(xs) else ("symlog", {"linthresh": min(pos)})
    return "linear", {}


def path_figure(sweep: Sweep, key: str, metric: Metric | None = None, log: bool = False) -> "Figure":
    """Train (dashed) and test (solid) metric against the swept numeric `key`: per line (the
    other keys' values) the mean over repetitions (seeds, splits) at each value, with a shaded
    95% t-interval. Runs where the key does not apply (p of reg=none) are a horizontal line at
    their test mean: the reference the path is read against. One panel per data set.
    """
    import numpy as np
    from matplotlib.figure import Figure

    runs = sweep.runs
    columns = {c for r in runs for c in r}
    if key not in columns or is_result(key):
        raise UserError(f"--path {key}: not a config key of these runs; swept numeric keys: {', '.join(path_keys(sweep)) or 'none'}")
    values = {key_str(r.get(key)) for r in runs} - {""}
    if len(values) < 2 or any(_number(v) is None for v in values):
        raise UserError(f"--path {key}: needs a key swept over at least 2 numbers (its values: {', '.join(sorted(values, key=sort_key)) or 'none'}); "
                        f"swept numeric keys: {', '.join(path_keys(sweep)) or 'none'}")
    metric = metric or resolve_metric(runs)
    # A line is a value of every other grouping key, save those that merely mirror `key` (p and reg.dropout.p).
    mirror = lambda k: all(key_str(r.get(k)) == key_str(r.get(key)) for r in runs)  # noqa: E731
    other = [k for k in sweep.keys if k != key and k not in DATA_SET_KEYS and not mirror(k)]
    facets = sweep.facets()
    fig = Figure(figsize=(9, 1.2 + 4.2 * len(facets)), layout="constrained")
    axes = fig.subplots(len(facets), 1, squeeze=False)[:, 0]
    xs_all = sorted({_number(v) for v in values})  # type: ignore[type-var]
    scale, scale_kw = _x_scale(xs_all)
    colour_of = {group_label({k: v for k, v in g.values.items() if k in other}): g.colour for g in sweep.groups}
    for ax, (data, groups) in zip(axes, facets):
        panel = [r for g in groups for r in g.runs]
        lines: dict[str, list[Row]] = {}
        for r in panel:
            lines.setdefault(group_label({k: key_str(r.get(k)) for k in other}), []).append(r)
        order = list(colour_of)  # the summary's order in every panel: legends read alike
        for label, members_ in sorted(lines.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
            colour = colour_of.get(label)
            at: dict[float, list[Row]] = {}
            flat = []
            for r in members_:
                x = _number(r.get(key))
                (flat.append(r) if x is None else at.setdefault(x, []).append(r))
            if flat:  # the key does not apply: a reference level
                test = [float(r[metric.test]) for r in flat]
                mean = math.fsum(test) / len(test)
                ax.axhline(mean, color=colour, linestyle=":", linewidth=1.5,
                           label=f"{label}: test, no {key} (n={len(test)})")
            if not at:
                continue
            xs = sorted(at)
            for column, style, name in ((metric.test, "-", "test"), (metric.train, "--", "train")):
                if column is None:
                    continue
                vals = [[float(r[column]) for r in at[x]] for x in xs]
                mean = np.array([math.fsum(v) / len(v) for v in vals])
                half = np.array([t_halfwidth(v) for v in vals])
                n = sorted({len(v) for v in vals})
                ns = str(n[0]) if len(n) == 1 else f"{n[0]}-{n[-1]}"
                named = name if label == "all runs" else f"{label}: {name}"
                ax.plot(xs, mean, style, color=colour, marker="o", markersize=4, label=f"{named} (n={ns})")
                if np.any(np.isfinite(half)):
                    ax.fill_between(xs, mean - half, mean + half, color=colour, alpha=0.18 if name == "test" else 0.08, linewidth=0)
        ax.set_xscale(scale, **scale_kw)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(key + (" (log scale)" if scale != "linear" else ""))
        ax.set_ylabel(metric.label.removeprefix("test ") + " (eval mode)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        if data:
            ax.set_title(data, loc="left", fontsize="medium")
    word = _repeats_word(runs)
    title = (f"{metric.label.removeprefix('test ')} against {key}: test solid, train dashed; mean over {word}, shaded 95% CI"
             + ("; dotted: runs without " + key if any(_number(r.get(key)) is None for r in runs) else ""))
    fig.suptitle(f"{title}\n{subtitle(sweep)}", fontsize="medium")
    return fig


def build_figures(folder: Path, by: Sequence[str] | None = None, log: bool = False, seed: str | None = None,
                  path: str | None = None, metric: str | None = None) -> "dict[str, Figure]":
    """The figures make_plots writes, by file name (curves.png, final_test.png, fit.png where the
    data is 1-D, path_KEY.png), unsaved: the HTML report embeds the same ones."""
    sweep = load_sweep(Path(folder), by)
    chosen = resolve_metric(sweep.runs, metric or DEFAULT_METRIC)
    figures = {"curves.png": curves_figure(sweep, log), "final_test.png": final_test_figure(sweep, log)}
    if (fit := fit_figure(sweep, seed)) is not None:
        figures["fit.png"] = fit
    for k in [path] if path else path_keys(sweep):
        figures[f"path_{k}.png"] = path_figure(sweep, k, chosen, log)
    return figures


def make_plots(folder: Path, out: Path | None = None, by: list[str] | None = None, log: bool = False,
               seed: str | None = None, path: str | None = None, metric: str | None = None) -> list[Path]:
    """Write curves.png, final_test.png, (1-D data) fit.png and path_KEY.png into `out`
    (default FOLDER/plots). A path figure is drawn for `path`, else for every swept numeric key
    with at least 3 values (path_keys).

    Every figure is built before the folder is created, so bad input writes nothing.
    """
    out = Path(out) if out is not None else Path(folder) / "plots"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose another --out")
    figures = build_figures(Path(folder), by, log, seed, path, metric)
    paths: list[Path] = []
    created: list[Path] = []
    try:
        with writing("--out DIR", out):
            created = make_dirs(out)
            for name, fig in figures.items():
                with atomic_file(out / name) as fh:  # an interrupted plot leaves no half PNG
                    fig.savefig(fh, format="png", dpi=DPI)
                paths.append(out / name)
    except BaseException:
        if created:  # a folder this call made holds only its PNGs: none is left half a set
            for f in paths:
                f.unlink(missing_ok=True)
            remove_dirs(created)
        raise
    return paths


def cd_figure(stats: "CrossStats") -> "Figure":
    """The critical-difference diagram (Demšar 2006, Figure 1): an axis of mean ranks, best on
    the right, each group's name on a leader to its rank, and a thick bar under every clique
    the chosen test cannot tell apart (gid "clique:A,B,..."; the CD itself drawn above the axis
    for Nemenyi). Built from analysis.crossdata's numbers only."""
    from matplotlib.figure import Figure

    from dropbench.analysis.crossdata import POSTHOC_TEXT

    ordered = stats.ordered()  # best first
    k = len(ordered)
    half = (k + 1) // 2
    rows = max(half, k - half)
    fig = Figure(figsize=(8, 1.5 + 0.3 * (rows + len(stats.cliques))), dpi=DPI)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.9))
    ax.set_axis_off()
    lo, hi = 1, k
    reach = 0.25 * (hi - lo) + 0.3  # how far the leaders run past the axis' ends
    room = reach + 0.45 * (hi - lo) + 0.9  # and the names beyond them
    ax.set_xlim(hi + room, lo - room)  # rank 1 on the right
    top = 0.0
    base = top - 0.3 - 0.3 * len(stats.cliques) - 0.2
    ax.set_ylim(base - 0.45 * rows, 1.5)
    ax.plot([lo, hi], [top, top], color="black", lw=1, gid="axis")
    for r in range(lo, hi + 1):
        ax.plot([r, r], [top, top + 0.12], color="black", lw=1)
        ax.text(r, top + 0.2, str(r), ha="center", va="bottom", fontsize="small")
    if stats.cd is not None:
        ax.plot([lo, lo + stats.cd], [1.1, 1.1], color="black", lw=1.5, gid="cd")
        ax.text(lo + stats.cd / 2, 1.15, f"CD = {stats.cd:.3g}", ha="center", va="bottom", fontsize="small")
    # cliques: thick bars just under the axis, one level each
    for i, clique in enumerate(stats.cliques):
        ranks = [r for g, r in ordered if g in clique]
        y = top - 0.3 - 0.3 * i
        ax.plot([min(ranks) - 0.03, max(ranks) + 0.03], [y, y], color="black", lw=4, solid_capstyle="butt",
                gid="clique:" + ",".join(clique))
    # the better half labelled on the right, the other on the left (Demšar's layout)
    for i, (g, r) in enumerate(ordered):
        right = i < half
        level = i if right else k - 1 - i
        y = base - 0.45 * level
        x_end = lo - reach if right else hi + reach
        ax.plot([r, r, x_end], [top, y, y], color="0.3", lw=0.8, gid=f"group:{g}")
        ax.text(x_end, y, f" {g} ({r:.2f}) " if not right else f" ({r:.2f}) {g} ", ha="right" if not right else "left",
                va="center", fontsize="small")
    m = metric_label(stats.metric)
    fig.suptitle(f"{m}: mean rank over {stats.n} data sets (1 = best); bars: not told apart by "
                 f"{POSTHOC_TEXT[stats.posthoc]}, alpha {stats.alpha:g}", fontsize="small", y=0.99, va="top")
    return fig


def make_cd_plot(folders: Sequence[Path], out: Path | None = None, by: list[str] | None = None, metric: str | None = None,
                 posthoc: str | None = None, alpha: float = 0.05) -> Path:
    """Write cd.png (into `out`, default FIRST_FOLDER/plots): the critical-difference diagram of
    the wide report over the folders. Every refusal of the tests is an error; nothing is written."""
    from dropbench.analysis.crossdata import DEFAULT_POSTHOC
    from dropbench.report import build_report

    out = Path(out) if out is not None else Path(folders[0]) / "plots"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose another --out")
    rep = build_report(folders, by, layout="wide", metric=metric or DEFAULT_METRIC, posthoc=posthoc or DEFAULT_POSTHOC, alpha=alpha)
    assert rep.stats is not None  # posthoc named: a refusal raised
    fig = cd_figure(rep.stats)
    with writing("--out DIR", out):
        created = make_dirs(out)
        try:
            with atomic_file(out / "cd.png") as fh:
                fig.savefig(fh, format="png", dpi=DPI)
        except BaseException:
            remove_dirs(created)
            raise
    return out / "cd.png"
