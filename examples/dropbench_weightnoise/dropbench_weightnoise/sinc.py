"""data=sinc: y = sin(pi x) / (pi x) + noise; training x drawn uniformly on [-x_max, x_max], test x
an even grid over the same interval, both with fresh noise, drawn from the data seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dropbench.data.base import Dataset, Holdout, holdout_param, rows_trained, tabular
from dropbench.params import NONNEG, POSITIVE, SEED, param


@dataclass(frozen=True)
class Config:
    name: Literal["sinc"] = "sinc"
    n_train: int = param(30, POSITIVE)
    n_test: int = param(100, POSITIVE)
    x_max: float = param(4.0, POSITIVE)
    noise: float = param(0.1, NONNEG)
    seed: int | None = param(None, SEED)
    holdout: Holdout = holdout_param()  # validation: what `dropbench tune` searches on


def load(conf: Config, seed: int, validation: float = 0.0) -> Dataset:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(-conf.x_max, conf.x_max, (conf.n_train, 1))
    tx = np.linspace(-conf.x_max, conf.x_max, conf.n_test).reshape(-1, 1)
    y = np.sinc(x[:, 0]) + conf.noise * rng.standard_normal(conf.n_train)
    ty = np.sinc(tx[:, 0]) + conf.noise * rng.standard_normal(conf.n_test)
    return tabular(x, y, tx, ty, False, conf.holdout, "data=sinc", validation)


def n_trained(conf: Config, validation: float = 0.0) -> int:
    return rows_trained(conf.n_train, conf.holdout, validation, "data=sinc")
