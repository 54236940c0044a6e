"""What the UCI data sets are, known without reading them: names, folders, files, split counts.

The manifest (SHA256SUMS beside this module, package data) holds the sha256 of every file the
loader reads: the source repository's files at SOURCE_COMMIT, UCI_Datasets/<folder>/data/, the
same sums as the SHA256SUMS of the split files' folder (docs/uci-protocol.md). A data set's
standard splits are the index_train_<i>.txt / index_test_<i>.txt pairs it lists. Config
validation reads this module (a known data set, a split it has), so it is standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dropbench.errors import UserError, did_you_mean

SOURCE_COMMIT = "6eb4497628d12b0f300f4b4f6bdc386bebad565c"

# dropbench's names -> the source repository's folder names.
DATASETS = {
    "boston_housing": "bostonHousing",
    "concrete": "concrete",
    "energy": "energy",
    "kin8nm": "kin8nm",
    "naval": "naval-propulsion-plant",
    "power_plant": "power-plant",
    "wine_red": "wine-quality-red",
    "yacht": "yacht",
}


def parse_manifest(text: str) -> dict[str, str]:
    """`sha256sum` output ("<sha256>  <folder>/<file>" per line) -> {"folder/file": sha256}."""
    out = {}
    for line in text.splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            out[rel.strip().lstrip("*")] = digest.lower()
    return out


# Read beside this module, as conf/ is (the package is installed as files, never zipped).
MANIFEST: dict[str, str] = parse_manifest((Path(__file__).parent / "SHA256SUMS").read_text())


def folder_of(dataset: str) -> str:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise UserError(f"invalid value data.dataset={dataset!r}{did_you_mean(dataset, DATASETS)}: "
                        f"must be one of {', '.join(DATASETS)}") from None


def n_splits(dataset: str, manifest: Mapping[str, str] | None = None) -> int:
    """How many standard splits the data set has: its index_train_<i>.txt files in the manifest, i = 0, 1, ..."""
    m = MANIFEST if manifest is None else manifest
    folder, n = folder_of(dataset), 0
    while f"{folder}/index_train_{n}.txt" in m and f"{folder}/index_test_{n}.txt" in m:
        n += 1
    return n


def check_split(dataset: str, split: int, manifest: Mapping[str, str] | None = None) -> None:
    n = n_splits(dataset, manifest)
    if not 0 <= split < n:
        raise UserError(f"invalid value data.split={split!r}: must be in 0..{n - 1} ({dataset} has {n} standard splits)")


def split_files(split: int) -> tuple[str, ...]:
    """The files one split needs (the repository's other files are settings, not data)."""
    return ("data.txt", "index_features.txt", "index_target.txt", f"index_train_{split}.txt", f"index_test_{split}.txt")
