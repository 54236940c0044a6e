"""data=noisy_sine: noisy_linear's recipe with y = sin(freq * x) + noise, on [-3, 3] by default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dropbench.data.base import Dataset, rows_trained
from dropbench.data.noisy_linear import linspace_noise, x_range_rule
from dropbench.params import NONNEG, POSITIVE, SEED, Rule, param


@dataclass(frozen=True)
class Config:
    name: Literal["noisy_sine"] = "noisy_sine"
    n_train: int = param(20, POSITIVE)
    n_test: int = param(20, POSITIVE)
    x_min: float = -3.0
    x_max: float = 3.0
    noise: float = param(0.2, NONNEG)
    freq: float = 1.0
    seed: int | None = param(None, SEED)

    RULES: ClassVar[tuple[Rule, ...]] = (x_range_rule(),)


def load(conf: Config, seed: int, validation: float = 0.0) -> Dataset:
    import torch

    return linspace_noise(conf, seed, lambda x: torch.sin(conf.freq * x), validation)


def n_trained(conf: Config, validation: float = 0.0) -> int:
    return rows_trained(conf.n_train, "none", validation, f"data={conf.name}")
