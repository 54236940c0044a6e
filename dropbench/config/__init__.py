"""Compose configs with Hydra, validate them once into dataclasses, and hash them.

Hydra does composition and the override/sweep grammar; the dataclasses are the schema: every key,
type and range is declared (dropbench.params) and checked, with errors that name the key, the bad
value and what is allowed. Config code validates and hashes: it never reads data and never imports
torch; values derived from data or the machine are resolved by dropbench.derive before runs are
planned. One module per idea, each importing only those above it:

  coerce.py    a plain dict into typed, checked dataclasses (from_dict)
  identity.py  the run id: what enters the hash and what stays out; a CSV pinned by its sha256
  rules.py     rules across groups (p in effect, the model a regularizer needs, l2's prior and tau)
  schema.py    the dataclasses, the name -> class tables, RunConfig and build()
  compose.py   Hydra composition, its errors in one line, load/load_job and sweeps

Callers import from here (`from dropbench.config import load`); the names below are the API.
Module state (identity._SHA_CACHE) is deliberately not re-exported: patch it on the submodule
that reads it.
"""

from dropbench.config.coerce import from_dict
from dropbench.config.compose import (
    EXPERIMENT,
    GROUPS,
    Dim,
    compose,
    config_dir,
    default_options,
    expand_sweep,
    list_options,
    load,
    load_job,
    load_sweep,
    out_override,
    plugin_origins,
    quote_value,
)
from dropbench.config.identity import (
    UNHASHED_DATA_KEYS,
    UNHASHED_KEYS,
    DataFileError,
    _omit_new_defaults,
)
from dropbench.config.rules import DROP_FAMILY, TABLE_KEY
from dropbench.config.schema import (
    DATA,
    LAUNCHERS,
    MODELS,
    OPTIMS,
    REG_ORDER,
    SGD,
    Adam,
    Eval,
    JoblibLauncher,
    Launcher,
    LocalLauncher,
    Reg,
    RunConfig,
    SubmititLocalLauncher,
    SubmititSlurmLauncher,
    build,
    build_launcher,
    key_default,
)

__all__ = [
    # coerce
    "from_dict",
    # identity
    "UNHASHED_DATA_KEYS", "UNHASHED_KEYS", "DataFileError",
    # rules
    "DROP_FAMILY", "TABLE_KEY",
    # schema
    "DATA", "LAUNCHERS", "MODELS", "OPTIMS", "REG_ORDER", "SGD", "Adam", "Eval", "JoblibLauncher", "Launcher",
    "LocalLauncher", "Reg", "RunConfig", "SubmititLocalLauncher", "SubmititSlurmLauncher", "build", "build_launcher",
    "key_default",
    # compose
    "EXPERIMENT", "GROUPS", "Dim", "compose", "config_dir", "default_options", "expand_sweep", "list_options",
    "load", "load_job", "load_sweep", "out_override", "plugin_origins", "quote_value",
]
