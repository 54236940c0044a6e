"""pyproject.toml lists its packages by name: a sub-package missing there works in an editable
install (found on disk) and is absent from a wheel, so every package on disk must be listed."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_in_pyprojects_package_list():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dropbench").rglob("__init__.py")
               if "__pycache__" not in p.parts}
    assert on_disk - listed == set(), f"add to pyproject.toml [tool.setuptools] packages: {sorted(on_disk - listed)}"


def test_every_data_file_of_the_package_is_in_pyprojects_package_data():
    """A file the package reads (data/uci/SHA256SUMS, references/*.csv) must be listed as package
    data, under its own package or one above it, or a wheel lacks it."""
    from fnmatch import fnmatch

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = tool.get("package-data", {})
    files = [p for p in (ROOT / "dropbench").rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
             and "__pycache__" not in p.parts]
    assert {"SHA256SUMS", "gal2016.csv"} <= {p.name for p in files}

    def listed(p: Path) -> bool:
        for folder in p.parents:
            if folder == ROOT:
                return False
            package = ".".join(folder.relative_to(ROOT).parts)
            if any(fnmatch(p.relative_to(folder).as_posix(), pat) for pat in data.get(package, [])):
                return True
        return False

    missing = [p.relative_to(ROOT).as_posix() for p in files if not listed(p)]
    assert not missing, f"add to [tool.setuptools.package-data]: {missing}"
