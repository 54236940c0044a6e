"""A sweep's results as data, for Python: `Sweep` (one results folder or several) and `Tuning`
(a `dropbench tune` folder: its final runs, plus the search and the values chosen).

Everything here is computed by the functions the commands use: the summary, wide and paired
tables are report's records (report.report_of), the figures are plot's (plots.py), a check is
check's (check.run_check). Results are data: a folder's configs are read as YAML, never
instantiated. Nothing is printed, and nothing is written unless asked (save=, update=, junit=).

Exporters (issue 21's to_mlflow / to_tensorboard) read a Sweep through `folders`, `labels`,
`runs`, `curves` and `configs`.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, Union

from dropbench.errors import UserError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from dropbench.check import CheckResult
    from dropbench.export import ExportResult
    from dropbench.report import Report
    from dropbench.tuning import TuneOutcome

PathLike = Union[str, "os.PathLike[str]"]
Row = dict[str, Any]
PLOT_KINDS = ("curves", "final_test", "fit", "path")


class Sweep:
    """The runs of one results folder, or of several side by side (a `sweep` column tells them
    apart, as in `dropbench report A B`). Made by `dropbench.load`, `dropbench.run`.

    >>> import dropbench as db
    >>> sweep = db.load("results/reference/default_sweep")
    >>> sweep
    Sweep(default_sweep: 50 runs)
    >>> sweep.runs.dtypes[["seed", "final_test_mse", "reg", "model.residual"]].astype(str).tolist()
    ['int64', 'float64', 'category', 'bool']
    >>> s = sweep.summary()
    >>> s[["reg", "n_seeds", "rank"]].values.tolist()[:2]
    [['droppath', 10, 1], ['l2', 10, 2]]
    """

    def __init__(self, folders: PathLike | Sequence[PathLike]) -> None:
        from dropbench.report import read_folders

        self.folders: list[Path] = [Path(folders)] if isinstance(folders, (str, os.PathLike)) else [Path(f) for f in folders]
        self._rows, self.labels = read_folders(self.folders, require_ok=False)
        self._curve_rows: dict[str, list[Row]] = {}

    def __repr__(self) -> str:
        failed = sum(1 for r in self._rows if r.get("status") != "ok")
        return f"{type(self).__name__}({', '.join(self.labels)}: {len(self._rows)} runs" + (f", {failed} failed" if failed else "") + ")"

    def __len__(self) -> int:
        return len(self._rows)

    # ---- the data ------------------------------------------------------------------------------
    @cached_property
    def runs(self) -> "pd.DataFrame":
        """runs.csv of every folder: a row per run, typed (dropbench.frames); with a `sweep`
        column (the folder's label) where there are several folders."""
        from dropbench import frames

        return frames.frame(self._own_rows(None))

    @cached_property
    def curves(self) -> "pd.DataFrame":
        """curves.csv of every folder: a row per run and evaluated epoch (learned_p as lists);
        with a `sweep` column where there are several folders."""
        from dropbench import frames
        from dropbench.columns import CURVE_COLUMNS

        several = len(self.folders) > 1
        rows = [{**({"sweep": label} if several else {}), **c} for label in self.labels for c in self._curves(label)]
        return frames.frame(rows, [*(["sweep"] if several else []), "run_id", *CURVE_COLUMNS])

    @cached_property
    def configs(self) -> dict[str, dict[str, Any]]:
        """run_id -> the run's resolved config as stored (runs/<run_id>/config.yaml), read as
        data: nothing it names is imported. Runs whose folder holds no config.yaml (a folder
        of CSVs alone) are left out; their config values are columns of `runs`."""
        import yaml

        from dropbench.results import RUNS_DIR

        out: dict[str, dict[str, Any]] = {}
        for folder, label in zip(self.folders, self.labels):
            for r in self._own_rows(label):
                f = folder / RUNS_DIR / str(r["run_id"]) / "config.yaml"
                if r["run_id"] in out or not f.is_file():
                    continue
                try:
                    d = yaml.safe_load(f.read_text())
                except (yaml.YAMLError, UnicodeDecodeError):
                    raise UserError(f"{f} is damaged: not valid YAML; restore it from a copy") from None
                except OSError as e:
                    raise UserError(f"{f}: cannot read it ({e.strerror or type(e).__name__})") from None
                if not isinstance(d, dict):
                    raise UserError(f"{f} is damaged: not a mapping of config keys; restore it from a copy")
                out[str(r["run_id"])] = d
        return out

    @property
    def failed(self) -> "pd.DataFrame":
        """The runs that did not finish (status other than ok), with their reasons."""
        return self.runs[self.runs["status"] != "ok"]

    # ---- report's tables -----------------------------------------------------------------------
    def summary(self, by: Sequence[str] | str | None = None, metric: str = "test_mse", interval: str = "ci95",
                epoch: int | str | None = None, *, better: str | None = None, select_on: str | None = None,
                sort: str | None = None, descending: bool = False, reference: Mapping[str, Any] | None = None) -> "pd.DataFrame":
        """`dropbench report`'s long table as a DataFrame: a row per group, every statistic the
        JSON carries at full precision (n_seeds, test_mean, test_std, test_se, test_ci,
        test_interval, rank, paired_diff, ...). The arguments are report's options (by: keys,
        or "reg,p"; epoch: final, best or a number). attrs holds the title, the grouping keys,
        the reference group and the caption's notes.

        >>> import dropbench as db
        >>> s = db.load("results/reference/default_sweep").summary(interval="se")
        >>> s.loc[0, "reg"], int(s.loc[0, "rank"]), s.attrs["keys"]
        ('droppath', 1, ['reg'])
        """
        from dropbench import frames

        rep = self._report(by, metric, interval, epoch, better, select_on, sort, descending, "long", reference)
        return _with_attrs(frames.frame(rep.summary), rep)

    def wide(self, by: Sequence[str] | str | None = None, metric: str = "test_mse", interval: str = "ci95",
             epoch: int | str | None = None, *, better: str | None = None, select_on: str | None = None,
             posthoc: str | None = None, alpha: float = 0.05) -> "pd.DataFrame":
        """`dropbench report --layout wide` (the literature's table) as a DataFrame: a row per
        data set, for each group (column label) its statistics as "<label> <stat>" columns,
        exactly report's CSV. attrs["mean_rank"]: each group's mean rank over the data sets;
        attrs["tests"]: the tests across data sets (analysis.crossdata.CrossStats: Friedman's,
        the `posthoc` pairs, wilcoxon by default or nemenyi, at `alpha`), None where the table
        cannot be tested (attrs["notes"] says why; naming posthoc makes that a UserError).

        >>> import dropbench as db
        >>> w = db.load("results/reference/default_sweep").wide(by="reg")
        >>> [c for c in w.columns if c.endswith(" rank")]
        ['none rank', 'dropout rank', 'droppath rank', 'l1 rank', 'l2 rank']
        """
        from dropbench import frames
        from dropbench.analysis.wide import mean_ranks, wide, wide_records

        rep = self._report(by, metric, interval, epoch, better, select_on, None, False, "wide", posthoc=posthoc, alpha=alpha)
        df = _with_attrs(frames.frame(wide_records(rep.summary, rep.keys, rep.reference, rep.interval)), rep)
        w = wide(rep.summary, rep.keys, rep.reference)
        df.attrs["mean_rank"] = dict(zip(w.cols, mean_ranks(w)))
        df.attrs["tests"] = rep.stats
        return df

    def compare(self, table: PathLike = "gal2016", by: Sequence[str] | str | None = None, metric: str = "test_rmse",
                interval: str = "se", epoch: int | str | None = None) -> "pd.DataFrame":
        """`dropbench report --reference TABLE`: each of our cells beside a published one (a shipped
        name such as gal2016, or a CSV with dataset, metric, mean, se, n), the difference and
        the difference in units of the two-sample standard error (analysis.reference)."""
        from dropbench import frames
        from dropbench.analysis.reference import read_reference

        rep = self._report(by, metric, interval, epoch, None, None, None, False, "long", ref_table=read_reference(table))
        df = _with_attrs(frames.frame(list(rep.comparison or [])), rep)
        df.attrs["citation"] = rep.citation
        return df

    def paired(self, by: Sequence[str] | str | None = None, metric: str = "test_mse", interval: str = "ci95",
               epoch: int | str | None = None, *, reference: Mapping[str, Any] | None = None, better: str | None = None,
               select_on: str | None = None) -> "pd.DataFrame":
        """Each group's paired difference to the reference group (default reg=none), repetition
        by repetition (same seed and split, equal config but for the reference key): the
        summary's paired_* columns and n_pairs, a row per group other than the reference.

        >>> import dropbench as db
        >>> d = db.load("results/reference/default_sweep").paired()
        >>> d.attrs["reference"], int(d["n_pairs"].min())
        ({'reg': 'none'}, 10)
        """
        from dropbench import frames
        from dropbench.analysis.taxonomy import key_str

        rep = self._report(by, metric, interval, epoch, better, select_on, None, False, "long", reference)
        if not rep.reference:
            raise UserError("paired differences need a reference group: these runs have no reg=none; "
                            "give one, e.g. reference={'reg': 'l2'}")
        ref = rep.reference
        fields = ("n_pairs", "paired_diff", "paired_std", "paired_se", "paired_ci", "paired_interval", "metric", "interval")
        rows = [{**{k: s[k] for k in rep.keys}, **{f: s.get(f) for f in fields}} for s in rep.summary
                if not all(key_str(s.get(k)) == v for k, v in ref.items())]
        return _with_attrs(frames.frame(rows, [*rep.keys, *fields]), rep)

    def report(self, format: str = "table", layout: str = "long", by: Sequence[str] | str | None = None,
               metric: str = "test_mse", interval: str = "ci95", epoch: int | str | None = None, *, better: str | None = None,
               select_on: str | None = None, sort: str | None = None, descending: bool = False) -> str:
        """What `dropbench report` prints, as text (table, markdown, csv or json); not printed."""
        from dropbench.report import as_text, render_report

        rep = self._report(by, metric, interval, epoch, better, select_on, sort, descending, layout)
        return as_text(render_report(rep, format))

    def _report(self, by: Sequence[str] | str | None, metric: str, interval: str, epoch: int | str | None,
                better: str | None, select_on: str | None, sort: str | None, descending: bool, layout: str,
                reference: Mapping[str, Any] | None = None, posthoc: str | None = None, alpha: float = 0.05,
                ref_table: Any = None) -> "Report":
        from dropbench import locks, readback
        from dropbench.analysis.selection import parse_epoch
        from dropbench.report import report_of, some_ok

        for folder, label in zip(self.folders, self.labels):
            some_ok(folder, self._own_rows(label))
        at = parse_epoch(str(epoch if epoch is not None else "best" if select_on is not None else "final"))
        curves = {label: (lambda label=label: self._curves(label)) for label in self.labels}
        running = [f for f in self.folders if locks.is_partial(f)]
        tunings = [tn for f in self.folders if (tn := readback.read_tuning(f)) is not None]  # a tune's final runs: budgets
        return report_of(self._rows, self.labels, curves, _keys(by) if by is not None else self._default_by(), sort, descending,
                         at, interval, layout, metric, better, select_on, running, reference,
                         posthoc=posthoc, alpha=alpha, ref_table=ref_table, folders=self.folders, tunings=tunings)

    def _default_by(self) -> list[str] | None:
        return None  # every swept key but the seed, as report groups

    # ---- plot and check: one folder, as the commands take ----------------------------------------
    def plot(self, kind: str = "curves", *, by: Sequence[str] | str | None = None, log: bool = False, seed: int | str | None = None,
             key: str | None = None, metric: str | None = None, save: PathLike | None = None) -> "Figure":
        """One of `dropbench plot`'s figures as a matplotlib Figure: "curves" (train and test
        MSE against epoch, 95% bands), "final_test" (each group's final test MSE), "fit" (1-D
        data: the points and each group's fit; seed= a seed or "mean") or "path" (the metric
        against the swept numeric `key`). Nothing is written unless `save` names a PNG file.

        >>> import dropbench as db
        >>> fig = db.load("tests/data/tiny_sweep").plot("final_test")
        >>> type(fig).__name__, len(fig.axes) > 0
        ('Figure', True)
        """
        from dropbench import plots
        from dropbench.analysis.metrics import DEFAULT_METRIC, resolve_metric

        if kind not in PLOT_KINDS:
            raise UserError(f"unknown plot kind {kind!r}: choose from {', '.join(PLOT_KINDS)}")
        folder, label = self._one("plot")
        drawn = plots.load_sweep(folder, _keys(by) if by is not None else self._default_by(), rows=self._own_rows(label),
                                 curves=self._curves(label) if kind == "curves" else [])
        fig: Figure | None
        if kind == "curves":
            fig = plots.curves_figure(drawn, log)
        elif kind == "final_test":
            fig = plots.final_test_figure(drawn, log)
        elif kind == "fit":
            fig = plots.fit_figure(drawn, None if seed is None else str(seed))
            if fig is None:
                raise UserError(f"kind='fit' draws 1-D data only: no run of {folder} stored a fit.csv")
        else:
            keys = [key] if key is not None else plots.path_keys(drawn)
            if not keys:
                raise UserError("kind='path' needs a swept numeric key: give key=, e.g. key='p'")
            fig = plots.path_figure(drawn, keys[0], resolve_metric(drawn.runs, metric or DEFAULT_METRIC), log)
        if save is not None:
            from dropbench.oserrors import writing
            from dropbench.results import atomic_file

            with writing("save=FILE", Path(save)), atomic_file(Path(save)) as fh:
                fig.savefig(fh, format="png", dpi=plots.DPI)
        return fig

    def check(self, baseline: PathLike, expect: Sequence[str] | str = (), *, alpha: float = 0.01, rtol: float = 0.05,
              update: bool = False, by: Sequence[str] | str | None = None, metric: str | None = None,
              better: str | None = None, junit: PathLike | None = None) -> "CheckResult":
        """`dropbench check` against a baseline CSV: a CheckResult (`passed`, `verdicts`,
        `expectations`, `message(baseline)`: the command's verdict line). expect: claims such as
        "l2 < none". Writes only when asked: update=True records the baseline, junit= a report.

        >>> import dropbench as db
        >>> r = db.load("tests/data/tiny_sweep").check("tests/data/tiny_baseline.csv", expect="none < dropout", alpha=0.2)
        >>> r.passed, [v.verdict for v in r.verdicts], r.message("tiny_baseline.csv")
        (True, ['ok', 'ok'], 'check passed: 2 group(s) within seed noise and tolerance of tiny_baseline.csv, 1 expectation(s) hold')
        """
        from dropbench.check import run_check

        folder, label = self._one("check")
        claims = [expect] if isinstance(expect, str) else list(expect)
        return run_check(folder, Path(baseline), update, _keys(by) if by is not None else None, alpha, rtol, claims,
                         Path(junit) if junit is not None else None, metric, better, runs=self._own_rows(label))

    # ---- helpers -----------------------------------------------------------------------------------
    # ---- export: each folder to a tracker, as `dropbench export` does --------------------------
    def to_mlflow(self, uri: str, experiment: str | None = None) -> list["ExportResult"]:
        """`dropbench export DIR --mlflow URI` for each folder (an experiment per folder unless
        `experiment` names one); exporting again adds only what was not there (docs/export.md)."""
        from dropbench.export.mlflow import to_mlflow

        return [to_mlflow(f, uri, experiment, rows=self._own_rows(label), curves=self._curves(label))
                for f, label in zip(self.folders, self.labels)]

    def to_tensorboard(self, logdir: PathLike) -> list["ExportResult"]:
        """`dropbench export DIR --tensorboard LOGDIR` for each folder: scalars per run and the HParams summary."""
        from dropbench.export.tensorboard import to_tensorboard

        return [to_tensorboard(f, logdir, rows=self._own_rows(label), curves=self._curves(label))
                for f, label in zip(self.folders, self.labels)]

    def _own_rows(self, label: str | None) -> list[Row]:
        """The runs.csv rows of one folder (label), or of all (None; `sweep` kept where several)."""
        several = len(self.folders) > 1
        return [r if (several and label is None) else {k: v for k, v in r.items() if k != "sweep"}
                for r in self._rows if label is None or r["sweep"] == label]

    def _curves(self, label: str) -> list[Row]:
        if label not in self._curve_rows:
            from dropbench.readback import read_curves

            self._curve_rows[label] = read_curves(self.folders[self.labels.index(label)], partial=True)
        return self._curve_rows[label]

    def _one(self, what: str) -> tuple[Path, str]:
        if len(self.folders) != 1:
            raise UserError(f"{what} takes one results folder, as dropbench {what} does; load it alone: db.load(path).{what}(...)")
        return self.folders[0], self.labels[0]


class Tuning(Sweep):
    """A `dropbench tune` folder: a Sweep of its final runs (what the literature's table reports;
    summaries group by the tuned base keys, seeds and splits pooled, as `tune` prints them),
    plus `search` (the grid's runs on the validation hold-out), `tuned` (tuned.csv: the values
    chosen per split), `chosen` (how often each grid point was chosen) and `warnings`."""

    def __init__(self, folder: PathLike, outcome: "TuneOutcome | None" = None) -> None:
        from dropbench import readback, results
        from dropbench import tuning as tune

        self.out = Path(folder)
        spec = tune.read_spec(self.out)
        if spec is None:
            raise UserError(f"{self.out}: no {results.TUNE_FILE} there; give a folder written by dropbench tune")
        self.spec = spec.to_dict()
        self._outcome = outcome
        if not (self.out / results.FINAL_DIR / results.RUNS_CSV).is_file():
            raise UserError(readback.why_no_runs(self.out))
        super().__init__([self.out / results.FINAL_DIR])

    def __repr__(self) -> str:
        return f"Tuning({self.out}: {len(self)} final runs)"

    @cached_property
    def search(self) -> Sweep:
        from dropbench.results import SEARCH_DIR

        return Sweep([self.out / SEARCH_DIR])

    @cached_property
    def tuned(self) -> "pd.DataFrame":
        """tuned.csv: per group (split, seed, regularizer, ...) the values chosen, their
        validation and test scores, both run ids, and at_edge."""
        from dropbench import frames

        return frames.frame(self._tuned_rows())

    @cached_property
    def keys(self) -> list[str]:
        """What the final runs are grouped by: the swept base keys but seeds and splits."""
        from dropbench import tune_summary

        return tune_summary.report_keys(self._outcome_or_rebuilt())

    @property
    def chosen(self) -> "pd.DataFrame":
        """Per setting, how often each grid point was chosen and how often a choice sat at an
        end of its grid (`tune`'s table)."""
        from dropbench import frames, tune_summary

        return frames.frame(tune_summary.chosen_summary(self._outcome_or_rebuilt()))

    @property
    def warnings(self) -> list[str]:
        """Grid ends chosen in at least half of a setting's groups: the best value may lie beyond."""
        from dropbench import tune_edges

        return tune_edges.edge_warnings(self._outcome_or_rebuilt())

    def _default_by(self) -> list[str] | None:
        return self.keys

    def _tuned_rows(self) -> list[Row]:
        from dropbench.readback import read_csv
        from dropbench.tuning import TUNED_CSV

        fix = f"run the tuning again: dropbench tune --resume {self.out}"
        return [row for _, row in read_csv(self.out / TUNED_CSV, ("status",), fix, cells={})[1]]

    def _outcome_or_rebuilt(self) -> "TuneOutcome":
        """The tuning's outcome; for a folder loaded from disk, rebuilt from tune.yaml and
        tuned.csv (its swept keys are tuned.csv's columns before the first tuned key), as much
        as chosen_summary and edge_hits read: nothing is planned or trained."""
        if self._outcome is None:
            from dropbench import config as config_mod
            from dropbench import tune_grid, tune_spec
            from dropbench import tuning as tune
            from dropbench.config import LocalLauncher
            from dropbench.results import SEARCH_DIR
            from dropbench.runner import RunOutcome

            rows = self._tuned_rows()
            over_keys = [tune_grid._key(o) for o in self.spec["over"]]
            header = list(rows[0]) if rows else []
            first = min((header.index(k) for k in over_keys if k in header), default=0)
            name, column, higher = tune_spec.metric_column(self.spec["metric"], self.spec["better"])
            grid = {k: [job[0].split("=", 1)[1] for job in config_mod.expand_sweep([o])] for k, o in zip(over_keys, self.spec["over"])}
            plan = tune_grid.Plan(tune_spec.Spec(tuple(self.spec["overrides"]), tuple(self.spec["over"]), self.spec["metric"], self.spec["better"],
                                                 self.spec["multirun"], self.spec["cwd"]),
                                  self.out, [], [], [], LocalLauncher(), header[:first], over_keys, name, column, higher, grid)
            self._outcome = tune.TuneOutcome(self.out, plan, RunOutcome(self.out / SEARCH_DIR), [], None, rows)
        return self._outcome


def _keys(by: Sequence[str] | str) -> list[str]:
    """by= as a list of keys; "reg,p" as report's --by spells it."""
    if isinstance(by, str):
        return [k.strip() for k in by.split(",") if k.strip()]
    return list(by)


def _with_attrs(df: "pd.DataFrame", rep: "Report") -> "pd.DataFrame":
    df.attrs.update(title=rep.title, keys=list(rep.keys), reference=rep.reference, notes=list(rep.notes))
    return df


def load(paths: PathLike | Iterable[PathLike]) -> Sweep:
    """Read results: a results folder (a Sweep), several side by side (a Sweep with a `sweep`
    column), or a `dropbench tune` folder (a Tuning; among several, it stands for its final runs).
    Only reads: nothing is trained or written. Bad input raises UserError with report's message.

    >>> import dropbench as db
    >>> db.load(["results/reference/default_sweep", "tests/data/tiny_sweep"]).labels
    ['default_sweep', 'tiny_sweep']
    >>> db.load("no/such/folder")
    Traceback (most recent call last):
    dropbench.errors.UserError: no/such/folder: no such folder; give a results folder written by dropbench run
    """
    from dropbench.results import FINAL_DIR, TUNE_FILE

    folders = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if len(folders) == 1 and (folders[0] / TUNE_FILE).is_file():
        return Tuning(folders[0])
    return Sweep([f / FINAL_DIR if (f / TUNE_FILE).is_file() else f for f in folders])
