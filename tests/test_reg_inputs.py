"""input_noise, input_dropout and max_norm against references written out here from the papers
(Bishop 1995; Srivastava et al. 2014; Gal & Ghahramani 2016), not from dropbench's code: noise
and masks drawn explicitly from the same generator state, the max-norm rescale worked by hand on
known matrices. The registry-driven properties (engines agree, backward, eval, strength 0, bad
values) are tests/test_regularizers.py's; these pin what each one does."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dropbench.config import load
from dropbench.regs import REGISTRY
from dropbench.regs.max_norm import Config as MaxNormConfig

F64 = torch.float64
# 7 features into 5 hidden units: every weight matrix is non-square, so rows and columns differ.
TABULAR = ["data=friedman1", "data.n_train=30", "data.n_test=10", "data.n_features=7", "model.hidden=5"]


def rng_after(fn) -> torch.Tensor:
    """What the global generator draws next after fn() from seed 0: equal iff fn drew the same."""
    torch.manual_seed(0)
    fn()
    return torch.rand(4, dtype=F64)


def model_for(*overrides: str, n_in: int = 7) -> nn.Sequential:
    from dropbench.models import build_model

    return build_model(load([*TABULAR, *overrides]), n_in).double()


def plain_forward(model: nn.Module, x: torch.Tensor, hidden=lambda h: h) -> torch.Tensor:
    """The model's Linear layers with ReLU between, `hidden` applied after each activation."""
    lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for lin in lins[:-1]:
        x = hidden(torch.relu(F.linear(x, lin.weight, lin.bias)))
    return F.linear(x, lins[-1].weight, lins[-1].bias)


# ---- input_noise (Bishop 1995): x + sigma * N(0, 1) while training ---------------------------

@pytest.mark.parametrize("sigma", [0.1, 0.7])
def test_input_noise_adds_sigma_times_standard_normal_to_the_inputs(sigma):
    model = model_for("reg=input_noise", f"reg.input_noise.sigma={sigma}").train()
    x = torch.randn(12, 7, dtype=F64)
    torch.manual_seed(3)
    got = model(x)
    after = torch.rand(4, dtype=F64)
    torch.manual_seed(3)
    eps = torch.empty(12, 7, dtype=F64).normal_()  # one N(0,1) per feature and sample, drawn first
    with torch.no_grad():
        torch.testing.assert_close(got, plain_forward(model, x + sigma * eps), rtol=1e-14, atol=0)
        assert torch.equal(torch.rand(4, dtype=F64), after), "one draw per input element, nothing more"
        model.eval()
        assert torch.equal(model(x), plain_forward(model, x)), "eval mode: the inputs as they are"
        assert torch.equal(rng_after(lambda: model(x)), rng_after(lambda: None))


def test_batched_input_noise_is_each_members_own_draw():
    """Member i's noisy inputs are x_i + sigma_i * N(0,1) drawn from member i's generator; a member
    at sigma=0 keeps x bit for bit and draws nothing."""
    from dropbench.engines.program import Chunk

    sigmas = (0.3, 0.0, 1.5)
    chunk = Chunk([load([*TABULAR, "reg=input_noise", f"reg.input_noise.sigma={s}", f"seed={i}", "dtype=float64"])
                   for i, s in enumerate(sigmas)], 3)
    states = [g.get_state() for g in chunk.gens]
    (piece,) = chunk.on_input
    out, _ = piece.forward(chunk.x, train=True)
    for i, s in enumerate(sigmas):
        torch.set_rng_state(states[i])
        want = chunk.x[i] + s * torch.empty(chunk.x.shape[1:], dtype=F64).normal_() if s else chunk.x[i]
        assert torch.equal(out[i], want)
        assert torch.equal(chunk.gens[i].get_state(), torch.get_rng_state() if s else states[i])
    assert piece.forward(chunk.x, train=False)[0] is chunk.x


# ---- input_dropout: F.dropout on the inputs; with dropout, Gal & Ghahramani's UCI network --------

def test_input_dropout_p_follows_p_and_can_be_set_alone():
    assert load(["reg=input_dropout", "p=0.3"]).reg.input_dropout.p == 0.3
    cfg = load(["reg=[input_dropout,dropout]", "p=0.5", "reg.input_dropout.p=0.2"])
    assert (cfg.reg.input_dropout.p, cfg.reg.dropout.p) == (0.2, 0.5)
    assert cfg.p == 0.5, "the p column is the hidden units' rate when both are selected"
    assert cfg.reg.label == "dropout+input_dropout"


@pytest.mark.parametrize("p_in, p", [(0.2, 0.5), (0.1, 0.1)])
def test_input_dropout_with_dropout_drops_inputs_then_each_hidden_activation(p_in, p):
    """reg=[input_dropout,dropout]: F.dropout on the inputs, then after each hidden activation
    (Srivastava et al. with p_in=0.2, p=0.5; Gal & Ghahramani's one rate), masks in that order."""
    model = model_for("reg=[input_dropout,dropout]", f"p={p}", f"reg.input_dropout.p={p_in}",
                      "model.placement=after", "model.depth=3").train()
    x = torch.randn(40, 7, dtype=F64)
    torch.manual_seed(8)
    got = model(x)
    after = torch.rand(4, dtype=F64)
    torch.manual_seed(8)
    with torch.no_grad():
        want = plain_forward(model, F.dropout(x, p_in, training=True), lambda h: F.dropout(h, p, training=True))
    assert torch.equal(got.detach(), want)
    assert torch.equal(torch.rand(4, dtype=F64), after)
    assert (got != plain_forward(model, x, lambda h: F.dropout(h, p, training=True))).any()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), plain_forward(model, x))


def test_input_dropout_never_writes_into_the_data():
    model = model_for("reg=input_dropout", "p=0.5").train()
    x = torch.randn(30, 7, dtype=F64)
    x0 = x.clone()
    model(x)
    assert torch.equal(x, x0)


def test_batched_input_dropout_is_F_dropout_with_each_members_generator():
    from dropbench.engines.program import Chunk

    ps = (0.2, 0.6)
    chunk = Chunk([load([*TABULAR, "reg=input_dropout", f"p={p}", f"seed={i}", "dtype=float64"]) for i, p in enumerate(ps)], 2)
    states = [g.get_state() for g in chunk.gens]
    (piece,) = chunk.on_input
    out, _ = piece.forward(chunk.x, train=True)
    for i, p in enumerate(ps):
        torch.set_rng_state(states[i])
        assert torch.equal(out[i], F.dropout(chunk.x[i], p, training=True))
    assert torch.equal(piece.forward(chunk.x, train=False)[0], chunk.x)


# ---- max_norm (Srivastava et al. 2014, 5.1): hidden units' incoming vectors to norm <= c ---------

def known_params() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """[W1, b1, W2, b2, W_out, b_out] in torch's [out, in] layout (3x2 and 2x3: non-square), and
    the same after max-norm with c=2, worked by hand: W1's rows have norms 5, 1, 0 (only the first
    is over 2: 2/5 of it); W2's rows have norm 3 (both scaled by 2/3); biases and the output
    layer (norm 5*sqrt(2)) untouched."""
    t = lambda v: torch.tensor(v, dtype=F64)  # noqa: E731
    before = [t([[3.0, 4.0], [0.6, 0.8], [0.0, 0.0]]), t([10.0, -10.0, 10.0]),
              t([[1.0, 2.0, 2.0], [0.0, 0.0, 3.0]]), t([-7.0, 7.0]),
              t([[5.0, 5.0]]), t([9.0])]
    want = [t([[1.2, 1.6], [0.6, 0.8], [0.0, 0.0]]), before[1],
            t([[2 / 3, 4 / 3, 4 / 3], [0.0, 0.0, 2.0]]), before[3],
            before[4], before[5]]
    return before, want


def test_max_norm_rescales_each_hidden_units_incoming_row_by_hand():
    before, want = known_params()
    params = [p.clone() for p in before]
    REGISTRY["max_norm"].after_step(params, MaxNormConfig(c=2.0))
    for got, w in zip(params, want):
        torch.testing.assert_close(got, w, rtol=1e-15, atol=0)
    off = [p.clone() for p in before]
    REGISTRY["max_norm"].after_step(off, MaxNormConfig(c=0.0))
    assert all(torch.equal(a, b) for a, b in zip(off, before)), "c=0: no constraint"


def test_batched_max_norm_constrains_columns_of_the_transposed_weights():
    """The batched engine holds W as [C, in, out]: a unit's incoming vector is a column. Member 0
    (c=2) gets the hand-worked result, transposed; member 1 (c=0) is untouched bit for bit."""
    from dropbench.engines.program import Chunk

    before, want = known_params()
    layout = lambda ps: [p.t() if p.dim() == 2 else p.unsqueeze(0) for p in ps]  # noqa: E731
    stacked = [torch.stack([a, a]).contiguous() for a in layout(before)]
    chunk = Chunk([load(["reg=max_norm", f"reg.max_norm.c={c}", "dtype=float64"]) for c in (2, 0)], 2)
    (piece,) = chunk.after
    piece.after_step(stacked)
    for got, w, b in zip(stacked, layout(want), layout(before)):
        torch.testing.assert_close(got[0], w, rtol=1e-15, atol=0)
        assert torch.equal(got[1], b)


@pytest.mark.parametrize("engine", ["torch", "batched"])
def test_max_norm_holds_after_every_step_of_a_run_and_leaves_the_output_layer(engine, monkeypatch):
    """A run with c=0.05 (well below the initial norms) ends with every hidden unit's incoming
    vector at norm <= c, the output layer's weights (initial norm about 0.6) above it, and other
    numbers than the same run without the constraint."""
    from dropbench.engines import reference
    from dropbench.engines.batched import _train_chunk
    from dropbench.engines.program import Chunk

    c = 0.05
    args = [*TABULAR, "reg=max_norm", f"reg.max_norm.c={c}", "model.hidden=40", "model.depth=2",
            "epochs=6", "eval_every=3", "dtype=float64"]
    cfg = load(args)
    if engine == "torch":
        built, build = [], reference.build_model
        monkeypatch.setattr(reference, "build_model", lambda *a: built.append(build(*a)) or built[-1])
        result = reference.train_one(cfg)
        lins = [m for m in built[0].modules() if isinstance(m, nn.Linear)]
        hidden = [lin.weight.detach().norm(dim=1) for lin in lins[:-1]]
        out_norm = lins[-1].weight.detach().norm()
        unconstrained = reference.train_one(load([*args, "reg.max_norm.c=0"]))
    else:
        chunk = Chunk([cfg, cfg], 2)
        for _ in range(3):
            chunk.step(objective=False)
            hidden = [W[0].norm(dim=0) for W in chunk.params[:-2:2]]
            assert max(h.max().item() for h in hidden) <= c * (1 + 1e-12)
        out_norm = chunk.params[-2][0].norm()
        result, unconstrained = _train_chunk([cfg], 2)[0], _train_chunk([load([*args, "reg.max_norm.c=0"])], 2)[0]
    assert max(h.max().item() for h in hidden) <= c * (1 + 1e-12)
    assert max(h.max().item() for h in hidden) > c * (1 - 1e-9), "the bound binds"
    assert out_norm.item() > 4 * c, "the output layer is not constrained"
    assert result.curve != unconstrained.curve


def test_max_norm_default_is_the_papers_range():
    assert 3.0 <= load(["reg=max_norm"]).reg.max_norm.c <= 4.0
    assert math.isclose(load(["reg=max_norm", "reg.max_norm.c=3.5"]).reg.max_norm.c, 3.5)


@pytest.mark.parametrize("reg", ["input_noise", "max_norm"])
def test_p_is_no_part_of_a_run_outside_the_dropout_family(reg):
    """input_noise and max_norm have no p: the top-level p changes neither their run nor its p column."""
    a, b = load([f"reg={reg}", "p=0.2"]), load([f"reg={reg}", "p=0.5"])
    assert a.run_id == b.run_id and a.p is None
    assert load(["reg=input_dropout", "p=0.2"]).run_id != load(["reg=input_dropout", "p=0.5"]).run_id
