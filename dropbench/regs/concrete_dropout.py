"""Concrete dropout (Gal, Hron & Kendall 2017, "Concrete Dropout"): dropout whose rate is learned,
one p per layer, by gradient descent through a relaxed Bernoulli mask.

While training, the input features (inputs=true, the default: the authors wrap every layer, the
first included) and each hidden layer's output (the next layer's input, so after the activation
whatever model.placement says) are multiplied by

    (1 - sigmoid((log p - log(1-p) + log u - log(1-u)) / t)) / (1 - p),   u ~ U(0, 1),

with temperature t = 0.1 and 1e-7 added inside each log, exactly as the authors' code
(yaringal/ConcreteDropout, concrete-dropout-pytorch.ipynb); p = sigmoid(p_logit) is a parameter of
the layer, trained by the run's optimizer with the network's weights (never weight-decayed).
Identity in eval mode; MC evaluation (eval.mc_samples) draws relaxed masks with the learned p, as
the paper predicts.

The objective gains, per dropped layer with K input features feeding a Linear of weight W:

    l^2/N * sum(W**2) / (1 - p)  +  2/N * K * (p log p + (1-p) log(1-p)),

the paper's weight regularizer l^2/N and dropout regularizer 2/N times the negative entropy of p
(N = the rows the run trains on; l = length_scale). W is the weight matrix the dropped output
feeds (the first layer's for the inputs, the next hidden layer's, or the output layer's), without
its bias, as in the authors' Keras layer; with inputs=false the first layer's W gets no term.

The learned p of each layer is recorded at every evaluation in curves.csv's `learned_p` column
(and runs.csv's `final_learned_p`): the inputs' p first (inputs=true), then each hidden layer's,
space separated.

init_p=0 turns it off: no mask, no draws, no penalty (p=0 is a fixed point of the logit).
It does not combine with l2: its weight term is the weight prior already.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any, Sequence

from dropbench.grids import LogRange
from dropbench.params import POSITIVE
from dropbench.regs.base import MASK_COST, PROB, ChunkView, Piece, Regularizer, param

EPS = 1e-7  # the authors' code adds it inside every log


@dataclass(frozen=True)
class Config:
    init_p: float = param(0.1, PROB)  # every layer's p before training (the authors' 0.1); 0: off
    temperature: float = param(0.1, POSITIVE)  # of the relaxed Bernoulli (the paper's 0.1)
    length_scale: float = param(1e-4, POSITIVE)  # prior length-scale l: weight regularizer l^2/N (the authors' 1e-4)
    inputs: bool = True  # a learned p for the input features too (the authors wrap every layer, the first included)


def logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def relaxed(x: Any, p_logit: Any, u: Any, temperature: float, ops: Any = None) -> Any:
    """The authors' _concrete_dropout, op for op: both engines call this, so their forward kernels
    (and autograd's backward through them) are the same. ops: where sigmoid and log come from,
    torch (default) or, for a chunk's [C, ...] tensors, engines/memberwise (member by member)."""
    import torch

    ops = ops or torch
    p = ops.sigmoid(p_logit)
    drop_prob = ops.log(p + EPS) - ops.log(1 - p + EPS) + ops.log(u + EPS) - ops.log(1 - u + EPS)
    drop_prob = ops.sigmoid(drop_prob / temperature)
    return x * (1 - drop_prob) / (1 - p)


def relaxed_kept(x: Any, p_logit: Any, u: Any, temperature: Any, on: Any, all_on: bool) -> tuple[Any, tuple[Any, ...]]:
    """where(on, relaxed(x, p_logit, u, temperature, memberwise), x) for a chunk's [C, ...]
    tensors, op for op, without autograd, and what `relaxed_backward` needs: recording a dozen
    ops in autograd's graph and walking it back cost more than the ops themselves."""
    import torch

    from dropbench.engines import memberwise as ms

    p = ms.sigmoid(p_logit)
    a1, a3 = p + EPS, 1 - p + EPS
    drop = ms.log(a1) - ms.log(a3) + ms.log(u + EPS) - ms.log(1 - u + EPS)
    s = ms.sigmoid(drop / temperature)
    m = 1 - s
    xm = x * m
    q = 1 - p
    r = xm / q
    return (r if all_on else torch.where(on, r, x)), (x, p, a1, a3, s, m, q, r)


def relaxed_backward(grad: Any, kept: tuple[Any, ...], temperature: Any, on: Any, all_on: bool) -> tuple[Any, Any]:
    """The gradients of x and p_logit that autograd's backward of `relaxed_kept`'s ops gives, bit
    for bit: its nodes' formulas (derivatives.yaml), run in the order its engine runs them (latest
    node first), so each gradient used twice sums in autograd's order (tests/test_reg_concrete.py)."""
    import torch

    from dropbench.engines import memberwise as ms

    x, p, a1, a3, s, m, q, r = kept
    g = grad if all_on else torch.where(on, grad, 0.0)  # where: self's part
    g_xm = g / q  # div: self's part
    g_q = (-g * (r / q)).sum_to_size(q.shape)  # div: other's, -grad * ((self / other) / other)
    g_x = g_xm * m
    # x's gradient: where's part for `other` (zeros where on) first, then the product's
    g_x = g_x.add_(0.0) if all_on else torch.where(on, 0.0, grad) + g_x
    g_drop = (ms.sigmoid_backward(-(g_xm * x), s) / temperature).sum_to_size(p.shape)
    # p feeds 1 - p (the division's), 1 - p + EPS's log and p + EPS's log: their parts in that order
    g_p = -g_q + -((-g_drop).div(a3)) + g_drop.div(a1)
    return g_x, ms.sigmoid_backward(g_p, p)


def factors(conf: Config, k: int, n: int) -> tuple[float, float]:
    """(weight regularizer l^2/N, dropout regularizer 2/N times the layer's K input features)."""
    return conf.length_scale**2 / n, 2.0 / n * k


def regularizer(sq_w: Any, p_logit: Any, wr: Any, dr: Any, ops: Any = None) -> Any:
    """The layer's term of the objective, from sum(W**2) of the Linear its output feeds; wr and dr
    are `factors` (Python floats, or per-member columns of them); ops as for `relaxed`."""
    import torch

    ops = ops or torch
    p = ops.sigmoid(p_logit)
    weight = wr * sq_w / (1 - p)
    dropout = (p * ops.log(p) + (1 - p) * ops.log(1 - p)) * dr
    return weight + dropout


def regularizer_grads(sq_w: Any, p_logit: Any, wr: Any, dr: Any, grad: Any) -> tuple[Any, Any]:
    """The gradients of sq_w and p_logit that autograd's backward of `regularizer` (memberwise
    ops) takes for the gradient `grad` of its result, bit for bit: its nodes' formulas, in the
    order its engine runs them (latest node first). A dozen ops on [C, 1, 1] tensors, where
    recording and walking autograd's graph cost several times the ops."""
    from dropbench.engines import memberwise as ms

    p = ms.sigmoid(p_logit)
    w1, q1 = wr * sq_w, 1 - p
    q2 = 1 - p
    g_ab = grad * dr  # (A + B) * dr
    g_q2 = g_ab * ms.log(q2) + (g_ab * q2).div(q2)  # (1 - p) * log(1 - p): the product's part, then the log's
    g_lp = g_ab * p  # p * log(p): the log's operand
    g_q1 = -grad * ((w1 / q1) / q1)  # w1 / (1 - p): the divisor's part
    # p feeds 1 - p (the weight term's), log(p), p * log(p) and 1 - p (the entropy's); their
    # parts arrive latest node first
    g_p = -g_q2 + g_ab * ms.log(p) + g_lp.div(p) + -g_q1
    return (grad / q1) * wr, ms.sigmoid_backward(g_p, p)


def layers(model: Any) -> list[tuple[Any, Any]]:
    """(concrete layer, the Linear its output feeds) for each concrete layer of a torch model."""
    from torch import nn

    out, pending = [], None
    for m in model.modules():
        if getattr(m, "reg", None) is REGULARIZER:
            pending = m
        elif isinstance(m, nn.Linear) and pending is not None:
            out.append((pending, m))
            pending = None
    return out


class ConcreteDropout(Regularizer):
    name = "concrete_dropout"
    order = 28  # after alpha dropout, in the activation slot
    slot = "activation"
    Config = Config
    tune = {"length_scale": LogRange(1e-4, 1.0)}  # p is learned; the prior length-scale sets its weight term
    strength = "init_p"
    placement = "after"  # drops the next layer's input, as the paper's wrapper of each layer does
    inputs_field = "inputs"  # and, with inputs=true, the first layer's (the input features)
    mc = True  # MC dropout with the learned rates
    excludes = {"l2": "two weight priors (concrete dropout's l^2/N weight term is its L2)"}

    def torch_layer(self, conf: Config) -> Any:
        return _torch_layer(self, conf)

    def torch_forward(self, x: Any, conf: Config, training: bool) -> Any:
        layer = self.torch_layer(conf)
        return layer.train(training)(x)

    def torch_penalty(self, model: Any, conf: Config, n_train: int) -> Any:
        terms = [regularizer(torch_sum_sq(lin.weight), c.p_logit, *factors(conf, lin.in_features, n_train))
                 for c, lin in layers(model) if c.p_logit is not None]
        return sum(terms[1:], terms[0]).squeeze(0) if terms else None

    def torch_learned(self, model: Any, conf: Config) -> list[float] | None:
        import torch

        ps = [c.p_logit for c, _ in layers(model) if c.p_logit is not None]
        return [float(torch.sigmoid(p.detach()).item()) for p in ps] if ps else None

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        # a uniform draw and the relaxation's dozen elementwise ops, forward and backward:
        # several times dropout's mask per element, as timing the two side by side shows
        return 5 * MASK_COST * n_train * model.hidden * model.depth

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)


def torch_sum_sq(w: Any) -> Any:
    import torch

    return torch.sum(torch.pow(w, 2))


def _torch_layer(reg: ConcreteDropout, conf: Config) -> Any:
    return _layer_class()(reg, conf)


@cache
def _layer_class() -> type:
    """One class for every instance (MC evaluation finds the layers it turns on by their type)."""
    import torch
    from torch import nn

    class ConcreteLayer(nn.Module):
        """The reference form: a learned p_logit (None when off), the relaxed mask while training."""

        def __init__(self, reg: ConcreteDropout, conf: Config) -> None:
            super().__init__()
            self.reg, self.conf = reg, conf
            # torch.full draws nothing: the network's initial weights are those without it.
            self.p_logit = nn.Parameter(torch.full((1,), logit(conf.init_p))) if conf.init_p > 0 else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.p_logit is None:
                return x
            return relaxed(x, self.p_logit, torch.rand_like(x), self.conf.temperature)

        def extra_repr(self) -> str:
            c = self.conf
            return f"concrete_dropout: init_p={c.init_p}, temperature={c.temperature}, length_scale={c.length_scale}"

    return ConcreteLayer


class _Batched(Piece):
    """Per member and dropped layer (the inputs, then each hidden layer) a p_logit [C, 1, 1] (a
    dummy, never moving, for members that are off), trained by the chunk's optimizer. The forward
    runs the reference's ops and the backward autograd's, written out (relaxed_kept,
    relaxed_backward, regularizer_grads): the reference's kernels, bit for bit."""

    def __init__(self, chunk: ChunkView, confs: Sequence[Config]) -> None:
        import torch

        self.chunk, self.confs = chunk, list(confs)
        self.active = [c.init_p > 0 for c in confs]
        self.any = any(self.active)
        # d(sum of the members' penalties)/d(each member's): autograd's where(on, 1, 0)
        self.weight = chunk.column([1.0 if a else 0.0 for a in self.active])
        self.on = self.weight.bool()
        self.all_on = all(self.active)  # where(on, ...) is then the identity, and skipped
        self._columns: dict[int, tuple[Any, Any]] = {}
        # Per-member columns of the reference's Python floats (x / t rounds the same either way).
        self.temperature = chunk.column([c.temperature for c in confs])
        self.params: list[torch.Tensor] = chunk.learned(REGULARIZER.name)  # one [C, 1, 1] per dropped layer
        # params[0] is the inputs' p when it acts on them (one choice per chunk: program_key)
        self.first = 1 if REGULARIZER.acts_on_inputs(confs[0]) else 0
        self.grads = [torch.zeros_like(p) for p in self.params]

    record = True  # the forward keeps what the hand-written backward needs (False: autograd recomputes it there)
    layered = True  # forward is told which layer it acts on (its own p; -1: the inputs)
    has_penalty = True  # its objective terms, beside the loss slot's

    def forward(self, z: Any, train: bool, layer: int = 0) -> tuple[Any, Any]:
        if not train or not self.any:
            return z, None
        import torch

        u = self.chunk.draws(self.active, tuple(z.shape[1:]), self.chunk.dtype).to(z.device)
        j = layer + self.first  # layer -1: the inputs
        if not self.record or torch.is_grad_enabled() and (z.requires_grad or self.params[j].requires_grad):
            # a caller's autograd sees the forward (tests compare the backward with it): the
            # backward computes the forward again, under autograd of its own
            return self._apply(z, self.params[j], u), (None, z, u, j)
        out, kept = relaxed_kept(z, self.params[j], u, self.temperature, self.on, self.all_on)
        return out, (kept, j)

    def _apply(self, z: Any, p_logit: Any, u: Any) -> Any:
        import torch

        from dropbench.engines import memberwise

        return torch.where(self.on, relaxed(z, p_logit, u, self.temperature, memberwise), z)

    def backward(self, grad: Any, saved: Any) -> Any:
        if saved is None:
            return grad
        import torch

        if saved[0] is not None:
            kept, j = saved
            gz, gp = relaxed_backward(grad, kept, self.temperature, self.on, self.all_on)
        else:
            _, z, u, j = saved
            with torch.enable_grad():
                zl = z.detach().requires_grad_()
                pl = self.params[j].detach().requires_grad_()
                gz, gp = torch.autograd.grad(self._apply(zl, pl, u), (zl, pl), grad)
        self.grads[j].copy_(gp)
        return gz

    def _consumers(self) -> list[int]:
        """The index in params of each dropped layer's consumer: Linear j (+1 without the inputs),
        whose transposed weight is [C, in, out]."""
        return [2 * (i + 1 - self.first) for i in range(len(self.params))]

    def _terms(self, sqs: Sequence[Any], widths: Sequence[int], p_logits: Sequence[Any]) -> Any:
        """[C]: each member's penalty (0 for members that are off), from each consumer's sum(W**2)
        [C, 1, 1] and its input width."""
        import torch

        from dropbench.engines import memberwise

        total = None
        for sq, k, pl in zip(sqs, widths, p_logits):
            t = regularizer(sq, pl, *self._factors(k), memberwise)
            total = t if total is None else total + t
        assert total is not None
        return torch.where(self.on, total, torch.zeros_like(total)).view(-1)

    def _factors(self, k: int) -> tuple[Any, Any]:
        """`factors` for a layer of k input features, per member: two [C, 1, 1] columns."""
        got = self._columns.get(k)
        if got is None:
            f = [factors(c, k, self.chunk.n_rows) for c in self.confs]
            got = self._columns[k] = (self.chunk.column([a for a, _ in f]), self.chunk.column([b for _, b in f]))
        return got

    @staticmethod
    def _sum_sq(W: Any) -> Any:
        import torch

        return torch.sum(torch.pow(W, 2), dim=(1, 2)).view(-1, 1, 1)

    def penalty(self, params: Sequence[Any]) -> Any:
        ws = [params[a] for a in self._consumers()]
        return self._terms([self._sum_sq(W) for W in ws], [W.shape[1] for W in ws], self.params)

    def add_grad(self, grads: list[Any], params: Sequence[Any]) -> None:
        """Autograd's gradient of the penalty (the sum of the members' `_terms`), by hand:
        `regularizer_grads` from each sum(W**2) [C, 1, 1] and p_logit, then W's part as autograd's
        backward of sum(pow(W, 2)) forms it, grad * (2.0 * W). Two exact equalities make it
        cheaper with the same bits: pow(W, 2) is ATen's W * W (its kernel for the exponent 2), and
        g * (2.0 * W) is (2.0 * g) * W, one rounding of the same product."""
        if not self.any:
            return
        import torch

        for i, a in enumerate(self._consumers()):
            W = params[a]
            sq = torch.sum(W * W, dim=(1, 2)).view(-1, 1, 1)
            g_sq, g_pl = regularizer_grads(sq, self.params[i], *self._factors(W.shape[1]), self.weight)
            grads[a].add_(W * (2.0 * g_sq))
            self.grads[i].add_(g_pl)

    def learned(self) -> list[list[float] | None]:
        from dropbench.engines.memberwise import sigmoid

        ps = [sigmoid(p).reshape(-1).tolist() for p in self.params]
        return [[float(ps[i][j]) for i in range(len(ps))] if a else None for j, a in enumerate(self.active)]


REGULARIZER = ConcreteDropout()
