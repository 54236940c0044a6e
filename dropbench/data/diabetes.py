"""data=diabetes: scikit-learn's diabetes data (442 patients, 10 features), split into training
and test rows by data.test_fraction, drawn from the data seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dropbench.data.base import Dataset, Holdout, holdout_param, rows_trained, split, split_sizes, tabular
from dropbench.params import FRACTION, SEED, param

ROWS = 442  # sklearn.datasets.load_diabetes: known without importing scikit-learn (tests pin it)


@dataclass(frozen=True)
class Config:
    name: Literal["diabetes"] = "diabetes"
    test_fraction: float = param(0.25, FRACTION)
    standardize: bool = True
    seed: int | None = param(None, SEED)
    holdout: Holdout = holdout_param()


def load(conf: Config, seed: int, validation: float = 0.0) -> Dataset:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return tabular(*split(x, y, conf.test_fraction, seed), conf.standardize, conf.holdout, "data=diabetes", validation)


def n_trained(conf: Config, validation: float = 0.0) -> int:
    return rows_trained(split_sizes(ROWS, conf.test_fraction)[0], conf.holdout, validation, "data=diabetes")
