"""The layers of the analysis side: numbers (dropbench.analysis) import the standard library
only, rendering (dropbench.render) adds rich, and no module imports one of a layer above it,
lazy imports inside functions included."""

import ast
import subprocess
import sys
from pathlib import Path

import dropbench

PKG = Path(dropbench.__file__).parent
# Bottom to top; a module may import its own layer's and lower ones' (errors, provenance, regs,
# engines' column tuples lie below all of these).
LAYERS = [("dropbench.analysis",), ("dropbench.render",), ("dropbench.report",), ("dropbench.check", "dropbench.plots"),
          ("dropbench.html_report", "dropbench.export"), ("dropbench.cli",)]
THIRD_PARTY = {"dropbench.analysis": set(), "dropbench.render": {"rich"}}
# ... and inside functions only, where a test needs it (the tests across data sets: issue 20).
LAZY_THIRD_PARTY = {"dropbench.analysis": {"scipy"}, "dropbench.render": set()}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path, top_only: bool = False) -> set[str]:
    """Every module `path` imports, at the top or inside a function (top_only: at the top)."""
    found = set()
    tree = ast.parse(path.read_text())
    for node in (tree.body if top_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # from dropbench.render import long
    return found


def _layer(module: str) -> int | None:
    return next((i for i, names in enumerate(LAYERS) for n in names if module == n or module.startswith(n + ".")), None)


def _modules(prefix: str) -> list[Path]:
    return sorted(PKG.glob(prefix.removeprefix("dropbench.").replace(".", "/") + "/*.py"))


def test_no_module_imports_a_layer_above_its_own():
    for names in LAYERS:
        for name in names:
            paths = _modules(name) or [PKG / (name.removeprefix("dropbench.") + ".py")]
            for path in paths:
                mine = _layer(_module(path))
                above = sorted(m for m in _imports(path) if (theirs := _layer(m)) is not None and theirs > mine)
                assert not above, f"{_module(path)} imports {above}, a layer above its own"


def test_numbers_import_the_standard_library_only_and_rendering_rich():
    for layer, allowed in THIRD_PARTY.items():
        for path in _modules(layer):
            own = set(sys.stdlib_module_names) | {"dropbench", "__future__"} | allowed
            foreign = sorted({m.split(".")[0] for m in _imports(path)} - own - LAZY_THIRD_PARTY[layer])
            assert not foreign, f"{_module(path)} imports {foreign}"
            at_top = sorted({m.split(".")[0] for m in _imports(path, top_only=True)} - own)
            assert not at_top, f"{_module(path)} imports {at_top} at the top: import it inside the function that needs it"


def test_analysis_modules_import_one_another_without_a_cycle():
    graph = {_module(p): {m for m in _imports(p) if m.startswith("dropbench.analysis.") and m != _module(p)}
             for p in _modules("dropbench.analysis")}
    graph = {k: {m for m in v if m in graph} for k, v in graph.items()}
    done: set[str] = set()
    while len(done) < len(graph):
        ready = [k for k, v in graph.items() if k not in done and v <= done]
        assert ready, f"an import cycle among {sorted(set(graph) - done)}"
        done |= set(ready)


def test_the_numbers_and_the_registrys_declarations_load_no_heavy_library():
    """analysis reads what regularizers declare from the registry (plugins), without torch."""
    code = ("import sys, importlib, pkgutil, dropbench.analysis as a\n"
            "for m in pkgutil.iter_modules(a.__path__): importlib.import_module(f'dropbench.analysis.{m.name}')\n"
            "from dropbench.analysis import plugins\n"
            "assert plugins.set_by() == {'model.residual': 'reg'} and plugins.notes(['droppath'])\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'scipy', 'rich', 'hydra', 'omegaconf', 'typer') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr
