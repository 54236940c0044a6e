"""Names for people: a group's label, a csv file's, a data set's. Display only: groups stay
keyed by their values (a csv file by its contents' sha256)."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any, Iterable, Mapping

from dropbench.analysis.taxonomy import FILE_KEY, FILE_LABEL, key_str


def group_label(group: Mapping[str, str], files: Mapping[str, str] | None = None) -> str:
    """reg=dropout p=0.5: the group's key values, empty ones left out. With `files` (file_labels
    of the runs at hand) a csv file's sha256 is data.file=NAME, or its first 12 hex digits where
    no run at hand names it (a baseline's group missing from the sweep)."""
    def named(k: str, v: str) -> str:
        if k != FILE_KEY or files is None:
            return f"{k}={v}"
        return f"{FILE_LABEL}={files[v]}" if v in files else f"{k}={v[:12]}"
    return " ".join(named(k, v) for k, v in group.items() if v != "") or "all runs"


def file_labels(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """A name for each csv file's contents (data.sha256) the rows hold, for people to read: its
    path (data.path; the one most of its runs name, where a copy sat under two) cut to the
    shortest trailing part that no other path of the rows ends with (the basename, unless two
    files share it); where one path held several contents (a file edited between sweeps), each
    also gets @ and the first 7 (or more, until they differ) hex digits of its sha256. Contents
    whose runs record no path are named by 12 hex digits."""
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        sha = key_str(r.get(FILE_KEY))
        if sha:
            by_path = counts.setdefault(sha, {})
            if path := key_str(r.get("data.path")):
                by_path[path] = by_path.get(path, 0) + 1
    where = {sha: min(c, key=lambda p: (-c[p], p)) if c else "" for sha, c in counts.items()}
    parts = {p: PurePath(p).parts for p in set(where.values()) if p}
    short = {}
    for p, mine in parts.items():
        k = 1
        while k < len(mine) and any(q != p and theirs[-k:] == mine[-k:] for q, theirs in parts.items()):
            k += 1
        short[p] = str(PurePath(*mine[-k:]))
    named: dict[str, list[str]] = {}
    for sha, p in where.items():
        named.setdefault(short.get(p, ""), []).append(sha)
    labels = {}
    for name, shas in named.items():
        if name and len(shas) == 1:
            labels[shas[0]] = name
            continue
        n = 7 if name else 12
        while n < 64 and len({sha[:n] for sha in shas}) < len(shas):
            n += 1
        labels.update({sha: f"{name}@{sha[:n]}" if name else sha[:n] for sha in shas})
    return labels


def data_set_label(values: Mapping[str, str]) -> str:
    """yacht for data=uci data.dataset=yacht, the file's name for a csv (data.file where the
    summary names it, file_labels: the basename, or more where two files share it): what a
    paper calls the data set (the data= choice only where it is the whole name)."""
    named = values.get("data.dataset") or values.get(FILE_LABEL) or (Path(values["data.path"]).name if values.get("data.path") else "")
    parts = [named or values.get("data", "")]
    parts += [f"{k.split('.')[-1]}={v}" for k, v in values.items() if k in ("data.target", "data.features") and v]
    return " ".join(p for p in parts if p)
