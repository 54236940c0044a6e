"""A run's numbers do not depend on its company: bit-identical alone (a chunk of two, padded with a
copy of itself) and at any chunk size and position, for every activation and every regularizer of
the registry, alone and in every valid pair, at full batch, on mini-batches, with MC evaluation and
on worker threads (issue 16, item 1).

Chunk sizes, positions and hidden sizes are chosen so that C * n * hidden, the element count an
element-wise op saw when it ran on a whole chunk, leaves several remainders mod 16, 32 and 64 with
the run last (where the scalar tail of torch's vectorized loop fell), and so that members of odd
sizes lie at several alignments (where MKL's gemm sums differently). engines/memberwise.py is the
mechanism; the canary below pins the torch behaviour it relies on.

These are properties of the CPU's kernels: they are marked `kernels`, and a failure names the
platform (a new CPU or torch build whose kernels break them reads as such, not as a logic bug).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_bits_equal

from dropbench import regs, testing
from dropbench.engines import memberwise
from dropbench.engines.batched import BatchedEngine, _train_chunk
from dropbench.engines.mc import mc_active

kernels = pytest.mark.kernels

# The properties are dropbench.testing's (check_regularizer runs them on a plug-in).
ACTIVATIONS = testing.ACTIVATIONS
NAMES = list(regs.REGISTRY)
PAIRS = [[a, b] for i, a in enumerate(NAMES) for b in NAMES[i + 1:] if regs.conflict([a, b]) is None]
MC_NAMES = [n for n in NAMES if mc_active(regs.REGISTRY[n])]
HIDDEN = testing.HIDDEN  # x 20 training rows: 140, 260 and 600 elements per member and layer
N_TRAIN = 20  # noisy_linear's default
LAYOUTS = testing.LAYOUTS  # (chunk size, the run's position); alone is (2, 0)
platform, cfg, signature, assert_alone_everywhere = testing.platform, testing.invariance_cfg, testing.signature, testing.alone_everywhere


def test_the_layouts_leave_several_tails_and_alignments():
    """Not a kernel property: the chunks below must exercise what they claim to."""
    for mod in (16, 32, 64):
        for h in HIDDEN:
            tails = {size * N_TRAIN * h % mod for size, pos in [(2, 0), *LAYOUTS] if pos == size - 1}
            assert len(tails) >= 2, (mod, h, tails)
        assert len({size * N_TRAIN * h % mod for size, pos in [(2, 0), *LAYOUTS] if pos == size - 1 for h in HIDDEN}) >= 4
    # members of [C, 7, 7] weights (196 bytes) and of a [C, 20, 7] activation (560) lie at
    # several offsets modulo 64 bytes
    assert len({pos * 7 * 7 * 4 % 64 for _, pos in LAYOUTS}) >= 3


# ---- the canary: the torch behaviour the engine relies on ------------------------------------
@kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_canary_the_scalar_tail_of_elementwise_ops_is_each_members_own_in_member_rows(dtype, record_property):
    """torch's CPU element-wise loop computes the last numel mod (2 x vector width) elements with
    the op's scalar code, which for selu and sigmoid may round differently from the vector code (on
    the development EPYC, AVX-512, torch 2.13: a few elements in a thousand differ in the last
    bit). On one contiguous [C, k] tensor that tail falls on the last member; written into member
    rows (engines/memberwise), TensorIterator loops member by member and each member gets exactly
    what it gets alone. The guarantee is asserted; whether the plain op differs on this platform is
    recorded (the `raw_tail_differs` property), not asserted: on a CPU whose two codes agree there
    is nothing to see."""
    g = torch.Generator().manual_seed(0)
    raw = 0
    for op, plain in ((memberwise.selu, torch.selu), (memberwise.sigmoid, torch.sigmoid)):
        for C, k in ((2, 6000), (3, 6000), (5, 140), (13, 260), (6, 15), (33, 1)):
            x = torch.randn(C, k, generator=g, dtype=dtype) * 3
            alone = torch.stack([plain(x[i].clone()) for i in range(C)])
            raw += int((plain(x) != alone).sum())
            got = op(x)
            for i in range(C):
                assert torch.equal(got[i], alone[i]), f"{plain.__name__}, member {i} of {C} x {k}, {dtype} ({platform()})"
    record_property("raw_tail_differs", raw)


# ---- the mechanism, against torch on each member alone -----------------------------------------
OPS = {
    "selu": (memberwise.selu, torch.selu), "gelu": (memberwise.gelu, F.gelu), "tanh": (memberwise.tanh, torch.tanh),
    "sigmoid": (memberwise.sigmoid, torch.sigmoid), "log": (memberwise.log, torch.log), "exp": (memberwise.exp, torch.exp),
}


@kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(OPS))
def test_each_op_and_its_gradient_are_torchs_on_each_member_alone(name, dtype):
    """An independent oracle for engines/memberwise (whose backward also serves as autograd's in
    the hand-written-backward tests): torch's op and its native autograd gradient on each member's
    own tensor, as the reference engine computes them."""
    op, plain = OPS[name]
    g = torch.Generator().manual_seed(1)
    for C, shape in ((2, (20, 300)), (3, (20, 7)), (5, (20, 13)), (13, (3, 5)), (33, (1, 1)), (6, (17,))):
        x = torch.randn(C, *shape, generator=g, dtype=dtype) * 3
        if name == "log":
            x = x.abs() + 1e-3
        grad = torch.randn(C, *shape, generator=g, dtype=dtype)
        xs = x.clone().requires_grad_()
        y = op(xs)
        (gx,) = torch.autograd.grad(y, xs, grad)
        with torch.no_grad():
            assert torch.equal(op(x), y), "the same with and without autograd"
        for i in range(C):
            xi = x[i].clone().requires_grad_()
            yi = plain(xi)
            (gi,) = torch.autograd.grad(yi, xi, grad[i].clone())
            where = f"{name}, member {i} of {C} x {shape}, {dtype} ({platform()})"
            assert torch.equal(y[i], yi), where
            assert torch.equal(gx[i], gi), f"gradient: {where}"


@kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matrix_products_are_each_members_alone(dtype):
    """memberwise.baddbmm and bmm, and baddbmm's gradients, per member: torch's on a fresh chunk of
    two copies of that member (the run alone), for the network's shapes at hidden 7 and 300."""
    g = torch.Generator().manual_seed(2)
    shapes = [(20, 1, 7), (20, 7, 7), (20, 7, 1), (7, 20, 7), (1, 20, 7), (20, 300, 1), (300, 20, 1), (20, 1, 300)]
    for m, k, n in shapes:
        for C in (3, 6):
            a = torch.randn(C, m, k, generator=g, dtype=dtype)
            b = torch.randn(C, k, n, generator=g, dtype=dtype)
            bias = torch.randn(C, 1, n, generator=g, dtype=dtype)
            grad = torch.randn(C, m, n, generator=g, dtype=dtype)
            leaves = [t.clone().requires_grad_() for t in (bias, a, b)]
            y = memberwise.baddbmm(*leaves)
            grads = torch.autograd.grad(y, leaves, grad)
            prod = memberwise.bmm(a, b)
            for i in range(C):
                two = [t[i:i + 1].repeat(2, 1, 1).requires_grad_() for t in (bias, a, b)]
                yi = torch.baddbmm(*two)
                gi = torch.autograd.grad(yi, two, grad[i:i + 1].repeat(2, 1, 1))
                where = f"[{m}, {k}] @ [{k}, {n}], member {i} of {C}, {dtype} ({platform()})"
                assert torch.equal(y[i], yi[0]), where
                assert torch.equal(prod[i], torch.bmm(*(t[i:i + 1].repeat(2, 1, 1) for t in (a, b)))[0]), where
                for got, want in zip(grads, gi):
                    assert torch.equal(got[i], want[0]), f"gradient: {where}"


def test_member_rows_layout():
    """Not a kernel property: member rows start where the mechanism needs them."""
    r = memberwise.rows((5, 20, 7), torch.float32, pad=True)
    assert r.stride() == (144, 7, 1) and r.data_ptr() % 64 == 0 and not r.is_contiguous()
    assert memberwise.rows((5, 7, 7), torch.float32).stride() == (52, 7, 1)
    assert memberwise.rows((5, 20, 300), torch.float32).is_contiguous(), "a member of a multiple of 16 bytes: as before"
    assert memberwise.rows((1, 20, 7), torch.float32).is_contiguous(), "one member: nothing to split"
    x = torch.randn(4, 7, 7)
    assert memberwise.in_rows(x).stride(0) == 52 and torch.equal(memberwise.in_rows(x), x)
    y = torch.randn(4, 20, 4)
    assert memberwise.in_rows(y) is y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_outer_product_is_each_elements_one_product(dtype):
    """Not a kernel property: bmm with an inner dimension of 1 is an element-wise product, exactly
    rounded, so each member's is its own whatever its company or layout (padded operands, out=),
    and equal to torch.bmm's but for the sign of a zero (gemm adds its product to +0)."""
    torch.manual_seed(0)
    a = torch.randn(6, 9, 1, dtype=dtype)
    a[a.abs() < 0.4] = -0.0
    b = memberwise.in_rows(torch.randn(6, 7, 1, dtype=dtype)).transpose(1, 2)  # the backward's W^T, padded
    got = memberwise.bmm(a, b)
    assert torch.equal(got, torch.bmm(a, b.contiguous()))  # -0.0 == 0.0
    for i in range(6):
        assert_bits_equal(got[i], a[i] * b[i], f"member {i}'s outer product")
    out = memberwise.rows((6, 9, 7), dtype)
    assert memberwise.bmm(a, b, out=out) is out and torch.equal(out, got)


@kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows, k", [(7, 13), (128, 50), (20, 300)])
def test_a_layer_of_one_output_in_training_is_each_members_own(dtype, rows, k):
    """The product-and-sum form of a one-column layer (memberwise.dot_form): a member's outputs
    and weight gradient are those it gets alone (a chunk of two, as a lone run is padded), at any
    position in chunks of any size, and match the matrix product to rounding."""
    gen = torch.Generator().manual_seed(rows)
    C = 9
    a = memberwise.rows((C, rows, k), dtype).copy_(torch.randn(C, rows, k, dtype=dtype, generator=gen))
    b = memberwise.rows((C, k, 1), dtype).copy_(torch.randn(C, k, 1, dtype=dtype, generator=gen))
    bias, g = torch.randn(C, 1, 1, dtype=dtype, generator=gen), torch.randn(C, rows, 1, dtype=dtype, generator=gen)
    assert memberwise.dot_form(a, b)
    out, wg = memberwise.dot(bias, a, b), memberwise.dot_weight_grad(a, g)
    torch.testing.assert_close(out, torch.baddbmm(bias, a, b), rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-5)
    for i in range(C):
        for lo, hi in ((i, i + 1), (max(0, i - 1), i + 1), (0, C)):
            j = i - lo
            sub = [memberwise.rows((hi - lo + (hi - lo == 1), *t.shape[1:]), dtype).copy_(
                t[lo:hi].repeat(2 if hi - lo == 1 else 1, 1, 1)) for t in (a, b, g)]
            alone = memberwise.dot(bias[lo:hi].repeat(2 if hi - lo == 1 else 1, 1, 1), sub[0], sub[1])
            assert_bits_equal(alone[j], out[i], f"member {i}'s output in members {lo}..{hi - 1}")
            assert_bits_equal(memberwise.dot_weight_grad(sub[0], sub[2])[j], wg[i], f"member {i}'s weight gradient")
    assert not memberwise.dot_form(memberwise.rows((2, 2**18, 2), dtype), b[:2, :2])  # beyond the cache: MKL's


# ---- whole runs ----------------------------------------------------------------------------
@kernels
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("name", ["none", *NAMES])
def test_run_is_bit_identical_alone_and_in_any_chunk(name, act):
    """Every activation with every regularizer of the registry (and none)."""
    i = (ACTIVATIONS.index(act) + (["none", *NAMES]).index(name)) % len(HIDDEN)
    assert_alone_everywhere(act, [] if name == "none" else [name], HIDDEN[i])


@kernels
@pytest.mark.parametrize("names", PAIRS, ids="+".join)
def test_every_valid_pair_is_bit_identical_alone_and_in_any_chunk(names):
    """Every valid pair, each with an activation and a hidden size in turn, last in one chunk and
    inside another (the kernels' part is the single regularizers' test's; this one is the pieces')."""
    i = PAIRS.index(names)
    assert_alone_everywhere(ACTIVATIONS[i % len(ACTIVATIONS)], names, HIDDEN[i % len(HIDDEN)], layouts=LAYOUTS[1::2])


@kernels
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_float64_runs_are_bit_identical_alone_and_in_any_chunk(act):
    """float64 takes other kernels (ATen's gelu instead of oneDNN's; other gemm blockings)."""
    assert_alone_everywhere(act, ["concrete_dropout"], 7, "dtype=float64")
    assert_alone_everywhere(act, ["dropout", "l1"], 13, "dtype=float64", "model.depth=3")


@kernels
@pytest.mark.parametrize("name", ["none", *NAMES])
def test_mini_batch_run_is_bit_identical_alone_and_in_any_chunk(name):
    """batch_size=7: steps on 7, 7 and 6 of the 20 rows, each member its own shuffle."""
    i = (["none", *NAMES]).index(name)
    assert_alone_everywhere(ACTIVATIONS[i % len(ACTIVATIONS)], [] if name == "none" else [name], HIDDEN[i % len(HIDDEN)],
                            "batch_size=7")


@kernels
@pytest.mark.parametrize("name", MC_NAMES)
def test_mc_evaluation_is_bit_identical_alone_and_in_any_chunk(name):
    """eval.mc_samples and eval.tau: MC passes in blocks and the log-likelihood's exp and log, beside
    runs that take more passes (the chunk computes the most any member asks)."""
    i = MC_NAMES.index(name)
    assert_alone_everywhere(ACTIVATIONS[i % len(ACTIVATIONS)], [name], HIDDEN[i % len(HIDDEN)],
                            "eval.mc_samples=25", "eval.tau=2", others_mc=40)


@kernels
def test_runs_are_bit_identical_alone_and_in_a_sweep_on_two_workers():
    """A sweep of every activation, in chunks planned for two workers."""
    targets = [cfg(act, ["dropout"], 13, 3) for act in ACTIVATIONS]
    sweep = [replace(t, seed=s) for t in targets for s in range(100, 106)]
    for k, t in enumerate(targets):
        sweep.insert(3 + 7 * k, t)
    got = {r.run_id: signature(r) for r in BatchedEngine(workers=2).train(sweep)}
    for t in targets:
        (alone,) = _train_chunk([t], 2)
        assert got[t.run_id] == signature(alone), f"{t.model.activation} in a 28-run sweep on two workers ({platform()})"


COUNTER_NAMES = [n for n in NAMES if getattr(regs.REGISTRY[n], "counter_masks", False)]


@kernels
@pytest.mark.parametrize("name", COUNTER_NAMES)
def test_fast_stream_runs_are_bit_identical_alone_and_in_any_chunk(name):
    """masks=fast (dropbench/masks.py): training and MC masks from the counter stream, on
    mini-batches, beside runs that take more MC passes."""
    i = COUNTER_NAMES.index(name)
    assert_alone_everywhere(ACTIVATIONS[i % len(ACTIVATIONS)], [name], HIDDEN[i % len(HIDDEN)], "masks=fast",
                            "batch_size=7", "eval.mc_samples=20", "eval.tau=2", others_mc=30)
