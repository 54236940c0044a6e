"""OS errors met while writing results (a read-only folder, a full disk, a refused permission) as
one-line UserErrors that name the path as the user gave it and say how to fix it."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dropbench.atomic import TEMP
from dropbench.errors import UserError


def shown_path(path: str | Path) -> str:
    """A path as the user knows it: a temporary entry (.runs.csv.host-1.x.tmp, a run's
    .<run_id>.host-1.x folder) by the name it was to get, the lock by its folder."""
    p = Path(path)
    parts = [m["name"] if (m := TEMP.match(part)) else part for part in p.parts]
    if parts and parts[-1] == ".lock":
        parts.pop()
    return str(Path(*parts)) if parts else str(p)


def os_error(e: OSError, option: str | None, where: str | Path | None = None) -> UserError:
    """The one-line UserError for an OSError met while writing results: what failed, where, and
    the fix. `option`: how the user names another place (out=DIR, --out DIR, -o FILE; None where
    there is none, as for --resume); `where`: the output as the user gave it, whose spelling the
    failing path takes (tempfile makes paths absolute)."""
    import errno

    path = shown_path(e.filename) if e.filename is not None else None
    if where is not None:
        path = _as_given(path, where)
    path = path or "."
    folder = path if Path(path).is_dir() else str(Path(path).parent)
    elsewhere = f"give another {option}" if option else ""
    if e.errno == errno.EROFS:
        why = "the file system is read-only"
        fix = f"{elsewhere} on a writable file system" if option else "remount it writable, or copy the folder to a writable file system"
    elif e.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "no space left on the device" if e.errno == errno.ENOSPC else "the disk quota is exceeded"
        fix = "free some space" + (f", or {elsewhere} on a disk with room" if option else "")
    elif e.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied"
        fix = f"check the permissions and owner of {folder} (ls -ld {folder})" + (f", or {elsewhere}" if option else "")
    else:
        why, fix = e.strerror or type(e).__name__, elsewhere or f"check {folder}"
    return UserError(f"cannot write to {path}: {why}; {fix}")


def _same_path(a: str | Path, b: str | Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def _as_given(path: str | None, where: str | Path) -> str:
    """`path` spelled from `where` as the user gave it, where it is `where` or lies inside it
    (tempfile makes paths absolute)."""
    if path is None or _same_path(path, where):
        return str(where)
    inside = os.path.relpath(os.path.abspath(path), os.path.abspath(where))
    return path if inside.startswith(os.pardir) else os.path.join(str(where), inside)


@contextmanager
def writing(option: str | None | dict[Path, str], where: str | Path | None = None) -> Iterator[None]:
    """Around code that writes results: an OSError becomes os_error's one-line UserError.
    `option` names the setting that moves the output elsewhere, `where` the output; a dict
    {output: option} where several outputs are written (the one that failed is named)."""
    try:
        yield
    except OSError as e:
        if isinstance(option, dict):
            failed = shown_path(e.filename) if e.filename is not None else None
            where, option = next(((p, o) for p, o in option.items() if failed is not None and _same_path(p, failed)),
                                 (None, next(iter(option.values()), "")))
        raise os_error(e, option, where) from None  # type: ignore[arg-type]
