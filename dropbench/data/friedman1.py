"""data=friedman1: scikit-learn's Friedman #1 regression problem (5 informative features of
n_features, uniform on [0, 1]), drawn from the data seed; the first n_train rows train."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dropbench.data.base import Dataset, Holdout, holdout_param, rows_trained, tabular
from dropbench.params import NONNEG, POSITIVE, SEED, Range, param


@dataclass(frozen=True)
class Config:
    name: Literal["friedman1"] = "friedman1"
    n_train: int = param(100, POSITIVE)
    n_test: int = param(100, POSITIVE)
    n_features: int = param(10, Range(5, why="friedman1 uses 5 informative features"))
    noise: float = param(1.0, NONNEG)
    standardize: bool = True
    seed: int | None = param(None, SEED)
    holdout: Holdout = holdout_param()


def load(conf: Config, seed: int, validation: float = 0.0) -> Dataset:
    from sklearn.datasets import make_friedman1

    n = conf.n_train
    x, y = make_friedman1(n_samples=n + conf.n_test, n_features=conf.n_features, noise=conf.noise, random_state=seed)
    return tabular(x[:n], y[:n], x[n:], y[n:], conf.standardize, conf.holdout, "data=friedman1", validation)


def n_trained(conf: Config, validation: float = 0.0) -> int:
    return rows_trained(conf.n_train, conf.holdout, validation, "data=friedman1")
