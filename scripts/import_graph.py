#!/usr/bin/env python
"""The import graph of the dropbench package, read from its source (nothing is imported): the
dropbench modules each module imports, and the cycles among them.

    python scripts/import_graph.py            the cycles (exit 1 if any), then each module's arrows
    python scripts/import_graph.py --typing   count imports under `if TYPE_CHECKING:` as arrows too
    python scripts/import_graph.py --dot      the graph in Graphviz's dot language

An arrow is an import a module executes: at its top (when it is imported) or lazily, inside a
function (when that is called; marked * below). A lazy arrow is an arrow: a cycle through one
still ties the modules together, it only fails later. An import under `if TYPE_CHECKING:` is
never executed (annotations only) and counts only with --typing. A submodule does not point at
the package it lies in (Python runs dropbench/engines/__init__.py before engines/loop.py, but
loop.py does not name it): only what a module imports is an arrow.

tests/test_import_graph.py keeps the package free of cycles.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP, LAZY, TYPING = "top", "lazy", "typing"  # how a module imports another, strongest first
Graph = dict[str, dict[str, str]]  # module -> {module it imports: TOP | LAZY | TYPING}


def modules(root: Path, package: str = "dropbench") -> dict[str, Path]:
    """Every module of `package` under `root` by dotted name (a package by its own name)."""
    found = {}
    for f in sorted((root / package).rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        parts = f.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, str]]:
    """Each import statement of a module with how it runs: TOP, LAZY (in a function) or TYPING."""
    out: list[tuple[ast.Import | ast.ImportFrom, str]] = []

    def visit(node: ast.AST, kind: str) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append((node, kind))
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, TYPING)
            for child in node.orelse:
                visit(child, kind)
            return
        inner = LAZY if kind == TOP and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else kind
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, TOP)
    return out


def _targets(node: ast.Import | ast.ImportFrom, here: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    """The modules an import statement names: `from a import b` names module a.b where there is
    one, else a; `import a.b` names a.b. Relative imports resolve from `here`."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = here.split(".") if is_package else here.split(".")[:-1]
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = []
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def graph(root: Path = ROOT, package: str = "dropbench") -> Graph:
    """module -> {each module of the package it imports: how (its strongest import of it)}."""
    known = modules(root, package)
    strength = {TOP: 0, LAZY: 1, TYPING: 2}
    g: Graph = {}
    for name, path in known.items():
        arrows: dict[str, str] = {}
        for node, kind in _imports(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, name, path.name == "__init__.py", known):
                if target != name and (target not in arrows or strength[kind] < strength[arrows[target]]):
                    arrows[target] = kind
        g[name] = arrows
    return g


def arrows(g: Graph, typing: bool = False) -> dict[str, set[str]]:
    """The graph's arrows: every executed import, and with `typing` the annotation-only ones too."""
    return {m: {t for t, kind in deps.items() if typing or kind != TYPING} for m, deps in g.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The cycles: every group of modules that import each other round (a strongly connected
    component of two or more), each sorted, in sorted order (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges) + 100))
    for v in sorted(edges):
        if v not in index:
            connect(v)
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--typing", action="store_true", help="count imports under `if TYPE_CHECKING:` as arrows too")
    ap.add_argument("--dot", action="store_true", help="print the graph in Graphviz's dot language")
    args = ap.parse_args(argv)
    g = graph()
    edges = arrows(g, args.typing)
    if args.dot:
        print("digraph dropbench {")
        for m in sorted(edges):
            for t in sorted(edges[m]):
                print(f'  "{m}" -> "{t}"' + (" [style=dashed]" if g[m][t] != TOP else "") + ";")
        print("}")
        return 0
    found = cycles(edges)
    for c in found:
        print("cycle: " + " <-> ".join(c))
    if not found:
        print("no cycle" + (" (TYPE_CHECKING imports included)" if args.typing else ""))
    print()
    for m in sorted(edges):
        mark = {TOP: "", LAZY: "*", TYPING: "(typing)"}
        print(f"{m} -> " + ", ".join(t + mark[g[m][t]] for t in sorted(edges[m])))
    return 1 if found else 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the listing quietly
    raise SystemExit(main())
