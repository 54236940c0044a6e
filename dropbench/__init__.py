"""dropbench: overfitting experiments with exact regularizer semantics.

The library API (dropbench/api.py), `import dropbench as db`: db.run, db.tune, db.load and the
results they return (db.Sweep, db.Tuning). Its names are imported on first use (PEP 562), so
`import dropbench` stays instant and imports neither torch nor pandas nor Hydra.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# ---- the library API: public name -> the module that defines it, imported on first use ----------
_API = {
    "run": "dropbench.api", "tune": "dropbench.api", "load": "dropbench.api", "RunsFailed": "dropbench.api",
    "Sweep": "dropbench.sweep", "Tuning": "dropbench.sweep", "Progress": "dropbench.progress",
    "CheckResult": "dropbench.check", "UserError": "dropbench.errors",
}
__all__ = ["__version__", *_API]

if TYPE_CHECKING:
    from dropbench.api import RunsFailed, load, run, tune
    from dropbench.check import CheckResult
    from dropbench.errors import UserError
    from dropbench.progress import Progress
    from dropbench.sweep import Sweep, Tuning


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dropbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
