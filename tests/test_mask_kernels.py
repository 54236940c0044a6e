"""The fast stream's compiled kernels (dropbench/mask_kernels.py, where numba is installed) make
the same bits as its numpy code, and the engines' numbers do not depend on which one ran.

The kernels' arithmetic is unsigned 64-bit integers and one IEEE multiply per element, so these
are equalities, not tolerances, on any CPU.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import assert_bits_equal

from dropbench import masks
from dropbench.config import load
from dropbench.engines import memberwise
from dropbench.engines.batched import _train_chunk
from dropbench.engines.reference import train_one
from dropbench.masks import CounterStream, levels_of

numba = pytest.importorskip("numba", reason="numba is not installed: pip install -e '.[fast]' (the kernels' tests)")


@pytest.fixture
def numpy_path(monkeypatch):
    """Within the test, the stream runs its numpy code, as where numba is missing."""
    def use(on: bool) -> None:
        monkeypatch.setattr(masks, "_compiled", [None] if on else [])
    return use


def _draws(seeds, levels, shapes, values=None, mc=None):
    """A stream's draws of `shapes` in order (a training step, or MC passes `mc` = (first, passes))."""
    s = CounterStream(seeds)
    s.start_step() if mc is None else s.start_mc(*mc)
    return [s.bernoulli(levels, shape, values).numpy().copy() for shape in shapes]


LEVELS = [np.array([1, 65536, 32768, 62259, 3277]), np.array([65535, 2, 40000, 17, 65536])]
SHAPES = [(1,), (3,), (5, 7), (13, 50), (4, 1), (2, 3, 5)]


@pytest.mark.parametrize("levels", LEVELS)
@pytest.mark.parametrize("values", [None, np.float32, np.float64])
@pytest.mark.parametrize("mc", [None, (0, 1), (3, 1), (5, 3), (2, 5)])
def test_the_kernels_draw_the_numpy_codes_masks(numpy_path, levels, values, mc):
    vals = None if values is None else (1 / (levels / 65536)).astype(values)
    shapes = SHAPES if mc is None else [(mc[1] * s[0], *s[1:]) for s in SHAPES]  # rows: passes x rows
    seeds = [0, 1, 7, 123, 2**40]
    numpy_path(True)
    want = _draws(seeds, levels, shapes, vals, mc)
    numpy_path(False)
    assert masks.compiled() is not None
    got = _draws(seeds, levels, shapes, vals, mc)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mc", [None, (0, 1), (3, 1), (1, 3)])
@pytest.mark.parametrize("shape", [(5, 12, 7), (3, 3, 50), (2, 3, 1), (4, 6, 8)])  # rows split into 3 passes
def test_scaled_is_z_times_the_factor_in_one_pass(dtype, mc, shape):
    """The fused kernel: out = z * factor (into member rows); rescaled multiplies by the same
    draw's factor again (the backward), drawing nothing new."""
    C = shape[0]
    levels = levels_of(np.linspace(0.5, 1.0, C))
    vals = (1 / torch.tensor(levels / 65536, dtype=dtype)).numpy()
    gen = torch.Generator().manual_seed(3)
    z, g = memberwise.rows(shape, dtype), memberwise.rows(shape, dtype)
    z.copy_(torch.randn(shape, dtype=dtype, generator=gen))
    g.copy_(torch.randn(shape, dtype=dtype, generator=gen))
    n = int(np.prod(shape[1:]))
    a, b = CounterStream(range(C)), CounterStream(range(C))
    for s in (a, b):
        s.start_step() if mc is None else s.start_mc(*mc)
    f_want = a.bernoulli(levels, shape[1:], vals)
    out, back = memberwise.rows(shape, dtype), memberwise.rows(shape, dtype)
    x, xs = memberwise.flat(z)
    o, os = memberwise.flat(out)
    draw = b.scaled(levels, vals, n, x, xs, o, os)
    assert draw is not None and torch.equal(out, z * f_want)
    f_next = a.bernoulli(levels, shape[1:], vals)  # the next draw: another mask
    gx, gs = memberwise.flat(g)
    bo, bs = memberwise.flat(back)
    b.rescaled(draw, levels, vals, n, gx, gs, bo, bs)
    assert_bits_equal(back, g * f_want, "the gradient times the forward's factor, made again")
    assert b.scaled(levels, vals, n, x, xs, o, os) is not None  # rescaled drew nothing: b's next is a's next
    assert torch.equal(out, z * f_next)


def test_flat_views_members_in_rows_and_refuses_what_it_cannot():
    t = memberwise.rows((3, 5, 3), torch.float32)  # 15 floats: padded member rows
    x, ms = memberwise.flat(t)
    assert ms == t.stride(0) and ms >= 15 and x.size == 2 * ms + 15
    x[ms: ms + 15] = 7  # the same memory: member 1
    assert (t[1] == 7).all()
    c = torch.zeros(3, 4, 4)
    assert memberwise.flat(c)[1] == 16
    assert memberwise.flat(c.transpose(1, 2)) is None  # members not contiguous
    assert memberwise.flat(c.to(torch.int64)) is None and memberwise.flat(c.requires_grad_()) is None


BASE = ["masks=fast", "p=0.1", "model.hidden=24", "epochs=4", "eval_every=2", "batch_size=8", "eval.mc_samples=20",
        "eval.tau=2"]


@pytest.mark.parametrize("reg", ["[input_dropout,dropout]", "dropconnect", "alpha_dropout", "vanilla_dropout"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_runs_numbers_are_the_same_bits_with_or_without_the_kernels(numpy_path, reg, dtype):
    """Both engines, float32 and float64, training steps and MC passes: the kernels change no bit."""
    cfgs = [load([*BASE, f"reg={reg}", f"dtype={dtype}", f"seed={s}"]) for s in (1, 2, 3)]
    cfgs[1] = replace(cfgs[1], seed=2)
    runs = {}
    for path in ("numpy", "kernels"):
        numpy_path(path == "numpy")
        assert (masks.compiled() is None) == (path == "numpy")
        runs[path] = ([r.rows() for r in _train_chunk(cfgs, 3)], train_one(cfgs[0]).rows())
    assert runs["numpy"] == runs["kernels"]


def test_without_numba_the_stream_runs_its_numpy_code():
    """numba missing (an import that fails): the numpy path, the same masks."""
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import numpy as np\n"
        "from dropbench import masks\n"
        "assert masks.compiled() is None\n"
        "s = masks.CounterStream([1, 2]); s.start_step()\n"
        "m = s.bernoulli(np.array([40000, 65536]), (3, 5)).numpy()\n"
        "print(''.join('1' if v else '0' for v in m.ravel()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    s = CounterStream([1, 2])
    s.start_step()
    assert out == "".join("1" if v else "0" for v in s.bernoulli(np.array([40000, 65536]), (3, 5)).numpy().ravel())


@pytest.mark.parametrize("words, loads", [(["masks=fast"], True), (["eval.mc_samples=3"], True), ([], False)])
def test_a_sweep_loads_the_kernels_before_training_only_where_a_run_draws_from_the_stream(tmp_path, words, loads):
    """runner._ready: before the training clock, and never for runs that only use torch's generator."""
    code = (
        "import sys\n"
        "from dropbench import runner\n"
        "from dropbench.config import load\n"
        f"cfgs = [load(['reg=dropout', 'epochs=1', *{words!r}])]\n"
        "runner._ready(cfgs, None)\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert out.strip() == str(loads)
