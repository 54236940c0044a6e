"""data=noisy_linear: seed 003's data, y = slope * x + intercept + noise on evenly spaced x.

x = linspace(x_min, x_max, n), y = f(x) + noise * N(0, 1); the test set has the same x and fresh
noise. Drawn from the data's own seed (never the model's RNG), exactly as seed 003 draws it after
torch.manual_seed(seed): train noise first, then test noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal

from dropbench.data.base import VALIDATION_STREAM, Dataset, rows_trained, validation_split
from dropbench.params import NONNEG, POSITIVE, SEED, Rule, must, param


def x_range_rule() -> Rule:
    """x_max above x_min (the linspace sets' one rule across fields)."""
    return must("x_max", lambda c: c.x_max > c.x_min, lambda c, k: f"> {k}.x_min ({c.x_min})")


@dataclass(frozen=True)
class Config:
    name: Literal["noisy_linear"] = "noisy_linear"
    n_train: int = param(20, POSITIVE)
    n_test: int = param(20, POSITIVE)
    x_min: float = -1.0
    x_max: float = 1.0
    noise: float = param(0.3, NONNEG)
    slope: float = 1.0
    intercept: float = 0.0
    seed: int | None = param(None, SEED)

    RULES: ClassVar[tuple[Rule, ...]] = (x_range_rule(),)


def linspace_noise(conf: Any, seed: int, f: Callable[[Any], Any], fraction: float = 0.0) -> Dataset:
    """The seed recipe: x = linspace, y = f(x) + noise*N(0,1); test = same x, fresh noise.

    Noise is drawn with torch.normal(zeros, ones) from a generator seeded with `seed`, exactly as
    seed 003 draws it after torch.manual_seed(seed): train noise first, then test noise.
    """
    import numpy as np
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.unsqueeze(torch.linspace(conf.x_min, conf.x_max, conf.n_train), 1)
    y = f(x) + conf.noise * torch.normal(torch.zeros(conf.n_train, 1), torch.ones(conf.n_train, 1), generator=g)
    tx = torch.unsqueeze(torch.linspace(conf.x_min, conf.x_max, conf.n_test), 1)
    ty = f(tx) + conf.noise * torch.normal(torch.zeros(conf.n_test, 1), torch.ones(conf.n_test, 1), generator=g)
    if fraction > 0:
        # The rows lie in x order, so the last ones would validate on the right end of the range
        # only: the validation rows are drawn from the data seed instead (the same for every
        # regularizer and strength of that seed), the rest trained on in x order.
        fit, val = validation_split(conf.n_train, fraction, f"data={conf.name}", np.random.default_rng((seed, VALIDATION_STREAM)))
        fit_i, val_i = torch.from_numpy(fit), torch.from_numpy(val)
        return Dataset(x[fit_i], y[fit_i], tx, ty, x_val=x[val_i], y_val=y[val_i])
    return Dataset(x, y, tx, ty)


def load(conf: Config, seed: int, validation: float = 0.0) -> Dataset:
    return linspace_noise(conf, seed, lambda x: conf.slope * x + conf.intercept, validation)


def n_trained(conf: Config, validation: float = 0.0) -> int:
    return rows_trained(conf.n_train, "none", validation, f"data={conf.name}")
