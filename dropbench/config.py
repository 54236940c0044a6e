"""Compose configs with Hydra, validate them once into dataclasses, and hash them.

Hydra does composition and the override/sweep grammar; the dataclasses below are the schema:
every key, type and range is checked here, with errors that name the key, the bad value and
what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import os
import time
import types
import typing
from dataclasses import dataclass, field
from contextlib import contextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Literal

from dropbench import regs
from dropbench.errors import UserError, did_you_mean

GROUPS = ("data", "model", "reg", "optim", "launcher")
# conf/experiment/: whole protocols, selected with +experiment=NAME (each sets the groups above).
EXPERIMENT = "experiment"
# Canonical order for naming combined regularizers ("dropout+l2"), and the dropout family (their p
# is the top-level p): read from the registry.
REG_ORDER = regs.names()
DROP_FAMILY = regs.drop_family()
# Keys that say where results go or how they are shown, never what is computed.
UNHASHED_KEYS = ("out",)
# Where data lie, never what they are: a CSV enters the run id through its contents (data.sha256),
# a UCI split through its name (its files are verified against dropbench/uci.py's manifest).
UNHASHED_DATA_KEYS = ("path", "root")
# Field metadata: a field added after run ids were pinned, left out of the run id while it holds
# its default, so that every run stored before it existed keeps its id (and a resumed sweep finds
# it); any other value enters the id. tests/test_config.py's golden ids pin this.
ID_OMITS_DEFAULT = "id_omits_default"
# Every seed consumer accepts this range: torch.manual_seed, numpy default_rng, sklearn random_state.
SEED_MAX = 2**32 - 1


def _check(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise UserError(f"invalid value {key}={value!r}: must be {allowed}")


def _prob(key: str, p: float) -> None:
    _check(0.0 <= p < 1.0, key, p, "in [0, 1) (p=1 would drop everything)")


def _positive(key: str, v: float) -> None:
    _check(v > 0, key, v, "> 0")


def _fraction(key: str, v: float) -> None:
    _check(0.0 < v < 1.0, key, v, "in (0, 1)")


def _seed(key: str, v: int | None) -> None:
    if v is not None:
        _check(0 <= v <= SEED_MAX, key, v, f"in [0, {SEED_MAX}] (2**32 - 1: the range numpy, scikit-learn and torch all accept)")


# ---- data ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoisyLinear:
    name: Literal["noisy_linear"] = "noisy_linear"
    n_train: int = 20
    n_test: int = 20
    x_min: float = -1.0
    x_max: float = 1.0
    noise: float = 0.3
    slope: float = 1.0
    intercept: float = 0.0
    seed: int | None = None

    def validate(self, k: str) -> None:
        _positive(f"{k}.n_train", self.n_train)
        _positive(f"{k}.n_test", self.n_test)
        _check(self.noise >= 0, f"{k}.noise", self.noise, ">= 0")
        _check(self.x_max > self.x_min, f"{k}.x_max", self.x_max, f"> data.x_min ({self.x_min})")
        _seed(f"{k}.seed", self.seed)


@dataclass(frozen=True)
class NoisySine:
    name: Literal["noisy_sine"] = "noisy_sine"
    n_train: int = 20
    n_test: int = 20
    x_min: float = -3.0
    x_max: float = 3.0
    noise: float = 0.2
    freq: float = 1.0
    seed: int | None = None

    validate = NoisyLinear.validate


@dataclass(frozen=True)
class Friedman1:
    name: Literal["friedman1"] = "friedman1"
    n_train: int = 100
    n_test: int = 100
    n_features: int = 10
    noise: float = 1.0
    standardize: bool = True
    seed: int | None = None
    # validation: train on the first 80% of the training rows (in the split's order) and evaluate
    # on the last 20% as the "test" set (dropbench tune's search phase; PROTOCOL.md's 2018 rule).
    holdout: Literal["none", "validation"] = field(default="none", metadata={ID_OMITS_DEFAULT: True})

    def validate(self, k: str) -> None:
        _positive(f"{k}.n_train", self.n_train)
        _positive(f"{k}.n_test", self.n_test)
        _check(self.n_features >= 5, f"{k}.n_features", self.n_features, ">= 5 (friedman1 uses 5 informative features)")
        _check(self.noise >= 0, f"{k}.noise", self.noise, ">= 0")
        _seed(f"{k}.seed", self.seed)


@dataclass(frozen=True)
class Diabetes:
    name: Literal["diabetes"] = "diabetes"
    test_fraction: float = 0.25
    standardize: bool = True
    seed: int | None = None
    # validation: train on the first 80% of the training rows (in the split's order) and evaluate
    # on the last 20% as the "test" set (dropbench tune's search phase; PROTOCOL.md's 2018 rule).
    holdout: Literal["none", "validation"] = field(default="none", metadata={ID_OMITS_DEFAULT: True})

    def validate(self, k: str) -> None:
        _fraction(f"{k}.test_fraction", self.test_fraction)
        _seed(f"{k}.seed", self.seed)


@dataclass(frozen=True)
class Csv:
    path: str
    target: str
    name: Literal["csv"] = "csv"
    features: list[str] | None = None
    test_fraction: float = 0.25
    standardize: bool = True
    seed: int | None = None
    # The file's contents, filled by build(): the run id hashes this, not the path, so an edited
    # file is a new run and one file at two paths is one run. Given by the user (a saved
    # config.yaml does), it must match the file.
    sha256: str | None = None
    # validation: train on the first 80% of the training rows (in the split's order) and evaluate
    # on the last 20% as the "test" set (dropbench tune's search phase; PROTOCOL.md's 2018 rule).
    holdout: Literal["none", "validation"] = field(default="none", metadata={ID_OMITS_DEFAULT: True})

    def validate(self, k: str) -> None:
        _fraction(f"{k}.test_fraction", self.test_fraction)
        _seed(f"{k}.seed", self.seed)
        if self.sha256 is not None:
            ok = len(self.sha256) == 64 and all(c in "0123456789abcdef" for c in self.sha256)
            _check(ok, f"{k}.sha256", self.sha256, "64 lowercase hex digits (or null: computed from the file)")


@dataclass(frozen=True)
class Uci:
    """A UCI regression data set with one of its standard splits (dropbench/uci.py)."""

    dataset: str
    name: Literal["uci"] = "uci"
    split: int = 0
    # The folder holding the files (null: $DROPBENCH_UCI_DIR, else the download cache); made
    # absolute by build(). Not in the run id: the files are verified, so dataset + split say what.
    root: str | None = None
    # validation: train on the first 80% of the training rows (in the split's order) and evaluate
    # on the last 20% as the "test" set (dropbench tune's search phase; PROTOCOL.md's 2018 rule).
    holdout: Literal["none", "validation"] = field(default="none", metadata={ID_OMITS_DEFAULT: True})

    def validate(self, k: str) -> None:
        from dropbench import uci

        uci.check_split(self.dataset, self.split)  # a known data set (with a did-you-mean), a split it has
        _check(self.root is None or self.root.strip() != "", f"{k}.root", self.root, "a folder (or null)")


DATA = {c.name: c for c in (NoisyLinear, NoisySine, Friedman1, Diabetes)} | {"csv": Csv, "uci": Uci}


# ---- model --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MLP:
    name: Literal["mlp"] = "mlp"
    hidden: int = 300
    depth: int = 2
    activation: Literal["relu", "tanh", "gelu", "selu"] = "relu"
    placement: Literal["before", "after"] = "before"
    residual: bool = False
    # default: torch.nn.Linear's own init; lecun_normal: every Linear's weight from N(0, 1/fan_in)
    # and its bias 0, the initialisation of self-normalizing networks (Klambauer et al. 2017);
    # glorot_uniform: weights from U(-a, a), a = sqrt(6 / (fan_in + fan_out)), biases 0 (Keras'
    # default, the MC-dropout UCI code's).
    init: Literal["default", "lecun_normal", "glorot_uniform"] = field(default="default", metadata={ID_OMITS_DEFAULT: True})

    def validate(self, k: str) -> None:
        _positive(f"{k}.hidden", self.hidden)
        _positive(f"{k}.depth", self.depth)


MODELS = {"mlp": MLP}


# ---- regularizers: built from the registry (dropbench/regs/) ------------------------------
def _reg_names(self: Any) -> list[str]:
    return [n for n in REG_ORDER if getattr(self, n) is not None]


def _reg_label(self: Any) -> str:
    return "+".join(self.names) or "none"


def _reg_validate(self: Any, k: str) -> None:
    why = regs.conflict(self.names)
    if why:
        raise UserError(why)


# One optional field per registered regularizer, holding its Config (None: not selected).
Reg = dataclasses.make_dataclass(
    "Reg",
    [(n, r.Config | None, field(default=None)) for n, r in regs.REGISTRY.items()],
    namespace={"validate": _reg_validate, "names": property(_reg_names), "label": property(_reg_label),
               "__module__": __name__, "__doc__": "The selected regularizers, one field each (dropbench/regs/)."},
    frozen=True,
)


# ---- optimizers ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Adam:
    name: Literal["adam"] = "adam"
    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def validate(self, k: str) -> None:
        _positive(f"{k}.lr", self.lr)
        _check(0 <= self.beta1 < 1, f"{k}.beta1", self.beta1, "in [0, 1)")
        _check(0 <= self.beta2 < 1, f"{k}.beta2", self.beta2, "in [0, 1)")
        _positive(f"{k}.eps", self.eps)


@dataclass(frozen=True)
class SGD:
    name: Literal["sgd"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.0

    def validate(self, k: str) -> None:
        _positive(f"{k}.lr", self.lr)
        _check(0 <= self.momentum < 1, f"{k}.momentum", self.momentum, "in [0, 1)")


OPTIMS = {"adam": Adam, "sgd": SGD}


# ---- launchers: where runs execute; never part of a run's config or hash -------------------
@dataclass(frozen=True)
class LocalLauncher:
    name: Literal["local"] = "local"
    workers: int | None = None

    def validate(self, k: str) -> None:
        if self.workers is not None:
            _positive(f"{k}.workers", self.workers)


@dataclass(frozen=True)
class JoblibLauncher:
    name: Literal["joblib"] = "joblib"
    n_jobs: int = 2

    def validate(self, k: str) -> None:
        _check(self.n_jobs == -1 or self.n_jobs > 0, f"{k}.n_jobs", self.n_jobs, "> 0 or -1 (one per core)")


@dataclass(frozen=True)
class SubmititLocalLauncher:
    name: Literal["submitit_local"] = "submitit_local"
    jobs: int = 2
    timeout_min: int = 60
    cpus_per_task: int = 1

    def validate(self, k: str) -> None:
        for f in ("jobs", "timeout_min", "cpus_per_task"):
            _positive(f"{k}.{f}", getattr(self, f))


@dataclass(frozen=True)
class SubmititSlurmLauncher:
    name: Literal["submitit_slurm"] = "submitit_slurm"
    jobs: int = 10
    timeout_min: int = 60
    cpus_per_task: int = 2
    mem_gb: int = 4
    gpus_per_node: int = 0
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    array_parallelism: int = 64
    setup: list[str] = field(default_factory=list)

    def validate(self, k: str) -> None:
        for f in ("jobs", "timeout_min", "cpus_per_task", "mem_gb", "array_parallelism"):
            _positive(f"{k}.{f}", getattr(self, f))
        _check(self.gpus_per_node >= 0, f"{k}.gpus_per_node", self.gpus_per_node, ">= 0")


LAUNCHERS = {c.name: c for c in (LocalLauncher, JoblibLauncher, SubmititLocalLauncher, SubmititSlurmLauncher)}
Launcher = LocalLauncher | JoblibLauncher | SubmititLocalLauncher | SubmititSlurmLauncher


# ---- evaluation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Eval:
    """What a run measures besides eval-mode MSE (engines/base.py: MCStats)."""

    mc_samples: int = 0  # T > 0: MC dropout, the mean of T passes with the dropout family active
    tau: float | None = None  # model precision of the Gaussian test log-likelihood (null: not computed)

    def validate(self, k: str) -> None:
        _check(self.mc_samples >= 0, f"{k}.mc_samples", self.mc_samples, ">= 0 (0: eval-mode prediction only)")
        if self.tau is not None:
            _check(0 < self.tau < math.inf, f"{k}.tau", self.tau, "a finite number > 0 (or null: no log-likelihood)")


# ---- the whole run ------------------------------------------------------------------------
@dataclass(frozen=True)
class RunConfig:
    data: NoisyLinear | NoisySine | Friedman1 | Diabetes | Csv | Uci = field(default_factory=NoisyLinear)
    model: MLP = field(default_factory=MLP)
    reg: Reg = field(default_factory=Reg)
    optim: Adam | SGD = field(default_factory=Adam)
    seed: int = 1
    epochs: int = 500
    eval_every: int = 50
    # Left out of the run id at its default (no MC, no tau), so ids from before it existed hold.
    eval: Eval = field(default=Eval(), metadata={ID_OMITS_DEFAULT: True})
    # Rows per optimizer step; None: full batch (one step per epoch). Left out of the run id at
    # its default, so full-batch ids from before it existed hold.
    batch_size: int | None = field(default=None, metadata={ID_OMITS_DEFAULT: True})
    p: float | None = 0.5  # the drop probability in effect (None: no dropout-family regularizer)
    engine: Literal["batched", "torch"] = "batched"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    dtype: Literal["float32", "float64"] = "float32"
    out: str | None = None

    def __post_init__(self) -> None:
        # Here, not in build(): dataclasses.replace (tune's final runs drop the hold-out) passes
        # through __init__ too, so a derived value always matches the config it sits in.
        _derive_l2(self)

    def validate(self, k: str = "") -> None:
        _positive("epochs", self.epochs)
        _positive("eval_every", self.eval_every)
        if self.batch_size is not None:
            _check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1 (or null: full batch)")
        if self.p is not None:
            _prob("p", self.p)
        _seed("seed", self.seed)

    @property
    def data_seed(self) -> int:
        seed = getattr(self.data, "seed", None)  # data=uci has fixed splits, no seed
        return self.seed if seed is None else seed

    def to_dict(self) -> dict[str, Any]:
        return _prune(dataclasses.asdict(self))

    @property
    def run_id(self) -> str:
        """Stable hash of everything that determines the run's numbers: a CSV by its contents
        (data.sha256), never by its path; a UCI split by name, never by its folder.
        tests/test_config.py pins ids: change them deliberately."""
        d = {k: v for k, v in self.to_dict().items() if k not in UNHASHED_KEYS}
        _omit_new_defaults(self, d)
        if isinstance(self.data, Csv) and self.data.sha256 is None:
            raise ValueError("a csv config gets its sha256 from build(); construct it with build()")
        d["data"] = {k: v for k, v in d["data"].items() if k not in UNHASHED_DATA_KEYS}
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def choices(self) -> dict[str, str]:
        """The option chosen in each config group, as columns of runs.csv."""
        return {"data": self.data.name, "model": self.model.name, "reg": self.reg.label, "optim": self.optim.name}

    def flat(self) -> dict[str, Any]:
        """Every config value as a dotted column, group names excluded (see choices())."""
        out: dict[str, Any] = {}
        _flatten(self.to_dict(), "", out)
        for g in ("data.name", "model.name", "optim.name", "out"):
            out.pop(g, None)
        return out


# ---- values derived from the rest of the config (the one hook) -------------------------------
# A top-level node an experiment config reads by interpolation (conf/experiment/: `datasets`, the
# per-data-set table of the MC-dropout protocol; `l2`, read by conf/reg/l2.yaml while l2 is
# selected); composed and resolved, never part of a run.
TABLE_KEY = "protocol"


_ROWS_TRAINED: dict[tuple[str, int], int] = {}


def n_trained(cfg: "RunConfig") -> int:
    """How many rows the run trains on (after a data.holdout=validation split): loads its data
    once per process and data config (the UCI files are verified, a CSV is pinned by its sha256)."""
    key = (type(cfg.data).__name__ + json.dumps(dataclasses.asdict(cfg.data), sort_keys=True, default=str), cfg.data_seed)
    if key not in _ROWS_TRAINED:
        from dropbench.data import load_dataset

        _ROWS_TRAINED[key] = len(load_dataset(cfg).x_train)
    return _ROWS_TRAINED[key]


def _derive_l2(cfg: "RunConfig") -> None:
    """reg.l2.prior_length_scale set: weight_decay = l^2 (1-p) / (N tau) from this config's p,
    eval.tau and rows trained on (dropbench/regs/l2.py), written into the config."""
    l2 = getattr(cfg.reg, "l2", None)
    if l2 is None or l2.prior_length_scale is None:
        return
    if cfg.eval.tau is None:
        raise UserError("reg.l2.prior_length_scale derives the weight decay from the model precision eval.tau: "
                        "set eval.tau (or give reg.l2.weight_decay and reg.l2.prior_length_scale=null)")
    from dropbench.regs.l2 import prior_weight_decay

    wd = prior_weight_decay(l2.prior_length_scale, cfg.p or 0.0, n_trained(cfg), cfg.eval.tau)
    object.__setattr__(cfg, "reg", dataclasses.replace(cfg.reg, l2=dataclasses.replace(l2, weight_decay=wd)))


def _omit_new_defaults(obj: Any, d: dict[str, Any]) -> None:
    """Drop, in place, the fields marked ID_OMITS_DEFAULT that hold their default (see there)."""
    for f in dataclasses.fields(obj):
        if f.name not in d:
            continue
        v = getattr(obj, f.name)
        if f.metadata.get(ID_OMITS_DEFAULT) and v == f.default:
            del d[f.name]
        elif dataclasses.is_dataclass(v) and isinstance(d[f.name], dict):
            _omit_new_defaults(v, d[f.name])


def _prune(d: Any) -> Any:
    """Drop unselected (None) regularizers so the saved config shows only what ran."""
    if isinstance(d, dict):
        return {k: _prune(v) for k, v in d.items() if not (v is None and k in REG_ORDER)}
    return d


def _flatten(d: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            _flatten(v, key + ".", out)
        elif isinstance(v, list):
            out[key] = ",".join(map(str, v))
        else:
            out[key] = v


# ---- dict -> dataclass with checks ---------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(key, value, a)
            except UserError as e:
                errors.append(e)
        raise errors[0]
    if origin is Literal:
        allowed = typing.get_args(tp)
        _check(value in allowed, key, value, "one of " + ", ".join(map(str, allowed)))
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        _check(isinstance(value, (list, tuple)), key, value, "a list")
        return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is bool:
        _check(isinstance(value, bool), key, value, "true or false")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, value, "an integer")
        return value
    if tp is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, value, "a number")
        return float(value)
    if tp is str:
        _check(isinstance(value, str), key, value, "a string")
        return value
    raise TypeError(f"unsupported schema type {tp!r} for {key}")  # pragma: no cover - schema bug


def from_dict(cls: type, d: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a plain dict, rejecting unknown keys and bad values."""
    where = prefix or "config"
    if not isinstance(d, dict):
        raise UserError(f"invalid value {where}={d!r}: must be a mapping of keys")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise UserError(f"unknown key {key}{did_you_mean(unknown[0], fields)}: known keys here are {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in d:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise UserError(f"missing value for {key}: set it with {key}=VALUE")
            continue
        kwargs[name] = _coerce(key, d[name], hints[name])
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(prefix)
    return obj


def _select(table: dict[str, type], group: str, d: Any) -> Any:
    if not isinstance(d, dict):
        raise UserError(f"invalid value {group}={d!r}: must be a mapping with a name (one of {', '.join(table)})")
    name = d.get("name")
    if not isinstance(name, str) or name not in table:
        raise _unknown_option_error(group, str(name), list(table))
    return from_dict(table[name], d, group)


def build_launcher(d: dict[str, Any]) -> "Launcher":
    return _select(LAUNCHERS, "launcher", d.get("launcher") or {"name": "local"})


# path -> (stat key, sha256) of files that had not changed for a while when hashed (see _file_sha256).
_SHA_CACHE: dict[str, tuple[tuple[int, ...], str]] = {}
_SETTLE_NS = 2_000_000_000


@contextmanager
def csv_read_errors(path: str) -> Iterator[None]:
    """Reading the user's CSV: a missing file, a folder or an unreadable one is one line."""
    try:
        yield
    except FileNotFoundError:
        raise UserError(f"data.path={path}: no such file; give the path of a CSV file") from None
    except IsADirectoryError:
        raise UserError(f"data.path={path}: is a folder; give the path of a CSV file") from None
    except OSError as e:
        raise UserError(f"data.path={path}: cannot read it ({e.strerror or type(e).__name__})") from None


def _file_sha256(path: str) -> str:
    """The sha256 of a file's bytes, hashed once per process while the file is unchanged.

    A sweep builds one config per run, so a large CSV would be re-read per run. A cached hash is
    trusted only while the file's inode, size, mtime and ctime are the same, and is kept only
    when the file had not changed for _SETTLE_NS before it was read (as git does for "racily
    clean" files): an edit within one timestamp tick of the hashing cannot go unseen.
    """
    with csv_read_errors(path):
        st = os.stat(path)
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        hit = _SHA_CACHE.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        started = time.time_ns()
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    if max(st.st_mtime_ns, st.st_ctime_ns) < started - _SETTLE_NS:
        _SHA_CACHE[path] = (key, digest)
    return digest


def _pin_csv(data: Csv) -> Csv:
    """Make the path absolute (a saved config works from any folder) and record the contents' hash."""
    path = os.path.abspath(os.path.expanduser(data.path))
    digest = _file_sha256(path)
    if data.sha256 is not None and data.sha256 != digest:
        raise UserError(
            f"data.sha256={data.sha256} does not match {path} (now sha256 {digest}): the file changed since this "
            "config was saved; restore it, or drop data.sha256 to use the file as it is now"
        )
    return dataclasses.replace(data, path=path, sha256=digest)


def build(d: dict[str, Any]) -> RunConfig:
    """Validate a composed config (plain dict) into a RunConfig (the launcher is not part of it)."""
    if not isinstance(d, dict):
        raise UserError(f"a config must be a mapping of keys, not {type(d).__name__}")
    d = dict(d)
    d.pop("launcher", None)
    d.pop(TABLE_KEY, None)
    data = _select(DATA, "data", d.pop("data", {}))
    if isinstance(data, Csv):
        data = _pin_csv(data)
    if isinstance(data, Uci) and data.root is not None:
        data = dataclasses.replace(data, root=os.path.abspath(os.path.expanduser(data.root)))
    model = _select(MODELS, "model", d.pop("model", {}))
    optim = _select(OPTIMS, "optim", d.pop("optim", {}))
    reg = from_dict(Reg, d.pop("reg", None) or {}, "reg")
    for r, conf in regs.active(reg):
        model = r.adjust_model(model, conf)
    cfg = from_dict(RunConfig, {**d, "data": {}, "model": {}, "reg": {}, "optim": {}})
    # p only matters through the dropout-family regularizers: record the one in effect, so that
    # reg=none p=0.2 and reg=none p=0.5 are the same run.
    drops = [getattr(reg, n) for n in DROP_FAMILY if getattr(reg, n) is not None]
    cfg = dataclasses.replace(cfg, p=drops[0].p if drops else None)
    if cfg.device == "auto":
        # Saved and hashed as the device that will run it: a GPU run's numbers differ from a
        # CPU run's, so they must not share a run_id (a resumed sweep would mix them).
        import torch

        cfg = dataclasses.replace(cfg, device="cuda" if torch.cuda.is_available() else "cpu")
    cfg = dataclasses.replace(cfg, data=data, model=model, reg=reg, optim=optim)
    given, used = getattr(reg, "l2", None), getattr(cfg.reg, "l2", None)
    if given is not None and given.prior_length_scale is not None and given.weight_decay not in (None, used.weight_decay):
        # A saved config holds the derived value itself, which matches; anything else contradicts l.
        raise UserError(f"reg.l2.weight_decay={given.weight_decay} contradicts reg.l2.prior_length_scale="
                        f"{given.prior_length_scale}, which derives {used.weight_decay:.6g} here: set reg.l2.weight_decay=null "
                        "to derive it, or reg.l2.prior_length_scale=null to use the number")
    return cfg


# ---- Hydra --------------------------------------------------------------------------------
def config_dir() -> Path:
    return Path(str(resources.files("dropbench.conf")))


def list_options() -> dict[str, list[str]]:
    """Every config group and its options, read from conf/."""
    root = config_dir()
    return {g: sorted(p.stem for p in (root / g).glob("*.yaml")) for g in GROUPS}


def default_options() -> dict[str, str]:
    """Each group's default option, from the defaults list of conf/config.yaml."""
    import yaml

    entries = yaml.safe_load((config_dir() / "config.yaml").read_text())["defaults"]
    return {k: v for e in entries if isinstance(e, dict) for k, v in e.items()}


@cache
def _hydra_ready() -> None:
    from hydra.core.global_hydra import GlobalHydra
    from hydra import initialize_config_dir

    GlobalHydra.instance().clear()
    initialize_config_dir(config_dir=str(config_dir()), version_base=None, job_name="dropbench")


def _dotted_keys(d: Any, prefix: str = "") -> list[str]:
    if not isinstance(d, dict):
        return [prefix[:-1]] if prefix else []
    return [k for key, v in d.items() for k in _dotted_keys(v, f"{prefix}{key}.")]


def _close_key(key: str, known: list[str]) -> str:
    """A did-you-mean for a dotted key: a sibling first (a shared prefix is no likeness), then any key
    whose last part is close (hidden -> model.hidden)."""
    parent, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {siblings[close[0]]}?)"
    others = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] != parent and not k.startswith("launcher.")}
    close = difflib.get_close_matches(leaf, list(others), n=1, cutoff=0.8)
    return f" (did you mean {others[close[0]]}?)" if close else ""


def _unknown_key_error(key: str, composed: dict[str, Any] | None) -> UserError:
    known = _dotted_keys(composed) if composed else []
    hint = _close_key(key, known)
    if key.startswith("launcher.") and composed and isinstance(composed.get("launcher"), dict):
        # `run --cfg` shows the run's config, which has no launcher keys: list them here.
        name = composed["launcher"].get("name")
        cls = LAUNCHERS.get(name)
        if cls is not None:
            takes = ", ".join(f.name for f in dataclasses.fields(cls) if f.name != "name") or "no keys"
            return UserError(f"unknown key {key}{hint}; launcher={name} takes: {takes}")
    if key == "optim.weight_decay":
        hint = " (weight decay is the l2 regularizer: use reg=l2 reg.l2.weight_decay=VALUE)"
    elif key.startswith("reg.") and not any(k.startswith(".".join(key.split(".")[:2]) + ".") for k in known):
        hint = " (a regularizer's keys exist only when it is selected, e.g. reg=l1 reg.l1.weight=1e-3)"
    return UserError(f"unknown key {key}{hint}; list the keys with: dropbench run --cfg")


def _unknown_option_error(group: str, bad: str, opts: list[str]) -> UserError:
    names = [n.strip() for n in bad.strip("[]").split(",") if n.strip()]
    wrong = next((n for n in names if n not in opts), bad)
    return UserError(f"unknown option {group}={bad}{did_you_mean(wrong, opts)}: choose from {', '.join(opts)}")


def _friendly_hydra_error(e: Exception, overrides: list[str], composed: dict[str, Any] | None = None) -> UserError:
    """One line for a Hydra error; `composed` (the config the overrides apply to) gives the known keys."""
    msg = " ".join(str(e).split())
    experiment = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=", 1)[0] == EXPERIMENT), None)
    if experiment is not None:
        if f"'{EXPERIMENT}/" in msg and ("Could not find" in msg or "Could not load" in msg):
            return _unknown_option_error(f"+{EXPERIMENT}", experiment, sorted(p.stem for p in (config_dir() / EXPERIMENT).glob("*.yaml")))
        if "Interpolation key" in msg:  # the experiment reads a key the chosen options lack
            key = msg.split("'")[1] if "'" in msg else "?"
            data = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "data"), None)
            return UserError(f"+{EXPERIMENT}={experiment} reads {key}, which "
                             f"{f'data={data}' if data else 'this config'} does not have; drop the data= override (the experiment chooses its data set)")
    options = list_options()
    for g, opts in options.items():
        if f"'{g}/" in msg or f"config group '{g}'" in msg or f"In '{g}/" in msg:
            if "Could not find" in msg or "Could not load" in msg:
                bad = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=", 1)[0] == g), "?")
                return _unknown_option_error(g, bad, opts)
    if "not in struct" in msg or "Could not override" in msg or "Could not append" in msg:
        key = msg.split("'")[1] if "'" in msg else "?"
        return _unknown_key_error(key, composed)
    if "Ambiguous value" in msg or "sweep" in msg.lower():
        arg = next((o for o in overrides if "," in o or "(" in o), " ".join(overrides))
        return UserError(f"{arg} lists several values: to sweep over them add -m (dropbench run -m {arg})")
    if any(t in msg for t in ("Error parsing override", "mismatched input", "no viable alternative", "LexerNoViableAlt", "token recognition")):
        return UserError(f"cannot parse overrides {' '.join(overrides)!r}: write them as key=value, e.g. reg=dropout p=0.5")
    return UserError(f"bad config: {msg}")


def _check_table_key(cfg: Any) -> None:
    """An experiment's table (TABLE_KEY.datasets) is read by data.dataset: one line when it is not set or not
    in the table (else the interpolation fails in OmegaConf's words)."""
    from omegaconf import OmegaConf

    table, data = (cfg.get(TABLE_KEY) or {}).get("datasets"), cfg.get("data")
    if table is None or data is None or "dataset" not in data.keys():  # `in` is False for ???
        return
    if OmegaConf.is_missing(data, "dataset"):
        raise UserError(f"missing value for data.dataset: set it with data.dataset=VALUE (one of {', '.join(table)})")
    name = data.dataset
    if name not in table:
        raise UserError(f"unknown data.dataset={name}{did_you_mean(str(name), list(table))}: this experiment has values "
                        f"for {', '.join(table)}")


def _is_group_override(o: str) -> bool:
    key = o.lstrip("+~").split("=", 1)[0].split("@", 1)[0]
    return key in GROUPS or key == EXPERIMENT or key.split("/", 1)[0] in GROUPS and "." not in key


@cache
def _compose_groups(group_overrides: tuple[str, ...]) -> Any:
    """Hydra composition for one choice of config-group options (the slow part, ~80 ms)."""
    from hydra import compose as hydra_compose

    _hydra_ready()
    return hydra_compose(config_name="config", overrides=list(group_overrides))


def compose(overrides: list[str]) -> dict[str, Any]:
    """Compose conf/ with Hydra overrides into a plain, resolved dict.

    Like Hydra's compose, group choices select the options and value overrides are then applied
    in struct mode; the composition is cached per group choice, so a sweep over 1 000 seeds
    composes once, not 1 000 times.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    groups = tuple(o for o in overrides if _is_group_override(o))
    values = [o for o in overrides if not _is_group_override(o)]
    composed = None
    try:
        cfg = OmegaConf.create(_compose_groups(groups))  # a copy: the cached one stays pristine
        composed = OmegaConf.to_container(cfg, resolve=False)
        OmegaConf.set_struct(cfg, True)
        parsed = OverridesParser.create().parse_overrides(values)
        if any(p.is_sweep_override() for p in parsed):
            raise HydraException("Ambiguous value: sweep")
        ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
        _check_table_key(cfg)
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise _friendly_hydra_error(e, list(overrides), composed) from None


def _missing(d: Any, prefix: str = "") -> str | None:
    if isinstance(d, dict):
        for k, v in d.items():
            m = _missing(v, f"{prefix}{k}.")
            if m:
                return m
    elif d == "???":
        return prefix[:-1]
    return None


def load_job(overrides: list[str]) -> tuple[RunConfig, "Launcher"]:
    """Compose and validate one run's config and the launcher that will run it."""
    d = compose(overrides)
    m = _missing(d)
    if m:
        raise UserError(f"missing value for {m}: set it with {m}=VALUE")
    return build(d), build_launcher(d)


def load(overrides: list[str]) -> RunConfig:
    """Compose and validate one run's config."""
    return load_job(overrides)[0]


Dim = tuple[str, str, list[str]]  # a sweep dimension: key, the override as typed, its "key=value"s


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """Expand Hydra sweep grammar (a,b / range() / choice() / glob()) into one override list per run.

    Refused with one line: a sweep that expands to no values, a sweep over `out` or the launcher
    (one per invocation) and a key given twice next to a sweep of it.
    """
    return [list(job) for job in itertools.product(*(d[2] for d in _sweep_dims(overrides)))]


def load_sweep(overrides: list[str]) -> list[tuple["RunConfig", "Launcher"]]:
    """Every job of a sweep, composed and validated once, in expansion order.

    Refused beside expand_sweep's errors: a swept key whose values change no run's config
    (`-m p=0.1,0.5 reg=dropout reg.dropout.p=0.3` would otherwise run 2 runs where 4 were asked
    for). A sweep that changes only some runs is fine: in `-m reg=none,dropout p=0.2,0.5` the two
    reg=none runs are one run (p is unused there). The check reads the run ids of the jobs
    loaded anyway, so it costs no composition of its own.
    """
    dims = _sweep_dims(overrides)
    combos = list(itertools.product(*(range(len(d[2])) for d in dims)))
    loaded = [load_job([d[2][k] for d, k in zip(dims, combo)]) for combo in combos]
    for i, (name, line, values) in enumerate(dims):
        if len(set(values)) < 2:
            continue
        by_rest: dict[tuple[int, ...], set[str]] = {}
        for combo, (cfg, _) in zip(combos, loaded):
            by_rest.setdefault(combo[:i] + combo[i + 1 :], set()).add(cfg.run_id)
        if all(len(ids) == 1 for ids in by_rest.values()):
            raise UserError(_no_change_message(dims, i, [cfg for cfg, _ in loaded]))
    return loaded


def _sweep_dims(overrides: list[str]) -> list[Dim]:
    """One dimension per key, in order, as Hydra's BasicSweeper forms them."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    _hydra_ready()
    try:
        # The config loader lets glob() see each group's options in conf/.
        loader = GlobalHydra.instance().config_loader()
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(list(overrides))
        # As Hydra's BasicSweeper: one dimension per key, in order; a repeated key replaces it.
        dims: dict[str, Dim] = {}
        swept: set[str] = set()
        for o in parsed:
            key, name, line = o.get_key_element(), o.key_or_group, o.input_line
            if o.is_sweep_override():
                if not o.is_discrete_sweep():
                    raise UserError(f"{line}: only lists, range(), choice() and glob() can be swept; an interval cannot")
                values = [f"{key}={v}" for v in o.sweep_string_iterator()]
                _check_sweepable(name, line, values)
            else:
                values = [f"{key}={o.get_value_element_as_str()}"]
            earlier = next((d for d in dims.values() if d[0] == name), None)
            if earlier is not None and (name in swept or o.is_sweep_override()):
                raise UserError(f"{name} is given twice ({earlier[1]} and {line}) in a sweep; give it once")
            if o.is_sweep_override():
                swept.add(name)
            dims[key] = (name, line or f"{key}=...", values)
    except HydraException as e:
        raise _friendly_hydra_error(e, list(overrides)) from None
    except ValueError as e:  # e.g. range(1,5,0)
        raise UserError(f"cannot expand the sweep {' '.join(overrides)!r}: {e}") from None
    return list(dims.values())


def _check_sweepable(name: str, line: str, values: list[str]) -> None:
    if not values:
        opts = list_options().get(name)
        fix = f"options of {name} are {', '.join(opts)}" if opts else "give at least one value"
        raise UserError(f"{line} expands to no values, so the sweep has no runs; {fix}")
    if name == "out":
        raise UserError(f"out= takes one folder per invocation; do not sweep over out ({line})")
    if name == "launcher" or name.startswith("launcher.") or name.startswith("launcher/"):
        raise UserError(f"launcher= takes one launcher per invocation; do not sweep over it ({line})")


def _run_ids(dims: list[Dim], i: int, combo: tuple[str, ...]) -> set[str]:
    """The run ids of dimension i's values with the other dimensions fixed at `combo`, stopping at two."""
    ids: set[str] = set()
    for v in dims[i][2]:
        ids.add(load_job([*combo[:i], v, *combo[i:]])[0].run_id)
        if len(ids) > 1:
            break
    return ids


def _no_change_message(dims: list[Dim], i: int, seen: list["RunConfig"]) -> str:
    """Why sweeping dimension i changes no run (composes configs: only on the error path)."""
    name = dims[i][0]
    for j, (other, line, values) in enumerate(dims):
        # Which fixed value override pins it? Drop each in turn and see if the sweep then matters.
        if j == i or len(values) != 1 or other in GROUPS or other == "out":
            continue
        rest = dims[:j] + dims[j + 1 :]
        k = i - (j < i)
        try:
            combos = itertools.islice(itertools.product(*(d[2] for m, d in enumerate(rest) if m != k)), 8)
            if any(len(_run_ids(rest, k, c)) > 1 for c in combos):
                return f"sweeping {name} changes no run: {line} overrides it; drop one of them"
        except UserError:
            continue
    if name == "p" and all(c.p is None for c in seen):
        return "sweeping p changes no run: no run has a dropout-family regularizer for p to act on (add e.g. reg=dropout)"
    return f"sweeping {name} ({dims[i][1]}) changes no run: every value gives the same config; drop it from the sweep"
