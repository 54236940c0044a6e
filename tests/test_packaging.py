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
    """A file the package reads (data/uci/SHA256SUMS) must be listed as package data, or a wheel lacks it."""
    from fnmatch import fnmatch

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = tool.get("package-data", {})
    files = [p for p in (ROOT / "dropbench").rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
             and "__pycache__" not in p.parts]
    assert any(p.name == "SHA256SUMS" for p in files)
    for p in files:
        package = ".".join(p.parent.relative_to(ROOT).parts)
        assert any(fnmatch(p.name, pat) for pat in data.get(package, [])), f"add {p.name} to [tool.setuptools.package-data] {package!r}"
