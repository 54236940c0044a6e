"""dropbench's regularizer layers against independent references written from the seeds' intent.

Each reference below is written here from the source notes (/work/shared/seeds), not copied from
dropbench: masks are drawn explicitly from the same generator state, so a layer that scales,
draws, masks or mutates differently from its definition fails. The layers under test are the ones
dropbench builds (dropbench.models.hidden_layer for the dropout layer a model gets).
"""

import math

import pytest
import torch
from conftest import assert_bits_equal, autograd_and_backward
import torch.nn.functional as F
from torch import nn

from dropbench.config import load
from dropbench.models.layers import hidden_layer
from dropbench.regs import REGISTRY
from dropbench.regs.base import reg_layer, reg_linear
from dropbench.regs.dropconnect import Config as DropConnectConfig
from dropbench.regs.droppath import Config as DropPathConfig
from dropbench.regs.l1 import l1_penalty as _l1
from dropbench.regs.vanilla_dropout import Config as VanillaConfig


def VanillaDropout(p: float) -> nn.Module:
    return reg_layer(REGISTRY["vanilla_dropout"], VanillaConfig(p))


def DropPath(p: float) -> nn.Module:
    return reg_layer(REGISTRY["droppath"], DropPathConfig(p))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return REGISTRY["droppath"].torch_forward(x, DropPathConfig(p), training)


def DropConnectLinear(n_in: int, n_out: int, p: float) -> nn.Linear:
    return reg_linear(n_in, n_out, [(REGISTRY["dropconnect"], DropConnectConfig(p))])


def l1_penalty(model: nn.Module) -> torch.Tensor:
    return _l1(model.parameters())

F64 = torch.float64


def model_drop_layer(reg: str, p: float, inplace: bool = False) -> nn.Module:
    """The dropout-family layer dropbench puts in a hidden layer for `reg` (placement=before:
    Linear, drop, activation)."""
    overrides = [f"reg={reg}", f"p={p}", "model.placement=before"]
    if reg == "dropout":
        overrides.append(f"reg.dropout.inplace={str(inplace).lower()}")
    cfg = load(overrides)
    layer = hidden_layer(3, 3, cfg.model, cfg.reg)[1]
    assert not isinstance(layer, (nn.Linear, nn.ReLU)), "placement=before puts the drop layer second"
    return layer


def rng_after(fn) -> torch.Tensor:
    """What the global generator draws next after fn() from seed 0: equal iff fn drew the same."""
    torch.manual_seed(0)
    fn()
    return torch.rand(4, dtype=F64)


def keep_mask(shape, keep: float, dtype=F64) -> torch.Tensor:
    """A Bernoulli(keep) 0/1 mask, drawn as torch's dropout draws it (bernoulli_ on a fresh tensor)."""
    return torch.empty(shape, dtype=dtype).bernoulli_(keep)


# ---- inverted dropout (seeds 000, 002): train x * mask / (1-p), eval identity ----------------
# reg=dropout is torch's nn.Dropout, whose semantics (those of seeds 000 and 002) are pinned once as
# a canary in tests/test_torch_canaries.py; what is dropbench's is that it builds that layer.

@pytest.mark.parametrize("p, inplace", [(0.3, False), (0.8, True), (0.0, False)])
def test_the_dropout_layer_is_torchs_with_the_configs_p_and_inplace(p, inplace):
    """torch's nn.Dropout (a subclass that draws from the fast stream only under masks=fast),
    and bit for bit its forward outside one."""
    layer = model_drop_layer("dropout", p, inplace=inplace)
    assert isinstance(layer, nn.Dropout) and (layer.p, layer.inplace) == (p, inplace)
    x = torch.randn(10, 7, dtype=F64)
    torch.manual_seed(3)
    ours = layer.train()(x.clone())
    torch.manual_seed(3)
    assert torch.equal(ours, nn.Dropout(p, inplace=inplace).train()(x.clone()))


def test_vanilla_dropout_at_p_zero_is_identity_and_draws_nothing():
    x = torch.randn(10, 7, dtype=F64)
    layer = model_drop_layer("vanilla_dropout", 0.0).train()
    assert torch.equal(layer(x), x)
    assert torch.equal(rng_after(lambda: layer(x)), rng_after(lambda: None))


# ---- vanilla dropout (seed 000): train x * mask (no rescaling), eval x * (1-p) ----------------

def test_vanilla_dropout_is_x_times_mask_in_train_and_x_times_keep_in_eval():
    x = torch.arange(1.0, 1001.0, dtype=F64)
    layer = model_drop_layer("vanilla_dropout", 0.25)
    assert layer.reg is REGISTRY["vanilla_dropout"]
    torch.manual_seed(1)
    out = layer.train()(x)
    after = torch.rand(4, dtype=F64)
    torch.manual_seed(1)
    assert torch.equal(out, x * keep_mask(x.shape, 0.75)), "kept values are not rescaled while training"
    assert torch.equal(torch.rand(4, dtype=F64), after)
    layer.eval()
    assert torch.equal(layer(x), x * 0.75)
    assert torch.equal(rng_after(lambda: layer(x)), rng_after(lambda: None))


def test_vanilla_dropout_train_expectation_matches_eval_output():
    n, p = 200_000, 0.4
    torch.manual_seed(7)
    out = VanillaDropout(p)(torch.ones(n, dtype=F64))
    assert abs(out.mean().item() - (1 - p)) < 6 * math.sqrt(p * (1 - p) / n)


# ---- DropPath (seed 001): one draw per sample, the whole sample dropped or divided by keep -------

def droppath_reference(x: torch.Tensor, p: float) -> torch.Tensor:
    """Seed 001's intent, one sample at a time: a uniform U per sample; the sample survives when
    floor(keep + U) = 1, i.e. U >= p, and is then divided by keep; otherwise it is zero."""
    keep = 1.0 - p
    rows = []
    for b in range(x.shape[0]):
        u = torch.rand((), dtype=x.dtype).item()
        rows.append(x[b] / keep if u >= p else torch.zeros_like(x[b]))
    return torch.stack(rows)


@pytest.mark.parametrize("p", [0.3, 0.6])
def test_droppath_matches_a_per_sample_reference(p):
    x = torch.randn(50, 4, 3, dtype=F64)
    torch.manual_seed(11)
    got = DropPath(p).train()(x)
    after = torch.rand(4, dtype=F64)
    torch.manual_seed(11)
    want = droppath_reference(x, p)
    assert torch.equal(got, want)
    assert torch.equal(torch.rand(4, dtype=F64), after), "exactly one draw per sample"


def test_droppath_zeroes_whole_samples_and_divides_survivors_by_keep_exactly():
    x = torch.randn(200, 4, 5) + 3.0  # float32, no exact zeros in the input
    torch.manual_seed(3)
    out = drop_path(x, 0.4, training=True)
    dropped = (out == 0).flatten(1).all(1)
    assert 0 < dropped.sum() < 200
    assert torch.equal(out[dropped], torch.zeros_like(out[dropped]))
    assert torch.equal(out[~dropped], x[~dropped] / 0.6), "survivors exactly x / keep"


def test_droppath_drop_rate_and_expectation():
    n, p = 100_000, 0.3
    x = torch.full((n, 2), 5.0, dtype=F64)
    torch.manual_seed(4)
    out = DropPath(p).train()(x)
    rate = (out[:, 0] == 0).double().mean().item()
    assert abs(rate - p) < 6 * math.sqrt(p * (1 - p) / n)
    assert abs(out.mean().item() - 5.0) < 6 * 5.0 * math.sqrt(p / (1 - p)) / math.sqrt(n)


def test_droppath_eval_and_p_zero_are_identity_and_draw_nothing():
    x = torch.randn(10, 7, dtype=F64)
    for layer in (DropPath(0.5).eval(), DropPath(0.0).train()):
        assert torch.equal(layer(x), x)
        assert torch.equal(rng_after(lambda: layer(x)), rng_after(lambda: None))


# ---- DropConnect (seed 004's MyLinear): inverted dropout on W; the bias untouched ---------------

def masked_weight_linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, p: float) -> torch.Tensor:
    """Seed 004's intent, written out: one Bernoulli(1-p) mask over W's elements, shared by every
    sample; W * mask / (1-p); the bias as it is."""
    mask = keep_mask(W.shape, 1 - p, W.dtype)
    return x @ (W * (mask / (1 - p))).T + b


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropconnect_is_a_masked_weight_linear(p):
    torch.manual_seed(0)
    layer = DropConnectLinear(50, 40, p=p).double().train()
    x = torch.randn(16, 50, dtype=F64)
    torch.manual_seed(9)
    got = layer(x)
    after = torch.rand(4, dtype=F64)
    W, b = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
    torch.manual_seed(9)
    want = masked_weight_linear(x, W, b, p)
    assert torch.equal(torch.rand(4, dtype=F64), after), "one draw per weight, none per sample"
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(got)
    got.backward(g)
    want.backward(g)
    torch.testing.assert_close(layer.weight.grad, W.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.bias.grad, g.sum(0), rtol=1e-12, atol=1e-12)  # the bias is never masked


def test_dropconnect_eval_and_p_zero_use_the_plain_weights_and_draw_nothing():
    torch.manual_seed(0)
    x = torch.randn(16, 5, dtype=F64)
    for layer in (DropConnectLinear(5, 4, p=0.5).double().eval(), DropConnectLinear(5, 4, p=0.0).double().train()):
        with torch.no_grad():
            want = x @ layer.weight.T + layer.bias
            torch.testing.assert_close(layer(x), want, rtol=1e-12, atol=1e-12)
            assert torch.equal(rng_after(lambda: layer(x)), rng_after(lambda: None))


# ---- L1 (seed 003): sum of |w| over every parameter, biases included --------------------------

def test_l1_penalty_is_the_sum_of_abs_over_every_named_parameter():
    """Each parameter of dropbench's residual model is set to its own constant c_i, so the penalty
    is sum numel_i * |c_i|, with numel_i counted from the architecture by hand."""
    from dropbench.models import build_model

    model = build_model(load(["reg=[l1,droppath]", "model.depth=3", "model.hidden=7"]), 2).double()
    h, n_in = 7, 2
    by_hand = [n_in * h, h] + [h * h, h] * 2 + [h, 1]  # weights and biases, layer by layer
    named = list(model.named_parameters())
    assert [p.numel() for _, p in named] == by_hand
    with torch.no_grad():
        for i, (_, p) in enumerate(named):
            p.fill_((-1) ** i * (i + 1) / 4)
    assert l1_penalty(model).item() == sum(n * (i + 1) / 4 for i, n in enumerate(by_hand))


def test_l1_penalty_gradient_is_sign():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    lam = 0.01
    (lam * l1_penalty(model)).backward()
    for p in model.parameters():
        assert torch.equal(p.grad, lam * torch.sign(p.detach()))


# ---- L2 (seed 003): the optimizer's weight decay ----------------------------------------------

@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_l2_matches_optimizer_weight_decay(opt_name):
    """reg=l2 is the optimizer's weight_decay: identical to adding wd*w to the gradient."""
    from dropbench.optim import make_optimizer

    cfg = load([f"optim={opt_name}", "reg=l2", "reg.l2.weight_decay=0.1"])
    torch.manual_seed(0)
    a = nn.Linear(3, 2).double()
    b = nn.Linear(3, 2).double()
    b.load_state_dict(a.state_dict())
    oa = make_optimizer(a, cfg)
    ob = (torch.optim.Adam(b.parameters(), lr=0.01) if opt_name == "adam" else torch.optim.SGD(b.parameters(), lr=0.01))
    x = torch.randn(5, 3, dtype=torch.float64)
    for _ in range(3):
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
        for p in b.parameters():
            p.grad += 0.1 * p.detach()
        oa.step()
        ob.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, rtol=0, atol=1e-14)


def test_l2_decoupled_is_adamw():
    from dropbench.optim import make_optimizer

    cfg = load(["reg=l2", "reg.l2.decoupled=true", "reg.l2.weight_decay=0.1"])
    opt = make_optimizer(nn.Linear(2, 2), cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["weight_decay"] == 0.1


# --- the batched engine's dropout ---------------------------------------------------------------

@pytest.mark.parametrize("reg", ["dropout", "vanilla_dropout"])
def test_batched_dropout_is_F_dropout_with_the_members_generator(reg):
    """The batched dropout piece for member i equals F.dropout (or the vanilla rule) drawn from member i's RNG state;
    eval mode is the identity (inverted) or a 1-p scale (vanilla)."""
    from dropbench.engines.program import Chunk

    chunk = Chunk([load([f"reg={reg}", f"p={p}", f"seed={s}"]) for s, p in [(0, 0.5), (1, 0.3)]], 2)
    states = [g.get_state() for g in chunk.gens]
    z = torch.randn(2, 20, 300)
    (piece,) = chunk.on_act
    out, _ = piece.forward(z.clone(), train=True)
    for i, p in enumerate((0.5, 0.3)):
        torch.set_rng_state(states[i])
        if reg == "dropout":
            want = F.dropout(z[i], p, training=True)
        else:
            want = z[i] * torch.empty_like(z[i]).bernoulli_(1 - p)
        assert torch.equal(out[i], want)
        scale = 1.0 if reg == "dropout" else 1 - p
        assert torch.equal(piece.forward(z, train=False)[0][i], z[i] * torch.tensor(scale, dtype=z.dtype) if scale != 1 else z[i])


# ---- registry-driven: every registered regularizer, alone and in every valid pair ----------------
# Parametrized over dropbench.regs.REGISTRY, so a new regularizer module is checked by these tests
# without a line of its own: float64 agreement of the engines, the hand-written backward against
# autograd, eval mode, strength 0, and its bad values. test_every_regularizer_is_covered fails for
# one these tests cannot check. The properties are dropbench.testing's, which check_regularizer
# runs on a plug-in.


from dropbench import regs, testing  # noqa: E402
from dropbench.engines.generic import hand_written  # noqa: E402
from dropbench.regs.base import Regularizer  # noqa: E402

NAMES = list(regs.REGISTRY)
PAIRS = [[a, b] for i, a in enumerate(NAMES) for b in NAMES[i + 1:] if regs.conflict([a, b]) is None]
COMBOS = [[n] for n in NAMES] + PAIRS
combo_cfgs = testing.combo_cfgs


def test_every_regularizer_is_covered():
    """The tests below are parametrized over the registry as collected; each regularizer must
    have the hooks its slot needs in both engines (a built-in's batched piece is hand-written),
    and a declared range for every number (so its bad values have an error to test)."""
    assert NAMES == list(regs.discover()), "a regularizer registered after collection is not tested"
    for name, reg in regs.REGISTRY.items():
        testing.reg_declares_what_its_slot_needs(name)
        if reg.slot not in ("optimizer", "loop"):
            assert hand_written(reg), f"{name} lacks batched for slot {reg.slot}"
        if reg.slot not in testing.TORCH_HOOKS:  # a built-in's torch form is torch_forward, whatever module holds it
            assert type(reg).torch_forward is not Regularizer.torch_forward, f"{name} lacks torch_forward for slot {reg.slot}"
    assert len(COMBOS) >= len(NAMES)


@pytest.mark.parametrize("names, placement", [(c, "before") for c in COMBOS] + [([n], "after") for n in NAMES],
                         ids=lambda v: "+".join(v) if isinstance(v, list) else v)
def test_engines_agree_in_float64(names, placement):
    """Every regularizer and valid pair: the batched engine's curves and fit are the reference's
    to rounding (float64: the kernels differ; the draws are the same)."""
    testing.engines_agree(names, placement)


@pytest.mark.parametrize("names", [c for c in COMBOS if any(regs.REGISTRY[n].counter_masks for n in c)], ids="+".join)
def test_engines_agree_in_float64_under_the_fast_stream(names):
    """Every regularizer with counter masks, alone and in each valid pair: the same masks from the
    fast stream in both engines, in training and MC evaluation."""
    testing.engines_agree(names, "before", *testing.FAST_STREAM)


@pytest.mark.kernels
@pytest.mark.parametrize("names", COMBOS, ids="+".join)
def test_hand_written_backward_is_autograds(names):
    """Each piece's backward, in the chunk's backward, is autograd's through its forward, bit for bit."""
    from dropbench.engines.program import Chunk

    for placement in ("before", "after"):
        cfgs = combo_cfgs(names, f"model.placement={placement}", "dtype=float32", seeds=(0, 1, 2))
        chunk = Chunk(cfgs, 3)
        for _ in range(2):
            chunk.step(objective=False)
        want, got, _ = autograd_and_backward(chunk)
        assert len(got) == len(want)
        assert_bits_equal(got, want, f"the hand-written backward of {'+'.join(names)} ({placement}), against autograd's")


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_is_deterministic_and_draws_nothing(name):
    """In eval mode neither engine draws: two passes agree and every generator is left as it was;
    the two engines' eval predictions agree."""
    testing.eval_draws_nothing(name)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("engine", ["torch", "batched"])
def test_strength_zero_is_the_identity_and_draws_nothing(name, engine):
    """At strength 0 (p=0, weight=0, ...) a regularizer changes no number and takes no draw: beside
    a drawing witness, the run is bit for bit the witness alone, in both engines."""
    testing.strength_zero_is_identity(name, engine)


@pytest.mark.parametrize("name", NAMES)
def test_each_bad_value_is_a_one_line_error(name):
    assert testing.reg_bad_values(name)
    testing.reg_bad_values_are_one_line(name)


# ---- Gaussian dropout (Srivastava et al. 2014, section 10): x * N(1, p/(1-p)) while training -----

def gaussian_layer(p: float) -> nn.Module:
    cfg = load(["reg=gaussian_dropout", f"p={p}", "model.placement=before"])
    return hidden_layer(3, 3, cfg.model, cfg.reg)[1]


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_gaussian_dropout_is_x_times_normal_noise(p):
    """Written from the paper: one N(0, 1) draw per element from the global generator, scaled by
    sqrt(alpha) and shifted to mean 1."""
    x = torch.randn(40, 30, dtype=F64)
    layer = gaussian_layer(p).train()
    torch.manual_seed(2)
    got = layer(x)
    after = torch.rand(4, dtype=F64)
    torch.manual_seed(2)
    eps = torch.empty(x.shape, dtype=F64).normal_()
    torch.testing.assert_close(got, x * (1 + math.sqrt(p / (1 - p)) * eps), rtol=1e-15, atol=0)
    assert torch.equal(torch.rand(4, dtype=F64), after), "one draw per element"
    assert torch.equal(gaussian_layer(p).eval()(x), x)


# ---- docs "Adding a regularizer": its worked example is the shipped module, word for word ------

def _example_blocks() -> dict[str, str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    section = text.split("## Adding a regularizer", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, str] = {}
    for chunk in section.split("```")[1::2]:
        lang, _, body = chunk.partition("\n")
        blocks[lang.strip()] = body
    return blocks


def test_docs_worked_example_is_the_registered_module():
    """docs/extending.md's example is dropbench/regs/gaussian_dropout.py and its YAML verbatim, so
    the registry-driven tests above (which run it in both engines) keep the example true."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    blocks = _example_blocks()
    assert blocks["python"] == (root / "dropbench/regs/gaussian_dropout.py").read_text()
    assert blocks["yaml"] == (root / "conf/reg/gaussian_dropout.yaml").read_text()
    assert "gaussian_dropout" in NAMES


def test_docs_example_registers_from_a_fresh_package(tmp_path, monkeypatch):
    """The example's code alone, written into a new package, is found by the registry's discovery."""
    import sys

    pkg = tmp_path / "myregs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "gaussian_dropout.py").write_text(_example_blocks()["python"])
    monkeypatch.syspath_prepend(str(tmp_path))
    found = regs.discover("myregs", [str(pkg)])
    assert list(found) == ["gaussian_dropout"] and found["gaussian_dropout"].slot == "activation"
    sys.modules.pop("myregs.gaussian_dropout", None)
    sys.modules.pop("myregs", None)


@pytest.mark.parametrize("name", NAMES)
def test_the_config_keys_a_regularizer_sets_are_declared(name):
    """Reports read `sets` to pair and group runs (analysis.plugins): every config value outside
    reg.* that selecting it changes must be declared there, and only config keys may be."""
    testing.reg_sets_are_declared(name)


def test_mc_follows_the_dropout_family_unless_declared():
    """Regularizer.mc: the dropout family (shares_p) stays active in MC evaluation by default;
    concrete dropout declares it with its learned rates."""
    for name, reg in regs.REGISTRY.items():
        declared = "mc" in vars(type(reg))
        assert isinstance(reg.mc, bool) and (declared or reg.mc == reg.shares_p), name
    assert regs.REGISTRY["concrete_dropout"].mc and regs.REGISTRY["dropout"].mc and not regs.REGISTRY["l2"].mc
