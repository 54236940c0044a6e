"""The schema: every config key, its type, default and allowed range, one frozen dataclass per option.

One dataclass per option of each config group: the data sets' and models' are declared by their
own modules (dropbench/data/, dropbench/models/: the tables below are read from those registries),
the optimizers' and launchers' here; Reg (one field per regularizer in dropbench/regs/) and
RunConfig, the whole run. Every constraint is declared on its field (dropbench.params) and checked
as the dict is coerced (coerce.py). build() turns a composed dict into a RunConfig: each group
through its dataclass, the data's files pinned (identity.py), then the rules across groups
(rules.py). Values derived from data or the machine (device=auto, reg.l2's weight decay from N)
are left for dropbench.derive: a RunConfig that still needs them refuses to give a run id.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from dropbench import regs
from dropbench.config.coerce import _select, from_dict
from dropbench.config.identity import UNHASHED_KEYS, _flatten, _prune, pin_data, run_id_of
from dropbench.config.rules import TABLE_KEY, _adjust_model, _check_l2_prior, _p_in_effect
from dropbench.data import configs as data_configs
from dropbench.errors import UserError
from dropbench.models import configs as model_configs
from dropbench.params import NONNEG, POSITIVE, PROB, SEED, Check, Range, Rule, param

# Canonical order for naming combined regularizers ("dropout+l2"): read from the registry.
REG_ORDER = regs.names()

# ---- data and model: declared by their modules ---------------------------------------------
DATA: dict[str, type] = data_configs()
MODELS: dict[str, type] = model_configs()
DataConfig = Union[tuple(DATA.values())]  # type: ignore[valid-type]
ModelConfig = Union[tuple(MODELS.values())]  # type: ignore[valid-type]


# ---- regularizers: built from the registry (dropbench/regs/) ------------------------------
def _reg_names(self: Any) -> list[str]:
    return [n for n in REG_ORDER if getattr(self, n) is not None]


def _reg_label(self: Any) -> str:
    return "+".join(self.names) or "none"


# One optional field per registered regularizer, holding its Config (None: not selected).
def _make_reg() -> type:
    return dataclasses.make_dataclass(
        "Reg",
        [(n, r.Config | None, field(default=None)) for n, r in regs.REGISTRY.items()],
        namespace={"RULES": (Rule(lambda r: regs.conflict(r.names) is None, lambda r, k: str(regs.conflict(r.names))),),
                   "names": property(_reg_names), "label": property(_reg_label), "__module__": __name__,
                   "__doc__": "The selected regularizers, one field each (dropbench/regs/)."},
        frozen=True,
    )


Reg = _make_reg()


def registry_changed() -> None:
    """A plug-in was registered in this process (dropbench.registration): the tables and Reg
    follow the registries again. (Plug-ins found at import are in them from the start.)"""
    global Reg, REG_ORDER
    from dropbench.config import rules

    DATA.update(data_configs())
    MODELS.update(model_configs())
    REG_ORDER = regs.names()
    if tuple(Reg.__dataclass_fields__) != REG_ORDER:
        Reg = _make_reg()
    rules.DROP_FAMILY = regs.drop_family()


# ---- optimizers ---------------------------------------------------------------------------
BETA = Range(0.0, 1.0, hi_open=True)


@dataclass(frozen=True)
class Adam:
    name: Literal["adam"] = "adam"
    lr: float = param(0.01, POSITIVE)
    beta1: float = param(0.9, BETA)
    beta2: float = param(0.999, BETA)
    eps: float = param(1e-8, POSITIVE)


@dataclass(frozen=True)
class SGD:
    name: Literal["sgd"] = "sgd"
    lr: float = param(0.01, POSITIVE)
    momentum: float = param(0.0, BETA)


OPTIMS = {"adam": Adam, "sgd": SGD}


# ---- launchers: where runs execute; never part of a run's config or hash -------------------
@dataclass(frozen=True)
class LocalLauncher:
    name: Literal["local"] = "local"
    workers: int | None = param(None, POSITIVE)


@dataclass(frozen=True)
class JoblibLauncher:
    name: Literal["joblib"] = "joblib"
    n_jobs: int = param(2, Check(lambda n: n == -1 or n > 0, "> 0 or -1 (one per core)", bad=(0, -2)))


@dataclass(frozen=True)
class SubmititLocalLauncher:
    name: Literal["submitit_local"] = "submitit_local"
    jobs: int = param(2, POSITIVE)
    timeout_min: int = param(60, POSITIVE)
    cpus_per_task: int = param(1, POSITIVE)


@dataclass(frozen=True)
class SubmititSlurmLauncher:
    name: Literal["submitit_slurm"] = "submitit_slurm"
    jobs: int = param(10, POSITIVE)
    timeout_min: int = param(60, POSITIVE)
    cpus_per_task: int = param(2, POSITIVE)
    mem_gb: int = param(4, POSITIVE)
    gpus_per_node: int = param(0, NONNEG)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    array_parallelism: int = param(64, POSITIVE)
    setup: list[str] = field(default_factory=list)


LAUNCHERS = {c.name: c for c in (LocalLauncher, JoblibLauncher, SubmititLocalLauncher, SubmititSlurmLauncher)}
Launcher = LocalLauncher | JoblibLauncher | SubmititLocalLauncher | SubmititSlurmLauncher


# ---- evaluation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Eval:
    """What a run measures besides eval-mode MSE (engines/mc.py: MCStats)."""

    # T > 0: MC dropout, the mean of T passes with the dropout family active
    mc_samples: int = param(0, Range(0, why="0: eval-mode prediction only"))
    # model precision of the Gaussian test log-likelihood (null: not computed)
    tau: float | None = param(None, Range(0.0, lo_open=True, says="a finite number > 0 (or null: no log-likelihood)"))
    # Where the MC passes' Bernoulli masks come from (dropbench/masks.py). fast: the counter
    # stream, keyed by pass, so no number depends on how many passes go in one forward; torch:
    # the run's own generator, continued on a copy of its state, one pass per forward.
    mc_masks: Literal["fast", "torch"] = "fast"


# ---- the whole run ------------------------------------------------------------------------
@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _asdict(obj: Any) -> Any:
    """dataclasses.asdict for configs (dataclasses, lists, scalars), without its generic
    machinery: a sweep turns every config into a dict several times (run id, config.yaml, row).
    tests/test_sweep_fast.py checks it against dataclasses.asdict."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {n: _asdict(getattr(obj, n)) for n in _field_names(type(obj))}
    if isinstance(obj, list):
        return [_asdict(v) for v in obj]
    if isinstance(obj, (str, int, float, type(None))):
        return obj
    return copy.deepcopy(obj)



@dataclass(frozen=True)
class RunConfig:
    # The defaults conf/config.yaml chooses (build() always sets both).
    data: DataConfig = field(default_factory=DATA["noisy_linear"])
    model: ModelConfig = field(default_factory=MODELS["mlp"])
    reg: Reg = field(default_factory=Reg)
    optim: Adam | SGD = field(default_factory=Adam)
    seed: int = param(1, SEED)
    epochs: int = param(500, POSITIVE)
    eval_every: int = param(50, POSITIVE)
    # Left out of the run id at its default (no MC, no tau), so ids from before it existed hold.
    eval: Eval = param(Eval(), id_omits_default=True)
    # Rows per optimizer step; None: full batch (one step per epoch). Left out of the run id at
    # its default, so full-batch ids from before it existed hold.
    batch_size: int | None = param(None, Range(1, says="an integer >= 1 (or null: full batch)"), id_omits_default=True)
    p: float | None = param(0.5, PROB)  # the drop probability in effect (None: no dropout-family regularizer)
    engine: Literal["batched", "torch"] = "batched"
    # auto: the device that will run it, resolved by dropbench.derive before the id is taken (a GPU
    # run's numbers differ from a CPU run's, so they must not share a run id).
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    dtype: Literal["float32", "float64"] = "float32"
    # Where training's Bernoulli masks come from: torch, each run's own generator (bit for bit
    # torch.nn.Dropout); fast, the counter stream of dropbench/masks.py (same on every CPU,
    # keep probability to 16 bits). Left out of the run id at its default.
    masks: Literal["torch", "fast"] = param("torch", id_omits_default=True)
    out: str | None = None

    @property
    def data_seed(self) -> int:
        seed = getattr(self.data, "seed", None)  # data=uci has fixed splits, no seed
        return self.seed if seed is None else seed

    @property
    def fast_mc_passes(self) -> bool:
        """Whether its MC passes draw from the fast mask stream (eval.mc_masks: fast, with passes)."""
        return self.eval.mc_samples > 0 and self.eval.mc_masks == "fast"

    @property
    def validation_fraction(self) -> float:
        """The share of the training rows a loop-slot regularizer holds out as validation rows
        (early stopping; 0: none): what the data set leaves out of the rows trained on."""
        return regs.holdout_fraction(self.reg)

    @property
    def unresolved(self) -> tuple[str, ...]:
        """The keys whose values dropbench.derive has yet to resolve (empty: none)."""
        l2 = getattr(self.reg, "l2", None)
        derive_l2 = l2 is not None and l2.prior_length_scale is not None and l2.weight_decay is None
        return (("device",) if self.device == "auto" else ()) + (("reg.l2.weight_decay",) if derive_l2 else ())

    def to_dict(self) -> dict[str, Any]:
        return _prune(_asdict(self))

    @property
    def run_id(self) -> str:
        """Stable hash of everything that determines the run's numbers: a CSV by its contents
        (data.sha256), never by its path; a UCI split by name, never by its folder.
        tests/test_config.py pins ids: change them deliberately (identity.py says what enters)."""
        if getattr(self.data, "sha256", "") is None:
            raise ValueError("a csv config gets its sha256 from build(); construct it with build()")
        if self.unresolved:
            raise ValueError(f"{', '.join(self.unresolved)} not resolved yet: dropbench.derive.resolve gives a config "
                             "its derived values, and so its run id")
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
    group by its schema, then the rules across groups (rules.py). Reads no data: derived values
    are left for dropbench.derive."""
    if not isinstance(d, dict):
        raise UserError(f"a config must be a mapping of keys, not {type(d).__name__}")
    d = dict(d)
    d.pop("launcher", None)
    d.pop(TABLE_KEY, None)
    data = pin_data(_select(DATA, "data", d.pop("data", {})))
    model = _select(MODELS, "model", d.pop("model", {}))
    optim = _select(OPTIMS, "optim", d.pop("optim", {}))
    reg = from_dict(Reg, d.pop("reg", None) or {}, "reg")
    model = _adjust_model(model, reg)
    cfg = from_dict(RunConfig, d)  # the groups, taken out above, are set next
    cfg = dataclasses.replace(cfg, data=data, model=model, reg=reg, optim=optim, p=_p_in_effect(reg))
    _check_l2_prior(cfg)
    return cfg


def build_launcher(d: dict[str, Any]) -> "Launcher":
    return _select(LAUNCHERS, "launcher", d.get("launcher") or {"name": "local"})
