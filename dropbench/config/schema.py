"""The schema: every config key, its type, default and allowed range, one frozen dataclass per option.

One dataclass per option of each config group (conf/data/, model/, reg/, optim/, launcher/), the
name -> class tables that select among them, Reg (one field per regularizer in dropbench/regs/)
and RunConfig, the whole run. build() turns a composed dict into a RunConfig: each group through
its dataclass (coerce.py), the CSV pinned by its contents (identity.py), then the rules across
groups (rules.py). This is the module to read to learn what a config may hold; how values are
coerced, hashed and related is kept out of it, in the modules named for those ideas.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from dropbench import regs
from dropbench.config.coerce import _check, _fraction, _positive, _prob, _seed, _select, from_dict
from dropbench.config.identity import ID_OMITS_DEFAULT, UNHASHED_KEYS, _flatten, _pin_csv, _prune, run_id_of
from dropbench.config.rules import TABLE_KEY, _adjust_model, _auto_device, _check_l2_given, _derive_l2, _p_in_effect
from dropbench.errors import UserError

# Canonical order for naming combined regularizers ("dropout+l2"): read from the registry.
REG_ORDER = regs.names()


# ---- data ---------------------------------------------------------------------------------
Holdout = Literal["none", "validation"]


def holdout_field() -> Any:
    """data.holdout of the data sets that have training rows to hold out. validation: train on
    the first 80% of the training rows (in the split's order) and evaluate on the last 20% as the
    "test" set (dropbench tune's search phase; PROTOCOL.md's 2018 rule). Added after run ids were
    pinned: out of the run id at its default."""
    return field(default="none", metadata={ID_OMITS_DEFAULT: True})


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
    holdout: Holdout = holdout_field()

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
    holdout: Holdout = holdout_field()

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
    holdout: Holdout = holdout_field()

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
    holdout: Holdout = holdout_field()

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
    """What a run measures besides eval-mode MSE (engines/mc.py: MCStats)."""

    mc_samples: int = 0  # T > 0: MC dropout, the mean of T passes with the dropout family active
    tau: float | None = None  # model precision of the Gaussian test log-likelihood (null: not computed)

    def validate(self, k: str) -> None:
        _check(self.mc_samples >= 0, f"{k}.mc_samples", self.mc_samples, ">= 0 (0: eval-mode prediction only)")
        if self.tau is not None:
            _check(0 < self.tau, f"{k}.tau", self.tau, "a finite number > 0 (or null: no log-likelihood)")


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
        tests/test_config.py pins ids: change them deliberately (identity.py says what enters)."""
        if isinstance(self.data, Csv) and self.data.sha256 is None:
            raise ValueError("a csv config gets its sha256 from build(); construct it with build()")
        return run_id_of(self)

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


# ---- a key's default, for results that predate it ----------------------------------------
GROUP_TABLES = {"data": DATA, "model": MODELS, "optim": OPTIMS}


def _field_default(f: "dataclasses.Field[Any]", key: str) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    if f.default is dataclasses.MISSING:
        raise KeyError(key)  # a required key (data.path): no default to compare with
    return f.default


def _default_reg(label: str) -> Any:
    """The regularizers of a label (dropout+l2) at their defaults, the dropout family's p at the
    top-level p's (their YAML says p: ${p})."""
    p = RunConfig.__dataclass_fields__["p"].default
    confs = {}
    for n in label.split("+"):
        r = regs.REGISTRY.get(n)
        if r is not None:
            confs[n] = dataclasses.replace(r.Config(), p=p) if r.shares_p else r.Config()
    return Reg(**confs)


def key_default(key: str, choices: dict[str, str]) -> Any:
    """The value a config column (RunConfig.flat's spelling: model.init, reg.l2.biases, eval.tau)
    has in a run with these group choices (RunConfig.choices' spelling, regularizers as the label
    dropout+l2) when nothing else is given: the schema's defaults, with the rules across groups
    applied (p in effect, model.residual under droppath). None where the key does not apply to the
    choices (a key of an option or regularizer not chosen). `check` compares a key its baseline
    predates with this. KeyError where this schema has no such key (another dropbench's) or it
    has no default (data.path)."""
    head, _, rest = key.partition(".")
    reg = _default_reg(str(choices.get("reg", "")))
    if head == "reg":
        name, _, name_key = rest.partition(".")
        r = regs.REGISTRY.get(name)
        if r is None or name_key not in r.Config.__dataclass_fields__:
            raise KeyError(key)
        conf = getattr(reg, name)
        value = None if conf is None else getattr(conf, name_key)
    elif head in GROUP_TABLES:
        table = GROUP_TABLES[head]
        if key == "data.sha256":
            raise KeyError(key)  # filled from the file by build(): no default
        if not any(rest in c.__dataclass_fields__ for c in table.values()):
            raise KeyError(key)
        cls = table.get(str(choices.get(head, "")))
        if cls is None or rest not in cls.__dataclass_fields__:
            return None
        value = _field_default(cls.__dataclass_fields__[rest], key)
        if head == "model":
            value = getattr(_adjust_model(cls(), reg), rest)
    elif head == "p" and not rest:
        value = _p_in_effect(reg)
    else:
        f = RunConfig.__dataclass_fields__.get(head)
        if f is None or head in UNHASHED_KEYS:
            raise KeyError(key)
        value = _field_default(f, key)
        if dataclasses.is_dataclass(value) != bool(rest) or (rest and rest not in value.__dataclass_fields__):
            raise KeyError(key)
        value = getattr(value, rest) if rest else value
    return ",".join(map(str, value)) if isinstance(value, list) else value  # as RunConfig.flat spells a list


# ---- a composed dict -> the typed config ---------------------------------------------------
def build(d: dict[str, Any]) -> RunConfig:
    """Validate a composed config (plain dict) into a RunConfig (the launcher is not part of it): each
    group by its schema, then the rules across groups (rules.py)."""
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
    model = _adjust_model(model, reg)
    cfg = from_dict(RunConfig, {**d, "data": {}, "model": {}, "reg": {}, "optim": {}})
    cfg = dataclasses.replace(cfg, p=_p_in_effect(reg))
    if cfg.device == "auto":
        cfg = dataclasses.replace(cfg, device=_auto_device())
    cfg = dataclasses.replace(cfg, data=data, model=model, reg=reg, optim=optim)
    _check_l2_given(reg, cfg)
    return cfg


def build_launcher(d: dict[str, Any]) -> "Launcher":
    return _select(LAUNCHERS, "launcher", d.get("launcher") or {"name": "local"})
