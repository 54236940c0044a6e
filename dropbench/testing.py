"""The registry's property tests, for a plug-in as for a built-in (scikit-learn's check_estimator).

    from dropbench.testing import check_regularizer, check_dataset, check_model
    check_regularizer(MyReg)          # a Regularizer subclass or instance
    check_dataset(my_data_module)     # a module (or object) declaring Config, load, n_trained
    check_model(my_model_module)      # a module (or object) declaring Config, build

Each registers the plug-in for the duration of the check (unless it is registered already: a
config directory's or an installed package's) and raises AssertionError, naming the property,
at the first one it breaks. The checks are the functions below, one per property; dropbench's
own tests (tests/test_regularizers.py, test_datasets.py, test_invariance.py, test_models.py) run
the same functions over the built-ins. Properties of the CPU's kernels (bit-identity of a run
alone and in any chunk) name the platform when they fail.

Imports torch: a testing module, never imported by dropbench itself.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import replace
from typing import Any, Callable, Sequence

import torch

from dropbench import params, regs
from dropbench.registration import registered
from dropbench.errors import UserError

F64 = torch.float64
# A small network and a short run: what the registry's agreement tests train.
RUN = ["p=0.3", "epochs=10", "eval_every=5", "dtype=float64", "optim.lr=0.05"]
SMALL = ["model.hidden=16", "model.depth=3", *RUN]
# The hooks each slot needs in the reference engine (the batched engine's generic path runs a
# regularizer that declares no batched piece from these).
TORCH_HOOKS = {"loss": ("penalty",), "optimizer": ("decay",), "after_step": ("after_step",), "loop": ("holdout", "watch")}
ACTIVATIONS = ("relu", "tanh", "gelu", "selu")
HIDDEN = (7, 13, 30)  # x 20 training rows: 140, 260 and 600 elements per member and layer
LAYOUTS = ((3, 2), (4, 3), (5, 4), (6, 1))  # (chunk size, the run's position); alone is (2, 0)


def _load(overrides: Sequence[str]) -> Any:
    from dropbench.config import load

    return load(list(overrides))


def platform() -> str:
    from dropbench.provenance import cpu_model

    return (f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
            f"{cpu_model()}: a property of this platform's CPU kernels")


def rng_after(fn: Callable[[], Any]) -> torch.Tensor:
    """What the global generator draws next after fn() from seed 0: equal iff fn drew the same."""
    torch.manual_seed(0)
    fn()
    return torch.rand(4, dtype=F64)


# ---- regularizers ---------------------------------------------------------------------------
def combo_cfgs(names: Sequence[str], *extra: str, seeds: Sequence[int] = (0, 1)) -> list[Any]:
    return [_load([f"reg=[{','.join(names)}]", *SMALL, *extra, f"seed={s}"]) for s in seeds]


def compatible(name: str) -> list[list[str]]:
    """`name` with each registered regularizer it may combine with."""
    return [sorted([name, o], key=lambda n: regs.REGISTRY[n].order) for o in regs.REGISTRY
            if o != name and regs.conflict([name, o]) is None]


def curve_err(a: Any, b: Any) -> float:
    """The largest relative difference between two runs' curves, fits and learned values (their
    evaluation epochs, statuses and early-stopping decisions must be the same)."""
    assert [r[0] for r in a.curve] == [r[0] for r in b.curve] and a.status == b.status == "ok", (a.reason, b.reason)
    errs = [abs(x - y) / max(abs(x), 1e-12) for ra, rb in zip(a.curve, b.curve) for x, y in zip(ra[1:], rb[1:])]
    errs += [abs(y1 - y2) / max(abs(y1), 1e-12) for (_, y1), (_, y2) in zip(a.fit, b.fit)]
    # learned values (concrete dropout's p per layer), recorded as text
    learned = [[float(v) for v in (p or "").split()] for p in (*a.column("learned_p"), *b.column("learned_p"))]
    half = len(learned) // 2
    assert [len(v) for v in learned[:half]] == [len(v) for v in learned[half:]]
    errs += [abs(x - y) / max(abs(x), 1e-12) for la, lb in zip(learned[:half], learned[half:]) for x, y in zip(la, lb)]
    # validation rows (a loop-slot regularizer's) and what it decided from them
    va, vb = a.column("val_mse"), b.column("val_mse")
    assert [v is None for v in va] == [v is None for v in vb]
    errs += [abs(x - y) / max(abs(x), 1e-12) for x, y in zip(va, vb) if x is not None]
    assert (a.kept, a.stopped) == (b.kept, b.stopped) and a.summary().keys() == b.summary().keys()
    return max(errs)


def reg_declares_what_its_slot_needs(name: str) -> None:
    """The hooks its slot needs in the reference engine, and a declared range for every number
    (so its bad values have an error to test)."""
    from dropbench.regs.base import Regularizer

    reg = regs.REGISTRY[name]
    for hook in TORCH_HOOKS.get(reg.slot, ("torch_forward",)):
        if hook == "torch_forward" and type(reg).torch_layer is not Regularizer.torch_layer:
            continue  # its own torch module
        assert getattr(type(reg), hook) is not getattr(Regularizer, hook), f"{name} lacks {hook} for slot {reg.slot}"
    for f in dataclasses.fields(reg.Config):
        if f.type in ("float", "int", float, int):
            assert f.metadata.get(params.CHECK) is not None, f"{name}.{f.name} declares no range"


# Under the fast mask stream, with MC evaluation: where a regularizer with counter_masks draws
# from dropbench/masks.py in both engines.
FAST_STREAM = ("masks=fast", "eval.mc_samples=10", "eval.tau=1")


def engines_agree(names: Sequence[str], placement: str = "before", *extra: str) -> None:
    """The batched engine's curves and fit are the reference's to rounding (float64: the kernels
    differ; the draws are the same); `extra`: overrides (FAST_STREAM)."""
    from dropbench.engines.batched import _train_chunk
    from dropbench.engines.reference import train_one

    cfgs = combo_cfgs(names, f"model.placement={placement}", *extra)
    for cfg, b in zip(cfgs, _train_chunk(cfgs, 2)):
        err = curve_err(train_one(cfg), b)
        assert err < 1e-9, f"reg=[{','.join(names)}] ({placement}{''.join(' ' + e for e in extra)}): the engines differ by {err:.3g} in float64"


def eval_draws_nothing(name: str) -> None:
    """In eval mode neither engine draws: two passes agree and every generator is left as it was;
    the two engines' eval predictions agree."""
    from dropbench.engines.program import Chunk
    from dropbench.models import build_model

    cfgs = combo_cfgs([name])
    model = build_model(cfgs[0], 1).double().eval()
    x = torch.linspace(-1, 1, 20, dtype=F64).unsqueeze(1)
    with torch.no_grad():
        assert torch.equal(rng_after(lambda: model(x)), rng_after(lambda: None)), f"{name} draws in eval mode (engine=torch)"
        ref = model(x)
    chunk = Chunk(cfgs, 2)
    states = [g.get_state() for g in chunk.gens]
    xs = x.unsqueeze(0).expand(2, -1, -1)
    with torch.no_grad():
        a, b = chunk.forward(xs, train=False), chunk.forward(xs, train=False)
    assert torch.equal(a, b), f"{name}: two eval passes differ (engine=batched)"
    assert all(torch.equal(s, g.get_state()) for s, g in zip(states, chunk.gens)), f"{name} draws in eval mode (engine=batched)"
    torch.testing.assert_close(a[0], ref, rtol=1e-12, atol=1e-12)


def _witness(name: str) -> str | None:
    """A drawing regularizer that may combine with `name`: if `name` drew anything at strength 0,
    the witness's masks would shift."""
    return next((w for w, r in regs.REGISTRY.items() if w != name and r.draws and r.slot != "input"
                 and regs.conflict([name, w]) is None), None)


def strength_zero_is_identity(name: str, engine: str) -> None:
    """At strength 0 (p=0, weight=0, ...) a regularizer changes no number and takes no draw: beside
    a drawing witness, the run is bit for bit the witness alone."""
    from dropbench.engines.batched import _train_chunk
    from dropbench.engines.reference import train_one

    reg = regs.REGISTRY[name]
    w = _witness(name)
    names = [name] + ([w] if w else [])
    cfgs = combo_cfgs(names, f"reg.{name}.{reg.strength}=0", "dtype=float32")
    without = [replace(c, reg=replace(c.reg, **{name: None})) for c in cfgs]
    run = (lambda cs: [train_one(c) for c in cs]) if engine == "torch" else (lambda cs: _train_chunk(cs, 2))
    for a, b in zip(run(cfgs), run(without)):
        assert a.status == b.status == "ok", (a.reason, b.reason)
        assert a.curve == b.curve and a.fit == b.fit, f"{name} at {reg.strength}=0 changes the run (engine={engine})"


def reg_bad_values(name: str) -> list[tuple[str, str]]:
    out = []
    for f in dataclasses.fields(regs.REGISTRY[name].Config):
        rng = f.metadata.get(params.CHECK)
        out += [(f.name, repr(v)) for v in (rng.outside() if rng is not None else [])]
        out.append((f.name, "[1,2]" if f.type in ("bool", bool) else "abc"))
    return out


def reg_bad_values_are_one_line(name: str) -> None:
    for field_name, value in reg_bad_values(name):
        key = f"reg.{name}.{field_name}"
        try:
            _load([f"reg={name}", f"{key}={value}"])
        except UserError as e:
            msg = str(e)
            assert msg.startswith(f"invalid value {key}=") and "must be" in msg and "\n" not in msg, msg
        else:
            raise AssertionError(f"{key}={value} is accepted")


def reg_sets_are_declared(name: str) -> None:
    """Reports read `sets` to pair and group runs (analysis.plugins): every config value outside
    reg.* that selecting it changes must be declared there, and only config keys may be."""
    base = _load(["model.depth=3", "model.hidden=16"]).flat()
    chosen = _load([f"reg={name}", "model.depth=3", "model.hidden=16"]).flat()
    changed = {k for k in base if not k.startswith("reg.") and k != "p" and base[k] != chosen.get(k)}
    reg = regs.REGISTRY[name]
    assert changed <= set(reg.sets), f"{name} sets {sorted(changed - set(reg.sets))} without declaring it in `sets`"
    assert set(reg.sets) <= set(base), f"{name} declares keys that are not config keys: {sorted(set(reg.sets) - set(base))}"
    assert reg.note is None or (reg.note.strip() and "\n" not in reg.note), "a note is one caption line"


def invariance_cfg(act: str, names: Sequence[str], hidden: int, seed: int, *extra: str) -> Any:
    reg = f"reg=[{','.join(names)}]" if names else "reg=none"
    return _load([reg, f"model.activation={act}", f"model.hidden={hidden}", f"seed={seed}", "epochs=3", "eval_every=1",
                  "p=0.3", *extra])


def signature(result: Any) -> tuple:
    return result.status, result.reason, result.rows(), result.fit


def alone_everywhere(act: str, names: Sequence[str], hidden: int, *extra: str, others_mc: int | None = None,
                     layouts: tuple[tuple[int, int], ...] = LAYOUTS) -> None:
    """A run (seed 3) is bit-identical alone (a chunk of two) and in each layout among runs of
    other seeds (and others_mc MC passes): its numbers do not depend on its company."""
    from dropbench.engines.batched import _train_chunk

    target = invariance_cfg(act, names, hidden, 3, *extra)
    ev = target.eval if others_mc is None else replace(target.eval, mc_samples=others_mc)
    others = [replace(target, seed=s, eval=ev) for s in range(100, 105)]
    (alone,) = _train_chunk([target], 2)
    want = signature(alone)
    what = f"{'+'.join(names) or 'none'}, {act}, hidden {hidden}{', ' if extra else ''}{', '.join(extra)}"
    assert want[0] == "ok", f"{what}: {want[1]}"
    for size, pos in layouts:
        members = others[: size - 1]
        members.insert(pos, target)
        got = signature(_train_chunk(members, size)[pos])
        assert got == want, f"{what}: in a chunk of {size} at position {pos} it differs from alone ({platform()})"


def check_regularizer(reg: Any, pairs: bool = True, invariance: bool = True) -> str:
    """Every registry property on a regularizer (a Regularizer subclass or instance): the hooks its
    slot needs; float64 agreement of the engines alone, after the activation too (activation slot)
    and, with `pairs`, beside every regularizer it may combine with; eval mode drawing nothing;
    strength 0 the identity, drawing nothing, in both engines; each bad value a one-line error;
    the keys it sets declared; and, with `invariance`, its runs bit-identical alone and in any
    chunk for every activation, on mini-batches and (if MC-active) with MC evaluation. A
    regularizer with counter masks is checked under the fast mask stream too.
    Returns its option name."""
    from dropbench.engines.mc import mc_active

    with registered(reg, "reg") as name:
        reg_declares_what_its_slot_needs(name)
        reg_bad_values_are_one_line(name)
        reg_sets_are_declared(name)
        r = regs.REGISTRY[name]
        if r.slot == "loop":
            engines_agree([name])
            return name
        eval_draws_nothing(name)
        for engine in ("torch", "batched"):
            strength_zero_is_identity(name, engine)
        engines_agree([name])
        if getattr(r, "counter_masks", False):  # its masks from the fast stream, in training and MC
            engines_agree([name], "before", *FAST_STREAM)
        if r.slot == "activation":
            engines_agree([name], "after")
        for combo in compatible(name) if pairs else []:
            engines_agree(combo)
        if invariance:
            for i, act in enumerate(ACTIVATIONS):
                alone_everywhere(act, [name], HIDDEN[i % len(HIDDEN)], layouts=LAYOUTS[i % 2::2])
            alone_everywhere("relu", [name], 13, "batch_size=7", layouts=LAYOUTS[:2])
            if mc_active(r):
                alone_everywhere("tanh", [name], 7, "eval.mc_samples=25", "eval.tau=2", others_mc=40, layouts=LAYOUTS[:2])
            if getattr(r, "counter_masks", False):
                alone_everywhere("relu", [name], 13, *FAST_STREAM, "batch_size=7", others_mc=20, layouts=LAYOUTS[:2])
    return name


# ---- data sets --------------------------------------------------------------------------------
def _fields(name: str) -> dict[str, dataclasses.Field]:
    from dropbench import data

    return {f.name: f for f in dataclasses.fields(data.REGISTRY[name].Config)}


def rows(x: torch.Tensor, y: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in torch.cat([x, y], 1).tolist()}


def data_loads_in_shape(given: Sequence[str]) -> None:
    """`given`: the overrides that select the data set with everything it requires."""
    from dropbench import data
    from dropbench.data import base

    d = data.load_dataset(_load(given))
    n, f = d.x_train.shape
    assert f == d.n_features >= 1 and n >= base.MIN_TRAIN_ROWS
    assert d.y_train.shape == (n, 1) and d.x_test.shape[1] == f and d.y_test.shape == (len(d.x_test), 1)
    assert len(d.x_test) >= 1 and d.x_val is None and d.y_val is None
    for t in (d.x_train, d.y_train, d.x_test, d.y_test):
        assert t.dtype == torch.float32 and t.device.type == "cpu" and torch.isfinite(t).all()
    assert d.y_std > 0


def data_seeded(name: str, given: Sequence[str]) -> None:
    """The same seed gives the same data; another seed other data, where it draws (has a seed)."""
    from dropbench import data

    a, b = (data.load_dataset(_load([*given, "seed=3"])) for _ in range(2))
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, k), getattr(b, k)), f"data={name}: {k} differs for the same seed"
    c = data.load_dataset(_load([*given, "seed=4"]))
    if "seed" in _fields(name):  # a data set with a seed draws from it (data=uci's splits are fixed)
        assert not all(torch.equal(getattr(a, k), getattr(c, k)) for k in ("x_train", "y_train", "x_test", "y_test")), \
            f"data={name}: another seed gives the same data"


def data_disjoint(name: str, given: Sequence[str]) -> None:
    from dropbench import data

    d = data.load_dataset(_load(given))
    assert not rows(d.x_train, d.y_train) & rows(d.x_test, d.y_test), f"data={name}: test rows are training rows"


def _holdouts(name: str) -> list[str]:
    return ["none", "validation"] if "holdout" in _fields(name) else ["none"]


def data_n_trained(name: str, given: Sequence[str]) -> None:
    """n_trained is what load trains on, for every hold-out (data.holdout and a loop-slot
    regularizer's validation rows): the count derived values use before planning."""
    from dropbench import data

    mod = data.REGISTRY[name]
    for held in _holdouts(name):
        conf = _load([*given, f"data.holdout={held}"] if held != "none" else given).data
        for fraction in (0.0, 0.2, 0.5):
            assert mod.n_trained(conf, fraction) == len(mod.load(conf, 1, fraction).x_train), (name, held, fraction)


def data_holdout_rule(name: str, given: Sequence[str], shared_x: bool = False) -> None:
    """data.holdout=validation: the first int(0.8 n) training rows are trained on, the rest are
    the test rows; a loop-slot regularizer's validation rows come out of the rows trained on."""
    from dropbench import data
    from dropbench.data import base

    mod = data.REGISTRY[name]
    fields = _fields(name)
    plain = _load(given).data
    if "standardize" in fields:  # compare the rows themselves, not their scaling
        plain = replace(plain, standardize=False)
    full = mod.load(plain, 1, 0.0)
    n = len(full.x_train)
    if "holdout" in fields:
        held = mod.load(replace(plain, holdout="validation"), 1, 0.0)
        k = int(base.HOLDOUT_FIT * n)
        assert (len(held.x_train), len(held.x_test)) == (k, n - k)
        if "standardize" in fields:
            assert torch.equal(held.x_train, full.x_train[:k]) and torch.equal(held.x_test, full.x_train[k:])
    val = mod.load(plain, 1, 0.25)
    n_val = base.validation_rows(n, 0.25, name)
    assert (len(val.x_train), len(val.x_val), len(val.y_val)) == (n - n_val, n_val, n_val)
    if "standardize" in fields or shared_x:  # unscaled: the same rows, split in two
        assert rows(val.x_train, val.y_train) | rows(val.x_val, val.y_val) == rows(full.x_train, full.y_train)
        assert not rows(val.x_train, val.y_train) & rows(val.x_val, val.y_val)


def data_bad_values(name: str) -> list[tuple[str, object]]:
    """(key, a value its declared constraint refuses) for every constrained key of the Config."""
    from dropbench import data

    hints = typing.get_type_hints(data.REGISTRY[name].Config)
    out = []
    for key, c in params.constraints(data.REGISTRY[name].Config):
        for v in c.outside():
            if hints[key] in (int, int | None) and isinstance(v, float):
                lo = getattr(c, "lo", -math.inf)
                v = math.floor(v) if v < lo or (v == lo and c.lo_open) else math.ceil(v)
            out.append((key, v))
    return out


def data_bad_value_is_one_line(name: str, key: str, value: object, given: Sequence[str]) -> None:
    from dropbench.config import build

    d = {o.split("=", 1)[0].removeprefix("data."): o.split("=", 1)[1] for o in given[1:]}
    try:
        build({"data": {"name": name, **d, key: value}})
    except UserError as e:
        msg = str(e)
        assert msg.startswith(f"invalid value data.{key}={value!r}") and "must be" in msg and "\n" not in msg, msg
    else:
        raise AssertionError(f"data.{key}={value!r} is accepted")


def check_dataset(module: Any, overrides: Sequence[str] = (), shared_x: bool = False) -> str:
    """Every registry property on a data set (a module or object declaring Config, load and
    n_trained): loads with its defaults (plus `overrides`, for keys it requires) in the shapes the
    engines expect; the same seed the same data, another seed other data; training and test rows
    disjoint (unless `shared_x`: test rows on the training inputs by design); n_trained what load
    trains on, for every hold-out; the hold-out rule; each bad value a one-line error; and a run
    on it in both engines, agreeing in float64. Returns its option name."""
    with registered(module, "data") as name:
        given = [f"data={name}", *overrides]
        data_loads_in_shape(given)
        data_seeded(name, given)
        if not shared_x:
            data_disjoint(name, given)
        data_n_trained(name, given)
        data_holdout_rule(name, given, shared_x)
        for key, value in data_bad_values(name):
            data_bad_value_is_one_line(name, key, value, given)
        engines_agree_on(given)
    return name


def engines_agree_on(overrides: Sequence[str]) -> None:
    """A dropout run with these overrides in both engines: float64 agreement."""
    from dropbench.engines.batched import _train_chunk
    from dropbench.engines.reference import train_one

    small = RUN if any(o.startswith("model=") for o in overrides) else SMALL  # a plug-in model's keys are its own
    cfgs = [_load([*overrides, "reg=dropout", *small, f"seed={s}"]) for s in (0, 1)]
    for cfg, b in zip(cfgs, _train_chunk(cfgs, 2, alone=train_one)):
        err = curve_err(train_one(cfg), b)
        assert err < 1e-9, f"{' '.join(overrides)}: the engines differ by {err:.3g} in float64"


# ---- models -----------------------------------------------------------------------------------
def model_builds(name: str, overrides: Sequence[str] = ()) -> None:
    """build gives an nn.Module mapping [n, n_in] to [n, 1], its weights a function of the seed."""
    from dropbench.models import build_model

    for n_in in (1, 3):
        cfg = _load([f"model={name}", *overrides, "seed=5"])
        a, b = build_model(cfg, n_in), build_model(cfg, n_in)
        assert isinstance(a, torch.nn.Module), f"model={name}: build returns {type(a).__name__}, not an nn.Module"
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), f"model={name}: weights differ for one seed"
        out = a(torch.randn(4, n_in))
        assert out.shape == (4, 1), f"model={name}: output shape {tuple(out.shape)} for 4 rows, not (4, 1)"
        c = build_model(replace(cfg, seed=6), n_in)
        assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters())), f"model={name}: another seed, the same weights"


def model_bad_values_are_one_line(name: str) -> None:
    from dropbench import models
    from dropbench.config import build

    for key, c in params.constraints(models.REGISTRY[name].Config):
        for v in c.outside():
            try:
                build({"data": {"name": "noisy_linear"}, "model": {"name": name, key: v}})
            except UserError as e:
                msg = str(e)
                assert msg.startswith(f"invalid value model.{key}=") and "\n" not in msg, msg
            else:
                raise AssertionError(f"model.{key}={v!r} is accepted")


def check_model(module: Any, overrides: Sequence[str] = ()) -> str:
    """Every registry property on a model (a module or object declaring Config and build): it
    builds an nn.Module of the right shapes from the seed; each bad value a one-line error; runs
    in both engines agree in float64 (the batched engine trains it member by member) and are
    bit-identical alone and in any chunk. Returns its option name."""
    from dropbench.engines.batched import _train_chunk
    from dropbench.engines.reference import train_one

    with registered(module, "model") as name:
        given = [f"model={name}", *overrides]
        model_builds(name, overrides)
        model_bad_values_are_one_line(name)
        engines_agree_on(given)
        runs = [_load([*given, "reg=dropout", "epochs=3", "eval_every=1", f"seed={s}"]) for s in (3, 100, 101)]
        (alone,) = _train_chunk(runs[:1], 2, alone=train_one)
        assert signature(_train_chunk(runs, 3, alone=train_one)[0]) == signature(alone), f"model={name}: a run differs alone and in a chunk"
    return name
