"""The package's import graph (scripts/import_graph.py): no cycle among its modules, lazy imports
included, and the engines' layers pointing one way."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Cycles tolerated, each exactly as found: none. Any cycle fails the test (python scripts/import_graph.py shows them).
KNOWN_CYCLES: list[set[str]] = []


@pytest.fixture(scope="module")
def ig():
    spec = importlib.util.spec_from_file_location("dropbench_import_graph_script", ROOT / "scripts" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    yield mod
    del sys.modules[spec.name]


def test_the_package_has_no_import_cycle(ig):
    found = [set(c) for c in ig.cycles(ig.arrows(ig.graph(ROOT)))]
    new = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    assert not new, f"import cycles (python scripts/import_graph.py shows every arrow): {new}"
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not gone, f"no longer cycles as listed: update KNOWN_CYCLES in {Path(__file__).name}: {gone}"


def test_the_engines_point_one_way(ig):
    """Only engines/__init__.py (get_engine) knows both engines; the interface, the result, the
    loop and MC evaluation know neither; the CSV contract imports nothing of dropbench."""
    g = ig.arrows(ig.graph(ROOT))
    implementations = {"dropbench.engines.reference", "dropbench.engines.batched", "dropbench.engines.program",
                       "dropbench.engines.planner"}
    for engine in ("dropbench.engines.reference", "dropbench.engines.batched"):
        # dropbench.testing, the registry's property tests, drives each engine to compare them
        assert {m for m, deps in g.items() if engine in deps} - {"dropbench.testing"} == {"dropbench.engines"}, engine
    for shared in ("dropbench.engines.base", "dropbench.engines.result", "dropbench.engines.loop", "dropbench.engines.mc"):
        assert not g[shared] & implementations, shared
    assert g["dropbench.columns"] == set()
    assert g["dropbench.engines.result"] <= {"dropbench.columns", "dropbench.regs"}


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        f = tmp_path / "pkg" / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return tmp_path


def test_a_lazy_import_closes_a_cycle_and_an_annotation_does_not(ig, tmp_path):
    """The checker itself: a cycle through a function's import is found; one through
    `if TYPE_CHECKING:` only with typing=True; a submodule's package is no arrow of its own."""
    root = _package(tmp_path, {
        "__init__.py": "from pkg.a import f\n",
        "a.py": "from pkg import b\n\ndef f():\n    return b\n",
        "b.py": "def g():\n    from pkg.a import f\n    return f\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import D\nelse:\n    import json\n",
        "d.py": "from . import c\n",
        "sub/__init__.py": "",
        "sub/e.py": "from ..a import f\n",
    })
    g = ig.graph(root, "pkg")
    assert g["pkg.a"] == {"pkg.b": ig.TOP} and g["pkg.b"] == {"pkg.a": ig.LAZY}
    assert g["pkg.c"] == {"pkg.d": ig.TYPING} and g["pkg.d"] == {"pkg.c": ig.TOP}
    assert g["pkg.sub.e"] == {"pkg.a": ig.TOP} and g["pkg.sub"] == {}
    assert ig.cycles(ig.arrows(g)) == [["pkg.a", "pkg.b"]]
    assert ig.cycles(ig.arrows(g, typing=True)) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
