"""The batched engine's tensor program: C runs of one group as [C, ...] tensors, with a
hand-written backward and one fused optimizer step.

Regularizers are the registry's pieces (dropbench/regs/), applied per slot in registry order:
input-slot ones on the data (training only), weight-slot ones on each hidden layer's W,
activation-slot ones before or after the activation (model.placement), residual-slot ones on each
residual branch, loss-slot ones on the objective and gradient, the optimizer-slot one in the
optimizer step, after_step ones after it. Each piece's backward is the gradient autograd takes
through its forward, same kernels, same order (tests/test_batched.py checks it bit for bit).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from functools import partial
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import torch

from dropbench import regs
from dropbench.data import load_datasets
from dropbench.engines import generic, loop, memberwise
from dropbench.engines.base import resolve_device
from dropbench.engines.loop import batch_slices, fit_grid, shuffle_generator
from dropbench.engines.mc import MCStats, mc_active, mc_block, mc_regs, mc_windows
from dropbench.engines.planner import training_key
from dropbench.engines.result import RunResult
from dropbench.masks import CounterStream, levels_of
from dropbench.models import acts_after, build_model
from dropbench.optim import decays_biases, weight_decay
from dropbench.regs.base import NO_PIECE_SLOTS, ChunkView, Piece

if TYPE_CHECKING:
    from dropbench.config import RunConfig

# Each activation and the gradient autograd takes through it (from its input x or output y).
# All but relu (max and where, exact in any code) go member by member (engines/memberwise.py).
ACT: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "relu": (torch.relu, lambda g, x, y: torch.ops.aten.threshold_backward(g, y, 0)),
    "tanh": (memberwise.tanh, lambda g, x, y: memberwise.tanh_backward(g, y)),
    "gelu": (memberwise.gelu, lambda g, x, y: memberwise.gelu_backward(g, x)),
    "selu": (memberwise.selu, lambda g, x, y: memberwise.selu_backward(g, x)),  # elu(x, alpha, scale)
}
ACT_INPLACE = {"relu": torch.relu_}  # the same values, in place


@dataclass
class _Hyper:
    """Per-member optimizer hyperparameters as [C, 1, 1] tensors."""

    wd: torch.Tensor | None  # coupled weight decay (0 where decoupled)
    decay: torch.Tensor | None  # decoupled factor 1 - lr*wd (1 where coupled)
    lr: torch.Tensor
    momentum: torch.Tensor
    # The biases' wd and decay: the weights' where reg.l2.biases (default), else 0 and 1; with no
    # member decaying its biases they are left out of the decay altogether (`decayed`).
    wd_b: torch.Tensor | None = None
    decay_b: torch.Tensor | None = None
    decayed: list[int] = field(default_factory=list)  # indices of the parameters the decay acts on


def _col(values: Sequence[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).to(dtype=dtype, device=device).view(-1, 1, 1)


Applied = list[tuple[Piece, Any]]  # pieces of one slot that acted, with what each saved


@dataclass
class _Saved:
    """What one Linear layer's backward needs: its input, its (regularized) weight and, for hidden
    layers, the activation's input and output and what each slot's pieces saved."""

    x: torch.Tensor
    W: torch.Tensor
    on_w: Applied = field(default_factory=list)  # weight slot
    pre: torch.Tensor | None = None  # the activation's input
    act_out: torch.Tensor | None = None
    on_act: Applied = field(default_factory=list)  # activation slot, before the activation
    on_post: Applied = field(default_factory=list)  # activation slot, after the activation
    on_branch: Applied = field(default_factory=list)  # residual slot
    on_in: Applied = field(default_factory=list)  # input slot (first layer; pieces that learn only)
    dot: bool = False  # the output layer in the form of a product and a sum (memberwise.dot_form)


@dataclass(frozen=True)
class _Window:
    """Members lo .. hi - 1 of a chunk, as an MC forward computes them on their own: their
    parameters, generators and fast-stream keys."""

    lo: int
    hi: int
    params: list[torch.Tensor]
    gens: list[torch.Generator]
    stream: CounterStream | None


@dataclass(frozen=True)
class _Redraw:
    """What inverted dropout's backward needs from the fast stream's fused forward: the draw, to
    make its factor again, and the piece's levels and factor values."""

    draw: tuple[int, int]
    levels: np.ndarray
    values: np.ndarray


def _apply(pieces: Sequence[Piece], z: torch.Tensor, train: bool | frozenset[Piece], saved: Applied | None,
           layer: int = 0) -> torch.Tensor:
    """train: True/False for every piece, or the set of pieces that act as in training (MC evaluation).
    layer: the hidden layer (0-based), for pieces with a value per layer (Piece.layered)."""
    for piece in pieces:
        t = train if isinstance(train, bool) else piece in train
        z, s = piece.forward(z, t, layer) if piece.layered else piece.forward(z, t)
        if saved is not None:
            saved.append((piece, s))
    return z


def _unapply(applied: Applied, grad: torch.Tensor) -> torch.Tensor:
    for piece, s in reversed(applied):
        grad = piece.backward(grad, s)
    return grad


class Chunk(ChunkView):
    """The runs of one group, trained together: a member per distinct training (twins differing
    only in eval.tau share one), padded to `size` (at least two) with copies of the first."""

    def __init__(self, cfgs: Sequence["RunConfig"], size: int) -> None:
        # Runs that differ only in eval.tau train as one member (twins): tau only weighs the test
        # log-likelihood, so their training, masks and MC passes are the same. `readers` are the
        # runs, `reader_of` each one's member; the members are the distinct trainings, padded.
        self.readers = list(cfgs)
        self.n_real = len(cfgs)
        members: dict[str, int] = {}  # training key -> member
        self.reader_of = [members.setdefault(training_key(c), len(members)) for c in cfgs]
        trainers = [cfgs[self.reader_of.index(j)] for j in range(len(members))]
        if len(trainers) < len(cfgs):
            size = max(len(trainers), 2)
        # the members' rows each run reads (None: one member per run, in order: a slice, no copy)
        self._reader_index = None if len(trainers) == len(cfgs) else torch.tensor(self.reader_of)
        self.cfgs = trainers + [trainers[0]] * (size - len(trainers))
        c0 = self.cfgs[0]
        self.cfg0 = c0
        self.device = resolve_device(c0.device)
        self.dtype = getattr(torch, c0.dtype)
        dev, dt = self.device, self.dtype
        self.act, self.act_backward = ACT[c0.model.activation]
        self.act_inplace = ACT_INPLACE.get(c0.model.activation)
        self.placement = c0.model.placement
        self.residual = c0.model.residual

        datasets = load_datasets(self.cfgs)  # members on one split (a grid over p, tau, ...) share its rows
        self.y_std = [d.y_std for d in datasets]  # RMSE and log-likelihood in original units
        stack = lambda ts: memberwise.stacked(ts, dt, dev)  # noqa: E731
        self.x, self.y = stack([d.x_train for d in datasets]), stack([d.y_train for d in datasets])
        self.tx, self.ty = stack([d.x_test for d in datasets]), stack([d.y_test for d in datasets])
        # A loop-slot regularizer's validation rows (one group: every member has them, or none)
        self.vx = stack([d.x_val for d in datasets]) if datasets[0].x_val is not None else None
        self.vy = stack([d.y_val for d in datasets]) if datasets[0].y_val is not None else None
        # From the data in the run's dtype, on its device, as the reference engine draws it.
        self.grid = torch.stack([fit_grid(x) for x in self.x]) if datasets[0].n_features == 1 else None

        # Where Bernoulli masks come from (dropbench/masks.py): training's under masks: fast, the
        # MC passes' under eval.mc_masks: fast; one stream for every member, keyed by its seed.
        self.masks, self.mc_fast = c0.masks, c0.eval.mc_masks == "fast"
        self.stream = CounterStream([c.seed for c in self.cfgs]) if self.masks == "fast" or self.mc_fast else None
        self._fast_now = self.masks == "fast"  # whether the forward under way draws from the stream
        self._levels: dict[tuple[str, int], tuple[torch.Tensor, np.ndarray]] = {}
        self._win: slice | None = None  # the members an MC forward computes (_window), None: all

        # Initial weights and mask generators: exactly the reference engine's, per member.
        weights: list[list[torch.Tensor]] = []
        self.gens: list[torch.Generator] = []
        self._models: list[torch.nn.Module] = []  # for learned(): regularizers' own parameters
        for c in self.cfgs:
            model = build_model(c, datasets[0].n_features)
            self._models.append(model)
            g = torch.Generator()
            g.set_state(torch.default_generator.get_state())
            self.gens.append(g)
            lins = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
            weights.append([t for lin in lins for t in (lin.weight.detach().t(), lin.bias.detach().unsqueeze(0))])
        # Parameters, gradients and optimizer state in member rows (engines/memberwise.py), as the
        # data: each member's tensors sit where the run's own would sit alone.
        self.params = [stack([w[i] for w in weights]) for i in range(len(weights[0]))]
        self.grads = [memberwise.zeros_like(p) for p in self.params]  # written in place every step
        self.n_linear = len(self.params) // 2
        self.n_rows = self.x.shape[1]
        n_out = self.y.shape[1] * self.y.shape[2]
        self._inv_n = torch.ones((), dtype=dt, device=dev) / n_out  # mean's backward divides 1 by n
        self._inv_rows: dict[int, torch.Tensor] = {self.y.shape[1]: self._inv_n}  # the same, per batch's rows
        # Mini-batches (loop.batch_slices): every member has the same n and batch_size (one group),
        # each its own shuffle generator, as the reference engine's.
        self.slices = batch_slices(self.x.shape[1], c0.batch_size)
        self.shuffle_gens = [shuffle_generator(c.seed) for c in self.cfgs] if self.slices is not None else []

        # Each selected regularizer's piece, by slot, in registry order; every member has them all
        # (one group), each with its own config. The optimizer slot is the optimizer's weight decay.
        self.pieces: dict[str, list[Piece]] = {}
        for name in c0.reg.names:
            reg = regs.REGISTRY[name]
            if reg.slot in NO_PIECE_SLOTS:  # the optimizer's weight decay; the loop's own rules
                continue
            make = reg.batched if generic.hand_written(reg) else partial(generic.piece, reg)  # torch form only: generic.py
            self.pieces.setdefault(reg.slot, []).append(make(self, [getattr(c.reg, name) for c in self.cfgs]))
        self.on_input, self.on_weight = self.pieces.get("input", []), self.pieces.get("weight", [])
        # activation-slot pieces that also act on the inputs (Regularizer.inputs_field), after the
        # input slot's, as models.mlp.build orders them; the program key makes it one choice per chunk
        self.on_input = self.on_input + [
            p for n, p in zip([n for n in c0.reg.names if regs.REGISTRY[n].slot == "activation"], self.pieces.get("activation", []))
            if regs.REGISTRY[n].acts_on_inputs(getattr(c0.reg, n))]
        self.input_learns = any(p.params for p in self.on_input)
        self.on_act, self.on_branch = self.pieces.get("activation", []), self.pieces.get("residual", [])
        # Activation-slot pieces before and after the activation (models.acts_after), registry order.
        after = [acts_after(regs.REGISTRY[n], c0.model) for n in c0.reg.names if regs.REGISTRY[n].slot == "activation"]
        self.on_pre = [p for p, a in zip(self.on_act, after) if not a]
        self.on_post = [p for p, a in zip(self.on_act, after) if a]
        self.on_loss, self.after = self.pieces.get("loss", []), self.pieces.get("after_step", [])
        every = [p for ps in self.pieces.values() for p in ps]
        self.penalized = [p for p in every if p.has_penalty]  # objective terms beside the loss slot
        # Pieces' learned parameters (concrete dropout's p) step with the network's, undecayed.
        self.extra = [t for p in every for t in p.params]
        self.extra_grads = [t for p in every for t in p.grads]
        self.learners = [p for p in every if p.params]
        del self._models  # only needed to build the pieces

        # Derived factors are computed in double, then cast, as torch.optim computes its scalars.
        col = lambda f: _col([f(c) for c in self.cfgs], dt, dev)  # noqa: E731
        decays = [weight_decay(c) for c in self.cfgs]
        has_wd = bool(regs.active(c0.reg, "optimizer"))
        wd = [0.0 if dec else wd for wd, dec in decays]
        decay = [1 - c.optim.lr * wd if dec else 1.0 for c, (wd, dec) in zip(self.cfgs, decays)]
        biases = [decays_biases(c) for c in self.cfgs]
        self.h = _Hyper(
            wd=_col(wd, dt, dev) if has_wd else None,
            decay=_col(decay, dt, dev) if has_wd else None,
            lr=col(lambda c: c.optim.lr),
            momentum=col(lambda c: getattr(c.optim, "momentum", 0.0)),
            wd_b=_col([w if b else 0.0 for w, b in zip(wd, biases)], dt, dev) if has_wd else None,
            decay_b=_col([f if b else 1.0 for f, b in zip(decay, biases)], dt, dev) if has_wd else None,
            decayed=[i for i in range(len(self.params)) if i % 2 == 0 or any(biases)],  # params: W, b per layer
        )
        self.state = [[memberwise.zeros_like(p) for p in self.params + self.extra] for _ in range(2 if c0.optim.name == "adam" else 1)]
        self.step_no = 0
        self.adam_groups = self._adam_groups() if c0.optim.name == "adam" else []

    def _adam_groups(self) -> list[tuple[dict[str, Any], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], torch.Tensor]]:
        """Members sharing Adam's scalars, with per-member views for torch's fused Adam kernel.

        The fused kernel reads and writes each of param, grad, exp_avg and exp_avg_sq once; the
        same work as separate foreach ops takes ten passes over state that does not fit in cache.
        """
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(self.cfgs):
            key = (c.optim.lr, c.optim.beta1, c.optim.beta2, c.optim.eps, *weight_decay(c), decays_biases(c))
            groups.setdefault(key, []).append(i)
        out = []
        m, v = self.state
        n = len(self.params)
        for (lr, b1, b2, eps, wd, decoupled, biases), idx in groups.items():
            # reg.l2.biases=false: the biases (odd tensors: W, b per layer) in a group of their own
            # without decay, as the reference's second parameter group.
            split = [(range(n), wd)] if biases or wd == 0 else [(range(0, n, 2), wd), (range(1, n, 2), 0.0)]
            for which, decay in split:
                kw = dict(lr=lr, beta1=b1, beta2=b2, weight_decay=decay, eps=eps, decoupled=decoupled)
                views = lambda ts: [ts[k][i] for k in which for i in idx]  # noqa: E731
                step = torch.zeros((), dtype=torch.float32, device=self.device)  # one counter for every tensor
                out.append((kw, views(self.params), views(self.grads), views(m), views(v), step))
            if self.extra:  # learned regularizer parameters: the same Adam, never decayed
                kw = dict(lr=lr, beta1=b1, beta2=b2, weight_decay=0.0, eps=eps, decoupled=decoupled)
                ev = lambda ts: [t[i] for t in ts for i in idx]  # noqa: E731
                step = torch.zeros((), dtype=torch.float32, device=self.device)
                out.append((kw, ev(self.extra), ev(self.extra_grads), ev(m[n:]), ev(v[n:]), step))
        return out

    # ---- what a regularizer's piece may use (regs.base.ChunkView) ---------------------------
    def column(self, values: Sequence[float]) -> torch.Tensor:
        return _col(values, self.dtype, self.device)

    def draws(self, active: Sequence[bool], shape: tuple[int, ...], dtype: torch.dtype,
              sample: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
        """Each active member's sample(shape) (default torch.rand) from its own generator, or zeros
        without drawing for the others: the reference's layers return their input then and draw
        nothing, and a draw here would shift every later mask of the run."""
        fn = sample or torch.rand
        # Each member's draws straight into its row of one buffer, not stacked afterwards: a copy
        # the size of every mask, each step; a row is contiguous, so the same kernel as a fresh tensor.
        out = memberwise.rows((len(self.gens), *shape), dtype)
        for i, (g, a) in enumerate(zip(self.gens, active)):
            if a:
                fn(shape, dtype=dtype, generator=g, out=out[i])
            else:
                out[i].zero_()
        return out

    def learned(self, name: str) -> list[torch.Tensor]:
        """regs.base.ChunkView.learned: each member's reference model's parameters of `name`'s
        modules, stacked per module [C, *shape] (zeros where a member's module has none)."""
        per_member = [[m for m in model.modules() if getattr(getattr(m, "reg", None), "name", None) == name]
                      for model in self._models]
        out = []
        for k in range(len(per_member[0])):
            ts = [list(mods[k].parameters(recurse=False)) for mods in per_member]
            shape = next((t[0].shape for t in ts if t), (1,))
            out.append(torch.stack([t[0].detach() if t else torch.zeros(shape) for t in ts])
                       .to(device=self.device, dtype=self.dtype).view(len(ts), 1, 1).contiguous())
        return out

    def bernoulli(self, keep64: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """Each member's `torch.empty(shape).bernoulli_(keep, generator=g)`, bit for bit (all ones
        where p is 0, as the reference leaves x alone).

        CPU bernoulli_ draws, element by element, one double uniform u (the 53-bit draw torch.rand
        makes in float64) and keeps the element when u < keep. torch.rand in float64 makes the same
        draws in the same order, faster, leaving the generator in the same state; one comparison
        then serves every member (tests/test_torch_canaries.py pins the equality).
        """
        if self._fast_now:
            return self.stream.bernoulli(self._levels_of(keep64), shape).to(device=self.device, dtype=self.dtype)
        keep64 = self._of_window(keep64)
        u = self.draws([k < 1 for k in keep64.view(-1).tolist()], shape, torch.float64)
        return (u < keep64).to(device=self.device, dtype=self.dtype)

    def dropout_factor(self, keep64: torch.Tensor, keep: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """regs.base.ChunkView.dropout_factor; from the fast stream, 1 / keep (computed in the
        dtype, as the division makes it) where kept, in one pass."""
        if self._fast_now:
            return self.stream.bernoulli(self._levels_of(keep64), shape, self._inverse(keep)).to(device=self.device)
        return self.bernoulli(keep64, shape) / self._of_window(keep)

    def dropout(self, z: torch.Tensor, keep64: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """regs.base.ChunkView.dropout; from the fast stream on the CPU, in one pass (the compiled
        kernels, where numba is installed), into member rows: the next matrix product takes the
        result as it is. No factor is held for the backward: it draws the same masks again
        (`dropout_backward`), cheaper than writing and reading them back."""
        flat = memberwise.flat(z) if self._fast_now and self.device.type == "cpu" else None
        if flat is not None:
            x, xs = flat
            out = memberwise.rows(tuple(z.shape), z.dtype)
            o, os = memberwise.flat(out)  # type: ignore[misc]
            levels, values = self._levels_of(keep64), self._inverse(keep)
            draw = self.stream.scaled(levels, values, z[0].numel(), x, xs, o, os)
            if draw is not None:
                return out, (None if self.stream.in_mc else _Redraw(draw, levels, values))
        return super().dropout(z, keep64, keep)

    def dropout_backward(self, grad: torch.Tensor, saved: Any) -> torch.Tensor:
        """regs.base.ChunkView.dropout_backward: for the fast stream's fused forward, the gradient
        times the factor of the same draw, made again in one pass."""
        if not isinstance(saved, _Redraw):
            return super().dropout_backward(grad, saved)
        flat = memberwise.flat(grad)
        if flat is None:
            grad = memberwise.rows(tuple(grad.shape), grad.dtype).copy_(grad)
            flat = memberwise.flat(grad)
        g, gs = flat  # type: ignore[misc]
        out = memberwise.rows(tuple(grad.shape), grad.dtype)
        o, os = memberwise.flat(out)  # type: ignore[misc]
        self.stream.rescaled(saved.draw, saved.levels, saved.values, grad[0].numel(), g, gs, o, os)
        return out

    def _of_window(self, t: Any) -> Any:
        """A per-member column ([C, ...] tensor or array) for the members an MC forward computes."""
        return t if self._win is None else t[self._win]

    def _windows(self, rows: int) -> list[_Window] | None:
        """The windows of members an MC forward over `rows` rows computes one at a time (mc_windows),
        or None: the whole chunk at once (off the CPU, or with a piece that is not `windowed`)."""
        C = len(self.cfgs)
        forward = [*self.on_input, *self.on_weight, *self.on_act, *self.on_branch]
        if self.device.type != "cpu" or not all(p.windowed for p in forward):
            return None
        width = max(self.x.shape[2], *(W.shape[2] for W in self.params[0:-2:2]))
        bounds = mc_windows(C, rows * width * self.tx.element_size())
        if len(bounds) < 2:
            return None
        return [_Window(lo, hi, [p[lo:hi] for p in self.params], self.gens[lo:hi],
                        None if self.stream is None else self.stream.window(lo, hi)) for lo, hi in bounds]

    @contextmanager
    def _window(self, w: _Window) -> Iterator[None]:
        """The forward computes w's members alone: each member's numbers are its own in any
        company (invariance), so only the passes' memory traffic changes."""
        full = self.params, self.gens, self.stream
        self.params, self.gens, self.stream, self._win = w.params, w.gens, w.stream, slice(w.lo, w.hi)
        try:
            yield
        finally:
            self.params, self.gens, self.stream = full
            self._win = None

    def _cached(self, what: str, key: torch.Tensor, make: Callable[[], np.ndarray]) -> np.ndarray:
        """What a piece's constant tensor gives the fast stream, computed once per piece (keep64
        and keep may be one tensor: `what` tells its uses apart)."""
        hit = self._levels.get((what, id(key)))
        if hit is None or hit[0] is not key:
            hit = self._levels[what, id(key)] = (key, make())
        return hit[1]

    def _inverse(self, keep: torch.Tensor) -> np.ndarray:
        """A piece's dropout factor where kept, 1 / keep, computed in the dtype as the division makes it."""
        return self._of_window(self._cached("inverse", keep, lambda: (1 / keep.view(-1)).cpu().numpy()))

    def _levels_of(self, keep64: torch.Tensor) -> np.ndarray:
        """A piece's keep probabilities as the fast stream compares them."""
        return self._of_window(self._cached("levels", keep64, lambda: levels_of(keep64.view(-1).numpy())))

    # ---- the network ---------------------------------------------------------------------
    def _hidden(self, x: torch.Tensor, i: int, train: bool, tape: list[_Saved] | None) -> torch.Tensor:
        W, b = self.params[2 * i], self.params[2 * i + 1]
        # the matrix product's operands in member rows, saved so for the backward's products
        x = memberwise.in_rows(x)
        s = _Saved(x, W)
        W = s.W = memberwise.in_rows(_apply(self.on_weight, W, train, s.on_w, i))
        z = memberwise.baddbmm(b, x, W)
        s.pre = _apply(self.on_pre, z, train, s.on_act, i)
        if tape is None and not self.on_pre and self.act_inplace is not None and not torch.is_grad_enabled():
            s.act_out = self.act_inplace(z)  # nothing reads the product again: spare a tensor (MC passes)
        else:
            s.act_out = self.act(s.pre)
        out = _apply(self.on_post, s.act_out, train, s.on_post, i)
        if tape is not None:
            tape.append(s)
        return out

    def forward(self, x: torch.Tensor, train: bool, tape: list[_Saved] | None = None) -> torch.Tensor:
        """The members' predictions; with `tape`, saves what `_backward` needs, layer by layer."""
        on_in: Applied = []
        if self.on_input:  # the data needs no gradient; an input piece that learns needs its own
            x = _apply(self.on_input, x, train, on_in if tape is not None and self.input_learns else None, -1)
        z = self._hidden(x, 0, train, tape)
        if tape is not None:
            tape[0].on_in = on_in
        for i in range(1, self.n_linear - 1):
            branch = self._hidden(z, i, train, tape)
            if self.residual:
                if self.on_branch:
                    branch = _apply(self.on_branch, branch, train, tape[-1].on_branch if tape is not None else None)
                z = z + branch
            else:
                z = branch
        z = memberwise.in_rows(z)
        if tape is not None:
            s = _Saved(z, self.params[-2], dot=memberwise.dot_form(z, self.params[-2]))
            tape.append(s)
            if s.dot:  # a training step's output of one column (memberwise.dot_form)
                return memberwise.dot(self.params[-1], z, self.params[-2])
        return memberwise.baddbmm(self.params[-1], z, self.params[-2])

    def _backward(self, tape: list[_Saved], grad: torch.Tensor) -> None:
        """Every parameter's gradient from the gradient of the predictions, into `self.grads`.

        The same kernels, in the same order, as autograd's backward of `forward` (bit for bit:
        tests/test_batched.py compares them for every regularizer, placement and activation),
        but writing weight gradients into buffers kept across steps, where autograd allocates a
        fresh [C, in, out] tensor per weight per step: at these sizes allocating (and faulting in
        memory the allocator gave back) is a share of the step worth saving.
        """
        G = self.grads
        last = len(tape) - 1
        for i in range(last, -1, -1):
            s = tape[i]
            if i < last:  # a hidden layer
                skip = grad
                grad = _unapply(s.on_branch, grad)
                # post(act(pre(z)))
                grad = _unapply(s.on_act, self.act_backward(_unapply(s.on_post, grad), s.pre, s.act_out))
            grad = memberwise.in_rows(grad)  # an operand of the products below
            torch.sum(grad, 1, keepdim=True, out=G[2 * i + 1])
            if s.dot:
                G[2 * i].copy_(memberwise.dot_weight_grad(s.x, grad))
            elif not s.on_w:
                memberwise.bmm(s.x.transpose(1, 2), grad, out=G[2 * i])
            else:  # the weight slot: W' = f(W)
                G[2 * i].copy_(_unapply(s.on_w, memberwise.bmm(s.x.transpose(1, 2), grad)))
            if i == 0:
                if s.on_in:  # the data needs no gradient, but an input piece's parameters do
                    _unapply(s.on_in, memberwise.bmm(grad, s.W.transpose(1, 2)))
                break
            g_in = memberwise.bmm(grad, s.W.transpose(1, 2))
            grad = skip + g_in if self.residual and 0 < i < last else g_in

    # ---- one training step ---------------------------------------------------------------
    @torch.no_grad()
    def shuffled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training rows in this epoch's order, [C, n, d] and [C, n, 1]: each member's
        torch.randperm(n) from its own shuffle generator (loop.batch_slices), as the reference
        draws it, gathered once per epoch; an epoch's steps take slices of them (views)."""
        n = self.x.shape[1]
        perms = [torch.randperm(n, generator=g).to(self.device) for g in self.shuffle_gens]
        into = lambda t: memberwise.rows(t.shape, t.dtype, t.device)  # noqa: E731  (a product's operand)
        xs, ys = into(self.x), into(self.y)
        # whole rows member by member: a few times faster than one gather of every element (a copy: the same bits)
        for x, y, p, ox, oy in zip(self.x, self.y, perms, xs, ys):
            torch.index_select(x, 0, p, out=ox)
            torch.index_select(y, 0, p, out=oy)
        return xs, ys

    @torch.no_grad()
    def step(self, objective: bool, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """One step for every member, on the full batch or on (x, y) ([C, rows, ...], a mini-batch).

        Returns each member's training MSE [C], or with `objective` the full training objective
        (MSE + loss-slot penalties, measured before the update, as the reference engine reports it).
        """
        if x is None or y is None:
            x, y = self.x, self.y
        inv_n = self._inv_rows.get(y.shape[1])
        if inv_n is None:
            inv_n = self._inv_rows[y.shape[1]] = torch.ones((), dtype=self.dtype, device=self.device) / (y.shape[1] * y.shape[2])
        tape: list[_Saved] = []
        if self.stream is not None:
            self.stream.start_step()
            self._fast_now = self.masks == "fast"
        d = self.forward(x, train=True, tape=tape) - y
        loss = d.pow(2).mean(dim=(1, 2))
        # d(sum of the members' means)/d pred, as autograd forms it: (1/n) * (2 d)
        self._backward(tape, inv_n * (2.0 * d))  # a sum over members: each gradient is its own
        for piece in self.on_loss + self.penalized:
            if objective:
                loss = loss + piece.penalty(self.params)
            piece.add_grad(self.grads, self.params)
        self._optimizer_step()
        for piece in self.after:
            piece.after_step(self.params)
        return loss

    @torch.no_grad()
    def _optimizer_step(self) -> None:
        self.step_no += 1
        if self.adam_groups:
            self._adam_step()
        else:
            self._sgd_step()

    def _adam_step(self) -> None:
        for kw, p, g, m, v, step in self.adam_groups:
            kw = dict(kw)
            fn = torch._fused_adamw_ if kw.pop("decoupled") else torch._fused_adam_
            step += 1
            fn(p, g, m, v, [], [step] * len(p), amsgrad=False, maximize=False, **kw)

    def _sgd_step(self) -> None:
        """torch.optim.SGD's arithmetic with per-member factors as [C, 1, 1] tensors."""
        # the network's parameters, then the pieces' learned ones (never decayed: `on` indexes the first)
        params, h, grads = self.params + self.extra, self.h, self.grads + self.extra_grads
        rep = lambda t: [t] * len(params)  # noqa: E731
        on = h.decayed  # every parameter, or the weights only (reg.l2.biases=false)
        if h.wd is not None:  # coupled L2: grad + wd*w
            wd = [h.wd if i % 2 == 0 else h.wd_b for i in on]
            grads = list(grads)
            for i, g in zip(on, torch._foreach_add([grads[i] for i in on], torch._foreach_mul([params[i] for i in on], wd))):
                grads[i] = g
        if h.decay is not None:  # decoupled L2: w <- w * (1 - lr*wd)
            torch._foreach_mul_([params[i] for i in on], [h.decay if i % 2 == 0 else h.decay_b for i in on])
        buf = self.state[0]
        if self.step_no == 1:
            torch._foreach_copy_(buf, grads)
        else:
            torch._foreach_mul_(buf, rep(h.momentum))
            torch._foreach_add_(buf, grads)
        torch._foreach_sub_(params, torch._foreach_mul(buf, rep(h.lr)))

    @torch.no_grad()
    def evaluate(self) -> tuple[list[float], list[float], list[float | None], list[float | None], list[Any], list[float | None]]:
        """Each member's train and test MSE in eval mode, MC test MSE and test log-likelihood
        (None where its eval block does not ask for them), learned values (None: none) and the
        MSE on its validation rows (None without them)."""
        tr = (self.forward(self.x, train=False) - self.y).pow(2).mean(dim=(1, 2))
        pred = self.forward(self.tx, train=False)
        te = (pred - self.ty).pow(2).mean(dim=(1, 2))
        mc, ll = self._mc_evaluate(pred)
        C = len(self.cfgs)
        val: list[float | None] = [None] * C
        if self.vx is not None:
            val = (self.forward(self.vx, train=False) - self.vy).pow(2).mean(dim=(1, 2)).tolist()
        learned: list[Any] = [None] * C
        if self.learners:
            each = [p.learned() or [None] * C for p in self.learners]
            learned = [[v for vals in member if vals for v in vals] or None for member in zip(*each)]
        each_run = self._each_run
        return each_run(tr.tolist()), each_run(te.tolist()), mc, ll, each_run(learned), each_run(val)

    def _each_run(self, per_member: list[Any]) -> list[Any]:
        """A value per member as a value per run (twins share their member's)."""
        return [per_member[j] for j in self.reader_of]

    def _per_run(self, t: torch.Tensor) -> torch.Tensor:
        """A [C, ...] tensor's rows per run: the real members', or each twin its member's."""
        return t[: self.n_real] if self._reader_index is None else t[self._reader_index]

    def _mc_pieces(self) -> frozenset[Piece]:
        """The pieces of the MC-active regularizers (mc.mc_active), found by registry order
        within each slot, as __init__ built them."""
        by_slot: dict[str, list[str]] = {}
        for n in self.cfg0.reg.names:
            if regs.REGISTRY[n].slot in self.pieces:
                by_slot.setdefault(regs.REGISTRY[n].slot, []).append(n)
        return frozenset(p for slot, names in by_slot.items() for n, p in zip(names, self.pieces[slot])
                         if mc_active(regs.REGISTRY[n]))

    def _mc_evaluate(self, pred: torch.Tensor) -> tuple[list[float | None], list[float | None]]:
        """As reference.mc_evaluate, for every member at once: the same blocks of passes, the
        same masks (the fast stream's, keyed by pass, or each member's own generator continued
        on a copy of its state), so a member's numbers are those it gets alone. Members with
        fewer passes than others draw the others' too, on the copy, and leave them out. The statistics are each run's:
        twins read their member's passes with their own tau."""
        # statistics per run (twins differ in tau), passes per member
        runs = self.readers
        T = [c.eval.mc_samples for c in runs]
        tau = [c.eval.tau for c in runs]
        y_std = self._each_run(self.y_std)
        C, n = len(runs), pred.shape[1]
        pred = self._per_run(pred)
        if max(T) == 0 and all(t is None for t in tau):
            return [None] * C, [None] * C
        y = self._per_run(self.ty)[:, :, 0]
        on = self._mc_pieces() if max(T) > 0 and mc_regs(self.cfg0) else frozenset()
        if not on:  # deterministic: every pass is pred
            stats = MCStats(y, [1] * C, tau, y_std)
            stats.add(pred.view(C, 1, n), 0)
            return [m if t else None for m, t in zip(stats.mse(), T)], stats.ll()
        block = mc_block(self.cfg0, n, self.x.shape[2])
        stats = MCStats(y, T, tau, y_std)
        xb = self.tx.repeat(1, block, 1)  # pass-major rows, as the reference stacks them
        states = [g.get_state() for g in self.gens]
        windows = self._windows(block * n)

        def passes(start: int) -> torch.Tensor:
            if self.stream is not None:
                self.stream.start_mc(start, block)
                self._fast_now = self.mc_fast
            return self.forward(xb if self._win is None else xb[self._win], train=on)

        try:
            for start in range(0, max(T), block):
                if windows is None:
                    out = passes(start)
                else:
                    out = torch.empty((len(self.cfgs), block * n, 1), dtype=self.dtype, device=self.device)
                    for w in windows:
                        with self._window(w):
                            out[w.lo:w.hi] = passes(start)
                stats.add(self._per_run(out.view(-1, block, n)), start)
        finally:
            self._fast_now = self.masks == "fast"
            for g, st in zip(self.gens, states):
                g.set_state(st)
        ll = stats.ll()
        # A member at T = 0 beside MC members: its log-likelihood from pred alone, as alone.
        if any(t == 0 for t in T):
            det = MCStats(y, [1] * C, tau, y_std)
            det.add(pred.view(C, 1, n), 0)
            ll = [d if t == 0 else v for d, v, t in zip(det.ll(), ll, T)]
        return [m if t else None for m, t in zip(stats.mse(), T)], ll

    def train(self, cancel: threading.Event | None = None) -> list[RunResult]:
        """Train every member by engines/loop.py's rules; `cancel` set (Ctrl-C in the main
        thread) stops within one epoch. Padding members train along, unread."""
        t0 = time.perf_counter()
        xs, ys = self.x, self.y  # the epoch's rows: in order, or as shuffle() drew them

        def shuffle() -> None:
            nonlocal xs, ys
            xs, ys = self.shuffled()

        def step(rows: tuple[int, int] | None, objective: bool) -> list[float]:
            if rows is None:
                return self._per_run(self.step(objective)).tolist()
            a, b = rows
            return self._per_run(self.step(objective, xs[:, a:b], ys[:, a:b])).tolist()

        def scores() -> list[tuple]:
            return list(zip(*self.evaluate()))

        def fit() -> list[list[tuple[float, float]]]:
            assert self.grid is not None
            with torch.no_grad():
                pred = self.forward(self.grid, train=False)
            return [list(zip(self.grid[i, :, 0].tolist(), pred[i, :, 0].tolist())) for i in self.reader_of]

        return loop.train(self.readers, self.x.shape[1], self._each_run(self.y_std), step, scores, shuffle,
                          fit if self.grid is not None else None, cancel, t0)
