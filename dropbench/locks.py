"""Who is writing a results folder: the lock that serialises its CSV rebuilds, and the shared lock
(with the list of runs planned) held by every process training runs into it, which readers probe
to tell a sweep in progress from one that was stopped."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from dropbench.atomic import owner, unlink_quietly


@contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Serialise CSV rebuilds of one folder across processes (and machines sharing it)."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    # Not truncated ("w" would): every run stored takes this lock, and truncating writes the inode.
    fd = os.open(out / ".lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


RUNNING = ".running"  # flock'ed (shared) by every process training runs into the folder


PLAN = "plan"  # .plan.<host>-<pid>.<random>.tmp: the run ids a live writer is training (training_into)


@contextmanager
def training_into(out: Path, plan: Iterable[str] = ()) -> Iterator[None]:
    """Held while this process trains runs into `out` and rebuilds its CSVs, so that report can
    tell a sweep in progress from one that was stopped. A lock, not a marker file: it goes with
    the process however that ends (kill -9 included), and concurrent writers share it.

    `plan`: the run ids this process trains, listed in a temporary file of this process's own
    (removed when the block ends; a killed process's is a leftover that readers skip), so that a
    report of the folder meanwhile can say how many runs are still to come (progress)."""
    import fcntl

    with open(out / RUNNING, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        listed = None
        ids = list(plan)
        if ids:
            fd, listed = tempfile.mkstemp(dir=out, prefix=f".{PLAN}.{owner()}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write("".join(f"{i}\n" for i in ids))
        try:
            yield
        finally:
            if listed is not None:
                unlink_quietly(Path(listed))


def is_being_written(out: Path) -> bool:
    """Whether a live process (here, or on a host sharing the folder) is training runs into `out`
    (training_into). False where that cannot be told (no lock file; a file system without flock)."""
    import fcntl

    try:
        fh = open(out / RUNNING, "rb")
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def is_partial(folder: Path) -> bool:
    """Whether reading `folder` with partial=True reads its run folders: a live writer trains into it."""
    return Path(folder).is_dir() and is_being_written(Path(folder))
