"""Run identity: the run id, a hash of everything that determines a run's numbers, and nothing else.

A run id names a run's folder, lets a resumed sweep skip finished runs and joins results across
invocations, so it must never change for a config that existed when ids were pinned
(tests/test_config.py's golden ids). What enters it and what does not is decided here: keys that
say where results go (UNHASHED_KEYS) or where data lie (UNHASHED_DATA_KEYS) stay out, fields added
later stay out while they hold their default (ID_OMITS_DEFAULT), unselected regularizers are
pruned, and a CSV enters through its contents (its sha256, pinned by pin_data), never its path.
Kept apart from the schema because these rules outlive any one field: a new key needs only its
metadata, and the hashing can be read (and audited) in one place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import TYPE_CHECKING, Any

from dropbench import regs
from dropbench.data.csv import DataFileError, csv_read_errors
from dropbench.params import ID_OMITS_DEFAULT

if TYPE_CHECKING:
    from dropbench.config.schema import RunConfig

# Keys that say where results go or how they are shown, never what is computed.
UNHASHED_KEYS = ("out",)
# Where data lie, never what they are: a CSV enters the run id through its contents (data.sha256),
# a UCI split through its name (its files are verified against data/uci/catalog.py's manifest).
UNHASHED_DATA_KEYS = ("path", "root")
# ID_OMITS_DEFAULT (field metadata, declared with params.param): a field added after run ids were
# pinned, left out of the run id while it holds its default, so that every run stored before it
# existed keeps its id (and a resumed sweep finds it); any other value enters the id.
# tests/test_config.py's golden ids pin this.


def run_id_of(cfg: RunConfig) -> str:
    """RunConfig.run_id: the first 12 hex digits of the sha256 of the config's canonical JSON, less
    what UNHASHED_KEYS, UNHASHED_DATA_KEYS and ID_OMITS_DEFAULT leave out. Of any config, its
    derived values resolved or not: config.load_sweep compares configs with it before they are.
    Kept on the (frozen) config once taken: a sweep asks each config for it several times."""
    cached = cfg.__dict__.get(_RUN_ID)
    if cached is not None:
        return cached
    d = {k: v for k, v in cfg.to_dict().items() if k not in UNHASHED_KEYS}
    _omit_new_defaults(cfg, d)
    d["data"] = {k: v for k, v in d["data"].items() if k not in UNHASHED_DATA_KEYS}
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    rid = hashlib.sha256(blob.encode()).hexdigest()[:12]
    object.__setattr__(cfg, _RUN_ID, rid)  # not a field: dataclasses.replace gives a new config without it
    return rid


_RUN_ID = "_run_id"


def _omit_new_defaults(obj: Any, d: dict[str, Any]) -> None:
    """Drop, in place, the fields marked ID_OMITS_DEFAULT that hold their default (see there)."""
    for f in dataclasses.fields(obj):
        if f.name not in d:
            continue
        v = getattr(obj, f.name)
        if f.metadata.get(ID_OMITS_DEFAULT) and v == f.default:
            del d[f.name]
        elif dataclasses.is_dataclass(v) and isinstance(d[f.name], dict):
            _omit_new_defaults(v, d[f.name])


def _prune(d: Any) -> Any:
    """Drop unselected (None) regularizers (Reg has a field per registry name) so the saved config
    shows only what ran."""
    if isinstance(d, dict):
        return {k: _prune(v) for k, v in d.items() if not (v is None and k in regs.REGISTRY)}
    return d


def _flatten(d: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            _flatten(v, key + ".", out)
        elif isinstance(v, list):
            out[key] = ",".join(map(str, v))
        else:
            out[key] = v


# ---- a CSV enters the run id by its contents --------------------------------------------------
# path -> (stat key, sha256) of files that had not changed for a while when hashed (see _file_sha256).
_SHA_CACHE: dict[str, tuple[tuple[int, ...], str]] = {}
_SETTLE_NS = 2_000_000_000


def _file_sha256(path: str) -> str:
    """The sha256 of a file's bytes, hashed once per process while the file is unchanged.

    A sweep builds one config per run, so a large CSV would be re-read per run. A cached hash is
    trusted only while the file's inode, size, mtime and ctime are the same, and is kept only
    when the file had not changed for _SETTLE_NS before it was read (as git does for "racily
    clean" files): an edit within one timestamp tick of the hashing cannot go unseen.
    """
    with csv_read_errors(path):
        st = os.stat(path)
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        hit = _SHA_CACHE.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        started = time.time_ns()
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    if max(st.st_mtime_ns, st.st_ctime_ns) < started - _SETTLE_NS:
        _SHA_CACHE[path] = (key, digest)
    return digest


def _pin_contents(data: Any) -> Any:
    """A data config that names a file by `path` and its contents by `sha256` (data=csv): record
    the contents' hash, refusing one given that the file no longer has."""
    path = data.path
    digest = _file_sha256(path)
    if data.sha256 is not None and data.sha256 != digest:
        raise DataFileError(
            f"data.sha256={data.sha256} does not match {path} (now sha256 {digest}): the file changed since this "
            "config was saved; restore it, or drop data.sha256 to use the file as it is now"
        )
    return dataclasses.replace(data, sha256=digest)


def _absolute_paths(data: Any) -> Any:
    """The keys that say where data lie (UNHASHED_DATA_KEYS) made absolute: a saved config works
    from any folder."""
    paths = {k: os.path.abspath(os.path.expanduser(v)) for k in UNHASHED_DATA_KEYS
             if isinstance(v := getattr(data, k, None), str)}
    return dataclasses.replace(data, **paths) if paths else data


def pin_data(data: Any) -> Any:
    """A data config as its run id needs it: paths absolute, a file's contents pinned by sha256."""
    data = _absolute_paths(data)
    return _pin_contents(data) if "sha256" in getattr(data, "__dataclass_fields__", {}) else data
