"""What every data set shares: the Dataset a run trains on, standardisation, and the hold-out rules.

A data set (one module of this package, see __init__.py) turns its Config into a Dataset. The rules
here decide which rows a run trains on, the same way for every data set: a test split by fraction
(split), data.holdout=validation (dropbench tune's search: the first 80% of the training rows are
trained on, the last 20% evaluated), and a loop-slot regularizer's validation rows (early
stopping). rows_trained() says how many rows those rules leave without loading anything, which is
what values derived from N (reg.l2.prior_length_scale) need before runs are planned.

Imports nothing else of dropbench but errors and params; numpy and torch only where data are built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from dropbench.errors import UserError
from dropbench.params import param

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class Dataset:
    """Train and test sets as float tensors of shape [n, features] and [n, 1]."""

    x_train: "torch.Tensor"
    y_train: "torch.Tensor"
    x_test: "torch.Tensor"
    y_test: "torch.Tensor"
    # The target's training SD when y is standardised for training (data=uci): RMSE and the
    # log-likelihood are reported in the target's original units with it. 1 for the other data sets.
    y_std: float = 1.0
    # Validation rows held out of the training rows by a loop-slot regularizer (early stopping:
    # regs.holdout_fraction); every evaluation scores them (val_mse). None: every row is trained on.
    x_val: "torch.Tensor | None" = None
    y_val: "torch.Tensor | None" = None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def to(self, dtype: "torch.dtype", device: Any = "cpu") -> "Dataset":
        move = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
        moved = (move(t) for t in (self.x_train, self.y_train, self.x_test, self.y_test))
        return Dataset(*moved, y_std=self.y_std, x_val=move(self.x_val), y_val=move(self.y_val))


# ---- data.holdout=validation ----------------------------------------------------------------
Holdout = Literal["none", "validation"]


def holdout_param() -> Any:
    """data.holdout of the data sets that have training rows to hold out. validation: train on
    the first 80% of the training rows (in the split's order) and evaluate on the last 20% as the
    "test" set (dropbench tune's search phase; the 2018 rule of the protocol of the UCI split
    files, docs/uci-protocol.md). Added after run ids were pinned: out of the run id at its default."""
    return param("none", id_omits_default=True)


# dropbench tune's validation hold-out (as the original MC-dropout code cuts it: n_fit =
# int(0.8 * n)): the first 80% of a split's training rows, in the split's own order, are trained
# on and the last 20% are the validation set. Standardisation then uses the fit rows only.
HOLDOUT_FIT = 0.8

# Fewer training rows than this cannot show over- or underfitting (one point is fit exactly).
MIN_TRAIN_ROWS = 2


def holdout_rows(n: int, what: str) -> int:
    """How many of `n` training rows are trained on under data.holdout=validation (the rest validate)."""
    n_fit = int(HOLDOUT_FIT * n)
    if n_fit < MIN_TRAIN_ROWS or n - n_fit < 1:
        raise UserError(
            f"data.holdout=validation: {what} has {n} training row(s), which leave {n_fit} to train on and {n - n_fit} to "
            f"validate; a run needs at least {MIN_TRAIN_ROWS} and 1; use more training rows or data.holdout=none"
        )
    return n_fit


def holdout(xtr: "np.ndarray", ytr: "np.ndarray", what: str) -> tuple["np.ndarray", ...]:
    """(fit x, fit y, validation x, validation y): the first 80% of the training rows and the last 20%."""
    n_fit = holdout_rows(len(xtr), what)
    return xtr[:n_fit], ytr[:n_fit], xtr[n_fit:], ytr[n_fit:]


# ---- a loop-slot regularizer's validation rows -----------------------------------------------
# (early stopping: regs.holdout_fraction): the last `fraction` of the training rows in the split's
# order, int((1 - fraction) * n) trained on, as data.holdout cuts its 80%. After data.holdout: in
# dropbench tune's search they come out of the rows the search trains on, never out of its
# validation ("test") rows.
VALIDATION_STREAM = 0x56414C  # the noisy sets' draw of validation rows: a stream of the data seed's own


def validation_rows(n: int, fraction: float, what: str) -> int:
    """How many of `n` training rows are held out as validation rows (the rest are trained on)."""
    n_fit = math.floor(round((1.0 - fraction) * n, 9))
    if n_fit < MIN_TRAIN_ROWS or n - n_fit < 1:
        raise UserError(
            f"{what} has {n} training row(s): holding out {fraction:g} of them to validate leaves {n_fit} to train on and "
            f"{n - n_fit} to validate; a run needs at least {MIN_TRAIN_ROWS} and 1; use more training rows or change the fraction"
        )
    return n - n_fit


def validation_split(n: int, fraction: float, what: str, rng: "np.random.Generator | None" = None) -> tuple["np.ndarray", "np.ndarray"]:
    """(rows trained on, validation rows) as index arrays in the rows' order: the last rows, or
    with `rng` rows drawn from it (for data sets whose rows are sorted by x)."""
    import numpy as np

    n_val = validation_rows(n, fraction, what)
    if rng is None:
        return np.arange(n - n_val), np.arange(n - n_val, n)
    val = np.zeros(n, dtype=bool)
    val[rng.permutation(n)[:n_val]] = True
    return np.flatnonzero(~val), np.flatnonzero(val)


def rows_trained(n: int, held_out: str, fraction: float, what: str) -> int:
    """How many of `n` training rows a run trains on after data.holdout (`held_out`) and a
    loop-slot regularizer's `fraction`: what the loaders leave, and the same errors, without data."""
    if held_out == "validation":
        n = holdout_rows(n, what)
    return n - validation_rows(n, fraction, what) if fraction > 0 else n


# ---- a test split by fraction ----------------------------------------------------------------
def split_sizes(n: int, test_fraction: float) -> tuple[int, int]:
    """(training rows, test rows) of `n` rows split by data.test_fraction; too few is one line."""
    n_test = max(1, int(round(n * test_fraction)))
    if n - n_test < MIN_TRAIN_ROWS:
        raise UserError(
            f"data has {n} rows: data.test_fraction={test_fraction} leaves {n - n_test} training and {n_test} test row(s), "
            f"and a run needs at least {MIN_TRAIN_ROWS} training rows and 1 test row; add rows or lower data.test_fraction"
        )
    return n - n_test, n_test


def split(x: "np.ndarray", y: "np.ndarray", test_fraction: float, seed: int) -> tuple["np.ndarray", ...]:
    """(x train, y train, x test, y test): the test rows drawn from `seed`."""
    import numpy as np

    _, n_test = split_sizes(len(x), test_fraction)
    perm = np.random.default_rng(seed).permutation(len(x))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


# ---- standardisation and tensors -------------------------------------------------------------
def standardize(xtr: "np.ndarray", ytr: "np.ndarray", *others: "np.ndarray") -> tuple["np.ndarray", ...]:
    """Scale with the rows trained on only, so no test (or validation) information leaks; others
    are (x, y) pairs scaled alike. A constant column (SD 0) or target is only centred."""
    import numpy as np

    mx, sx = xtr.mean(0), xtr.std(0)
    sx = np.where(sx > 0, sx, 1.0)
    my, sy = ytr.mean(), ytr.std() or 1.0
    scaled = [(a - mx) / sx if i % 2 == 0 else (a - my) / sy for i, a in enumerate(others)]
    return ((xtr - mx) / sx, (ytr - my) / sy, *scaled)


def tensor(a: Any) -> "torch.Tensor":
    """An array as the float32 tensor a Dataset holds (through float64, as every loader converts)."""
    import numpy as np
    import torch

    return torch.as_tensor(np.asarray(a, dtype=np.float64)).float()


def tabular(xtr: "np.ndarray", ytr: "np.ndarray", xte: "np.ndarray", yte: "np.ndarray", standardize_: bool,
            held_out: str = "none", what: str = "the data set", fraction: float = 0.0) -> Dataset:
    """A tabular Dataset; with held_out="validation" the test rows are the training rows' last
    20% (the real test rows are not used), and standardisation sees the remaining 80% only. With
    `fraction` > 0 the last rows of those are validation rows, and standardisation sees the
    rest only."""
    if held_out == "validation":
        xtr, ytr, xte, yte = holdout(xtr, ytr, what)
    xva = yva = None
    if fraction > 0:
        fit, val = validation_split(len(xtr), fraction, what)
        xtr, ytr, xva, yva = xtr[fit], ytr[fit], xtr[val], ytr[val]
    if standardize_:
        xtr, ytr, xte, yte, *va = standardize(xtr, ytr, xte, yte, *((xva, yva) if xva is not None else ()))
        if va:
            xva, yva = va
    val = dict(x_val=tensor(xva), y_val=tensor(yva).reshape(-1, 1)) if xva is not None else {}
    return Dataset(tensor(xtr), tensor(ytr).reshape(-1, 1), tensor(xte), tensor(yte).reshape(-1, 1), **val)
