"""The `dropbench` command: a thin typer layer over runner, config, report and render.

Heavy libraries (torch, matplotlib, Hydra) are imported inside commands, so --help is instant.
"""

from __future__ import annotations

import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterator, Optional

import typer

from dropbench.errors import UserError
from dropbench.progress import ProgressLines

if TYPE_CHECKING:
    from rich.console import Console

    from dropbench.live import Leaderboard
    from dropbench.runner import RunOutcome

app = typer.Typer(
    add_completion=True,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Overfitting experiments: which regularizer generalises best, and how sure are we?",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from dropbench import __version__

        typer.echo(f"dropbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    pass


LOG_WIDTH = 120  # tables in logs and pipes (CI): wide enough that cells do not wrap


def _console(quiet: bool = False) -> "Console":
    """A rich console; off a terminal (a CI log, a pipe) it is LOG_WIDTH wide unless COLUMNS says."""
    from rich.console import Console

    console = Console(quiet=quiet)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(quiet=quiet, width=LOG_WIDTH)
    return console


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"dropbench: error: {msg}", err=True)
    raise typer.Exit(code)


# ---- the options `run` and `tune` share -------------------------------------------------------
# Their flags are declared once, here. -q means the same to both; the others each command words in
# its own help, since it does something else with them (a sweep of runs, a tuning).
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Print only the results path and errors (and progress lines on stderr).")]


ConfigDir = Annotated[Optional[list[Path]], typer.Option(
    "--config-dir", help="A folder of plug-in YAMLs (reg/, data/, model/; each names its module with _target_); repeatable.")]


def _config_dirs(dirs: Optional[list[Path]]) -> None:
    """The user's config directories, before anything loads the registries (docs/extending.md)."""
    if not dirs:
        return
    from dropbench import registration

    for d in dirs:
        registration.use_config_dir(d)


def _multirun(help: str) -> Any:
    return typer.Option("-m", "--multirun", help=help)


def _resume(help: str) -> Any:
    return typer.Option("--resume", help=help)


def _allow_mixed_platforms(help: str) -> Any:
    return typer.Option("--allow-mixed-platforms", help=help)


def _allow_failures(help: str) -> Any:
    return typer.Option("--allow-failures", help=help)


def _failures(msg: str, console: "Console", allow_failures: bool) -> None:
    """What failed in a run or tune: a warning with --allow-failures, else exit 1."""
    if allow_failures:
        console.print(f"[yellow]{msg}[/yellow]")
    else:
        _fail(msg + " (--allow-failures to exit 0)", 1)


@app.command(
    context_settings={"allow_extra_args": False, "ignore_unknown_options": False},
    epilog="Examples:  dropbench run reg=dropout p=0.5   |   dropbench run -m reg=none,l1,l2,dropout,droppath seed='range(10)'",
)
def run(
    overrides: Annotated[Optional[list[str]], typer.Argument(help="Hydra overrides: key=value, group=option; with -m, sweeps (a,b  range(10)  glob(*)).")] = None,
    multirun: Annotated[bool, _multirun("Expand sweep overrides into one run each.")] = False,
    cfg: Annotated[bool, typer.Option("--cfg", help="Print the resolved config of each run and exit without running.")] = False,
    from_run: Annotated[Optional[Path], typer.Option("--from", help="Train a stored run again from its saved config: results/DIR/runs/<run_id> (the only override it takes is out=DIR).")] = None,
    resume: Annotated[Optional[Path], _resume("Finish every sweep recorded in a results folder: runs only what is missing.")] = None,
    append: Annotated[bool, typer.Option("--append", help="Add this command to an out folder that already holds another sweep (its sweep.yaml then records both).")] = False,
    allow_mixed_platforms: Annotated[bool, _allow_mixed_platforms("Add runs to a folder whose finished runs were computed on another platform (torch version, CPU capability, device, GPU) or on an unrecorded one.")] = False,
    allow_failures: Annotated[bool, _allow_failures("Exit 0 even when some runs failed (they are still listed).")] = False,
    quiet: Quiet = False,
    config_dir: ConfigDir = None,
) -> None:
    """Train one run, or a sweep with -m, and write runs.csv / curves.csv to `out`."""
    with _user_errors():
        _config_dirs(config_dir)
    from dropbench import runner

    with _training_errors(lambda e: f"dropbench run --resume {shlex.quote(str(e.out))}"):
        req = runner.plan_request(overrides or [], multirun, from_run, resume, append)
        cfgs = req.cfgs
        if cfg:
            from dropbench.results import config_yaml

            for i, c in enumerate(cfgs):
                if len(cfgs) > 1:
                    typer.echo(f"# run {i + 1}/{len(cfgs)}: {c.run_id}")
                typer.echo(config_yaml(c), nl=False)
            return
        console = _console(quiet)
        board = None
        if not quiet and console.is_terminal:  # the best and worst groups so far, under the bar
            from dropbench.live import Leaderboard

            board = Leaderboard(cfgs)
        with _progress(console, quiet, board) as (on_start, on_result):
            outcome = runner.execute(cfgs, req.launcher, req.out, on_start=on_start, on_result=on_result, command=req.command,
                                     append=append, allow_mixed_platforms=allow_mixed_platforms,
                                     on_folder=board.into if board is not None else None)
    _report_run(outcome, console, allow_failures)


def _report_run(outcome: "RunOutcome", console: "Console", allow_failures: bool) -> None:
    from dropbench.render.runs import print_runs

    if 0 < len(outcome.rows) <= 10:
        print_runs(outcome.rows, console)
    if len(outcome.rows) > 1:
        _print_summary(outcome.rows, console)
    if outcome.skipped:
        console.print(f"{outcome.skipped} run(s) were already finished in {outcome.out} and were not re-run.")
    if outcome.trained and outcome.train_seconds > 0:
        console.print(
            f"trained {outcome.trained} run(s) in {outcome.train_seconds:.2f} s "
            f"({outcome.network_steps / outcome.train_seconds:,.0f} network-steps/s)"
        )
    typer.echo(f"results: {outcome.out}")
    if (failures := outcome.failures()) is not None:
        _failures(failures, console, allow_failures)


def _print_summary(rows: list[dict[str, Any]], console: "Console") -> None:
    """Grouped by every swept key except the seed, with the paired difference to reg=none."""
    from dropbench.analysis.grouping import group_keys
    from dropbench.analysis.pairing import default_reference
    from dropbench.analysis.summary import summarize
    from dropbench.render.long import summary_table

    keys = group_keys(rows)
    ref = default_reference(rows, keys)
    console.print(summary_table(summarize(rows, keys, ref), keys, reference=ref))


@contextmanager
def _training_errors(resume_with: Callable[[Any], str]) -> Iterator[None]:
    """What ends `run` or `tune` early, in one line: bad input (exit 2), an OS error once runs
    are being stored (2, with the command that resumes), Ctrl-C after some runs were stored (130,
    with the command that resumes) or before (130, nothing written); SIGTERM as Ctrl-C, with 143.
    Cluster jobs that ended before storing their runs: a line per job, then the one that
    resumes (1)."""
    from dropbench import runner

    try:
        with runner.sigterm_as_interrupt():
            yield
    except runner.Stopped as e:  # a full disk mid-sweep: what finished is kept
        _fail(f"{e}; resume with: {resume_with(e)}")
    except UserError as e:
        _fail(str(e))
    except runner.JobsLost as e:  # cancelled, timed out, failed, node lost: what the jobs stored is kept
        for line in e.lines:
            typer.echo(f"dropbench: {line}", err=True)
        _fail(f"{e}; resume with: {resume_with(e)}", 1)
    except runner.Interrupted as e:
        _fail(f"{e}; resume with: {resume_with(e)}", e.code)
    except KeyboardInterrupt as e:
        how = "terminated (SIGTERM)" if runner.exit_code(e) == 143 else "interrupted"
        _fail(f"{how} before training started; nothing was written", runner.exit_code(e))


@contextmanager
def _user_errors() -> Iterator[None]:
    """A UserError anywhere below becomes one line on stderr and exit code 2."""
    try:
        yield
    except UserError as e:
        _fail(str(e), e.exit_code)


def _split_keys(by: Optional[str]) -> Optional[list[str]]:
    return None if by is None else [k.strip() for k in by.split(",") if k.strip()]


@app.command(epilog="Examples:  dropbench report results/sweep --by reg,p   |   dropbench report results/a results/b --format markdown")
def report(
    folders: Annotated[list[Path], typer.Argument(help="Results folders; several are compared side by side (a `sweep` column).", show_default=False)],
    by: Annotated[Optional[str], typer.Option("--by", help="Group by these keys, comma separated (default: every swept key but the seed).")] = None,
    sort: Annotated[Optional[str], typer.Option("--sort", help="Order by rank, test, train, gap, std, ci, seeds, paired or a key.")] = None,
    desc: Annotated[bool, typer.Option("--desc", help="Sort in descending order.")] = False,
    epoch: Annotated[Optional[str], typer.Option("--epoch", help="final, best (each run at its best evaluation: by val_mse where it has validation rows, else by the test metric, flagged as optimistic) or an evaluated epoch number.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, markdown, csv, json or html (one self-contained page: the csv table, plots, configs, commands; with -o).")] = "table",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of the terminal.")] = None,
    interval: Annotated[str, typer.Option("--interval", help="What follows ±: ci95 (95% t-interval), se (standard error, SD ddof=0 / √n, as the UCI literature) or std (sample SD).")] = "ci95",
    layout: Annotated[str, typer.Option("--layout", help="long (a line per group) or wide (the literature's table: a row per data set, a column per regularizer, plus paired differences).")] = "long",
    metric: Annotated[str, typer.Option("--metric", help="The result column to compare (test_mse; any column runs.csv carries, final_ prefix optional).")] = "test_mse",
    better: Annotated[Optional[str], typer.Option("--better", help="higher or lower (default: by the metric's name; *_ll, log-likelihood, is higher).")] = None,
    select_on: Annotated[Optional[str], typer.Option("--select-on", help="With --epoch best (implied): choose each run's epoch by this curve metric (val_mse, train_mse, ...); a test_ metric is marked as optimistic.")] = None,
    posthoc: Annotated[Optional[str], typer.Option("--posthoc", help="With --layout wide: the pairwise test across data sets after Friedman's, wilcoxon (signed-rank, Holm-corrected; the default) or nemenyi (critical difference). Naming it makes too few data sets an error rather than a caption line.")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level of the tests across data sets.")] = 0.05,
    reference: Annotated[Optional[str], typer.Option("--reference", help="Set a published table beside ours: a shipped name (gal2016) or a CSV with dataset, metric, mean, se, n.")] = None,
) -> None:
    """Rebuild the sweep summary from a results folder's CSVs (no training, no torch)."""
    from dropbench.analysis.selection import parse_epoch
    from dropbench.report import build_report, render_report

    with _user_errors():
        at = parse_epoch(epoch if epoch is not None else "best" if select_on is not None else "final")
        rep = build_report(folders, _split_keys(by), sort, desc, at, interval, layout, metric, better, select_on,
                           posthoc, alpha, reference)
        if fmt == "html":  # one page: the csv's table, the plots, configs and commands
            from dropbench.html_report import report_html

            rendered = report_html(rep)
        else:
            rendered = render_report(rep, fmt)
        if output is not None:
            from dropbench.report import as_text
            from dropbench.oserrors import writing
            from dropbench.results import atomic_write

            with writing("-o FILE", output):
                atomic_write(output, as_text(rendered))
            typer.echo(f"report: {output}")
        elif isinstance(rendered, str):
            typer.echo(rendered, nl=False)
            if fmt in ("csv", "json"):  # machine-readable output has no caption: warnings go to stderr
                for note in rep.notes:
                    typer.echo(f"dropbench: {note}", err=True)
        else:
            _console().print(rendered)


@contextmanager
def _progress(console: "Console", quiet: bool, board: "Leaderboard | None" = None,
              ) -> Iterator[tuple[Callable[[int], None], Callable[[str, str], None]]]:
    """A rich progress bar on a terminal, with `board`'s line under it (the best and worst groups
    so far, once two have a finished run); progress lines on stderr when piped or with --quiet."""
    if quiet or not console.is_terminal:
        lines = ProgressLines(lambda line: typer.echo(line, err=True))
        try:
            yield lines.start, (lambda run_id, status: lines.advance())
        finally:
            lines.finish()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
                   TimeRemainingColumn())
    leaders = Text("")
    task = bar.add_task("runs", total=None)

    def stored(run_id: str, status: str) -> None:
        if board is not None:
            board.add(run_id, status)
            leaders.plain = board.line()
        bar.advance(task)

    with Live(Group(bar, leaders), console=console, transient=True, refresh_per_second=10):
        yield (lambda n: bar.update(task, total=n)), stored


@app.command(epilog="Example:  dropbench plot results/sweep --log --out figures/")
def plot(
    folder: Annotated[Path, typer.Argument(help="A results folder written by dropbench run.", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the PNG files (default: FOLDER/plots).")] = None,
    by: Annotated[Optional[str], typer.Option("--by", help="Group by these keys, comma separated (default: every swept key but the seed).")] = None,
    log: Annotated[bool, typer.Option("--log", help="Log-scale MSE axes.")] = False,
    seed: Annotated[Optional[str], typer.Option("--seed", help="Fit picture: this seed's data and fits, or 'mean' for fits averaged over seeds (default: the smallest seed).")] = None,
    path: Annotated[Optional[str], typer.Option("--path", help="Regularization path: train and test metric against this swept numeric key (default: every numeric key swept over 3+ values).")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="The path figure's metric (test_mse; its train_ counterpart is drawn too); with --cd, the metric ranked.")] = None,
    cd: Annotated[bool, typer.Option("--cd", help="Draw only the critical-difference diagram, cd.png: mean ranks over data sets, bars joining the groups the --posthoc test cannot tell apart.")] = False,
    posthoc: Annotated[Optional[str], typer.Option("--posthoc", help="With --cd: wilcoxon (signed-rank, Holm-corrected; the default) or nemenyi (critical difference).")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="With --cd: the significance level.")] = 0.05,
) -> None:
    """Draw learning curves with confidence bands, final test MSE per group, for 1-D data the fits, and regularization paths (--cd: the critical-difference diagram)."""
    from dropbench.locks import is_partial
    from dropbench.readback import progress

    with _user_errors():
        if cd:
            from dropbench.plots import make_cd_plot

            typer.echo(str(make_cd_plot([folder], out, _split_keys(by), metric, posthoc, alpha)))
            return
        if posthoc is not None:
            raise UserError("--posthoc chooses the test of the critical-difference diagram: add --cd")
        from dropbench.plots import make_plots

        for path_ in make_plots(folder, out, _split_keys(by), log, seed, path, metric):
            typer.echo(str(path_))
        if is_partial(folder):  # the figures say so in their titles too
            typer.echo(f"dropbench: {progress(folder).note(folder)}", err=True)


@app.command(epilog="Examples:  dropbench export results/sweep --mlflow sqlite:///mlflow.db   |   dropbench export results/sweep --tensorboard runs/")
def export(
    folder: Annotated[Path, typer.Argument(help="A results folder written by dropbench run (one still running: what has finished).", show_default=False)],
    mlflow: Annotated[Optional[str], typer.Option("--mlflow", help="MLflow tracking URI: sqlite:///mlflow.db (no server) or http://HOST:PORT. Needs .[mlflow].")] = None,
    experiment: Annotated[Optional[str], typer.Option("--experiment", help="With --mlflow: the experiment's name (default: the folder's).")] = None,
    tensorboard: Annotated[Optional[Path], typer.Option("--tensorboard", help="TensorBoard log folder: LOGDIR/<folder>/<run_id>/ per run. Needs .[tensorboard].")] = None,
) -> None:
    """Export a results folder to MLflow and/or TensorBoard; exporting again adds only the runs not exported yet."""
    with _user_errors():
        if mlflow is None and tensorboard is None:
            raise UserError("say where to: --mlflow URI and/or --tensorboard LOGDIR")
        if experiment is not None and mlflow is None:
            raise UserError("--experiment names an MLflow experiment; give --mlflow URI too")
        done = []
        if mlflow is not None:
            from dropbench.export.mlflow import to_mlflow

            done.append(("mlflow", to_mlflow(folder, mlflow, experiment)))
        if tensorboard is not None:
            from dropbench.export.tensorboard import to_tensorboard

            done.append(("tensorboard", to_tensorboard(folder, tensorboard)))
    for name, r in done:
        typer.echo(f"{name}: {len(r.added)} run(s) added, {len(r.skipped)} already there: {r.where}")
    partial = next((r.partial for _, r in done if r.partial), None)
    if partial:
        typer.echo(f"dropbench: {partial}; export again when it ends to add the rest", err=True)


@app.command(epilog='Example:  dropbench check results/ci --baseline results/baselines/ci_sweep.csv --expect "l2 < none" --junit check.xml')
def check(
    folder: Annotated[Path, typer.Argument(help="A results folder written by dropbench run.", show_default=False)],
    baseline: Annotated[Path, typer.Option("--baseline", help="Baseline CSV: per group seeds, mean and std of test and train MSE.", show_default=False)],
    update_baseline: Annotated[bool, typer.Option("--update-baseline", help="Write the baseline from this sweep instead of checking.")] = False,
    by: Annotated[Optional[str], typer.Option("--by", help="With --update-baseline: group by these keys (default: every swept key but the seed).")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level of the Welch t-tests.")] = 0.01,
    rtol: Annotated[float, typer.Option("--rtol", help="Relative change of the metric's mean, the worse way, tolerated before a group can fail (a rise of test MSE).")] = 0.05,
    expect: Annotated[Optional[list[str]], typer.Option("--expect", help='A claim on group order, e.g. "l2 < none": a lower mean metric (repeatable).')] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Also write a JUnit XML report here.")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="With --update-baseline: the result column to record, as report's (default test_mse; test_rmse, test_mc_rmse, test_ll, ...). A check uses its baseline's; naming another is an error.")] = None,
    better: Annotated[Optional[str], typer.Option("--better", help="higher or lower (default: by the metric's name; *_ll is higher). Recorded with the metric.")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only the verdict line.")] = False,
) -> None:
    """Fail (exit 1) when a sweep's metric (test MSE by default) regressed against a baseline or a claim does not hold."""
    from dropbench.check import run_check
    from dropbench.render.check import baseline_table, check_tables

    with _user_errors():
        result = run_check(folder, baseline, update_baseline, _split_keys(by), alpha, rtol, expect or [], junit, metric, better)
    console = _console(quiet)
    for table in check_tables(result, str(baseline)):
        console.print(table)
    if result.updated:
        from dropbench.check import read_baseline

        keys, rows = read_baseline(baseline)
        console.print(baseline_table(keys, rows, f"baseline written: {baseline}", result.files))
    if junit is not None:
        typer.echo(f"junit: {junit}")
    verdict = result.message(str(baseline))
    if not result.passed:
        _fail(str(verdict), 1)
    elif verdict is not None:
        typer.echo(verdict)


@app.command(
    context_settings={"allow_extra_args": False, "ignore_unknown_options": False},
    epilog="Example:  dropbench tune -m data=uci data.dataset=yacht 'data.split=range(20)' reg=dropout,l2 "
           "--over p=0.005,0.01,0.05 --over eval.tau=0.1,0.2 --metric test_ll out=results/tuned",
)
def tune(
    overrides: Annotated[Optional[list[str]], typer.Argument(help="Hydra overrides of the runs to tune (with -m, a sweep: each of its runs is tuned on its own).")] = None,
    over: Annotated[Optional[list[str]], typer.Option("--over", help="A tuned key and its grid, KEY=VALUES in sweep grammar (p=0.01,0.05  'optim.lr=range(...)'), for every method; REG:KEY=VALUES for one regularizer's runs only (dropout:p=0.01,0.1  l2:weight_decay=1e-5,1e-4; with --budget, a range l2:weight_decay=1e-6..1e-2); repeat for more keys.")] = None,
    budget: Annotated[Optional[int], typer.Option("--budget", help="Grid points per method: each regularizer's declared strength knob(s) spread evenly over its default range (log-spaced for scales), so every method gets N; every-method --over keys count towards it.")] = None,
    metric: Annotated[str, typer.Option("--metric", help="Select on this metric of the validation rows: test_mse, test_rmse, test_mc_mse, test_mc_rmse or test_ll (val_ll is accepted).")] = "test_mse",
    better: Annotated[Optional[str], typer.Option("--better", help="higher or lower (default: by the metric's name; *_ll is higher).")] = None,
    multirun: Annotated[bool, _multirun("Expand sweep overrides: every run of the sweep is tuned separately.")] = False,
    resume: Annotated[Optional[Path], _resume("Finish the tuning a folder records (OUT/tune.yaml): trains only what is missing.")] = None,
    allow_mixed_platforms: Annotated[bool, _allow_mixed_platforms("Add runs to folders whose finished runs were computed on another platform.")] = False,
    allow_failures: Annotated[bool, _allow_failures("Exit 0 even when a group could not be tuned or a final run failed.")] = False,
    quiet: Quiet = False,
    config_dir: ConfigDir = None,
) -> None:
    """Tune keys on a validation hold-out inside each split, retrain the choice on the full training set, test it.

    Phase 1 (OUT/search) trains every grid point with data.holdout=validation: the first 80% of
    each split's training rows, scored on the last 20%. Per run of the base sweep (data set,
    split, seed, regularizer, every other value) the best grid point by --metric is chosen, ties
    going to the first in grid order. Phase 2 (OUT/final) retrains each choice on the full
    training rows and tests it. OUT/tuned.csv lists the values chosen per split.
    """
    with _user_errors():
        _config_dirs(config_dir)
    from dropbench import results
    from dropbench import tuning as tune_mod

    made: Optional[Path] = None  # a default folder made here, removed again if this fails before writing into it
    try:
        with _training_errors(lambda e: f"dropbench tune --resume {shlex.quote(str(p.out))}"):
            p, made = tune_mod.plan_request(overrides or [], over or [], metric, better, multirun, resume, budget)
            console = _console(quiet)

            def progress(phase: str) -> Any:
                if not quiet:
                    console.print(f"{phase}: " + ("the grid on the validation hold-out" if phase == "search" else "the chosen configs on the full training rows"))
                return _progress(console, quiet)

            t = tune_mod.execute(p, progress, allow_mixed_platforms, record=resume is None)
    finally:
        if made is not None:
            results.remove_if_empty(made)
    _report_tune(t, console, allow_failures)


def _report_tune(t: Any, console: "Console", allow_failures: bool) -> None:
    from rich.table import Table

    from dropbench import tune_edges, tune_summary
    from dropbench import tuning as tune_mod

    s = t.search
    left = sum(c.n_failed for c in t.choices)
    console.print(f"search: {len(s.rows)} run(s) in {s.out} ({s.trained} trained, {s.skipped} already finished)"
                  + (f"; {left} grid point(s) failed or scored no finite {t.plan.metric} and were left out of the selection" if left else ""),
                  soft_wrap=True)
    table = Table(title=f"chosen by validation {t.plan.metric} ({'higher' if t.plan.higher else 'lower'} is better; ties: first in grid order)")
    summary = tune_summary.chosen_summary(t)
    for k in (summary[0] if summary else {"chosen": ""}):
        table.add_column(k, justify="right" if k == "failed" else "left")
    for r in summary:
        table.add_row(*r.values())
    console.print(table)
    for line in tune_edges.edge_warnings(t):
        typer.echo(f"dropbench: warning: {line}", err=True)
    if t.final is not None:
        ok = [r for r in t.final.rows if r["status"] == "ok"]
        if len(t.final.rows) > 1 and ok:
            from dropbench.analysis.metrics import resolve_metric
            from dropbench.analysis.pairing import default_reference
            from dropbench.analysis.summary import summarize
            from dropbench.render.long import summary_table

            # Grouped by the swept keys, seeds and splits pooled: the tuned values differ by split.
            keys = tune_summary.report_keys(t)
            ref = default_reference(t.final.rows, keys)
            m = resolve_metric(t.final.rows, t.plan.metric)
            console.print(summary_table(summarize(t.final.rows, keys, ref, m), keys, reference=ref))
        console.print(f"final: {len(t.final.rows)} run(s) in {t.final.out} ({t.final.trained} trained, {t.final.skipped} already finished)",
                      soft_wrap=True)
    console.print(f"the literature's table: {tune_summary.report_command(t)}", soft_wrap=True)
    typer.echo(f"tuned: {t.out / tune_mod.TUNED_CSV}")
    typer.echo(f"results: {t.out}")
    if (problems := tune_mod.problems(t)) is not None:
        _failures(problems, console, allow_failures)


bench_app = typer.Typer(no_args_is_help=True, help="The literature's protocols as one command each: a sweep or tuning per data set, resumable, then the final table.")
app.add_typer(bench_app, name="bench")


def _bench(name: str, overrides: Optional[list[str]], datasets: Optional[str], splits: int, epochs: Optional[int], out: Optional[Path],
           fmt: str, allow_mixed_platforms: bool, allow_failures: bool, quiet: bool) -> None:
    from dropbench import bench as bench_mod
    from dropbench.report import render_report

    protocol = bench_mod.PROTOCOLS[name]
    folder = out or Path("results") / name.replace("-", "")
    console = _console(quiet)
    with _training_errors(lambda e: "the same dropbench bench command again"):
        if fmt not in ("table", "markdown"):
            raise UserError(f"unknown --format {fmt!r}: choose table or markdown")
        plan = bench_mod.steps(protocol, folder, _split_keys(datasets), splits, epochs, overrides or [])
        if not quiet:
            for step in plan:  # what each data set runs, as one command a user could type
                typer.echo(f"dropbench: $ {step.command(protocol)}", err=True)
            note = bench_mod.kernels_note()
            if note:
                typer.echo(f"dropbench: {note}", err=True)

        def progress(phase: str) -> Any:
            if not quiet:
                console.print(f"{phase}: " + {"search": "the grid on the validation hold-out",
                                                "final": "the chosen configs on the full training rows"}.get(phase.rsplit(" ", 1)[-1], "training"))
            return _progress(console, quiet)

        def done(ds: str, seconds: float, trained: int, skipped: int) -> None:
            typer.echo(f"dropbench: {ds}: {seconds:.1f} s ({trained} run(s) trained, {skipped} already finished)", err=True)

        outcome = bench_mod.execute(protocol, plan, progress, done, allow_mixed_platforms=allow_mixed_platforms)
    with _user_errors():
        reports = bench_mod.final_reports(outcome)
    for rep in reports if not quiet else []:
        rendered = render_report(rep, fmt)
        if isinstance(rendered, str):
            typer.echo(rendered)
        else:
            console.print(rendered)
    typer.echo(bench_mod.walls_line(outcome.walls))
    typer.echo(f"results: {folder}")
    if outcome.failed:
        _failures("; ".join(outcome.failed), console, allow_failures)


_BENCH_OVERRIDES = typer.Argument(help="Overrides for every run (eval.mc_samples=1000 model.hidden=100 ...).")
_BENCH_DATASETS = typer.Option("--datasets", help="Comma separated (default: all eight).")
_BENCH_SPLITS = typer.Option("--splits", help="The first N of the 20 splits.")
_BENCH_EPOCHS = typer.Option("--epochs", help="Epochs per run (default: the protocol's); the protocol evaluates once, at the end.")
_BENCH_FORMAT = typer.Option("--format", "-f", help="table or markdown.")


@bench_app.command("uci-2016", epilog="Example:  dropbench bench uci-2016 --datasets yacht,energy --splits 5 --out results/uci2016")
def bench_uci_2016(
    overrides: Annotated[Optional[list[str]], _BENCH_OVERRIDES] = None,
    datasets: Annotated[Optional[str], _BENCH_DATASETS] = None,
    splits: Annotated[int, _BENCH_SPLITS] = 20,
    epochs: Annotated[Optional[int], _BENCH_EPOCHS] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="One folder per data set under it (default results/uci2016).")] = None,
    fmt: Annotated[str, _BENCH_FORMAT] = "table",
    allow_mixed_platforms: Annotated[bool, _allow_mixed_platforms("Add runs to folders whose finished runs were computed on another platform.")] = False,
    allow_failures: Annotated[bool, _allow_failures("Exit 0 even when some runs failed.")] = False,
    quiet: Quiet = False,
) -> None:
    """Gal & Ghahramani 2016's UCI protocol: their fixed p, tau and length-scale per data set, one sweep per data set (resumable), then the table (beside theirs where report can compare)."""
    _bench("uci-2016", overrides, datasets, splits, epochs, out, fmt, allow_mixed_platforms, allow_failures, quiet)


@bench_app.command("uci-2018", epilog="Example:  dropbench bench uci-2018 --datasets yacht --splits 3 --epochs 400 eval.mc_samples=1000")
def bench_uci_2018(
    overrides: Annotated[Optional[list[str]], _BENCH_OVERRIDES] = None,
    datasets: Annotated[Optional[str], _BENCH_DATASETS] = None,
    splits: Annotated[int, _BENCH_SPLITS] = 20,
    epochs: Annotated[Optional[int], _BENCH_EPOCHS] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="One tuning folder per data set under it (default results/uci2018).")] = None,
    fmt: Annotated[str, _BENCH_FORMAT] = "table",
    allow_mixed_platforms: Annotated[bool, _allow_mixed_platforms("Add runs to folders whose finished runs were computed on another platform.")] = False,
    allow_failures: Annotated[bool, _allow_failures("Exit 0 even when some runs or groups failed.")] = False,
    quiet: Quiet = False,
) -> None:
    """The 2018 re-run of the UCI protocol: p and tau tuned on each split over the data set's published grid (one dropbench tune per data set, resumable), then the table."""
    _bench("uci-2018", overrides, datasets, splits, epochs, out, fmt, allow_mixed_platforms, allow_failures, quiet)


@app.command()
def groups(config_dir_: ConfigDir = None) -> None:
    """List every config group and its options (the default is starred; a plug-in's origin follows
    it in brackets, the others are built-in), then the experiments."""
    with _user_errors():
        _config_dirs(config_dir_)
        from dropbench.config import EXPERIMENT, config_dir, default_options, list_options, plugin_origins

        defaults = default_options()
        options, origins = list_options(), plugin_origins()
    for g, opts in options.items():
        mark = lambda o: o + ("*" if o == defaults.get(g) else "") + (f" [{origins[g][o]}]" if o in origins.get(g, {}) else "")  # noqa: E731
        typer.echo(f"{g}: " + ", ".join(mark(o) for o in opts))
    experiments = sorted((config_dir() / EXPERIMENT).glob("*.yaml"))
    if experiments:
        typer.echo(f"{EXPERIMENT} (whole protocols; add with +{EXPERIMENT}=NAME, none by default): " + ", ".join(f.stem for f in experiments))
        width = max(len(f.stem) for f in experiments)
        for f in experiments:
            about = _first_comment(f)
            typer.echo(f"  {f.stem:<{width}}  {about}".rstrip())
    typer.echo(f"Select with GROUP=OPTION (combine regularizers with reg=[dropout,l2]), an experiment with +{EXPERIMENT}=NAME; "
               "see keys with: dropbench run --cfg")
    if any(origins.values()):
        typer.echo("Options marked [config dir DIR] or [package NAME] are plug-ins from there (docs/extending.md); the others are built-in.")


def _first_comment(path: Path) -> str:
    """An option's description: its YAML's first comment line (Hydra's `# @package` directive
    aside), up to the first ": " or ". " (the rest of the sentence goes on in the file)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    for line in lines:
        text = line.strip()
        if not text.startswith("#"):
            continue
        text = text.lstrip("#").strip()
        if not text or text.startswith("@package"):
            continue
        for stop in (": ", ". "):
            text = text.split(stop, 1)[0]
        return text.rstrip(":.")
    return ""


def _click_errors() -> tuple[type[Exception], type[Exception]]:
    """ClickException and UsageError: typer vendors click since 0.22; older ones use click's."""
    try:
        from typer._click import exceptions as ex  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - typer before 0.22
        from click import exceptions as ex
    return ex.ClickException, ex.UsageError


_WARNED: set[str] = set()


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None) -> None:
    """A warning said in one line, as errors are (Python's own format adds the source line), and
    once per invocation: a sweep validates each run's config, and planning and training both do."""
    text = " ".join(str(message).split())
    if text not in _WARNED:
        _WARNED.add(text)
        typer.echo(f"dropbench: warning: {text}", err=True)


def main() -> None:
    import warnings

    warnings.showwarning = _warning_line
    click_error, usage_error = _click_errors()
    try:
        # Not standalone: click's usage errors come back here, to be said in one line rather
        # than in a usage box.
        code = app(standalone_mode=False, prog_name="dropbench")
    except usage_error as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # plain `dropbench`: the help is the answer
            typer.echo(e.format_message())  # type: ignore[attr-defined]
            sys.exit(0)
        ctx = getattr(e, "ctx", None)
        where = ctx.command_path if ctx is not None else "dropbench"
        typer.echo(f"dropbench: error: {' '.join(e.format_message().split())} (see: {where} --help)", err=True)  # type: ignore[attr-defined]
        sys.exit(2)
    except click_error as e:
        typer.echo(f"dropbench: error: {' '.join(e.format_message().split())}", err=True)  # type: ignore[attr-defined]
        sys.exit(getattr(e, "exit_code", 1))
    except typer.Abort:
        typer.echo("dropbench: error: interrupted", err=True)
        sys.exit(130)
    except UserError as e:  # pragma: no cover - commands catch their own
        typer.echo(f"dropbench: error: {e}", err=True)
        sys.exit(2)
    except Exception as e:  # a bug of ours: one line, the traceback on request
        if os.environ.get("DROPBENCH_DEBUG"):
            raise
        typer.echo(f"dropbench: internal error: {type(e).__name__}: {e} (set DROPBENCH_DEBUG=1 for the traceback)", err=True)
        sys.exit(3)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
