"""One standard UCI split as a run trains on it: its rows read, standardised and held out.

Standardisation follows the split files' protocol (docs/uci-protocol.md; the original code's net.py): inputs
and target with the training rows' mean and numpy's population SD; an input SD of exactly 0 becomes
1 (no tolerance: naval's column 11, constant but for round-off, keeps its tiny SD and so becomes
+-1, as in the original).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dropbench.data.base import Dataset, holdout, tensor, validation_split
from dropbench.data.uci import catalog
from dropbench.data.uci.fetch import fetch
from dropbench.errors import UserError

if TYPE_CHECKING:
    import numpy as np


def _indices(a: "np.ndarray", bound: int, what: str, where: str) -> list[int]:
    """Integers written as numbers (possibly floats), read as the original code does: int(i)."""
    vals = a.tolist()
    if any(v != int(v) or not 0 <= v < bound for v in vals):
        raise UserError(f"data=uci: {where} holds {what} that are not integers in 0..{bound - 1}")
    return [int(v) for v in vals]


@dataclass(frozen=True)
class Split:
    """One split's rows in original units: inputs [n, d] and target [n]."""

    x_train: "np.ndarray"
    y_train: "np.ndarray"
    x_test: "np.ndarray"
    y_test: "np.ndarray"


def load_split(dataset: str, split: int, root: str | None = None, **kw: Any) -> Split:
    """Rows of one standard split, unstandardised (original units), in the index files' order."""
    files = fetch(dataset, split, root, **kw)
    data = files["data.txt"]
    folder = catalog.folder_of(dataset)
    n, cols = data.shape
    feats = _indices(files["index_features.txt"], cols, "column numbers", f"{folder}/index_features.txt")
    targets = _indices(files["index_target.txt"], cols, "column numbers", f"{folder}/index_target.txt")
    if len(targets) != 1:
        raise UserError(f"data=uci: {folder}/index_target.txt must hold one column number, not {len(targets)}")
    tr = _indices(files[f"index_train_{split}.txt"], n, "row numbers", f"{folder}/index_train_{split}.txt")
    te = _indices(files[f"index_test_{split}.txt"], n, "row numbers", f"{folder}/index_test_{split}.txt")
    x, y = data[:, feats], data[:, targets[0]]
    return Split(x[tr], y[tr], x[te], y[te])


@dataclass(frozen=True)
class Standardized:
    """A split standardised with its training rows' statistics, and those statistics."""

    x_train: "np.ndarray"
    y_train: "np.ndarray"
    x_test: "np.ndarray"
    y_test: "np.ndarray"
    x_mean: "np.ndarray"
    x_std: "np.ndarray"
    y_mean: float
    y_std: float


def standardize(s: Split, what: str = "the training rows") -> Standardized:
    """The protocol's: training rows' mean and population SD (ddof=0); an input SD of exactly 0 becomes 1."""
    import numpy as np

    x_mean, x_std = np.mean(s.x_train, 0), np.std(s.x_train, 0)
    x_std[x_std == 0] = 1
    y_mean, y_std = float(np.mean(s.y_train)), float(np.std(s.y_train))
    if y_std == 0:  # the original code would divide by 0
        raise UserError(f"data=uci: the target is constant on {what}, so it cannot be standardised")
    return Standardized((s.x_train - x_mean) / x_std, (s.y_train - y_mean) / y_std, (s.x_test - x_mean) / x_std,
                        (s.y_test - y_mean) / y_std, x_mean, x_std, y_mean, y_std)


def held_out(s: Split, what: str) -> Split:
    """data.holdout=validation (the protocol's 2018 version): the first 80% of the split's training
    rows in index-file order (int(0.8 * n) rows, as the original code) become the training rows and
    the last 20% the test rows; the split's test rows are not used."""
    return Split(*holdout(s.x_train, s.y_train, what))


def dataset(name: str, split: int, root: str | None = None, holdout: str = "none", validation: float = 0.0,
            **kw: Any) -> Dataset:
    """A run's Dataset: standardised float32 tensors, with the target's training SD kept so that
    RMSE and the log-likelihood are reported in the target's original units. With
    holdout="validation", the rows trained on are the first 80% of the training rows, and they
    alone give the statistics (as the original code, which standardises what it trains on).
    validation > 0 (a loop-slot regularizer's hold-out: base.validation_split): the last rows of
    those, in index-file order, are validation rows, standardised with the rows trained on."""
    s = load_split(name, split, root, **kw)
    what = f"{name} split {split}"
    rows = "the training rows"
    if holdout == "validation":
        s = held_out(s, what)
        rows = "the first 80% of the training rows"
    val = None
    if validation > 0:
        fit, v = validation_split(len(s.x_train), validation, what)
        val = (s.x_train[v], s.y_train[v])
        s = Split(s.x_train[fit], s.y_train[fit], s.x_test, s.y_test)
        rows += " not held out to validate"
    z = standardize(s, f"{rows} of {what}")
    extra = {}
    if val is not None:
        extra = dict(x_val=tensor((val[0] - z.x_mean) / z.x_std), y_val=tensor((val[1] - z.y_mean) / z.y_std).reshape(-1, 1))
    return Dataset(tensor(z.x_train), tensor(z.y_train).reshape(-1, 1), tensor(z.x_test), tensor(z.y_test).reshape(-1, 1),
                   y_std=z.y_std, **extra)
