"""The `dropbench` command: a thin typer layer over runner, config and reporting.

Heavy libraries (torch, matplotlib, Hydra) are imported inside commands, so --help is instant.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterator, Optional

import typer

from dropbench.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from dropbench.runner import RunOutcome

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Overfitting experiments: which regularizer generalises best, and how sure are we?",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"dropbench: error: {msg}", err=True)
    raise typer.Exit(code)


@app.command(
    context_settings={"allow_extra_args": False, "ignore_unknown_options": False},
    epilog="Examples:  dropbench run reg=dropout p=0.5   |   dropbench run -m reg=none,l1,l2,dropout,droppath seed='range(10)'",
)
def run(
    overrides: Annotated[Optional[list[str]], typer.Argument(help="Hydra overrides: key=value, group=option; with -m, sweeps (a,b  range(10)  glob(*)).")] = None,
    multirun: Annotated[bool, typer.Option("-m", "--multirun", help="Expand sweep overrides into one run each.")] = False,
    cfg: Annotated[bool, typer.Option("--cfg", help="Print the resolved config of each run and exit without running.")] = False,
    from_run: Annotated[Optional[Path], typer.Option("--from", help="Re-run a stored run: results/DIR/runs/<run_id> (overrides are not allowed).")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Finish the sweep stored in a results folder: runs only what is missing.")] = None,
    allow_failures: Annotated[bool, typer.Option("--allow-failures", help="Exit 0 even when some runs failed (they are still listed).")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only the results path and errors.")] = False,
) -> None:
    """Train one run, or a sweep with -m, and write runs.csv / curves.csv to `out`."""
    from rich.console import Console

    from dropbench import runner

    overrides = overrides or []
    try:
        if (from_run is not None or resume is not None) and (overrides or multirun):
            raise UserError("--from and --resume re-run what a results folder stores; drop the overrides and -m")
        if from_run is not None:
            cfgs, launcher, command = [runner.load_saved(from_run)], None, None
        elif resume is not None:
            cfgs, launcher, command = runner.plan_resume(resume)
        else:
            cfgs, launcher = runner.plan(overrides, multirun)
            command = {"overrides": list(overrides), "multirun": multirun}
        if cfg:
            from dropbench.results import config_yaml

            for i, c in enumerate(cfgs):
                if len(cfgs) > 1:
                    typer.echo(f"# run {i + 1}/{len(cfgs)}: {c.run_id}")
                typer.echo(config_yaml(c), nl=False)
            return
        console = Console(quiet=quiet)
        with _progress(console, quiet) as (on_start, on_result):
            outcome = runner.execute(cfgs, launcher, on_start=on_start, on_result=on_result, command=command)
    except UserError as e:
        _fail(str(e))
        return
    except runner.Interrupted as e:
        _fail(f"{e}; resume with: dropbench run --resume {e.out}", 130)
        return
    except KeyboardInterrupt:
        _fail("interrupted before training started; nothing was written", 130)
        return
    _report_run(outcome, console, allow_failures)


def _report_run(outcome: "RunOutcome", console: "Console", allow_failures: bool) -> None:
    from dropbench.reporting import print_runs

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
    if outcome.failed:
        first = outcome.failed[0]
        msg = f"{len(outcome.failed)} of {len(outcome.rows)} run(s) failed; first: {first['run_id']}: {first['reason']}"
        if allow_failures:
            console.print(f"[yellow]{msg}[/yellow]")
        else:
            _fail(msg + " (--allow-failures to exit 0)", 1)


def _print_summary(rows: list[dict[str, Any]], console: "Console") -> None:
    """Grouped by every swept key except the seed, with the paired difference to reg=none."""
    import pandas as pd

    from dropbench.reporting import summary_table
    from dropbench.stats import group_keys, summarize

    df = pd.DataFrame(rows)
    keys = group_keys(df)
    ref = {"reg": "none"} if "reg" in keys and (df["reg"] == "none").any() else None
    console.print(summary_table(summarize(df, keys, ref), keys))


@contextmanager
def _progress(console: "Console", quiet: bool) -> Iterator[tuple[Callable[[int], None], Callable[[str, str], None]]]:
    """A rich progress bar on a terminal; nothing when piped or with --quiet."""
    if quiet or not console.is_terminal:
        yield (lambda n: None), (lambda run_id, status: None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
        TimeRemainingColumn(), console=console, transient=True,
    ) as bar:
        task = bar.add_task("runs", total=None)
        yield (lambda n: bar.update(task, total=n)), (lambda run_id, status: bar.advance(task))


@app.command()
def groups() -> None:
    """List every config group and its options (the default is starred)."""
    from dropbench.config import default_options, list_options

    defaults = default_options()
    for g, opts in list_options().items():
        typer.echo(f"{g}: " + ", ".join(o + ("*" if o == defaults.get(g) else "") for o in opts))
    typer.echo("Select with GROUP=OPTION (combine regularizers with reg=[dropout,l2]); see keys with: dropbench run --cfg")


def main() -> None:
    import os

    try:
        app()
    except UserError as e:  # pragma: no cover - commands catch their own
        typer.echo(f"dropbench: error: {e}", err=True)
        sys.exit(2)
    except Exception as e:  # a bug of ours: one line, the traceback on request
        if os.environ.get("DROPBENCH_DEBUG"):
            raise
        typer.echo(f"dropbench: internal error: {type(e).__name__}: {e} (set DROPBENCH_DEBUG=1 for the traceback)", err=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
