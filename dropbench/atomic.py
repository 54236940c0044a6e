"""Atomic writes: a file appears whole or not at all, and a writer's leftovers are recognisable.

A file is written to a temporary name in its own folder and renamed into place (os.replace), so a
reader sees the old file or the new one, never half of one. Temporary names carry their writer,
.<name>.<host>-<pid>.<random>.tmp, so that a later process can tell a leftover of a writer that is
gone from the in-flight file of a concurrent one (results.remove_leftovers). Used by the results
folder (results.py) and the UCI download cache (data/uci/fetch.py). Standard library only.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator


def host() -> str:
    import socket

    return socket.gethostname().replace(".", "_")  # no dots: the temporary names split on them


def owner() -> str:
    """host-pid, part of every temporary name: a later process removes a leftover only when the
    process that made it is gone, never the in-flight files of a concurrent writer."""
    return f"{host()}-{os.getpid()}"


# mkstemp/mkdtemp create 0600/0700 entries; results are meant to be shared like any file the
# user writes, so renamed entries get the umask's usual modes. Read once, while importing.
UMASK = os.umask(0o022)
os.umask(UMASK)


def make_dirs(path: Path) -> list[Path]:
    """mkdir -p `path`; the folders it created, outermost first, so that a writer that fails
    can remove them again (remove_dirs) and leave no empty folder behind."""
    missing = []
    p = Path(path)
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    if missing:  # an existing folder is not touched: it may be on a read-only disk
        Path(path).mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def make_temp_dir(parent: Path, name: str) -> Path:
    """A new folder .<name>.<host>-<pid>.<random> in `parent`, with the umask's usual modes
    (mkdtemp's are 0700, and a chmod after it is one more write to the disk)."""
    import secrets

    for _ in range(100):
        path = parent / f".{name}.{owner()}.{secrets.token_hex(4)}"
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no unused temporary name for {name} in {parent}")


def remove_dirs(created: Iterable[Path]) -> None:
    """Remove, innermost first, the folders make_dirs created, where they are still empty."""
    for d in reversed(list(created)):
        try:
            d.rmdir()
        except OSError:
            pass


def chmod(path: str | Path, mode: int) -> None:
    """Best effort: some file systems (FAT, some network shares) refuse chmod yet store files;
    the mode is a courtesy, never a reason to lose a result."""
    try:
        os.chmod(path, mode)
    except OSError:
        pass


def unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


@contextmanager
def atomic_file(path: Path) -> Iterator[Any]:
    """A binary handle on a temporary file that replaces `path` by one rename when the block ends
    without error: readers see the old file or the new one, never half of it. On an error, no
    temporary file and no folder it created is left."""
    created = make_dirs(path.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner()}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            unlink_quietly(Path(tmp))
        remove_dirs(created)
        raise


def atomic_write(path: Path, data: str | bytes) -> None:
    """The whole of `data` (text is UTF-8 encoded) at `path`, atomically."""
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


# .<name>.<host>-<pid>.<random>[.tmp]
TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+(\.tmp)?$")
STALE_SECONDS = 24 * 3600  # a temporary entry this old is a leftover whatever made it


def is_leftover(entry: Path) -> bool:
    import time

    m = TEMP.match(entry.name)
    if m and m["host"] == host():
        try:
            os.kill(int(m["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError):
            pass
        else:
            return False
    try:
        return time.time() - entry.lstat().st_mtime > STALE_SECONDS
    except FileNotFoundError:
        return False
