"""SELU with LeCun-normal initialisation, alpha dropout and L2 without biases, against independent
references: torch.nn.SELU, torch.nn.AlphaDropout and torch.nn.init.kaiming_normal_ (torch's own
recipe for SELU networks), and weight decay computed by hand."""

import math
import warnings
from dataclasses import replace

import pytest
import torch
from conftest import assert_bits_equal, autograd_and_backward
from torch import nn

from dropbench.config import load
from dropbench.models.layers import hidden_layer

F64 = torch.float64
SMALL = ["model.hidden=16", "model.depth=3", "p=0.3", "epochs=10", "eval_every=5", "dtype=float64", "optim.lr=0.05"]
SELU = ["model.activation=selu", "model.init=lecun_normal"]


def quiet_load(overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(overrides)


def _curve_err(a, b) -> float:
    assert a.status == b.status == "ok" and [r[0] for r in a.curve] == [r[0] for r in b.curve]
    return max(abs(x - y) / max(abs(x), 1e-12) for ra, rb in zip(a.curve, b.curve) for x, y in zip(ra[1:], rb[1:]))


def engines_agree(overrides, seeds=(0, 1)) -> float:
    from dropbench.engines.batched import _train_chunk
    from dropbench.engines.reference import train_one

    cfgs = [quiet_load([*SMALL, *overrides, f"seed={s}"]) for s in seeds]
    return max(_curve_err(train_one(c), b) for c, b in zip(cfgs, _train_chunk(cfgs, len(cfgs))))


def assert_backward_is_autograds(overrides) -> None:
    from dropbench.engines.program import Chunk

    cfgs = [quiet_load([*SMALL, *overrides, "dtype=float32", f"seed={s}"]) for s in (0, 1, 2)]
    chunk = Chunk(cfgs, 3)
    for _ in range(2):
        chunk.step(objective=False)
    want, got, _ = autograd_and_backward(chunk)
    assert len(got) == len(want)
    assert_bits_equal(got, want, f"the hand-written backward of {overrides}, against autograd's")


# ---- SELU -------------------------------------------------------------------------------------

def test_selu_hidden_layer_is_torch_selu():
    cfg = load(["model.activation=selu"])
    assert [type(m) for m in hidden_layer(3, 4, cfg.model, cfg.reg)] == [nn.Linear, nn.SELU]


@pytest.mark.parametrize("placement", ["before", "after"])
def test_selu_engines_agree_in_float64(placement):
    assert engines_agree(["model.activation=selu", "reg=dropout", f"model.placement={placement}"]) < 1e-9


@pytest.mark.kernels
@pytest.mark.parametrize("extra", [[], ["reg=dropout"], ["reg=alpha_dropout"], ["reg=[dropout,alpha_dropout]", "model.placement=after"]])
def test_selu_backward_is_autograds_bit_for_bit(extra):
    """The batched engine's SELU backward is aten.elu_backward, the op autograd runs for selu."""
    assert_backward_is_autograds(["model.activation=selu", *extra])


# ---- LeCun-normal initialisation ---------------------------------------------------------------

def test_lecun_normal_is_torchs_recipe_for_selu_networks():
    """Every Linear's weight as nn.init.kaiming_normal_(nonlinearity='linear') draws it (torch's SELU
    docs), layer by layer after construction, from the run's seed; biases zero."""
    from dropbench.models import build_model

    cfg = load([*SELU, "model.hidden=7", "model.depth=3", "seed=4"])
    got = [m for m in build_model(cfg, 2).modules() if isinstance(m, nn.Linear)]
    torch.manual_seed(4)
    ref = [nn.Linear(2, 7), nn.Linear(7, 7), nn.Linear(7, 7), nn.Linear(7, 1)]
    for lin in ref:
        nn.init.kaiming_normal_(lin.weight, nonlinearity="linear")
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert torch.equal(g.weight, r.weight)
        assert torch.equal(g.bias, torch.zeros_like(g.bias))


def test_lecun_normal_variance_is_one_over_fan_in():
    from dropbench.models import build_model

    w = build_model(load([*SELU, "model.hidden=400"]), 3)[2].weight.detach().double()
    n = w.numel()  # 160k draws of N(0, 1/400): 6-sigma bound on the sample variance
    assert abs(w.var().item() * 400 - 1) < 6 * math.sqrt(2 / n)


def test_default_init_is_torchs_linear_init():
    """model.init=default keeps today's weights: nn.Linear's own init from the seed."""
    from dropbench.models import build_model

    model = build_model(load(["model.hidden=5", "seed=3"]), 2)
    torch.manual_seed(3)
    ref = [nn.Linear(2, 5), nn.Linear(5, 5), nn.Linear(5, 1)]
    got = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert all(torch.equal(g.weight, r.weight) and torch.equal(g.bias, r.bias) for g, r in zip(got, ref))


def test_batched_engine_starts_from_the_references_lecun_weights():
    from dropbench.engines.program import Chunk
    from dropbench.models import build_model

    cfgs = [load([*SMALL, *SELU, f"seed={s}"]) for s in (0, 1)]
    chunk = Chunk(cfgs, 2)
    for i, c in enumerate(cfgs):
        lins = [m for m in build_model(c, 1).modules() if isinstance(m, nn.Linear)]
        ref = [t for lin in lins for t in (lin.weight.detach().t(), lin.bias.detach().unsqueeze(0))]
        assert all(torch.equal(p[i], r.to(F64)) for p, r in zip(chunk.params, ref))
    assert engines_agree(SELU) < 1e-9


def test_new_model_keys_keep_old_run_ids_at_their_defaults():
    base = load([]).run_id
    assert load(["model.init=default"]).run_id == base
    assert load(["model.init=lecun_normal"]).run_id != base
    assert load(["model.activation=selu"]).run_id != base
    assert load(["reg=l2"]).run_id == load(["reg=l2", "reg.l2.biases=true"]).run_id
    assert load(["reg=l2", "reg.l2.biases=false"]).run_id != load(["reg=l2"]).run_id
    assert load(["model.init=lecun_normal"]).to_dict()["model"]["init"] == "lecun_normal"


def test_bad_init_and_activation_are_one_line_errors():
    from dropbench.errors import UserError

    for key, bad in (("model.init", "xavier"), ("model.activation", "swish")):
        with pytest.raises(UserError) as e:
            load([f"{key}={bad}"])
        assert str(e.value).startswith(f"invalid value {key}=") and "\n" not in str(e.value)


# ---- alpha dropout: exactly torch.nn.AlphaDropout ----------------------------------------------
# The reference's layer is nn.AlphaDropout itself (checked by type and p); the batched piece is
# compared with it draw for draw. Its statistics (mean 0 and variance 1 kept) are torch's.

def alpha_layers(placement: str, p: float = 0.3) -> list[nn.Module]:
    cfg = load(["reg=alpha_dropout", f"p={p}", f"model.placement={placement}", "model.activation=selu"])
    return hidden_layer(3, 3, cfg.model, cfg.reg)


@pytest.mark.parametrize("placement", ["before", "after"])
def test_alpha_dropout_acts_after_the_selu_whatever_the_placement(placement):
    lin, act, drop = alpha_layers(placement)
    assert isinstance(act, nn.SELU) and isinstance(drop, nn.AlphaDropout) and drop.p == 0.3


def test_dropout_follows_placement_beside_alpha_dropout():
    cfg = load(["reg=[dropout,alpha_dropout]", "model.activation=selu", "model.placement=before"])
    layers = hidden_layer(3, 3, cfg.model, cfg.reg)
    kinds = [nn.Linear, nn.Dropout, nn.SELU, nn.AlphaDropout]  # torch's (dropout's draw from the fast stream under masks=fast)
    assert len(layers) == len(kinds) and all(isinstance(m, k) for m, k in zip(layers, kinds))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batched_alpha_dropout_is_torchs_with_each_members_generator(dtype):
    """Member i's output is nn.AlphaDropout(p_i) drawn from member i's generator state, bit for
    bit; a member at p=0 takes no draw; eval is the identity."""
    from dropbench.engines.program import Chunk

    ps = (0.5, 0.0, 0.2)
    chunk = Chunk([load(["reg=alpha_dropout", "model.activation=selu", f"p={p}", f"seed={s}", f"dtype={dtype}"])
                   for s, p in enumerate(ps)], 3)
    states = [g.get_state() for g in chunk.gens]
    z = torch.randn(3, 20, 300, dtype=chunk.dtype)
    (piece,) = chunk.on_post
    out, _ = piece.forward(z, train=True)
    for i, p in enumerate(ps):
        torch.set_rng_state(states[i])
        assert torch.equal(out[i], nn.AlphaDropout(p).train()(z[i]))
        assert torch.equal(chunk.gens[i].get_state(), torch.get_rng_state())
    assert torch.equal(chunk.gens[1].get_state(), states[1]), "p=0 draws nothing"
    assert torch.equal(piece.forward(z, train=False)[0], z)


@pytest.mark.parametrize("placement", ["before", "after"])
def test_alpha_dropout_engines_agree_with_selu(placement):
    assert engines_agree([*SELU, "reg=[dropout,alpha_dropout]", f"model.placement={placement}"]) < 1e-9


def test_alpha_dropout_warns_without_selu():
    with pytest.warns(UserWarning, match="model.activation=selu"):
        load(["reg=alpha_dropout", "model.activation=relu"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(["reg=alpha_dropout", "model.activation=selu"])


def test_the_cli_says_the_warning_in_one_line(tmp_path):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "dropbench", "run", "reg=alpha_dropout", "epochs=2", "model.hidden=4",
                        f"out={tmp_path / 'r'}", "-q"], capture_output=True, text=True)
    warned = [line for line in p.stderr.splitlines() if "alpha dropout keeps mean and variance only under selu" in line]
    assert p.returncode == 0 and len(warned) == 1 and warned[0].startswith("dropbench: warning: reg=alpha_dropout"), p.stderr
    assert "UserWarning" not in p.stderr and ".py:" not in p.stderr, p.stderr


# ---- L2 without the biases ---------------------------------------------------------------------

LR, WD, EPS = 0.1, 0.5, 1e-8


def _l2_cfg(opt_name: str, decoupled: bool, biases: bool, seed: int = 0):
    return load([f"optim={opt_name}", "reg=l2", f"reg.l2.weight_decay={WD}", f"reg.l2.decoupled={str(decoupled).lower()}",
                 f"reg.l2.biases={str(biases).lower()}", "model.hidden=4", f"optim.lr={LR}",
                 *([f"optim.eps={EPS}"] if opt_name == "adam" else []), "epochs=1", "eval_every=1", "dtype=float64",
                 f"seed={seed}"])


def _by_hand(cfg, opt_name: str, decoupled: bool, biases: bool) -> list[torch.Tensor]:
    """Each Linear's weight and bias after one full-batch step, by hand in float64: from the
    initial w and autograd's gradient g of the MSE at w, lr 0.1, wd 0.5. Coupled: g' = g + wd*w
    (SGD: w - lr*g'; Adam's first step: w - lr*g'/(|g'|+eps)); decoupled: w*(1-lr*wd), then the
    plain step. With biases=false a bias takes the plain step."""
    from dropbench.data import load_dataset
    from dropbench.models import build_model

    model = build_model(cfg, 1).double()  # the run's initial weights (test_default_init_is_torchs_linear_init)
    data = load_dataset(cfg).to(F64)
    params = [t for m in model.modules() if isinstance(m, nn.Linear) for t in (m.weight, m.bias)]
    grads = torch.autograd.grad((model(data.x_train) - data.y_train).pow(2).mean(), params)
    step = (lambda gr: LR * gr) if opt_name == "sgd" else (lambda gr: LR * gr / (gr.abs() + EPS))
    out = []
    for k, (w, g) in enumerate(zip(params, grads)):
        w = w.detach()
        on = biases or k % 2 == 0  # even: a weight; odd: a bias
        out.append(w * (1 - LR * WD if on else 1.0) - step(g) if decoupled else w - step(g + (WD * w if on else 0.0)))
    return out


def _reference_step(cfg, monkeypatch) -> list[torch.Tensor]:
    """The reference engine's weights after its one step: train_one (epochs=1) on the network it
    built, caught on its way in."""
    from dropbench.engines import reference

    built = []
    build = reference.build_model
    monkeypatch.setattr(reference, "build_model", lambda c, n: built.append(build(c, n)) or built[-1])
    assert reference.train_one(cfg).status == "ok"
    (model,) = built
    return [t.detach() for m in model.modules() if isinstance(m, nn.Linear) for t in (m.weight, m.bias)]


def _batched_step(cfg) -> list[torch.Tensor]:
    """The batched engine's weights after one step of a chunk of two (member 0), as [out, in]."""
    from dropbench.engines.program import Chunk

    chunk = Chunk([cfg, replace(cfg, seed=cfg.seed + 1)], 2)
    chunk.step(objective=False)
    return [p[0].t() if k % 2 == 0 else p[0, 0] for k, p in enumerate(chunk.params)]


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("biases", [False, True])
@pytest.mark.parametrize("engine", ["torch", "batched"])
def test_l2_decays_biases_only_when_asked(opt_name, decoupled, biases, engine, monkeypatch):
    """Each engine's first step is the hand-computed one (_by_hand): the engines' own code runs
    it (the reference's decoupled SGD step and parameter groups, the batched optimizer), not a copy."""
    cfg = _l2_cfg(opt_name, decoupled, biases)
    got = _reference_step(cfg, monkeypatch) if engine == "torch" else _batched_step(cfg)
    want = _by_hand(cfg, opt_name, decoupled, biases)
    assert len(got) == len(want) == 6
    for k, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-14, msg=f"{'weight' if k % 2 == 0 else 'bias'} {k // 2}")


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
@pytest.mark.parametrize("decoupled", ["false", "true"])
def test_l2_without_biases_engines_agree_in_one_chunk(opt_name, decoupled):
    """Members with and without bias decay and with different decays share a chunk; each agrees
    with its own reference run."""
    from dropbench.engines.batched import _train_chunk
    from dropbench.engines.reference import train_one

    cfgs = [load([*SMALL, f"optim={opt_name}", "reg=l2", f"reg.l2.decoupled={decoupled}", f"reg.l2.biases={b}",
                  f"reg.l2.weight_decay={wd}", "seed=1"])
            for b, wd in (("false", 0.5), ("true", 0.5), ("false", 0.2), ("false", 0.0))]
    runs = _train_chunk(cfgs, 4)
    assert max(_curve_err(train_one(c), r) for c, r in zip(cfgs, runs)) < 1e-9
    assert runs[0].curve != runs[1].curve, "leaving the biases out changes the run"
