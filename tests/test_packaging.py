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


def test_the_shipped_references_are_package_data():
    """`report --reference gal2016` reads dropbench/references/ from the installed package."""
    import fnmatch

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"].get("dropbench", [])
    files = [p.relative_to(ROOT / "dropbench").as_posix() for p in (ROOT / "dropbench" / "references").iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in data) for f in files), (files, data)
