"""Each regularizer against its definition in the source documents and against torch."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dropbench.regularizers import DropConnectLinear, DropPath, VanillaDropout, drop_path, l1_penalty


def _mask_from_torch(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return (F.dropout(torch.ones_like(x), p, training=True) != 0).to(x.dtype)  # 0/1 keep mask


def test_inverted_dropout_equals_definition_given_same_mask():
    x = torch.randn(64, 33, dtype=torch.float64)
    p = 0.3
    keep = _mask_from_torch(x, p, seed=5)
    torch.manual_seed(5)
    ours = nn.Dropout(p)(x)  # dropbench's inverted dropout is nn.Dropout itself
    # torch scales the mask, then multiplies: x * (mask / (1 - p)), bit for bit.
    assert torch.equal(ours, x * (keep / (1 - p)))
    torch.manual_seed(5)
    assert torch.equal(ours, F.dropout(x, p, training=True))


def test_eval_mode_is_identity():
    x = torch.randn(10, 7)
    m = nn.Dropout(0.5).eval()
    assert torch.equal(m(x), x)
    assert torch.equal(DropPath(0.5).eval()(x), x)


def test_seed_002_worked_example_kept_values_exactly_doubled():
    x = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=torch.float64).unsqueeze(0)
    orig = x.clone()
    torch.manual_seed(0)
    out = nn.Dropout(p=0.5)(x)
    kept = out != 0
    assert kept.any() and (~kept).any()
    assert torch.equal(out[kept], 2 * orig[kept])
    assert torch.equal(x, orig), "inplace=False must leave the input untouched"


def test_inplace_only_when_asked():
    x = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 3, 3)
    torch.manual_seed(0)
    out = nn.Dropout(p=0.5, inplace=True)(x)
    assert out.data_ptr() == x.data_ptr()
    assert torch.equal(x, out) and (x == 0).any()


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_inverted_dropout_preserves_expectation(p):
    # Mean of n iid draws of x*mask/(1-p): std = sqrt(p/(1-p))/sqrt(n); 6 sigma is never flaky.
    n = 400_000
    g = torch.manual_seed(123)
    out = nn.Dropout(p)(torch.ones(n, dtype=torch.float64))
    tol = 6 * math.sqrt(p / (1 - p)) / math.sqrt(n)
    assert abs(out.mean().item() - 1.0) < tol
    assert abs((out == 0).double().mean().item() - p) < 6 * math.sqrt(p * (1 - p) / n)
    del g


def test_vanilla_dropout_no_scaling_in_train_and_scales_by_keep_in_eval():
    x = torch.arange(1.0, 1001.0, dtype=torch.float64)
    m = VanillaDropout(0.25)
    torch.manual_seed(1)
    out = m(x)
    kept = out != 0
    assert torch.equal(out[kept], x[kept]), "vanilla dropout keeps values unscaled while training"
    m.eval()
    assert torch.equal(m(x), x * 0.75)


def test_vanilla_dropout_train_expectation_matches_eval_output():
    n, p = 400_000, 0.4
    torch.manual_seed(7)
    out = VanillaDropout(p)(torch.ones(n, dtype=torch.float64))
    assert abs(out.mean().item() - (1 - p)) < 6 * math.sqrt(p * (1 - p) / n)


def test_droppath_zeroes_whole_samples_and_rescales_survivors():
    x = torch.randn(200, 4, 5, dtype=torch.float64) + 3.0  # no exact zeros in the input
    torch.manual_seed(3)
    out = drop_path(x, 0.4, training=True)
    per_sample_zero = (out == 0).flatten(1)
    all_zero, any_zero = per_sample_zero.all(1), per_sample_zero.any(1)
    assert torch.equal(all_zero, any_zero), "a sample is dropped entirely or not at all"
    assert 0 < all_zero.sum() < 200
    survivors = ~all_zero
    assert torch.allclose(out[survivors], x[survivors] / 0.6, rtol=0, atol=1e-12)


def test_droppath_matches_seed_001_formula():
    x = torch.randn(8, 3)
    torch.manual_seed(11)
    ours = DropPath(0.3)(x)
    torch.manual_seed(11)
    keep = 0.7
    rt = (keep + torch.rand((8, 1), dtype=x.dtype)).floor_()
    assert torch.equal(ours, x.div(keep) * rt)


def test_dropconnect_masks_weights_not_activations():
    torch.manual_seed(0)
    layer = DropConnectLinear(50, 40, p=0.5)
    x = torch.randn(16, 50)
    torch.manual_seed(9)
    out = layer(x)
    torch.manual_seed(9)
    w = F.dropout(layer.weight, 0.5, training=True)
    assert torch.equal(out, F.linear(x, w, layer.bias))
    # All samples share one weight mask: a weight-level mask is not an activation-level one.
    dropped = (w == 0)
    assert 0 < dropped.float().mean() < 1
    # Activation dropout would zero whole outputs; with masked weights no output is exactly bias.
    assert not torch.any(out == layer.bias)
    layer.eval()
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


def test_l1_penalty_value_and_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    lam = 0.01
    pen = lam * l1_penalty(model)
    expected = lam * sum(p.abs().sum() for p in model.parameters())
    assert torch.allclose(pen, expected)
    pen.backward()
    for p in model.parameters():
        assert torch.equal(p.grad, lam * torch.sign(p.detach()))


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_l2_matches_optimizer_weight_decay(opt_name):
    """reg=l2 is the optimizer's weight_decay: identical to adding wd*w to the gradient."""
    from dropbench.config import load
    from dropbench.engines.torch_engine import make_optimizer

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
    from dropbench.config import load
    from dropbench.engines.torch_engine import make_optimizer

    cfg = load(["reg=l2", "reg.l2.decoupled=true", "reg.l2.weight_decay=0.1"])
    opt = make_optimizer(nn.Linear(2, 2), cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["weight_decay"] == 0.1


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_p_rejected(p):
    for cls in (VanillaDropout, DropPath):
        with pytest.raises(ValueError):
            cls(p)
    with pytest.raises(ValueError):
        DropConnectLinear(2, 2, p=p)


# --- dropbench's own dropout code: the reference model and the batched engine ----------------

def test_inplace_reaches_the_reference_model_only_when_asked():
    from dropbench.config import load
    from dropbench.engines.torch_engine import build_model

    for flag in (False, True):
        model = build_model(load(["reg=dropout", f"reg.dropout.inplace={str(flag).lower()}"]), 1)
        drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
        assert drops and all(d.inplace is flag for d in drops)


@pytest.mark.parametrize("reg", ["dropout", "vanilla_dropout"])
def test_batched_dropout_is_F_dropout_with_the_members_generator(reg):
    """Chunk._drop for member i equals F.dropout (or the vanilla rule) drawn from member i's RNG state;
    eval mode is the identity (inverted) or a 1-p scale (vanilla)."""
    from dropbench.config import load
    from dropbench.engines.batched import Chunk

    chunk = Chunk([load([f"reg={reg}", f"p={p}", f"seed={s}"]) for s, p in [(0, 0.5), (1, 0.3)]], 2)
    states = [g.get_state() for g in chunk.gens]
    z = torch.randn(2, 20, 300)
    out, _ = chunk._drop(z.clone(), train=True)
    for i, p in enumerate((0.5, 0.3)):
        torch.set_rng_state(states[i])
        if reg == "dropout":
            want = F.dropout(z[i], p, training=True)
        else:
            want = z[i] * torch.empty_like(z[i]).bernoulli_(1 - p)
        assert torch.equal(out[i], want)
        scale = 1.0 if reg == "dropout" else 1 - p
        assert torch.equal(chunk._drop(z, train=False)[0][i], z[i] * torch.tensor(scale, dtype=z.dtype) if scale != 1 else z[i])
