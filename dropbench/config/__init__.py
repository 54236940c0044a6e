"""Compose configs with Hydra, validate them once into dataclasses, and hash them.

Hydra does composition and the override/sweep grammar; the dataclasses are the schema: every key,
type and range is checked, with errors that name the key, the bad value and what is allowed. One
module per idea, each importing only those above it:

  coerce.py    a plain dict into typed, checked dataclasses (from_dict) and the range checks
  identity.py  the run id: what enters the hash and what stays out; a CSV pinned by its sha256
  rules.py     rules across fields and groups (p in effect, derived l2, device=auto, n_trained)
  schema.py    the dataclasses, the name -> class tables, RunConfig and build()
  compose.py   Hydra composition, its errors in one line, load/load_job and sweeps

Callers import from here (`from dropbench.config import load`); the names below are the API.
Module state (identity._SHA_CACHE, rules._ROWS_TRAINED) is deliberately not re-exported: patch
it on the submodule that reads it.
"""

from dropbench.config.coerce import SEED_MAX, from_dict
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
    quote_value,
)
from dropbench.config.identity import (
    ID_OMITS_DEFAULT,
    UNHASHED_DATA_KEYS,
    UNHASHED_KEYS,
    DataFileError,
    _omit_new_defaults,
    csv_read_errors,
)
from dropbench.config.rules import DROP_FAMILY, TABLE_KEY, n_trained
from dropbench.config.schema import (
    DATA,
    LAUNCHERS,
    MLP,
    MODELS,
    OPTIMS,
    REG_ORDER,
    SGD,
    Adam,
    Csv,
    Diabetes,
    Eval,
    Friedman1,
    JoblibLauncher,
    Launcher,
    LocalLauncher,
    NoisyLinear,
    NoisySine,
    Reg,
    RunConfig,
    SubmititLocalLauncher,
    SubmititSlurmLauncher,
    Uci,
    build,
    build_launcher,
    key_default,
)

__all__ = [
    # coerce
    "SEED_MAX", "from_dict",
    # identity
    "ID_OMITS_DEFAULT", "UNHASHED_DATA_KEYS", "UNHASHED_KEYS", "DataFileError", "csv_read_errors",
    # rules
    "DROP_FAMILY", "TABLE_KEY", "n_trained",
    # schema
    "DATA", "LAUNCHERS", "MLP", "MODELS", "OPTIMS", "REG_ORDER", "SGD", "Adam", "Csv", "Diabetes", "Eval",
    "Friedman1", "JoblibLauncher", "Launcher", "LocalLauncher", "NoisyLinear", "NoisySine", "Reg", "RunConfig",
    "SubmititLocalLauncher", "SubmititSlurmLauncher", "Uci", "build", "build_launcher", "key_default",
    # compose
    "EXPERIMENT", "GROUPS", "Dim", "compose", "config_dir", "default_options", "expand_sweep", "list_options",
    "load", "load_job", "load_sweep", "out_override", "quote_value",
]
