"""`report --format html`: the report as one self-contained HTML page: the summary table (the `--format csv` output
itself, cell for cell), the captions and platform warning, the plots as embedded PNGs, each
group's config and the commands that made each folder. No script, no stylesheet or image from
elsewhere: it opens offline, from a CI artifact, from a mail.

Every summary cell carries its CSV text in `data-value` (and `title`, for a pointer's hover) and
shows it rounded to 4 significant digits; reading the table back from the DOM gives the CSV.
"""

from __future__ import annotations

import base64
import csv
import io
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from dropbench.analysis.grouping import members
from dropbench.analysis.labels import file_labels, group_label
from dropbench.analysis.taxonomy import FILE_KEY, REPETITION_KEYS, config_columns, key_str, sort_key

if TYPE_CHECKING:
    from dropbench.report import Report

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1300px;
       padding: 0 1rem; color: #1d232a; line-height: 1.4; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #d0d7de; padding: 0.2rem 0.45rem; white-space: nowrap; }
th { background: #f3f5f7; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #eaf7ea; }
ul.notes { padding-left: 1.2rem; } li.warning { color: #8a1c1c; font-weight: 600; } li.partial { color: #8a5a00; font-weight: 600; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: 0.8rem; color: #57606a; }
details { margin: 0.3rem 0; } summary { cursor: pointer; }
pre { background: #f6f8fa; padding: 0.5rem; overflow-x: auto; font-size: 0.85rem; }
.meta { color: #57606a; font-size: 0.85rem; }
"""


def report_html(rep: "Report") -> str:
    """The page for a built report; its table is render_report(rep, "csv")."""
    from dropbench import __version__
    from dropbench.report import render_report

    summary_csv = render_report(rep, "csv")
    parts = [f"<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{escape(rep.title)}</title>\n"
             f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{escape(rep.title)}</h1>\n"
             f"<p class=\"meta\">written by dropbench {escape(__version__)} from "
             f"{escape(', '.join(str(f) for f in rep.folders))}</p>\n"]
    if rep.notes:
        parts.append("<ul class=\"notes\">\n" + "".join(f"<li class=\"{_note_class(n)}\">{escape(n)}</li>\n" for n in rep.notes) + "</ul>\n")
    parts.append(f"<h2 id=\"summary\">Summary</h2>\n<p class=\"meta\">{escape(_caption(rep))}</p>\n")
    parts.append(f"<div class=\"scroll\">{summary_table(summary_csv)}</div>\n")
    parts.append("<h2 id=\"plots\">Plots</h2>\n" + plots_html(rep))
    parts.append("<h2 id=\"configs\">Each group's config</h2>\n" + configs_html(rep))
    parts.append("<h2 id=\"commands\">Recorded commands</h2>\n" + commands_html(rep))
    parts.append("</body>\n</html>\n")
    return "".join(parts)


def _note_class(note: str) -> str:
    if note.startswith("WARNING"):
        return "warning"
    return "partial" if note.startswith("partial") else "note"


def _caption(rep: "Report") -> str:
    return (f"one row per group, best rank first where unsorted; the cells are the --format csv output "
            f"(hover a number for its full precision); ± is {rep.interval}")


def _shown(cell: str) -> str:
    """A cell as people read it: numbers to 4 significant digits, the rest as written."""
    try:
        x = float(cell)
    except ValueError:
        return cell
    if cell.lstrip("-").isdigit():
        return cell
    return f"{x:.4g}"


def summary_table(summary_csv: str) -> str:
    """The CSV as an HTML table: a header cell per column (data-column), a cell per value
    (data-value: the CSV text, exactly), the rank-1 rows highlighted."""
    rows = list(csv.reader(io.StringIO(summary_csv)))
    if not rows:
        return "<table class=\"summary\"></table>"
    header, body = rows[0], rows[1:]
    rank = header.index("rank") if "rank" in header else None
    out = ["<table class=\"summary\" id=\"summary-table\">\n<thead><tr>"]
    out += [f"<th data-column=\"{escape(c)}\">{escape(c)}</th>" for c in header]
    out.append("</tr></thead>\n<tbody>\n")
    for r in body:
        best = rank is not None and r[rank] == "1"
        out.append("<tr class=\"best\">" if best else "<tr>")
        for c in r:
            shown = _shown(c)
            num = " class=\"num\"" if shown != c or c.lstrip("-").isdigit() else ""
            out.append(f"<td{num} data-value=\"{escape(c)}\" title=\"{escape(c)}\">{escape(shown)}</td>")
        out.append("</tr>\n")
    out.append("</tbody>\n</table>")
    return "".join(out)


def _png(fig: Any) -> str:
    from dropbench.plots import DPI

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots_html(rep: "Report") -> str:
    """The figures `dropbench plot` draws for each folder, grouped as the report is (--by)."""
    from dropbench.plots import build_figures

    out = []
    for folder, label in zip(rep.folders, rep.labels):
        if len(rep.folders) > 1:
            out.append(f"<h3>{escape(label)}</h3>\n")
        for name, fig in build_figures(folder, rep.by).items():
            out.append(f"<figure><img alt=\"{escape(label)}: {escape(name)}\" src=\"data:image/png;base64,{_png(fig)}\">"
                       f"<figcaption>{escape(name)} (dropbench plot {escape(str(folder))})</figcaption></figure>\n")
    return "".join(out)


def group_config(runs: Sequence[Mapping[str, Any]], columns: Iterable[str]) -> dict[str, str]:
    """A group's config: each column's value where its runs share it, else the values it pools."""
    config = {}
    for c in columns:
        values = sorted({key_str(r.get(c)) for r in runs}, key=sort_key)
        if values != [""]:
            config[c] = values[0] if len(values) == 1 else ", ".join(v or "(unset)" for v in values)
    return config


def configs_html(rep: "Report") -> str:
    """Per summary group: its runs' shared config, as runs.csv records it (the seed and other
    repetitions aside: those are what the group repeats over)."""
    ok = [r for r in rep.rows if r.get("status") == "ok"]
    columns = [c for c in config_columns(rep.rows) if c not in REPETITION_KEYS]
    files = file_labels(rep.rows) if FILE_KEY in rep.keys else {}
    out = []
    seen: set[tuple[str, ...]] = set()
    for s in rep.summary:
        values = {k: key_str(s.get(k)) for k in rep.keys if k in s}
        ident = tuple(values.values())
        if ident in seen:  # the wide layout names a group on several rows
            continue
        seen.add(ident)
        runs = members(ok, values)
        if not runs:
            continue
        reps = sorted({r.get("seed") for r in runs}, key=sort_key)
        body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in group_config(runs, columns).items())
        out.append(f"<details><summary>{escape(group_label(values, files))} ({len(runs)} run(s), seeds "
                   f"{escape(', '.join(key_str(x) for x in reps))})</summary>\n<table class=\"config\">{body}</table></details>\n")
    return "".join(out) or "<p>no finished runs</p>\n"


def commands_html(rep: "Report") -> str:
    """What each folder's sweep.yaml records: the commands that made it, where they ran."""
    from dropbench.errors import UserError
    from dropbench.runner import describe_command, read_commands

    out = []
    for folder, label in zip(rep.folders, rep.labels):
        try:
            commands = read_commands(folder)
        except UserError as e:
            commands, why = None, str(e)
        else:
            why = f"{Path(folder) / 'sweep.yaml'} is missing (a folder written by hand, or before dropbench recorded commands)"
        if len(rep.folders) > 1:
            out.append(f"<h3>{escape(label)}</h3>\n")
        if not commands:
            out.append(f"<p class=\"meta\">{escape(why)}</p>\n")
            continue
        lines = [f"# in {c['cwd']}\n{describe_command(c)}" if c.get("cwd") else describe_command(c) for c in commands]
        out.append("<pre><code>" + escape("\n".join(lines)) + "</code></pre>\n")
    return "".join(out)
