"""data=csv: a user's CSV file of numbers, one column the target, split by data.test_fraction.

The run id hashes the file's contents (data.sha256, filled by config/identity.py when the config is
built), never its path: an edited file is a new run, one file at two paths is one run. Every
problem with the file (missing, a folder, unreadable, not numeric, too few rows) is one line.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Literal

from dropbench.data.base import Dataset, Holdout, holdout_param, rows_trained, split, split_sizes, tabular
from dropbench.errors import UserError
from dropbench.params import FRACTION, SEED, Check, param

if TYPE_CHECKING:
    import numpy as np

SHA256 = Check(lambda s: len(s) == 64 and all(c in "0123456789abcdef" for c in s),
               "64 lowercase hex digits (or null: computed from the file)", bad=("abc", "A" * 64))


@dataclass(frozen=True)
class Config:
    path: str
    target: str
    name: Literal["csv"] = "csv"
    features: list[str] | None = None
    test_fraction: float = param(0.25, FRACTION)
    standardize: bool = True
    seed: int | None = param(None, SEED)
    # The file's contents, filled by config.build(): the run id hashes this, not the path. Given
    # by the user (a saved config.yaml does), it must match the file.
    sha256: str | None = param(None, SHA256)
    holdout: Holdout = holdout_param()


class DataFileError(UserError):
    """The data file a config names is missing, unreadable or changed since: the config itself
    may be whole (runner.load_saved tells the two apart)."""


@contextmanager
def csv_read_errors(path: str) -> Iterator[None]:
    """Reading the user's CSV: a missing file, a folder or an unreadable one is one line."""
    try:
        yield
    except FileNotFoundError:
        raise DataFileError(f"data.path={path}: no such file; give the path of a CSV file") from None
    except IsADirectoryError:
        raise DataFileError(f"data.path={path}: is a folder; give the path of a CSV file") from None
    except OSError as e:
        raise DataFileError(f"data.path={path}: cannot read it ({e.strerror or type(e).__name__})") from None


def read_csv(path: str, target: str, features: list[str] | None, sha256: str | None = None) -> tuple["np.ndarray", "np.ndarray"]:
    """Load a user's CSV with checks that turn every problem into a one-line UserError.

    With `sha256` (the config's), the bytes parsed are the bytes the run id was computed from: a
    file edited after the run was planned is refused, not trained on under the old id.
    """
    import hashlib
    import io

    import numpy as np
    import pandas as pd

    with csv_read_errors(path), open(path, "rb") as fh:
        raw = fh.read()
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise UserError(f"data.path={path}: the file changed after the run was planned (its sha256 is no longer {sha256}); run the command again")
    try:
        df = pd.read_csv(io.BytesIO(raw))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"data.path={path}: not a readable CSV ({' '.join(str(e).split())[:120]})") from None
    if target not in df.columns:
        raise UserError(f"data.target={target}: no such column in {path}; columns are {', '.join(repr(str(c)) for c in df.columns)}")
    cols = features if features is not None else [c for c in df.columns if c != target]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise UserError(f"data.features: no column {missing[0]!r} in {path}; columns are {', '.join(repr(str(c)) for c in df.columns)}")
    if not cols:
        raise UserError(f"{path} has no feature columns besides the target {target!r}")
    sub = df[list(cols) + [target]]
    if len(sub) == 0:
        raise UserError(f"{path}: has a header but no data rows; add rows of numbers below the header")
    bad = [c for c in sub.columns if not pd.api.types.is_numeric_dtype(sub[c]) or pd.api.types.is_bool_dtype(sub[c])]
    if bad:
        raise UserError(f"{path}: column {bad[0]!r} is not numeric; dropbench needs numeric columns (drop it or set data.features)")
    if sub.isna().any().any() or not np.isfinite(sub.to_numpy(dtype=float)).all():
        col = sub.columns[(sub.isna() | ~np.isfinite(sub.astype(float))).any()][0]
        raise UserError(f"{path}: column {col!r} has missing or infinite values; clean the file first")
    return sub[list(cols)].to_numpy(dtype=float), sub[target].to_numpy(dtype=float)


def load(conf: Config, seed: int, validation: float = 0.0) -> Dataset:
    x, y = read_csv(conf.path, conf.target, conf.features, conf.sha256)
    return tabular(*split(x, y, conf.test_fraction, seed), conf.standardize, conf.holdout, f"data.path={conf.path}", validation)


def n_trained(conf: Config, validation: float = 0.0) -> int:
    x, _ = read_csv(conf.path, conf.target, conf.features, conf.sha256)
    return rows_trained(split_sizes(len(x), conf.test_fraction)[0], conf.holdout, validation, f"data.path={conf.path}")
