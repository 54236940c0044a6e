"""Small regression data sets, generated from their own seed (never the model's RNG)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dropbench.errors import UserError

if TYPE_CHECKING:
    import torch

    from dropbench.config import RunConfig


@dataclass(frozen=True)
class Dataset:
    """Train and test sets as float tensors of shape [n, features] and [n, 1]."""

    x_train: "torch.Tensor"
    y_train: "torch.Tensor"
    x_test: "torch.Tensor"
    y_test: "torch.Tensor"
    # The target's training mean and SD when y is standardised for training (data=uci):
    # y = y_std * y_standardised + y_mean. The engines do not use them yet, so data=uci's MSE
    # columns are in standardised units (the README says so); reporting RMSE and log-likelihood in
    # original units is the UCI protocol's next step. 0/1 for the other data sets.
    y_mean: float = 0.0
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
        return Dataset(*moved, y_mean=self.y_mean, y_std=self.y_std, x_val=move(self.x_val), y_val=move(self.y_val))


def _linspace_noise(cfg: Any, seed: int, f: Any, fraction: float = 0.0, what: str = "") -> Dataset:
    """The seed recipe: x = linspace, y = f(x) + noise*N(0,1); test = same x, fresh noise.

    Noise is drawn with torch.normal(zeros, ones) from a generator seeded with `seed`, exactly as
    seed 003 draws it after torch.manual_seed(seed): train noise first, then test noise.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.unsqueeze(torch.linspace(cfg.x_min, cfg.x_max, cfg.n_train), 1)
    y = f(x) + cfg.noise * torch.normal(torch.zeros(cfg.n_train, 1), torch.ones(cfg.n_train, 1), generator=g)
    tx = torch.unsqueeze(torch.linspace(cfg.x_min, cfg.x_max, cfg.n_test), 1)
    ty = f(tx) + cfg.noise * torch.normal(torch.zeros(cfg.n_test, 1), torch.ones(cfg.n_test, 1), generator=g)
    if fraction > 0:
        # The rows lie in x order, so the last ones would validate on the right end of the range
        # only: the validation rows are drawn from the data seed instead (the same for every
        # regularizer and strength of that seed), the rest trained on in x order.
        fit, val = validation_split(cfg.n_train, fraction, what, np.random.default_rng((seed, VALIDATION_STREAM)))
        fit_i, val_i = torch.from_numpy(fit), torch.from_numpy(val)
        return Dataset(x[fit_i], y[fit_i], tx, ty, x_val=x[val_i], y_val=y[val_i])
    return Dataset(x, y, tx, ty)


def _standardize(xtr: np.ndarray, ytr: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scale with the rows trained on only, so no test (or validation) information leaks; others
    are (x, y) pairs scaled alike."""
    mx, sx = xtr.mean(0), xtr.std(0)
    sx = np.where(sx > 0, sx, 1.0)
    my, sy = ytr.mean(), ytr.std() or 1.0
    scaled = [(a - mx) / sx if i % 2 == 0 else (a - my) / sy for i, a in enumerate(others)]
    return ((xtr - mx) / sx, (ytr - my) / sy, *scaled)


# Fewer training rows than this cannot show over- or underfitting (one point is fit exactly).
MIN_TRAIN_ROWS = 2


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    n = len(x)
    n_test = max(1, int(round(n * test_fraction)))
    if n - n_test < MIN_TRAIN_ROWS:
        raise UserError(
            f"data has {n} rows: data.test_fraction={test_fraction} leaves {n - n_test} training and {n_test} test row(s), "
            f"and a run needs at least {MIN_TRAIN_ROWS} training rows and 1 test row; add rows or lower data.test_fraction"
        )
    perm = np.random.default_rng(seed).permutation(n)
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


# dropbench tune's validation hold-out (PROTOCOL.md, 2018 version, as the original code cuts it:
# n_fit = int(0.8 * n)): the first 80% of a split's training rows, in the split's own order, are
# trained on and the last 20% are the validation set. Standardisation then uses the fit rows only.
HOLDOUT_FIT = 0.8


def holdout_rows(n: int, what: str) -> int:
    """How many of `n` training rows are trained on under data.holdout=validation (the rest validate)."""
    n_fit = int(HOLDOUT_FIT * n)
    if n_fit < MIN_TRAIN_ROWS or n - n_fit < 1:
        raise UserError(
            f"data.holdout=validation: {what} has {n} training row(s), which leave {n_fit} to train on and {n - n_fit} to "
            f"validate; a run needs at least {MIN_TRAIN_ROWS} and 1; use more training rows or data.holdout=none"
        )
    return n_fit


def holdout(xtr: np.ndarray, ytr: np.ndarray, what: str) -> tuple[np.ndarray, ...]:
    """(fit x, fit y, validation x, validation y): the first 80% of the training rows and the last 20%."""
    n_fit = holdout_rows(len(xtr), what)
    return xtr[:n_fit], ytr[:n_fit], xtr[n_fit:], ytr[n_fit:]


# A loop-slot regularizer's validation rows (early stopping: regs.holdout_fraction): the last
# `fraction` of the training rows in the split's order, int((1 - fraction) * n) trained on, as
# data.holdout cuts its 80%. After data.holdout: in dropbench tune's search they come out of the
# rows the search trains on, never out of its validation ("test") rows.
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


def validation_split(n: int, fraction: float, what: str, rng: "np.random.Generator | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows trained on, validation rows) as index arrays in the rows' order: the last rows, or
    with `rng` rows drawn from it (for data sets whose rows are sorted by x)."""
    n_val = validation_rows(n, fraction, what)
    if rng is None:
        return np.arange(n - n_val), np.arange(n - n_val, n)
    val = np.zeros(n, dtype=bool)
    val[rng.permutation(n)[:n_val]] = True
    return np.flatnonzero(~val), np.flatnonzero(val)


def _tabular(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, standardize: bool,
             held_out: str = "none", what: str = "the data set", fraction: float = 0.0) -> Dataset:
    """A tabular Dataset; with held_out="validation" the test rows are the training rows' last
    20% (the real test rows are not used), and standardisation sees the remaining 80% only. With
    `fraction` > 0 the last rows of those are validation rows, and standardisation sees the
    rest only."""
    import torch

    if held_out == "validation":
        xtr, ytr, xte, yte = holdout(xtr, ytr, what)
    xva = yva = None
    if fraction > 0:
        fit, val = validation_split(len(xtr), fraction, what)
        xtr, ytr, xva, yva = xtr[fit], ytr[fit], xtr[val], ytr[val]
    if standardize:
        xtr, ytr, xte, yte, *va = _standardize(xtr, ytr, xte, yte, *((xva, yva) if xva is not None else ()))
        if va:
            xva, yva = va
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64)).float()  # noqa: E731
    val = dict(x_val=t(xva), y_val=t(yva).reshape(-1, 1)) if xva is not None else {}
    return Dataset(t(xtr), t(ytr).reshape(-1, 1), t(xte), t(yte).reshape(-1, 1), **val)


def read_csv(path: str, target: str, features: list[str] | None, sha256: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load a user's CSV with checks that turn every problem into a one-line UserError.

    With `sha256` (the config's), the bytes parsed are the bytes the run id was computed from: a
    file edited after the run was planned is refused, not trained on under the old id.
    """
    import hashlib
    import io

    import pandas as pd

    from dropbench.config import csv_read_errors

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


def load_dataset(cfg: "RunConfig") -> Dataset:
    """Build the run's data set (float32 on CPU); the engine moves it to its dtype and device."""
    import torch

    from dropbench import regs

    d, seed = cfg.data, cfg.data_seed
    frac = regs.holdout_fraction(cfg.reg)  # a loop-slot regularizer's validation rows (early stopping)
    if d.name == "noisy_linear":
        return _linspace_noise(d, seed, lambda x: d.slope * x + d.intercept, frac, "data=noisy_linear")
    if d.name == "noisy_sine":
        return _linspace_noise(d, seed, lambda x: torch.sin(d.freq * x), frac, "data=noisy_sine")
    if d.name == "friedman1":
        from sklearn.datasets import make_friedman1

        x, y = make_friedman1(n_samples=d.n_train + d.n_test, n_features=d.n_features, noise=d.noise, random_state=seed)
        return _tabular(x[: d.n_train], y[: d.n_train], x[d.n_train :], y[d.n_train :], d.standardize, d.holdout,
                        "data=friedman1", frac)
    if d.name == "diabetes":
        from sklearn.datasets import load_diabetes

        x, y = load_diabetes(return_X_y=True)
        return _tabular(*_split(x, y, d.test_fraction, seed), d.standardize, d.holdout, "data=diabetes", frac)
    if d.name == "csv":
        x, y = read_csv(d.path, d.target, d.features, d.sha256)
        return _tabular(*_split(x, y, d.test_fraction, seed), d.standardize, d.holdout, f"data.path={d.path}", frac)
    if d.name == "uci":
        from dropbench import uci

        return uci.load_dataset(d.dataset, d.split, d.root, holdout=d.holdout, validation=frac)
    raise UserError(f"unknown data set {d.name}")  # pragma: no cover - config validation catches it
