"""A chunk's [C, ...] tensors in member rows, so that every kernel computes each member exactly
as it computes the run alone, whatever the chunk's size and the member's position in it.

Two properties of torch's CPU kernels make a member's last bits depend on its company otherwise:

- the element-wise loop (ATen's cpu_kernel_vec, vectorized_loop) runs an op's vector code two
  vectors at a time and its scalar code on the last numel mod (2 * vector width) elements. For some
  ops (elu/selu, sigmoid, gelu and their gradients, on the CPUs tried) the two differ in the last
  bit; on one contiguous [C, ...] tensor that scalar tail falls on the last member(s) alone;
- the matrix products (MKL's gemm behind bmm) sum in an order that depends on where an operand or
  the result starts (MATMUL_ALIGN). In a contiguous [C, ...] tensor member i starts i * numel
  elements in.

Member rows: each member's elements, contiguous, at the start of a row of the same length for
every member, so that each member sits where it sits alone, modulo the row's alignment:
- a matrix product's operands and result have rows a multiple of MATMUL_ALIGN bytes long (`rows`,
  `in_rows`; contiguous where a member's size is such a multiple already);
- an element-wise op writes (out=) into rows a multiple of ALIGN bytes long and longer than a
  member (`each`). TensorIterator cannot coalesce the member dimension with the others and runs
  its 2-D loop: one vectorized loop per member, which splits each member into vector body and
  scalar tail as the member's own tensor is split (the run alone, and the reference engine's op on
  the run's tensor). With one intra-op thread (engines/base.one_intraop_thread) no loop is cut
  anywhere else.

Element-wise ops that go through here: those whose vector and scalar code may round differently,
the transcendental ones (exp, log, erf, tanh, sigmoid, elu, gelu) and formulas a compiler may fuse
into an FMA (tanh's gradient, 1 - y*y). Add, sub, mul, div, sqrt, floor, max, compare and where
are exactly rounded in IEEE arithmetic, the same in either code, and are left alone; so are
reductions over a member's own elements, which TensorIterator never merges across members.

Off the CPU, or with fewer than two members, tensors are plain contiguous ones. Each op is
differentiable: its backward runs the kernels of autograd's native backward, in member rows too,
so the chunk's hand-written backward stays autograd's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

if TYPE_CHECKING:
    import numpy as np

# SELU's constants as ATen's selu passes them to elu (and autograd to elu_backward).
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
ALIGN = 64  # bytes: where a fresh tensor starts (the CPU allocator's alignment), and a padded row
# Bytes a matrix product's members lie apart, at least: MKL's gemm sums in an order that depends
# on how its operands and result are aligned, and on the CPUs tried only an offset finer than
# 16 bytes changed a sum (a coarser one would copy the default network's operands, which lie a
# multiple of 16 bytes apart, for nothing). A CPU whose kernels care about more fails
# tests/test_invariance.py.
MATMUL_ALIGN = 16

_aten = torch.ops.aten
_CPU = torch.device("cpu")


def _in_rows_here(shape: Sequence[int], device: torch.device) -> bool:
    return device.type == "cpu" and len(shape) > 0 and shape[0] >= 2


@lru_cache(maxsize=4096)
def _strides(shape: tuple[int, ...], itemsize: int, pad: bool) -> tuple[int, ...] | None:
    """A CPU tensor's strides in member rows; None where that is the contiguous layout."""
    if len(shape) == 0 or shape[0] < 2:
        return None
    inner = [1]
    for n in reversed(shape[2:]):
        inner.insert(0, inner[0] * n)
    k = inner[0] * shape[1] if len(shape) > 1 else 1
    if pad:
        per = max(1, ALIGN // itemsize)
        row = (k // per + 1) * per
    else:
        per = max(1, MATMUL_ALIGN // itemsize)
        row = -(-k // per) * per
        if row == k:
            return None
    return (row, *inner[: len(shape) - 1])


def rows(shape: Sequence[int], dtype: torch.dtype, device: torch.device = _CPU, pad: bool = False) -> torch.Tensor:
    """An uninitialised [C, ...] tensor in member rows, each member contiguous at the start of its
    row. Rows are a multiple of MATMUL_ALIGN bytes long (a matrix product's operand or result):
    the tensor is contiguous where a member's size is such a multiple already, and kernels take it
    as they took a contiguous one. With `pad` (an element-wise op's output) rows are a multiple of
    ALIGN bytes and always longer than a member. Contiguous off the CPU or below two members."""
    strides = _strides(tuple(shape), dtype.itemsize, pad) if device.type == "cpu" else None
    if strides is None:
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.empty_strided(shape, strides, dtype=dtype, device=device)


def out_like(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor of x's shape, dtype and device in padded member rows: an
    element-wise op writing into it loops member by member."""
    return rows(x.shape, x.dtype, x.device, pad=True)


def zeros_like(x: torch.Tensor) -> torch.Tensor:
    return rows(x.shape, x.dtype, x.device).zero_()


def stacked(ts: Sequence[torch.Tensor], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """torch.stack(ts) in member rows, in `dtype` on `device`."""
    out = rows((len(ts), *ts[0].shape), dtype, device)
    for o, t in zip(out, ts):
        o.copy_(t)
    return out


def in_rows(t: torch.Tensor) -> torch.Tensor:
    """A matrix product's operand: t itself when its members lie a multiple of MATMUL_ALIGN bytes
    apart (each then sits, modulo that, where it sits alone: at the start of a row, or at the same
    offset into it), else a copy in member rows (each member contiguous: pass a transposed operand
    as a view of one in member rows)."""
    if t.stride(0) * t.element_size() % MATMUL_ALIGN == 0 or not _in_rows_here(t.shape, t.device):
        return t
    out = rows(t.shape, t.dtype, t.device)
    return out.copy_(t)


_FLOATS = (torch.float32, torch.float64)


def flat(t: torch.Tensor) -> tuple["np.ndarray", int] | None:
    """A CPU float tensor [C, ...] whose members are each contiguous (member rows, or contiguous)
    as one 1-D numpy array over its memory, and the members' distance in elements; None otherwise."""
    if t.device.type != "cpu" or t.dtype not in _FLOATS or t.requires_grad or t.dim() < 2:
        return None
    shape, strides = t.shape, t.stride()
    n = 1  # a member's elements, while its strides are C-order (members contiguous)
    for size, stride in zip(reversed(shape[1:]), reversed(strides[1:])):
        if size != 1 and stride != n:
            return None
        n *= size
    C, ms = shape[0], strides[0]
    if C == 0 or n == 0 or (C > 1 and ms < n):
        return None
    return torch.as_strided(t, ((C - 1) * ms + n,), (1,)).numpy(), ms


def each(like: torch.Tensor, write: Callable[[torch.Tensor], Any]) -> torch.Tensor:
    """write(out) member by member, out shaped as `like` (out_like): `write` calls an op's out=
    variant, e.g. lambda out: torch.exp(x, out=out)."""
    out = out_like(like)
    write(out)
    return out


def _onednn_gelu(x: torch.Tensor) -> bool:
    """Whether ATen hands gelu of each member alone to oneDNN (Activation.cpp, use_mkldnn:
    contiguous float32 on a CPU, more than one element, oneDNN on). oneDNN computes every element
    with the same code wherever it lies, so the whole chunk made contiguous, in one call, is each
    member alone (and the reference engine's op). Elsewhere ATen's own kernel runs, member by
    member: never with a strided out= on a contiguous float32 input, which oneDNN would take and
    ignore the out's strides (the result is lost, the buffer left as it was)."""
    member = x[0].numel() if x.dim() > 0 else x.numel()
    return (x.device.type == "cpu" and x.dtype == torch.float32 and member > 1
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def _not_onednn(x: torch.Tensor) -> torch.Tensor:
    """x, or where it is contiguous, a copy in member rows, which ATen never hands to oneDNN."""
    return each(x, lambda out: out.copy_(x)) if x.is_contiguous() and _in_rows_here(x.shape, x.device) else x


def _gelu(x: torch.Tensor) -> torch.Tensor:
    if _onednn_gelu(x):
        return _aten.gelu(x.contiguous())
    xs = _not_onednn(x)
    return each(x, lambda out: _aten.gelu.out(xs, approximate="none", out=out))


def gelu_backward(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The gradient through gelu(x), as autograd's GeluBackward0 takes it (from the input)."""
    if _onednn_gelu(x):
        return _aten.gelu_backward(grad.contiguous(), x.contiguous())
    xs = _not_onednn(x)
    return each(grad, lambda out: _aten.gelu_backward.grad_input(grad, xs, approximate="none", grad_input=out))


@dataclass(frozen=True)
class _Op:
    """An element-wise op member by member, forward(x), and the gradient autograd's native
    backward of it takes, backward(grad, x, y) (y: the forward's result), member by member too."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    backward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class _Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, op: _Op) -> torch.Tensor:  # type: ignore[override]
        y = op.forward(x)
        ctx.op = op
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        x, y = ctx.saved_tensors
        return ctx.op.backward(grad, x, y), None


def _apply(op: _Op, x: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return _Function.apply(x, op)
    return op.forward(x)


def _unary(fn: Callable[..., Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """fn's out= variant, member by member."""
    return lambda x: each(x, lambda out: fn(x, out=out))


# Each backward is autograd's (derivatives.yaml: EluBackward0, GeluBackward0, TanhBackward0,
# SigmoidBackward0, LogBackward0, ExpBackward0); the last two are a div and a mul, exactly
# rounded, so they run as autograd runs them.
_SELU = _Op(lambda x: each(x, lambda out: _aten.elu.out(x, SELU_ALPHA, SELU_SCALE, 1.0, out=out)),
            lambda g, x, y: selu_backward(g, x))
_GELU = _Op(_gelu, lambda g, x, y: gelu_backward(g, x))
_TANH = _Op(_unary(torch.tanh), lambda g, x, y: tanh_backward(g, y))
_SIGMOID = _Op(_unary(torch.sigmoid), lambda g, x, y: sigmoid_backward(g, y))
_LOG = _Op(_unary(torch.log), lambda g, x, y: g.div(x))
_EXP = _Op(_unary(torch.exp), lambda g, x, y: g * y)


def selu(x: torch.Tensor) -> torch.Tensor:
    """torch.selu: ATen's elu(x, SELU_ALPHA, SELU_SCALE)."""
    return _apply(_SELU, x)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """torch.nn.functional.gelu (the exact, erf form)."""
    return _apply(_GELU, x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    return _apply(_TANH, x)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return _apply(_SIGMOID, x)


def log(x: torch.Tensor) -> torch.Tensor:
    return _apply(_LOG, x)


def exp(x: torch.Tensor) -> torch.Tensor:
    return _apply(_EXP, x)


def selu_backward(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The gradient through selu(x), as autograd's EluBackward0 takes it (from the input)."""
    return each(grad, lambda out: _aten.elu_backward.grad_input(grad, SELU_ALPHA, SELU_SCALE, 1.0, False, x, grad_input=out))


def tanh_backward(grad: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient through tanh, from its output y: grad * (1 - y*y)."""
    return each(grad, lambda out: _aten.tanh_backward.grad_input(grad, y, grad_input=out))


def sigmoid_backward(grad: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient through sigmoid, from its output y: grad * (1 - y) * y."""
    return each(grad, lambda out: _aten.sigmoid_backward.grad_input(grad, y, grad_input=out))


# ---- matrix products -----------------------------------------------------------------------
def bmm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """torch.bmm(a, b) into `out` (default: new member rows), each member's operands where they
    sit alone (in_rows: pass a transposed operand as a view of one in member rows, so that a copy
    never changes its layout)."""
    if a.shape[-1] == 1 and a.device.type == "cpu":
        # An outer product (the gradient through a layer of one output): each element one
        # product, exactly rounded, as gemm makes it but for the sign of a zero (gemm adds
        # its product to +0). Broadcast, it is member by member whatever the layout; torch's
        # bmm loops over the members of a padded operand, one small gemm each, several times slower.
        out = out if out is not None else rows((a.shape[0], a.shape[1], b.shape[2]), a.dtype, a.device)
        return torch.mul(a, b, out=out)
    a, b = in_rows(a), in_rows(b)
    out = out if out is not None else _result(a, b)
    return torch.bmm(a, b) if out is None else torch.bmm(a, b, out=out)


def _result(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """A matrix product's result in member rows; None where that is the contiguous tensor torch
    allocates itself (every member a multiple of MATMUL_ALIGN bytes: torch's own call, as fast)."""
    shape = (a.shape[0], a.shape[1], b.shape[2])
    strides = _strides(shape, a.element_size(), False) if a.device.type == "cpu" else None
    return None if strides is None else torch.empty_strided(shape, strides, dtype=a.dtype, device=a.device)


# ---- a layer of one output, in training ------------------------------------------------------
# A matrix product with one output column (the regression network's last layer) costs MKL a
# call per member, whose overhead is most of it at a training batch's rows (docs/benchmarks.md).
# As a product and a sum over each row it is a few element-wise passes, each member's rows their
# own. Its last bits are then the sum's, not MKL's: training steps take this form (a config's
# batch fixes which), eval-mode and MC forwards MKL's.
DOT_ELEMENTS = 2**18  # per member: above it the product's temporary leaves the cache


def dot_form(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether bias + a @ b ([C, M, K] @ [C, K, 1]) takes the form of a product and a sum."""
    return b.shape[-1] == 1 and a.device.type == "cpu" and a.shape[1] * a.shape[2] <= DOT_ELEMENTS


def _dot(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.add(torch.sum(a * b.transpose(1, 2), -1, keepdim=True), bias)


def dot_weight_grad(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The weight's gradient of a layer of one output in that form, [C, K, 1]: each member's
    rows of x times its output's gradient, summed over the rows."""
    return torch.sum(x * grad, 1).unsqueeze(-1)


class _Baddbmm(torch.autograd.Function):
    """bias + a @ b, as a matrix product or (dot) a product and a sum, with the gradients
    `Chunk._backward` takes: autograd's BaddbmmBackward0 (beta = alpha = 1, so no scaling), the
    bias's summed to its shape as the autograd engine sums a broadcast input's."""

    @staticmethod
    def forward(ctx: Any, bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dot: bool) -> torch.Tensor:  # type: ignore[override]
        if not dot:
            a, b = in_rows(a), in_rows(b)
        ctx.save_for_backward(a, b)
        ctx.bias_shape, ctx.dot = bias.shape, dot
        return _dot(bias, a, b) if dot else _baddbmm(bias, a, b)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        a, b = ctx.saved_tensors
        need = ctx.needs_input_grad
        w = (dot_weight_grad(a, grad) if ctx.dot else bmm(a.transpose(1, 2), grad)) if need[2] else None
        return (grad.sum_to_size(ctx.bias_shape) if need[0] else None,
                bmm(grad, b.transpose(1, 2)) if need[1] else None, w, None)


def _baddbmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = in_rows(a), in_rows(b)
    out = _result(a, b)
    return torch.baddbmm(bias, a, b) if out is None else torch.baddbmm(bias, a, b, out=out)


def _product(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dot: bool) -> torch.Tensor:
    if torch.is_grad_enabled() and any(t.requires_grad for t in (bias, a, b)):
        return _Baddbmm.apply(bias, a, b, dot)
    return _dot(bias, a, b) if dot else _baddbmm(bias, a, b)


def dot(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """bias + a @ b for a layer of one output (dot_form) in training."""
    return _product(bias, a, b, True)


def baddbmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch.baddbmm(bias, a, b) in member rows, each member's operands where they sit alone."""
    return _product(bias, a, b, False)
