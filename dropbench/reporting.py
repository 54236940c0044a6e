"""Tables of runs and of sweep summaries: rich for the terminal, markdown, CSV and JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

from dropbench.errors import AllRunsFailed, UserError
from dropbench.stats import (
    DATA_SET_KEYS, DEFAULT_METRIC, FILE_KEY, FILE_LABEL, MSE, REPETITION_KEYS, file_labels, Metric, resolve_metric, at_epoch, by_keys, columns_of, config_columns, default_reference, group_keys, group_label, key_str, members, platform_counts,
    data_set, platform_note, pooled_configs, pooled_note, sort_key, summarize,
)


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def _cell(v: Any) -> str:
    """A key's value; empty where the column does not apply to the group (NaN in the CSV)."""
    return key_str(v)


def _config_label(row: dict[str, Any], varying: Sequence[str], files: dict[str, str] | None = None) -> str:
    """k=v for each key the run has a value of; a csv file's sha256 as data.file=NAME (files)."""
    def one(k: str, v: Any) -> str:
        return f"{FILE_LABEL}={files[v]}" if k == FILE_KEY and files and v in files else f"{k}={_fmt(v)}"
    return " ".join(one(k, v) for k in varying if (v := row.get(k)) is not None and v != "")


def shown_keys(summary: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[str]:
    """The key columns a table shows: data.file (stats.file_labels) in place of data.sha256,
    where the summary names the files; the grouping stays by sha256."""
    named = any(FILE_LABEL in r for r in summary)
    return [FILE_LABEL if k == FILE_KEY and named else k for k in keys]


def varying_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """What distinguishes the runs: the swept keys (a column that varies only along with an
    earlier one, such as reg.dropout.p with p, is left out), then the seed if it varies."""
    keys = group_keys(rows)
    return keys + (["seed"] if len({r.get("seed") for r in rows}) > 1 else [])


SINGLE_KEYS = ("data", "reg", "p", "seed")  # what names a run when its defaults cannot be composed
CHOICES = ("data", "model", "reg", "optim")
DROPPATH_NOTE = "reg=droppath runs use residual blocks (it turns model.residual on: DropPath drops residual branches)"


def droppath_note(regs: Iterable[Any]) -> str | None:
    """The caption that makes DropPath's switch to residual blocks visible."""
    return DROPPATH_NOTE if any("droppath" in str(r).split("+") for r in regs) else None


def _choice_overrides(row: dict[str, Any]) -> tuple[str, ...]:
    """The group choices of a row as overrides (reg=dropout+l2 as reg=[dropout,l2]); a csv
    data set also needs its path and target to compose."""
    out = []
    for g in CHOICES:
        v = key_str(row.get(g))
        if v:
            out.append(f"reg=[{v.replace('+', ',')}]" if g == "reg" and "+" in v else f"{g}={v}")
    out += [f"{c}={key_str(row.get(c))}" for c in _required(row) if key_str(row.get(c))]
    return tuple(out)


# Data keys without a default (??? in conf/data/): the defaults compose only with them given,
# and they are always among the overrides that made a run.
REQUIRED_DATA_KEYS = {"csv": ("data.path", "data.target"), "uci": ("data.dataset",)}


def _required(row: dict[str, Any]) -> tuple[str, ...]:
    return REQUIRED_DATA_KEYS.get(key_str(row.get("data")), ())


@lru_cache(maxsize=64)
def _defaults(overrides: tuple[str, ...]) -> dict[str, str] | None:
    """Every config value of the group choices' defaults, as runs.csv spells it (None where they
    cannot be composed, e.g. a csv data set whose file is gone). Imports Hydra: never on the
    path of `report` or `check`."""
    from dropbench.config import default_options, load

    try:
        cfg = load(list(overrides))
    except UserError:
        return None
    return {**default_options(), **{k: key_str(v) for k, v in cfg.flat().items()}}


def non_default(row: dict[str, Any]) -> dict[str, str] | None:
    """The config values of a run that differ from the defaults of its group choices, plus the
    non-default group choices (None where the defaults cannot be composed). A value that only
    mirrors p (reg.dropout.p) is left out."""
    defaults = _defaults(_choice_overrides(row))
    if defaults is None:
        return None
    out = {}
    required = _required(row)
    for c in config_columns([row]):
        v = key_str(row.get(c))
        if c not in required and v == defaults.get(c, "") or (c.startswith("reg.") and c.endswith(".p") and v == key_str(row.get("p"))):
            continue
        out[c] = v
    return out


def common_non_default(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The non-default config values every run shares (empty where any run's defaults cannot
    be composed): what a title or caption must add for the runs to be reproducible."""
    diffs = [non_default(r) for r in rows]
    if not diffs or any(d is None for d in diffs):
        return {}
    first = diffs[0] or {}
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in diffs[1:] if d is not None)}


def settings_label(values: dict[str, str]) -> str:
    return " ".join(f"{k}={v if v != '' else 'null'}" for k, v in values.items())


def runs_table(rows: Sequence[dict[str, Any]], title: str = "dropbench runs") -> Table:
    """One line per run: what was run, final train/test MSE, the gap and the best epoch.

    A single run is named by its data set and regularizer, every config value that differs
    from the defaults of its group choices (the overrides that made it) and its seed. Several
    runs are named by what distinguishes them; the caption gives the non-default values they
    share.
    """
    captions = []
    if len(rows) == 1:
        r = rows[0]
        diff = non_default(r)
        if diff is None:
            labels = [_config_label(r, [k for k in SINGLE_KEYS if r.get(k) not in (None, "")])]
        else:
            named = {k: key_str(r.get(k)) for k in ("data", "reg") if key_str(r.get(k))}
            if sha := key_str(r.get(FILE_KEY)):  # a csv: its file, not its hash
                named[FILE_LABEL] = file_labels([r])[sha]
                diff = {k: v for k, v in diff.items() if k != FILE_KEY}
            labels = [" ".join(filter(None, [settings_label({**named, **diff}), f"seed={r['seed']}" if "seed" in r else ""]))]
    else:
        varying = varying_keys(rows) or [k for k in SINGLE_KEYS if any(r.get(k) not in (None, "") for r in rows)]
        files = file_labels(rows) if FILE_KEY in varying else {}
        labels = [_config_label(r, varying, files) for r in rows]
        common = {k: v for k, v in common_non_default(rows).items() if k not in varying}
        if common:
            captions.append("every run: " + settings_label(common))
    note = droppath_note(r.get("reg") for r in rows)
    t = Table(title=title, header_style="bold", caption="\n".join([*captions, *([note] if note else [])]) or None)
    t.add_column("run_id", style="dim")
    t.add_column("config", ratio=1)
    # The best test MSE over the curve is chosen on the test set: an oracle's number, said so.
    stops = any(r.get("kept_epoch") not in (None, "") for r in rows)  # early stopping: where each run is reported
    for c in ("train MSE", "test MSE", "gap", *(["kept (stopped)"] if stops else []), "best test MSE (optimistic)", "at epoch"):
        t.add_column(c, justify="right")
    t.add_column("status")
    for r, label in zip(rows, labels):
        gap = r["final_test_mse"] - r["final_train_mse"]
        status = r["status"] if r["status"] == "ok" else f"[red]{r['status']}[/red]"
        kept = []
        if stops:
            k, st = (key_str(r.get(c)) for c in ("kept_epoch", "stopped_epoch"))
            kept = [f"{k} ({st})" if st else k]
        t.add_row(
            r["run_id"],
            label,
            _fmt(r["final_train_mse"]),
            _fmt(r["final_test_mse"]),
            _fmt(gap),
            *kept,
            _fmt(r["best_test_mse"]),
            str(r["best_epoch"]),
            status,
        )
    return t


def print_runs(rows: Sequence[dict[str, Any]], console: Console | None = None) -> None:
    (console or Console()).print(runs_table(rows))


SUMMARY_COLUMNS = ("seeds", "train MSE (mean ± std)", "test MSE (mean ± 95% CI)", "gap", "rank")
CAPTION = "test: mean ± 95% t-interval over seeds"
PAIRED_CAPTION = "; paired: per-seed difference to the reference group, 95% t-interval"


RANK_CAPTION = "; ranks within each data set"
INTERVALS = ("ci95", "se", "std")
# interval -> (header text, caption text, summary field suffix)
INTERVAL_TEXT = {
    "ci95": ("95% CI", "95% t-interval", "ci"),
    "se": ("SE", "standard error (SD with ddof=0 / √n, as the UCI literature's tables)", "se"),
    "std": ("std", "sample standard deviation", "std"),
}
LAYOUTS = ("long", "wide")


def check_interval(interval: str) -> str:
    if interval not in INTERVAL_TEXT:
        raise UserError(f"unknown --interval {interval!r}: choose from {', '.join(INTERVALS)}")
    return interval


def _repeats(summary: Sequence[dict[str, Any]]) -> list[str]:
    """The repetition keys any group's runs span (seed, data.split, ...)."""
    found = {k for r in summary for k in str(r.get("repeats") or "").split("+") if k}
    return [k for k in REPETITION_KEYS if k in found] or ["seed"]


def _over(summary: Sequence[dict[str, Any]]) -> tuple[str, str, str]:
    """(the n column's header, "over ..." for the caption, "per-... difference") from what the
    groups repeat over: seeds, splits, or runs of both."""
    rep = _repeats(summary)
    if rep == ["seed"]:
        return "seeds", "seeds", "per-seed"
    if rep == ["data.split"]:
        return "splits", "splits", "per-split"
    if rep == ["data.seed"]:
        return "data seeds", "data seeds", "per-data-seed"
    both = " × ".join(rep)
    return "runs", f"runs ({both})", f"per-run ({both})"


def _metric(summary: Sequence[dict[str, Any]]) -> Metric:
    name = next((r["metric"] for r in summary if r.get("metric")), DEFAULT_METRIC)
    higher = next((bool(r["higher_is_better"]) for r in summary if "higher_is_better" in r), False)
    has_train = any(not (isinstance(r.get("train_mean"), float) and math.isnan(r["train_mean"])) for r in summary) or not summary
    return Metric(name, f"final_{name}", "train" if has_train else None, higher)


def summary_columns(summary: Sequence[dict[str, Any]], interval: str = "ci95") -> list[str]:
    m = _metric(summary)
    n = _over(summary)[0]
    train = [f"{m.train_label} (mean ± std)"] if m.train else []
    return [n, *train, f"{m.label} (mean ± {INTERVAL_TEXT[interval][0]})", *(["gap"] if m.train else []), "rank"]


def _paired_header(reference: dict[str, str] | None, interval: str) -> str:
    return f"vs {_ref_label(reference)} (paired, {INTERVAL_TEXT[interval][0]})"


def _captions(summary: Sequence[dict[str, Any]], paired: bool, notes: Sequence[str] = (), interval: str = "ci95") -> list[str]:
    """The summary's caption lines: what the statistics are, DropPath's residual blocks, and
    notes (pooled configs, mixed platforms)."""
    note = droppath_note(r.get("reg") for r in summary)
    keys = [k for k in DATA_SET_KEYS if any(k in r for r in summary)]
    ranks = RANK_CAPTION if len({data_set(r, keys) for r in summary}) > 1 else ""
    m = _metric(summary)
    _, over, per = _over(summary)
    what = INTERVAL_TEXT[interval][1]
    first = f"{'test' if m.name == DEFAULT_METRIC else m.label}: mean ± {what} over {over}"
    if paired:
        first += f"; paired: {per} difference to the reference group, {what}"
    if m.higher:
        first += "; higher is better (rank 1: the highest mean)"
    return [first + ranks] + ([note] if note else []) + list(notes)


def _note_markup(note: str) -> str:
    """A caption line as rich markup: escaped (values may hold brackets), warnings in yellow."""
    from rich.markup import escape

    return f"[bold yellow]{escape(note)}[/bold yellow]" if note.startswith("WARNING") else escape(note)


def _has_paired(summary: Sequence[dict[str, Any]]) -> bool:
    return any(r.get("n_pairs") for r in summary)


def _ref_label(reference: dict[str, str] | None) -> str:
    return group_label(reference or {"reg": "none"})


def _pm(mean: float, spread: float) -> str:
    return f"{_fmt(mean)} ± {_fmt(spread, 2)}"


def summary_cells(r: dict[str, Any], keys: Sequence[str], paired: bool, markup: bool = True, interval: str = "ci95",
                  train: bool = True) -> list[str]:
    """A summary row as display strings (rich markup optional, for markdown)."""
    failed = f" ({r['failed']} failed)" if r["failed"] else ""
    if markup and failed:
        failed = f" [red]{failed.strip()}[/red]"
    field_ = INTERVAL_TEXT[interval][2]
    cells = [_cell(r[k]) for k in keys] + [f"{r['n_seeds']}{failed}"]
    if train:
        cells.append(_pm(r["train_mean"], r["train_std"]))
    cells.append(_pm(r["test_mean"], r[f"test_{field_}"]))
    if train:
        cells.append(_fmt(r["gap"]))
    cells.append("-" if r["rank"] is None else str(r["rank"]))
    if paired:
        cells.append(f"{r['paired_diff']:+.4g} ± {_fmt(r[f'paired_{field_}'], 2)}" if r.get("n_pairs") else "")
    return cells


def summary_table(summary: Sequence[dict[str, Any]], keys: Sequence[str], title: str = "dropbench sweep summary",
                  reference: dict[str, str] | None = None, notes: Sequence[str] = (), interval: str = "ci95") -> Table:
    """One line per group (see stats.summarize); the best group (rank 1) of each data set is
    highlighted. A note that starts with WARNING is shown in bold yellow."""
    paired = _has_paired(summary)
    lines = [_note_markup(c) for c in _captions(summary, paired, notes, interval)]
    t = Table(title=title, header_style="bold", caption="\n".join(lines))
    keys = shown_keys(summary, keys)
    for k in keys:
        t.add_column(k)
    for c in summary_columns(summary, interval):
        t.add_column(c, justify="right")
    if paired:
        t.add_column(_paired_header(reference, interval), justify="right")
    train = bool(_metric(summary).train)
    for r in summary:
        t.add_row(*summary_cells(r, keys, paired, interval=interval, train=train), style="bold green" if r["rank"] == 1 else None)
    return t


def _esc(c: str) -> str:
    return c.replace("|", "\\|")


def _markdown(head: Sequence[str], rows: Sequence[Sequence[str]], n_left: int) -> list[str]:
    lines = ["| " + " | ".join(map(_esc, head)) + " |", "|" + "|".join("---" if i < n_left else "---:" for i in range(len(head))) + "|"]
    return lines + ["| " + " | ".join(map(_esc, r)) + " |" for r in rows]


def summary_markdown(summary: Sequence[dict[str, Any]], keys: Sequence[str], reference: dict[str, str] | None = None,
                     notes: Sequence[str] = (), interval: str = "ci95") -> str:
    """A GitHub-flavoured markdown table; the best group in bold."""
    paired = _has_paired(summary)
    keys = shown_keys(summary, keys)
    head = [*keys, *summary_columns(summary, interval)] + ([_paired_header(reference, interval)] if paired else [])
    train = bool(_metric(summary).train)
    rows = []
    for r in summary:
        cells = summary_cells(r, keys, paired, markup=False, interval=interval, train=train)
        rows.append([f"**{c}**" if c else c for c in cells] if r["rank"] == 1 else cells)
    return "\n".join(_markdown(head, rows, len(keys))) + "\n\n" + "\n\n".join(_captions(summary, paired, notes, interval)) + "\n"


def summary_csv(summary: Sequence[dict[str, Any]]) -> str:
    """Every statistic at full precision, one row per group (for scripts)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns_of(summary), lineterminator="\n")
    w.writeheader()
    for r in summary:
        w.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def summary_json(summary: Sequence[dict[str, Any]]) -> str:
    """A JSON list of groups; undefined statistics (one seed, no pairs) are null."""
    import json

    def typed(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, str):  # key values are text; give numbers and booleans their JSON types
            if v in ("", "True", "False"):
                return None if v == "" else v == "True"
            for kind in (int, float):
                try:
                    x = kind(v)
                except ValueError:
                    continue
                return x if math.isfinite(x) else v
        return v

    clean = [{k: typed(v) for k, v in r.items()} for r in summary]
    return json.dumps(clean, indent=2) + "\n"


# --- the wide layout: the literature's table -------------------------------------------------

@dataclass
class Wide:
    """Rows data sets, columns the other groups (regularizers): what papers print."""

    row_head: str
    rows: list[str]  # data set labels
    cols: list[str]  # group labels
    cells: dict[tuple[str, str], dict[str, Any]]  # (row, col) -> the summary row


def wide(summary: Sequence[dict[str, Any]], keys: Sequence[str], reference: dict[str, str] | None = None) -> Wide:
    """Pivot the summary: a row per data set (DATA_SET_KEYS among the keys), a column per
    value of the other keys (the reference group first, then in key order)."""
    data_keys = [k for k in keys if k in DATA_SET_KEYS]
    other = [k for k in keys if k not in DATA_SET_KEYS]
    row_of = lambda r: _data_set_label({k: _cell(r.get(k)) for k in [*data_keys, FILE_LABEL] if k in r}) or "all runs"  # noqa: E731

    def col_of(r: dict[str, Any]) -> str:
        if len(other) == 1:
            return _cell(r[other[0]]) or f"{other[0]}=(unset)"
        return group_label({k: _cell(r[k]) for k in other})

    is_ref = lambda r: bool(reference) and all(_cell(r.get(k)) == v for k, v in (reference or {}).items())  # noqa: E731
    ordered = sorted(summary, key=lambda r: (not is_ref(r), [sort_key(r[k]) for k in other]))
    cols = list(dict.fromkeys(col_of(r) for r in ordered))
    rows = list(dict.fromkeys(row_of(r) for r in summary))  # the summary's data set order
    return Wide("data set", rows, cols, {(row_of(r), col_of(r)): r for r in summary})


def _wide_keys(rows: Sequence[dict[str, Any]], keys: list[str]) -> tuple[list[str], list[str]]:
    """The wide table's keys: the data set's, then the others, less those that only follow the
    data set (the 2016 UCI protocol's per-data-set p and tau), which would give each data set a
    column of its own; `reg` names the columns even where it does not vary. Also those left out."""
    data_keys = [k for k in keys if k in DATA_SET_KEYS]
    by_set: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        by_set.setdefault(tuple(key_str(r.get(k)) for k in data_keys), []).append(r)
    follows = [k for k in keys if k not in DATA_SET_KEYS and len(by_set) > 1
               and all(len({key_str(r.get(k)) for r in rs}) == 1 for rs in by_set.values())
               and len({key_str(r.get(k)) for r in rows}) > 1]
    kept = [k for k in keys if k not in follows]
    if "reg" not in kept and any(key_str(r.get("reg")) for r in rows):
        kept.append("reg")
    return kept, follows


def _data_set_label(values: dict[str, str]) -> str:
    """yacht for data=uci data.dataset=yacht, the file's name for a csv (data.file where the
    summary names it, stats.file_labels: the basename, or more where two files share it): what
    a paper calls the data set (the data= choice only where it is the whole name)."""
    named = values.get("data.dataset") or values.get(FILE_LABEL) or (Path(values["data.path"]).name if values.get("data.path") else "")
    parts = [named or values.get("data", "")]
    parts += [f"{k.split('.')[-1]}={v}" for k, v in values.items() if k in ("data.target", "data.features") and v]
    return " ".join(p for p in parts if p)


def _mean_ranks(w: Wide) -> list[str]:
    out = []
    for c in w.cols:
        ranks = [w.cells[(r, c)]["rank"] for r in w.rows if (r, c) in w.cells and w.cells[(r, c)]["rank"] is not None]
        out.append(f"{sum(ranks) / len(ranks):.2g}" if ranks else "")
    return out


def wide_grid(summary: Sequence[dict[str, Any]], keys: Sequence[str], reference: dict[str, str] | None, interval: str,
              bold: str = "**") -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """The main table (head, rows: mean ± interval (rank), best bold) and the paired one (head,
    rows: difference to the reference ± interval, * where its 95% t-interval excludes 0)."""
    w = wide(summary, keys, reference)
    field_ = INTERVAL_TEXT[interval][2]
    head = [w.row_head, *w.cols]
    rows = []
    for row in w.rows:
        cells = [row]
        for c in w.cols:
            r = w.cells.get((row, c))
            if r is None:
                cells.append("")
                continue
            text = _pm(r["test_mean"], r[f"test_{field_}"]) + ("" if r["rank"] is None else f" ({r['rank']})")
            cells.append(f"{bold}{text}{bold}" if r["rank"] == 1 and bold else text)
        rows.append(cells)
    if len(w.rows) > 1:
        rows.append(["mean rank", *_mean_ranks(w)])
    p_head: list[str] = []
    p_rows: list[list[str]] = []
    if _has_paired(summary):
        p_cols = [c for c in w.cols if any(w.cells.get((row, c), {}).get("n_pairs") for row in w.rows)]
        p_head = [w.row_head, *[f"{c} − {_ref_label(reference)}" for c in p_cols]]
        for row in w.rows:
            cells = [row]
            for c in p_cols:
                r = w.cells.get((row, c))
                if not r or not r.get("n_pairs"):
                    cells.append("")
                    continue
                ci = r["paired_ci"]
                sig = "*" if not math.isnan(ci) and abs(r["paired_diff"]) > ci else ""
                cells.append(f"{r['paired_diff']:+.4g} ± {_fmt(r[f'paired_{field_}'], 2)}{sig}")
            p_rows.append(cells)
    return head, rows, p_head, p_rows


def _wide_captions(summary: Sequence[dict[str, Any]], reference: dict[str, str] | None, interval: str,
                   notes: Sequence[str]) -> tuple[str, str]:
    m = _metric(summary)
    _, over, per = _over(summary)
    what = INTERVAL_TEXT[interval][1]
    best = "highest" if m.higher else "lowest"
    main = (f"{m.label}: mean ± {what} over {over}; (k): rank within the data set, bold: the best ({best} mean); "
            "mean rank: over data sets")
    paired = (f"paired: {per} difference of {m.label} to {_ref_label(reference)}, mean ± {what}; "
              "*: its 95% t-interval excludes 0")
    note = droppath_note(r.get("reg") for r in summary)
    return "\n\n".join([main, *([note] if note else []), *notes]), paired


def wide_markdown(rep: "Report") -> str:
    head, rows, p_head, p_rows = wide_grid(rep.summary, rep.keys, rep.reference, rep.interval)
    main, paired = _wide_captions(rep.summary, rep.reference, rep.interval, rep.notes)
    out = "\n".join(_markdown(head, rows, 1)) + "\n\n" + main + "\n"
    if p_head:
        out += "\n" + "\n".join(_markdown(p_head, p_rows, 1)) + "\n\n" + paired + "\n"
    return out


def wide_tables(rep: "Report") -> Any:
    from rich.console import Group

    head, rows, p_head, p_rows = wide_grid(rep.summary, rep.keys, rep.reference, rep.interval, bold="")
    main, paired = _wide_captions(rep.summary, rep.reference, rep.interval, rep.notes)
    w = wide(rep.summary, rep.keys, rep.reference)
    t = Table(title=rep.title, header_style="bold", caption="\n".join(_note_markup(c) for c in main.split("\n\n")))
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i == 0 else "right")
    for cells in rows:
        styled = [c if i == 0 or (cells[0], head[i]) not in w.cells or w.cells[(cells[0], head[i])]["rank"] != 1
                  else f"[bold green]{c}[/bold green]" for i, c in enumerate(cells)]
        t.add_row(*styled)
    if not p_head:
        return t
    pt = Table(title="paired differences", header_style="bold", caption=_note_markup(paired))
    for i, h in enumerate(p_head):
        pt.add_column(h, justify="left" if i == 0 else "right")
    for cells in p_rows:
        pt.add_row(*cells)
    return Group(t, pt)


def wide_records(rep: "Report") -> list[dict[str, Any]]:
    """One record per data set: per group its statistics, every spread at full precision."""
    w = wide(rep.summary, rep.keys, rep.reference)
    stats = ("n_seeds", "failed", "test_mean", "test_std", "test_se", "test_ci", "test_interval", "rank",
             "paired_diff", "paired_std", "paired_se", "paired_ci", "paired_interval", "n_pairs", "selected_on", "test_selected")
    out = []
    for row in w.rows:
        first = next(r for (rr, _), r in w.cells.items() if rr == row)
        rec: dict[str, Any] = {k: first[k] for k in rep.keys if k in DATA_SET_KEYS}
        if FILE_LABEL in first:
            rec[FILE_LABEL] = first[FILE_LABEL]
        rec.update(metric=_metric(rep.summary).name, interval=rep.interval)
        for c in w.cols:
            r = w.cells.get((row, c))
            if r is not None:
                for k in stats:
                    if k in r:
                        rec[f"{c} {k}"] = r[k]
        out.append(rec)
    return out


SORT_ALIASES = {"test": "test_mean", "train": "train_mean", "std": "test_std", "ci": "test_ci", "se": "test_se", "seeds": "n_seeds",
                "paired": "paired_diff"}
FORMATS = ("table", "markdown", "csv", "json")


@dataclass
class Report:
    summary: list[dict[str, Any]]
    keys: list[str]
    reference: dict[str, str] | None
    title: str
    notes: list[str] = field(default_factory=list)  # caption lines: pooled configs, mixed platforms
    interval: str = "ci95"
    layout: str = "long"


def parse_epoch(epoch: str) -> int | str:
    if epoch in ("final", "best"):
        return epoch
    try:
        n = int(epoch)
    except ValueError:
        n = -1
    if n < 0:
        raise UserError(f"invalid --epoch {epoch!r}: give final, best or an epoch number such as 100")
    return n


def test_chosen_metric_note(metric: Metric) -> str | None:
    """A WARNING where the compared metric itself was chosen on the test set (best_test_mse:
    each run's lowest test MSE over its evaluations)."""
    if not metric.test.startswith("best_test"):
        return None
    return (f"WARNING: {metric.test} is each run's best test value over its evaluations, chosen on the test set "
            "(optimistic); compare final_ metrics for honest numbers")


def selection_note(summary: Sequence[dict[str, Any]], keys: Sequence[str]) -> str | None:
    """What `--epoch best` chose each group's epochs on (stats.at_epoch); a WARNING where that
    was the test set, naming the groups when only some were."""
    from dropbench.stats import measured_on

    chosen = [s for s in summary if s.get("selected_on")]
    if not chosen:
        return None
    by = lambda cols: " and ".join(f"by {c} on {measured_on(c)}" for c in cols)  # noqa: E731
    honest = sorted({c for s in chosen if not s.get("test_selected") for c in str(s["selected_on"]).split("+")})
    tested = [s for s in chosen if s.get("test_selected")]
    if not tested:
        return f"each run's epoch chosen {by(honest)}, never on the test rows"
    cols = sorted({c for s in tested for c in str(s["selected_on"]).split("+") if c.startswith("test_")})
    what = f"WARNING: epoch chosen on the test set (optimistic): each run at its best {' and '.join(cols)}"
    if len(tested) == len(chosen):
        return what
    names = "; ".join(group_label({k: _cell(s.get(k)) for k in keys}) for s in tested)
    return f"{what} in {names}; the other groups' chosen {by(honest)} (column selected_on)"


def build_report(folders: Sequence[Path], by: Sequence[str] | None = None, sort: str | None = None,
                 descending: bool = False, epoch: int | str = "final", interval: str = "ci95", layout: str = "long",
                 metric: str = DEFAULT_METRIC, better: str | None = None, select_on: str | None = None) -> Report:
    """The sweep summary from CSVs alone; several folders become one table with a `sweep` column.

    interval: what follows ± (ci95, se, std); the JSON and CSV carry all three and the chosen
    one as test_interval. layout: long (a line per group) or wide (a row per data set, a
    column per regularizer). metric: the result column the test statistics and ranks use.
    epoch "best" chooses each run's epoch on select_on, else on its validation rows where it
    has them (val_mse), else on the metric itself (the test set: flagged as optimistic in the
    caption and in each group's selected_on / test_selected).
    """
    from dropbench import results

    check_interval(interval)
    if layout not in LAYOUTS:
        raise UserError(f"unknown --layout {layout!r}: choose from {', '.join(LAYOUTS)}")
    if not folders:
        raise UserError("give at least one results folder: dropbench report results/DIR")
    resolved = [Path(f).resolve() for f in folders]
    if len(set(resolved)) < len(resolved):
        twice = next(f for f, r in zip(folders, resolved) if resolved.count(r) > 1)
        raise UserError(f"{twice} is given twice; give each results folder once")
    labels = [Path(f).name or str(f) for f in folders]
    if len(set(labels)) < len(labels):
        labels = [str(f) for f in folders]
    rows: list[dict[str, Any]] = []
    for folder, label in zip(folders, labels):
        mine = results.read_runs(Path(folder))
        if not any(r.get("status") == "ok" for r in mine):
            raise AllRunsFailed(all_failed(folder, mine))
        rows += [{**r, "sweep": label} for r in mine]
    running = [str(f) for f in folders if results.is_being_written(Path(f))]
    chosen = resolve_metric(rows, metric, better)
    if epoch != "final" or select_on is not None:
        by_label: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_label.setdefault(r["sweep"], []).append(r)
        rows = [r for folder, label in zip(folders, labels)
                for r in at_epoch(by_label.get(label, []), results.read_curves(Path(folder)), epoch, chosen, select_on)]
    keys = by_keys(rows, by)
    if len(folders) > 1 and "sweep" not in keys:
        keys.append("sweep")
    per_data_set: list[str] = []
    if layout == "wide":  # a row names its data set even where the sweep has only one
        keys += [k for k in DATA_SET_KEYS if k not in keys and any(key_str(r.get(k)) for r in rows)
                 and len({key_str(r.get(k)) for r in rows}) == 1]
        keys, per_data_set = _wide_keys(rows, keys)
        # one folder per data set (scripts/uci_2018.py): the folder names nothing the row does not
        per_data_set = [k for k in per_data_set if k != "sweep"]
    reference = default_reference(rows, keys)
    summary = summarize(rows, keys, reference, chosen)
    field_ = INTERVAL_TEXT[interval][2]
    for s in summary:
        s.update(interval=interval, test_interval=s[f"test_{field_}"])
        if "paired_diff" in s:
            s["paired_interval"] = s[f"paired_{field_}"]
    if chosen.test.startswith("best_test"):  # the metric is an oracle's already
        for s in summary:
            s.update(selected_on=chosen.test.removeprefix("best_"), test_selected=True)
    notes = [n for n in (pooled_note(pooled_configs(rows, keys), keys), _platform_note(rows, summary, keys),
                         selection_note(summary, keys) if epoch == "best" else None, test_chosen_metric_note(chosen)) if n]
    if per_data_set:
        notes.append(f"set per data set (as configured): {', '.join(per_data_set)}")
    if running:
        notes.append(f"note: {', '.join(running)} is still being written by a running dropbench; this reports the runs "
                     f"its {results.RUNS_CSV} listed when last written")
    if sort is not None:
        col = SORT_ALIASES.get(sort, sort)
        if col not in columns_of(summary):
            choices = ", ".join(["rank", "test", "train", "gap", "std", "se", "ci", "seeds"] + (["paired"] if reference else []) + keys)
            raise UserError(f"unknown --sort {sort!r}: choose from {choices}")
        numeric = lambda v: v is None or isinstance(v, (int, float))  # noqa: E731
        if all(numeric(r[col]) for r in summary):
            missing = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
            present = sorted((r for r in summary if not missing(r[col])), key=lambda r: r[col], reverse=descending)
            summary = present + [r for r in summary if missing(r[col])]
        else:
            summary = sorted(summary, key=lambda r: sort_key(r[col]), reverse=descending)
    elif len(folders) > 1:  # the same group from each folder on adjacent lines
        summary = sorted(summary, key=lambda r: [sort_key(r[k]) for k in keys])
    at = {"final": "final epoch", "best": "each run's best epoch"}.get(str(epoch), f"epoch {epoch}")
    title = f"dropbench report: {', '.join(labels)} ({at})"
    return Report(summary, keys, reference, title, notes, interval, layout)


def all_failed(folder: Path, rows: Sequence[dict[str, Any]], shown: int = 5) -> str:
    """Why a folder has nothing to summarize: every run failed. The reasons, most frequent first,
    each with its count and a run id to look at."""
    by_reason: dict[str, list[str]] = {}
    for r in rows:
        by_reason.setdefault(key_str(r.get("reason")) or f"status {key_str(r.get('status')) or 'unknown'}, no reason recorded", []).append(r["run_id"])
    ranked = sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    lines = [f"every run in {folder} failed ({len(rows)} of {len(rows)}), so there is nothing to summarize; why:"]
    lines += [f"  {len(ids)} run(s), e.g. {ids[0]}: {reason}" for reason, ids in ranked[:shown]]
    if len(ranked) > shown:
        from dropbench.results import RUNS_CSV

        lines.append(f"  and {len(ranked) - shown} other reason(s): see the reason column of {Path(folder) / RUNS_CSV}")
    return "\n".join(lines)


def _platform_note(rows: Sequence[dict[str, Any]], summary: list[dict[str, Any]], keys: Sequence[str]) -> str | None:
    """The caption for a report whose runs come from several platforms; where any run records
    its platform, each group also gets a `platform` column (csv and json carry it)."""
    from dropbench.stats import UNRECORDED, describe_platform

    counts = platform_counts(rows)
    if any(i != UNRECORDED for i in counts):
        ok = [r for r in rows if r.get("status") == "ok"]
        for s in summary:
            mine = platform_counts(members(ok, {k: s[k] for k in keys}))
            s["platform"] = "; ".join(f"{describe_platform(i).split(' (')[0]}" + (f" ({n})" if len(mine) > 1 else "")
                                      for i, n in mine.items())
    return platform_note({i: {"runs": n} for i, n in counts.items()})


def render_report(rep: Report, fmt: str) -> "str | Any":
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}: choose from {', '.join(FORMATS)}")
    if rep.layout == "wide":
        if fmt == "table":
            return wide_tables(rep)
        if fmt == "markdown":
            return wide_markdown(rep)
        records = wide_records(rep)
        return summary_csv(records) if fmt == "csv" else summary_json(records)
    if fmt == "table":
        return summary_table(rep.summary, rep.keys, rep.title, rep.reference, rep.notes, rep.interval)
    if fmt == "markdown":
        return summary_markdown(rep.summary, rep.keys, rep.reference, rep.notes, rep.interval)
    if fmt == "csv":
        return summary_csv(rep.summary)
    return summary_json(rep.summary)


VERDICT_STYLE = {"ok": "green", "better": "bold green", "new": "cyan", "WORSE": "bold red", "missing": "bold red", "failed runs": "bold red"}




def check_tables(result: Any, baseline: str) -> list[Any]:
    """Every group of a check (baseline, new, change, p, verdict) and every expectation; the
    check's notes (an old baseline, mixed platforms) under the first table, or alone."""
    from rich.text import Text

    tables: list[Any] = []
    notes = list(getattr(result, "notes", []))
    m = getattr(result, "metric", None) or MSE
    if (oracle := test_chosen_metric_note(m)) is not None:
        notes.append(oracle)
    if result.verdicts:
        caption = (f"final {m.label}, mean ± std (seeds); p: Welch's one-sided t-test that the new mean is "
                   + ("lower (higher is better)" if m.higher else "higher"))
        t = Table(title=f"dropbench check against {baseline}", header_style="bold",
                  caption="\n".join([caption, *map(_note_markup, notes)]))
        notes = []
        for c in ("group", "baseline", "new", "change", "p", "verdict", "why"):
            t.add_column(c, justify="right" if c in ("baseline", "new", "change", "p") else "left", overflow="fold")
        for v in result.verdicts:
            cell = lambda s: "" if s is None else f"{_fmt(s['test_mean'])} ± {_fmt(s['test_std'], 2)} ({s['n_seeds']})"  # noqa: E731
            change = ""
            if v.base is not None and v.new is not None and v.new["n_seeds"]:
                change = f"{v.new['test_mean'] - v.base['test_mean']:+.3g} ({(v.new['test_mean'] - v.base['test_mean']) / abs(v.base['test_mean']):+.1%})"
            style = VERDICT_STYLE.get(v.verdict, "")
            t.add_row(v.label, cell(v.base), cell(v.new), change, _fmt(v.p, 2), f"[{style}]{v.verdict}[/{style}]", v.detail)
        tables.append(t)
    if result.expectations:
        t = Table(title=f"expectations ({'higher' if m.higher else 'lower'} {m.label} is better; < and > compare means)"
                  if m.higher else f"expectations (lower {m.label} is better)", header_style="bold")
        for c in ("expectation", "verdict", "why"):
            t.add_column(c)
        for e in result.expectations:
            verdict = "[green]holds[/green]" if e.passed else "[bold red]FAILS[/bold red]"
            t.add_row(e.text, verdict, e.detail)
        tables.append(t)
    tables += [Text.from_markup(_note_markup(n)) for n in notes]
    return tables


def baseline_table(keys: Sequence[str], rows: Sequence[dict[str, Any]], title: str, files: dict[str, str] | None = None) -> Table:
    """A baseline's groups: seeds, and mean ± std of its metric (and the train counterpart,
    where the metric has one); a csv file's sha256 by the file's name where `files` has it."""
    name = next((str(r["metric"]) for r in rows if r.get("metric")), DEFAULT_METRIC)
    m = Metric(name, f"final_{name}", None, False)
    train = any(isinstance(r.get("train_mean"), float) and not math.isnan(r["train_mean"]) for r in rows)
    t = Table(title=title, header_style="bold")
    for k in keys:
        t.add_column(FILE_LABEL if k == FILE_KEY and files else k)
    for c in ("seeds", *([f"{m.train_label} (mean ± std)"] if train else []), f"{m.label} (mean ± std)"):
        t.add_column(c, justify="right")
    shown = lambda k, v: (files or {}).get(v, v) if k == FILE_KEY else v  # noqa: E731
    for r in rows:
        cells = [f"{_fmt(r['train_mean'])} ± {_fmt(r['train_std'], 2)}"] if train else []
        t.add_row(*[_cell(shown(k, r[k])) for k in keys], str(r["n_seeds"]), *cells, f"{_fmt(r['test_mean'])} ± {_fmt(r['test_std'], 2)}")
    return t
