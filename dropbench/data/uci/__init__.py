"""data=uci: the eight UCI regression data sets with their 20 standard train/test splits.

catalog.py  names, folders, files, split counts (the shipped SHA256SUMS manifest); standard library
fetch.py    finding, downloading and verifying a split's files
splits.py   a split's rows read, standardised (the protocol's way) and held out

The run id names a split by data set and number, never by folder: every file is verified against
the manifest, so the name stands for the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dropbench.data.base import Dataset, Holdout, holdout_param, rows_trained
from dropbench.data.uci import catalog
from dropbench.params import Check, OneOf, Rule, must, param


def _split_rule() -> Rule:
    def ok(c: "Config") -> bool:
        return 0 <= c.split < catalog.n_splits(c.dataset)

    def allowed(c: "Config", k: str) -> str:
        n = catalog.n_splits(c.dataset)
        return f"in 0..{n - 1} ({c.dataset} has {n} standard splits)"

    return must("split", ok, allowed)


@dataclass(frozen=True)
class Config:
    """A UCI regression data set with one of its standard splits."""

    dataset: str = param(check=OneOf(tuple(catalog.DATASETS)))
    name: Literal["uci"] = "uci"
    split: int = 0
    # The folder holding the files (null: $DROPBENCH_UCI_DIR, else the download cache); made
    # absolute by config.build(). Not in the run id: the files are verified, so dataset + split say what.
    root: str | None = param(None, Check(lambda r: r.strip() != "", "a folder (or null)", bad=(" ",)))
    holdout: Holdout = holdout_param()

    RULES: ClassVar[tuple[Rule, ...]] = (_split_rule(),)


def load(conf: Config, seed: int, validation: float = 0.0) -> Dataset:
    """The split's Dataset (its rows are fixed: `seed` draws nothing)."""
    from dropbench.data.uci import splits

    return splits.dataset(conf.dataset, conf.split, conf.root, holdout=conf.holdout, validation=validation)


def n_trained(conf: Config, validation: float = 0.0) -> int:
    """The rows trained on, from the split's verified index file alone."""
    from dropbench.data.uci.fetch import fetch

    train = f"index_train_{conf.split}.txt"
    n = len(fetch(conf.dataset, conf.split, conf.root, files=[train])[train])
    return rows_trained(n, conf.holdout, validation, f"{conf.dataset} split {conf.split}")
