"""The tests across data sets (analysis.crossdata) and a published table beside ours
(analysis.reference), as markdown and rich tables under the wide report."""

from __future__ import annotations

import math
from typing import Any, Sequence

from rich.table import Table

from dropbench.analysis.crossdata import POSTHOC_TEXT, CrossStats
from dropbench.analysis.metrics import metric_label
from dropbench.render.text import fmt, markdown_lines


def _p(p: float) -> str:
    return "nan" if math.isnan(p) else "0" if p == 0 else f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def stats_lines(s: CrossStats) -> list[str]:
    """The sentences: what was compared, Friedman's test, the mean ranks, the cliques."""
    f = s.friedman
    best = "highest" if s.higher else "lowest"
    lines = [f"across {s.n} data sets: {metric_label(s.metric)}, each data set's mean over its splits and seeds; "
             f"rank 1 is the {best}",
             f"Friedman: chi²({f.df}) = {fmt(f.statistic)}, p = {_p(f.p)}; Iman-Davenport: F({f.f_df[0]}, {f.f_df[1]}) = "
             f"{fmt(f.f)}, p = {_p(f.f_p)}",
             "mean rank: " + ", ".join(f"{g} {r:.3g}" for g, r in s.ordered())]
    how = POSTHOC_TEXT[s.posthoc] + (f" (CD = {s.cd:.3g})" if s.cd is not None else "")
    if s.cliques:
        lines.append(f"not told apart by {how} at alpha {s.alpha:g}: " + "; ".join(", ".join(c) for c in s.cliques))
    else:
        lines.append(f"{how} at alpha {s.alpha:g} tells every pair apart")
    return lines


def pair_grid(s: CrossStats) -> tuple[list[str], list[list[str]]]:
    wil = s.posthoc == "wilcoxon"
    head = ["A", "B", "mean ranks", "A better / tie / B better", *(["W", "p", "p (Holm)"] if wil else ["rank diff", "p"]), ""]
    rows = []
    for p in s.pairs:
        r = [p.a, p.b, f"{p.a_rank:.3g} vs {p.b_rank:.3g}", "/".join(map(str, p.wins))]
        r += [("" if p.statistic is None else fmt(p.statistic)), _p(p.p), _p(p.p_adjusted)] if wil else [f"{p.rank_diff:.3g}", _p(p.p)]
        rows.append(r + ["*" if p.different else ""])
    return head, rows


def _pair_caption(s: CrossStats) -> str:
    if s.posthoc == "wilcoxon":
        return (f"pairs: two-sided Wilcoxon signed-rank over data sets (W: the smaller signed-rank sum), p Holm-corrected "
                f"over {len(s.pairs)} pairs; *: different at alpha {s.alpha:g}")
    return (f"pairs: Nemenyi, different (*) where the mean ranks are more than CD = {s.cd:.3g} apart "
            f"(alpha {s.alpha:g}, {s.k} groups, {s.n} data sets)")


def stats_markdown(s: CrossStats) -> str:
    head, rows = pair_grid(s)
    return ("\n".join(stats_lines(s)) .replace("\n", "\n\n") + "\n\n" + "\n".join(markdown_lines(head, rows, 2)) + "\n\n"
            + _pair_caption(s) + "\n")


def stats_table(s: CrossStats) -> Any:
    from rich.markup import escape

    head, rows = pair_grid(s)
    t = Table(title="across data sets", header_style="bold", caption=escape("\n".join([*stats_lines(s), _pair_caption(s)])))
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i < 2 else "right")
    for r in rows:
        t.add_row(*r)
    return t


def reference_grid(comparison: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    head = ["data set", "group", "ours", "theirs", "ours − theirs", "/ SE", ""]
    rows = [[c["dataset"], c["group"], f"{fmt(c['ours'])} ± {fmt(c['ours_se'], 2)}", f"{fmt(c['theirs'])} ± {fmt(c['theirs_se'], 2)}",
             f"{c['diff']:+.4g}", fmt(c["z"], 2), "*" if c["beyond"] else ""] for c in comparison]
    return head, rows


def _reference_caption(comparison: Sequence[dict[str, Any]], citation: str) -> str:
    c = comparison[0]
    text = (f"{metric_label(c['metric'])} against {c['reference']}: mean ± SE (ddof=0 / √n) each; / SE: the difference over "
            "the two-sample standard error √(SE_ours² + SE_theirs²); *: beyond 2")
    return text + (f"\n{c['reference']}: {citation}" if citation else "")


def reference_markdown(comparison: Sequence[dict[str, Any]], citation: str = "") -> str:
    head, rows = reference_grid(comparison)
    return "\n".join(markdown_lines(head, rows, 2)) + "\n\n" + _reference_caption(comparison, citation).replace("\n", "\n\n") + "\n"


def reference_table(comparison: Sequence[dict[str, Any]], citation: str = "") -> Any:
    from rich.markup import escape

    head, rows = reference_grid(comparison)
    t = Table(title=f"against {comparison[0]['reference']}", header_style="bold", caption=escape(_reference_caption(comparison, citation)))
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i < 2 else "right")
    for r in rows:
        t.add_row(*r)
    return t
