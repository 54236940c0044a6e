"""Canaries: torch's own behaviour that dropbench's engines are built on, pinned here once.

These test torch, not dropbench. Each states the engine assumption it guards, so that when a torch
release (or a CPU's kernels) changes the behaviour, the failure names the assumption rather than
showing up as a batched run that no longer matches the reference. Everything dropbench builds on
top (its layers, the batched pieces, both engines) is tested against these behaviours elsewhere.
"""

import pytest
import torch
from conftest import assert_bits_equal
from torch import nn

F64 = torch.float64


@pytest.mark.kernels
@pytest.mark.parametrize("keep", [0.5, 0.7, 0.1, 0.999])
@pytest.mark.parametrize("shape", [(20, 300), (300, 300), (7, 1)])
def test_rand_below_keep_is_bernoullis_draw(keep, shape):
    """Guards: the batched engine draws each run's masks as rand(float64) < keep from the run's
    generator (engines/program.py, Chunk.bernoulli), which must be the reference's
    bernoulli_(keep) masks bit for bit, with the generator left in the same state. That is how
    torch's CPU bernoulli_ kernel draws (one double uniform per element), not a documented
    promise: a kernel that draws otherwise breaks every dropout-family run's equality with the
    reference."""
    g = torch.Generator()
    g.manual_seed(3)
    want = torch.empty(shape).bernoulli_(keep, generator=g)
    after = torch.rand(4, generator=g)
    g.manual_seed(3)
    got = (torch.rand(shape, dtype=F64, generator=g) < keep).float()
    assert_bits_equal(got, want, f"rand(float64) < {keep} against bernoulli_({keep}) on {shape}")
    assert_bits_equal(torch.rand(4, generator=g), after, "the generator's state after the draws")


@pytest.mark.parametrize("p", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_nn_dropout_is_x_times_a_bernoulli_mask_over_keep(p, dtype):
    """Guards: the reference engine's dropout layer (reg=dropout, input_dropout) is nn.Dropout,
    and the batched piece reproduces it as z * (mask / keep) with the mask drawn as
    bernoulli_(keep) from the run's stream, one draw per element. So nn.Dropout in training must
    compute exactly x * (bernoulli_(1-p) / (1-p)) from the global generator and draw nothing
    more; it must leave its input alone (inplace=False)."""
    x = torch.randn(64, 33, dtype=dtype)
    x0 = x.clone()
    torch.manual_seed(5)
    got = nn.Dropout(p).train()(x)
    after = torch.rand(4, dtype=F64)
    torch.manual_seed(5)
    mask = torch.empty(x.shape, dtype=dtype).bernoulli_(1 - p)
    assert torch.equal(got, x * (mask / (1 - p)))
    assert torch.equal(torch.rand(4, dtype=F64), after), "one draw per element, nothing more"
    assert torch.equal(x, x0)


def test_nn_dropout_in_eval_mode_or_at_p_zero_is_the_identity_and_draws_nothing():
    """Guards: a run's random stream advances only while it trains with p > 0. The reference
    evaluates between epochs in eval mode and keeps p=0 layers; the batched engine draws nothing
    for them, so its per-run generators stay in step with the reference's global one only if
    nn.Dropout draws nothing there either."""
    x = torch.randn(10, 7, dtype=F64)
    for layer in (nn.Dropout(0.5).eval(), nn.Dropout(0.0).train()):
        torch.manual_seed(0)
        out = layer(x)
        drawn_after = torch.rand(4, dtype=F64)
        torch.manual_seed(0)
        assert torch.equal(out, x) and torch.equal(torch.rand(4, dtype=F64), drawn_after)
