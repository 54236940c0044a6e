"""The batched engine's generic path: plug-ins written only in their torch form.

A regularizer that declares no batched piece (Regularizer.batched) runs here through its torch
form, member by member: each member's slice of the chunk's tensor, copied to a fresh tensor laid
out as the reference engine's (a weight as [out, in]), goes through the same torch code the
reference runs, with torch's global generator set to the member's own stream for the call; the
backward is autograd's through that call, for that member. Every member's computation is its own,
so its numbers do not depend on the chunk, and its draws are the reference's. Slower than a
hand-written piece (a Python loop over members, and the generator's state swapped in and out),
but correct; docs/benchmarks.md measures the cost.

A model plug-in (any model but those the program computes, models.PROGRAM) trains member by member
with the reference engine's own code, which is then the run's computation bit for bit.

What cannot run here is refused before training, in one line that offers engine=torch: a torch
form with parameters of its own to learn (concrete dropout's learned rate needs a hand-written
piece).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch

from dropbench import regs
from dropbench.engines import memberwise
from dropbench.engines.base import GLOBAL_RNG, failed_results
from dropbench.errors import UserError
from dropbench.regs.base import Piece, Regularizer

if TYPE_CHECKING:
    from dropbench.config import RunConfig
    from dropbench.engines.result import RunResult
    from dropbench.regs.base import ChunkView

TENSOR_SLOTS = ("input", "weight", "activation", "residual")  # forward/backward on a tensor
GENERIC_SLOTS = (*TENSOR_SLOTS, "loss", "after_step")


def hand_written(reg: Regularizer) -> bool:
    """Whether the regularizer brings its own batched piece."""
    return type(reg).batched is not Regularizer.batched


def unsupported(cfg: "RunConfig") -> str | None:
    """Why the batched engine cannot run this config through the generic path (None: it can)."""
    for reg, conf in regs.active(cfg.reg):
        if hand_written(reg) or reg.slot not in GENERIC_SLOTS:
            continue
        if cfg.device != "cpu" and reg.draws:
            # a torch form draws from the device's generator, which cannot be set to a run's own stream
            return (f"reg={reg.name} has no batched piece, and the generic path gives each run its own random stream on the "
                    "CPU only; run it with engine=torch, or device=cpu")
        learns = (type(reg).torch_penalty is not Regularizer.torch_penalty
                  or type(reg).torch_learned is not Regularizer.torch_learned)
        if not learns and reg.slot in TENSOR_SLOTS and reg.slot != "weight":
            learns = any(True for _ in reg.torch_layer(conf).parameters())
        if learns:
            return (f"reg={reg.name} learns parameters of its own, which the batched engine's generic path cannot train "
                    "(it needs a hand-written batched piece); run it with engine=torch")
    return None


def piece(reg: Regularizer, chunk: "ChunkView", confs: Sequence[Any]) -> Piece:
    """The generic piece of a torch-only regularizer, for the members' configs."""
    if reg.slot in TENSOR_SLOTS:
        return _TensorPiece(reg, chunk, confs)
    if reg.slot == "loss":
        return _PenaltyPiece(reg, chunk, confs)
    if reg.slot == "after_step":
        return _AfterStepPiece(reg, chunk, confs)
    raise UserError(f"reg={reg.name}: the {reg.slot} slot has no batched piece; run it with engine=torch")


@contextmanager
def member_stream(g: torch.Generator) -> Iterator[None]:
    """torch's global generator as the member's own stream `g`, for code that draws from it (the
    reference's layers do); g continues from where the code left it, the global one is restored.
    Callers hold GLOBAL_RNG (worker threads take turns on the global generator)."""
    default = torch.default_generator
    outside = default.get_state()
    default.set_state(g.get_state())
    try:
        yield
    finally:
        g.set_state(default.get_state())
        default.set_state(outside)


class _Generic(Piece):
    def __init__(self, reg: Regularizer, chunk: "ChunkView", confs: Sequence[Any]) -> None:
        self.reg, self.chunk, self.confs = reg, chunk, list(confs)

    def _members(self) -> Iterator[tuple[int, Any]]:
        """Each member's index and config, its stream in place of the global generator."""
        with GLOBAL_RNG:
            for i, (conf, g) in enumerate(zip(self.confs, self.chunk.gens)):
                with member_stream(g):
                    yield i, conf


class _TensorPiece(_Generic):
    """input, weight, activation and residual slots: the torch form on each member's tensor."""

    def __init__(self, reg: Regularizer, chunk: "ChunkView", confs: Sequence[Any]) -> None:
        super().__init__(reg, chunk, confs)
        self.weight = reg.slot == "weight"
        # The reference holds torch_layer's module (a weight-slot one calls torch_forward itself).
        self.layers = None if self.weight else [reg.torch_layer(c).to(dtype=chunk.dtype, device=chunk.device) for c in self.confs]

    def _call(self, i: int, conf: Any, x: torch.Tensor, train: bool) -> torch.Tensor:
        if self.layers is None:
            return self.reg.torch_forward(x, conf, train)
        return self.layers[i].train(train)(x)

    def _own(self, t: torch.Tensor) -> torch.Tensor:
        """A member's tensor as the reference holds it: a fresh contiguous tensor (a weight [out, in])."""
        return (t.t() if self.weight else t).detach().clone(memory_format=torch.contiguous_format)

    def _back(self, t: torch.Tensor) -> torch.Tensor:
        return t.t() if self.weight else t

    def forward(self, z: torch.Tensor, train: bool) -> tuple[torch.Tensor, Any]:
        xs, ys, outs = [], [], []
        with torch.set_grad_enabled(train):
            for i, conf in self._members():
                x = self._own(z[i])
                if train:
                    x.requires_grad_()
                y = self._call(i, conf, x, train)
                xs.append(x)
                ys.append(y)
                outs.append(self._back(y.detach()))
        out = memberwise.stacked(outs, z.dtype, z.device)
        return out, ((xs, ys) if train else None)

    def backward(self, grad: torch.Tensor, saved: Any) -> torch.Tensor:
        if saved is None:
            return grad
        xs, ys = saved
        out = []
        with torch.enable_grad():
            for i, (x, y) in enumerate(zip(xs, ys)):
                g = self._back(grad[i])
                if y is x or not y.requires_grad:  # the identity (strength 0): the gradient as it came
                    out.append(self._back(g) if y is x else torch.zeros_like(grad[i]))
                    continue
                (gx,) = torch.autograd.grad(y, x, g)
                out.append(self._back(gx))
        return memberwise.stacked(out, grad.dtype, grad.device)


def _member_params(params: Sequence[torch.Tensor], i: int) -> list[torch.Tensor]:
    """Member i's [W1, b1, ..., W_out, b_out] as the reference holds them: fresh contiguous
    tensors, each W [out, in], each b [out] (the program stores W as [C, in, out], b as [C, 1, out])."""
    return [(p[i].t() if k % 2 == 0 else p[i].reshape(-1)).clone(memory_format=torch.contiguous_format)
            for k, p in enumerate(params)]


def _to_program(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.t() if k % 2 == 0 else t.view(1, -1)


class _PenaltyPiece(_Generic):
    """loss slot: the torch penalty per member, its gradient by autograd."""

    def penalty(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        values = [self.reg.penalty(_member_params(params, i), conf) for i, conf in self._members()]
        return torch.stack([v.to(params[0].dtype) for v in values])

    def add_grad(self, grads: list[torch.Tensor], params: Sequence[torch.Tensor]) -> None:
        with torch.enable_grad():
            for i, conf in self._members():
                ps = [p.requires_grad_() for p in _member_params(params, i)]
                gs = torch.autograd.grad(self.reg.penalty(ps, conf), ps, allow_unused=True)
                for k, g in enumerate(gs):
                    if g is not None:
                        grads[k][i].add_(_to_program(g, k))


class _AfterStepPiece(_Generic):
    """after_step slot: the torch constraint on each member's parameters, copied back."""

    def after_step(self, params: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            for i, conf in self._members():
                ps = _member_params(params, i)
                self.reg.after_step(ps, conf)
                for k, t in enumerate(ps):
                    params[k][i].copy_(_to_program(t, k))


# ---- models ----------------------------------------------------------------------------------
TrainOne = Callable[["RunConfig"], "RunResult"]


def train_members(cfgs: Sequence["RunConfig"], train_one: TrainOne | None, cancel: threading.Event | None = None) -> list["RunResult"]:
    """A plug-in model's runs, member by member, each by `train_one` (the reference engine's: its
    numbers are that run's bit for bit). The global generator is the run's while it trains: other
    workers wait (GLOBAL_RNG)."""
    if train_one is None:
        raise UserError(f"model={cfgs[0].model.name} trains member by member with the reference engine, which this batched "
                        "engine was not given (use dropbench.engines.get_engine('batched')), or run it with engine=torch")
    out: list["RunResult"] = []
    for cfg in cfgs:
        if cancel is not None and cancel.is_set():
            break
        with GLOBAL_RNG:
            state = torch.default_generator.get_state()
            try:
                out.append(train_one(cfg))
            except Exception as e:  # noqa: BLE001  this run fails, the others go on
                out += failed_results([cfg], e)
            finally:
                torch.default_generator.set_state(state)
    return out
