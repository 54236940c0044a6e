"""The batched engine: many runs as one tensor program with a leading run dimension.

Why it is fast: a 1-300-300-1 network on 20 points is a few percent arithmetic and the rest
Python and dispatch. Stacking C runs into [C, ...] tensors (batched matmuls, per-run p, lambda,
weight decay and lr as [C, 1, 1] tensors, a hand-written backward, one fused optimizer step)
pays that overhead once per chunk instead of once per run.

Why a run's numbers do not depend on its company:
- every chunk has at least two members: a batch of one takes other matmul kernels (thin layers
  such as (20,300)@(300,1) then give different last bits), while batches of 2..37 members, at
  any position, gave bit-identical results on every CPU tried (an AVX-512 Xeon, AMD EPYCs;
  tests/test_batched.py checks it on the machine it runs on); a lone run is therefore padded
  with a copy of itself;
- each worker computes with one thread, so no kernel splits work differently;
- a run's dropout masks come from its own generator, started from the global RNG state the
  reference engine is in after building the model under torch.manual_seed(seed); the masks are
  therefore exactly the reference engine's, whatever the chunk, worker or sweep;
- nothing reduces across runs: the backward is that of the sum of the runs' losses, so each
  run's gradient is its own.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from dropbench.config import DROP_FAMILY
from dropbench.data import Dataset, load_dataset
from dropbench.engines.base import (
    RunResult, diverged_reason, eval_epochs, failed_results, fit_grid, one_intraop_thread, resolve_device, settle,
)

if TYPE_CHECKING:
    from dropbench.config import RunConfig

ACT = {"relu": torch.relu, "tanh": torch.tanh, "gelu": F.gelu}


def group_key(cfg: "RunConfig", data: Dataset) -> tuple:
    """Runs with equal keys share one program: same shapes, same ops, same schedule."""
    m = cfg.model
    return (
        tuple(data.x_train.shape), tuple(data.x_test.shape),
        m.hidden, m.depth, m.activation, m.placement, m.residual,
        tuple(cfg.reg.names), cfg.optim.name, cfg.dtype, cfg.device, cfg.epochs, cfg.eval_every,
    )


L2_MULTIPLE = 12  # chunk working set per core's L2: the best measured here (2 MB L2, 24 MB)
DEFAULT_L2 = 2 * 2**20


def l2_cache_bytes(root: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """A core's L2 cache size from Linux sysfs; None where the machine does not say."""
    from pathlib import Path

    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    for index in sorted(Path(root).glob("index*")):
        try:
            if (index / "level").read_text().strip() != "2" or (index / "type").read_text().strip() == "Instruction":
                continue
            size = (index / "size").read_text().strip().upper()
            return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        except (OSError, ValueError, IndexError):
            continue
    return None


@dataclass(frozen=True)
class MachineFacts:
    """What the chunk planner reads about the machine, so that tests can simulate any machine.
    The plan changes only the speed, never a run's numbers (invariance)."""

    workers: int = 1  # worker threads, one chunk each at a time
    l2_bytes: int | None = None  # one core's L2 cache; None: unknown, DEFAULT_L2 is assumed

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")

    @classmethod
    def detect(cls, workers: int | None = None) -> "MachineFacts":
        """This machine: `workers` (default one per core) and its L2 size from sysfs."""
        return cls(workers if workers is not None else (os.cpu_count() or 1), l2_cache_bytes())


def max_chunk(n_params: int, dtype_bytes: int, l2: int | None) -> int:
    """Most members per chunk, from the optimizer's working set and a core's L2 cache (None:
    unknown, DEFAULT_L2 is assumed).

    Measured on a 2-core Xeon with 2 MB L2 per core (1-300-300-1 MLP, 1.5 MB of Adam state per
    member), two chunks training at once: reg=none 0.155, 0.145, 0.117, 0.114, 0.122, 0.127 ms
    per network-step for chunks of 5, 8, 10, 16, 20, 25; dropout 0.25, 0.20, 0.20, 0.20, 0.19,
    0.20. So a chunk's state may span about 12 L2 caches (17 members here). The size changes no
    run's numbers (invariance), only the speed.
    """
    per_member = 4 * n_params * dtype_bytes  # param, grad, exp_avg, exp_avg_sq
    budget = L2_MULTIPLE * (l2 or DEFAULT_L2)
    return max(2, min(32, budget // max(per_member, 1)))


def split_group(n: int, most: int) -> list[int]:
    """Chunk sizes for a group of n runs: as few chunks as `most` allows, near-equal."""
    k = -(-n // most)
    base, extra = divmod(n, k)
    return [base + (i < extra) for i in range(k)]


CHUNK_OVERHEAD = 0.9  # per chunk step, in members' work: 0.31 ms/member alone in a pair, 0.22 in 16


def makespan(costs: Sequence[float], workers: int) -> float:
    """When the last worker finishes, with chunks taken largest first from one queue."""
    loads = [0.0] * workers
    for c in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += c
    return max(loads)


MASK_COST = 3.0  # drawing one mask element costs as much as 3 parameters' share of a step
L1_COST = 0.25  # L1's sign and add, per parameter


def step_work(cfg: "RunConfig", n_train: int, n_in: int) -> tuple[int, float]:
    """A run's parameter count, and its training step's cost in parameters' worth of work.

    Measured alone on one core, chunks of 10 (hidden 300, 20 points): 2.4 ns per parameter
    (reg=none, 0.22 ms), 7-8 ns per mask element drawn (dropout +0.08 ms, dropconnect +0.72 ms),
    L1 +0.06 ms. The chunk planner needs the costs only relative to each other.
    """
    m, kinds = cfg.model, set(cfg.reg.names)
    first, middle = n_in * m.hidden, (m.depth - 1) * m.hidden * m.hidden
    n_params = first + middle + m.depth * m.hidden + m.hidden + 1
    masks = 0
    if kinds & {"dropout", "vanilla_dropout"}:
        masks += n_train * m.hidden * m.depth
    if "dropconnect" in kinds:
        masks += first + middle
    if "droppath" in kinds:
        masks += n_train * (m.depth - 1)
    return n_params, n_params * (1 + L1_COST * ("l1" in kinds)) + MASK_COST * masks


Piece = tuple[list["RunConfig"], float]  # a chunk's runs, and the cost of one run's training


def chunk_cost(piece: Piece) -> float:
    """A chunk step costs (size + CHUNK_OVERHEAD) runs' work: small chunks are dearer per run."""
    return piece[1] * (max(len(piece[0]), 2) + CHUNK_OVERHEAD)


def balance(chunks: list[Piece], workers: int) -> list[Piece]:
    """Halve the costliest chunk while that ends the sweep sooner: five groups of 10 on two
    workers train as 10+10+5 on each (27.7 units) rather than 10+10+10 against 10+10 (32.7)."""
    current = makespan([chunk_cost(c) for c in chunks], workers)
    while workers > 1 and chunks:
        big = max(chunks, key=chunk_cost)
        if len(big[0]) < 4:  # halves of at least 2: a chunk of one is padded to two
            break
        half = len(big[0]) - len(big[0]) // 2
        trial = [c for c in chunks if c is not big] + [(big[0][:half], big[1]), (big[0][half:], big[1])]
        shorter = makespan([chunk_cost(c) for c in trial], workers)
        if shorter >= current:
            break
        chunks, current = trial, shorter
    return chunks


@dataclass
class _Hyper:
    """Per-member hyperparameters as [C, 1, 1] tensors."""

    keep: dict[str, torch.Tensor]  # 1 - p, per dropout-family regularizer: each has its own p
    l1: torch.Tensor | None
    wd: torch.Tensor | None  # coupled weight decay (0 where decoupled)
    decay: torch.Tensor | None  # decoupled factor 1 - lr*wd (1 where coupled)
    lr: torch.Tensor
    momentum: torch.Tensor


def _col(values: Sequence[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).to(dtype=dtype, device=device).view(-1, 1, 1)




@dataclass
class _Saved:
    """What one Linear layer's backward needs: its input, its (masked) weight and, for hidden
    layers, the activation's input and output and the dropout/DropPath factors applied."""

    x: torch.Tensor
    W: torch.Tensor
    wf: torch.Tensor | None = None  # DropConnect factor on W
    pre: torch.Tensor | None = None  # the activation's input
    act_out: torch.Tensor | None = None
    drop: torch.Tensor | None = None  # dropout factor (mask / keep, or the mask for vanilla)
    path: torch.Tensor | None = None  # DropPath's per-sample keep (0 or 1) on the branch


class Chunk:
    """C runs of one group, trained together. Members past `n_real` are padding."""

    def __init__(self, cfgs: Sequence["RunConfig"], size: int) -> None:
        from dropbench.engines.torch_engine import build_model

        self.n_real = len(cfgs)
        self.cfgs = list(cfgs) + [cfgs[0]] * (size - len(cfgs))
        c0 = self.cfgs[0]
        self.cfg0 = c0
        self.device = resolve_device(c0.device)
        self.dtype = getattr(torch, c0.dtype)
        dev, dt = self.device, self.dtype
        reg = c0.reg
        self.kinds = set(reg.names)
        self.act = ACT[c0.model.activation]
        self.placement = c0.model.placement
        self.residual = c0.model.residual

        datasets = [load_dataset(c) for c in self.cfgs]
        stack = lambda ts: torch.stack(ts).to(device=dev, dtype=dt)  # noqa: E731
        self.x, self.y = stack([d.x_train for d in datasets]), stack([d.y_train for d in datasets])
        self.tx, self.ty = stack([d.x_test for d in datasets]), stack([d.y_test for d in datasets])
        # From the data in the run's dtype, on its device, as the reference engine draws it.
        self.grid = torch.stack([fit_grid(x) for x in self.x]) if datasets[0].n_features == 1 else None

        # Initial weights and mask generators: exactly the reference engine's, per member.
        weights: list[list[torch.Tensor]] = []
        self.gens: list[torch.Generator] = []
        for c in self.cfgs:
            model = build_model(c, datasets[0].n_features)
            g = torch.Generator()
            g.set_state(torch.default_generator.get_state())
            self.gens.append(g)
            lins = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
            weights.append([t for lin in lins for t in (lin.weight.detach().t(), lin.bias.detach().unsqueeze(0))])
        self.params = [torch.stack([w[i] for w in weights]).to(device=dev, dtype=dt).contiguous() for i in range(len(weights[0]))]
        self.grads = [torch.zeros_like(p) for p in self.params]  # written in place every step
        self.n_linear = len(self.params) // 2
        n_out = self.y.shape[1] * self.y.shape[2]
        self._inv_n = torch.ones((), dtype=dt, device=dev) / n_out  # mean's backward divides 1 by n

        # Derived factors are computed in double, then cast, as torch.optim computes its scalars.
        col = lambda f: _col([f(c) for c in self.cfgs], dt, dev)  # noqa: E731
        kinds = self.kinds
        l2 = lambda c: c.reg.l2  # noqa: E731
        # keep in double for drawing masks, as the reference passes 1 - p (a Python float) to
        # bernoulli_; the factors are the same numbers cast, as _col casts.
        self.keep64 = {k: torch.tensor([1 - getattr(c.reg, k).p for c in self.cfgs], dtype=torch.float64).view(-1, 1, 1)
                       for k in DROP_FAMILY if k in kinds}
        self.h = _Hyper(
            keep={k: v.to(dtype=dt, device=dev) for k, v in self.keep64.items()},
            l1=col(lambda c: c.reg.l1.weight) if "l1" in kinds else None,
            wd=col(lambda c: 0.0 if l2(c).decoupled else l2(c).weight_decay) if "l2" in kinds else None,
            decay=col(lambda c: 1 - c.optim.lr * l2(c).weight_decay if l2(c).decoupled else 1.0) if "l2" in kinds else None,
            lr=col(lambda c: c.optim.lr),
            momentum=col(lambda c: getattr(c.optim, "momentum", 0.0)),
        )
        self.state = [[torch.zeros_like(p) for p in self.params] for _ in range(2 if c0.optim.name == "adam" else 1)]
        self.step_no = 0
        self.adam_groups = self._adam_groups() if c0.optim.name == "adam" else []

    def _adam_groups(self) -> list[tuple[dict[str, Any], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], torch.Tensor]]:
        """Members sharing Adam's scalars, with per-member views for torch's fused Adam kernel.

        The fused kernel reads and writes each of param, grad, exp_avg and exp_avg_sq once; the
        same work as separate foreach ops takes ten passes over state that does not fit in cache.
        """
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(self.cfgs):
            l2 = c.reg.l2
            key = (c.optim.lr, c.optim.beta1, c.optim.beta2, c.optim.eps,
                   l2.weight_decay if l2 else 0.0, bool(l2 and l2.decoupled))
            groups.setdefault(key, []).append(i)
        out = []
        m, v = self.state
        for (lr, b1, b2, eps, wd, decoupled), idx in groups.items():
            kw = dict(lr=lr, beta1=b1, beta2=b2, weight_decay=wd, eps=eps, decoupled=decoupled)
            views = lambda ts: [t[i] for t in ts for i in idx]  # noqa: E731
            step = torch.zeros((), dtype=torch.float32, device=self.device)  # one counter for every tensor
            out.append((kw, views(self.params), views(self.grads), views(m), views(v), step))
        return out

    # ---- masks: one generator per member, drawn in the reference engine's order ----------
    def _draws(self, kind: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """Each member's torch.rand(shape) from its own generator, or zeros without drawing where
        its p is 0: the reference's layers return their input then and draw nothing, and a draw
        here would shift every later mask of the run."""
        keep = self.keep64[kind].view(-1).tolist()
        return torch.stack([torch.rand(shape, dtype=dtype, generator=g) if k < 1 else torch.zeros(shape, dtype=dtype)
                            for g, k in zip(self.gens, keep)])

    def _bernoulli(self, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
        """Each member's `torch.empty(shape).bernoulli_(keep, generator=g)` for the `kind`
        regularizer's keep, bit for bit (all ones where p is 0, as the reference leaves x alone).

        CPU bernoulli_ draws, element by element, one double uniform u (the 53-bit draw torch.rand
        makes in float64) and keeps the element when u < keep. torch.rand in float64 makes the same
        draws in the same order 2.6x faster, leaving the generator in the same state; one
        comparison then serves every member (tests/test_batched.py pins the equality).
        """
        u = self._draws(kind, shape, torch.float64)
        return (u < self.keep64[kind]).to(device=self.device, dtype=self.dtype)

    def _uniform(self, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
        return self._draws(kind, shape, self.dtype).to(self.device)

    # ---- the network ---------------------------------------------------------------------
    def _hidden(self, x: torch.Tensor, i: int, train: bool, tape: list[_Saved] | None) -> torch.Tensor:
        W, b = self.params[2 * i], self.params[2 * i + 1]
        wf = None
        if train and "dropconnect" in self.kinds:  # drawn as [out, in]
            wf = self._bernoulli("dropconnect", (W.shape[2], W.shape[1])).transpose(1, 2) / self.h.keep["dropconnect"]
            W = W * wf
        z = torch.baddbmm(b, x, W)
        if self.placement == "before":
            pre, f = self._drop(z, train)
            out = self.act(pre)
            act_out = out
        else:
            pre = z
            act_out = self.act(z)
            out, f = self._drop(act_out, train)
        if tape is not None:
            tape.append(_Saved(x, W, wf, pre, act_out, f))
        return out

    def _drop(self, z: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z with dropout applied, and the factor it was multiplied by (None: untouched)."""
        if "dropout" in self.kinds and train:
            f = self._bernoulli("dropout", tuple(z.shape[1:])) / self.h.keep["dropout"]
        elif "vanilla_dropout" in self.kinds:
            f = self._bernoulli("vanilla_dropout", tuple(z.shape[1:])) if train else self.h.keep["vanilla_dropout"]
        else:
            return z, None
        return z * f, f

    def forward(self, x: torch.Tensor, train: bool, tape: list[_Saved] | None = None) -> torch.Tensor:
        """The members' predictions; with `tape`, saves what `_backward` needs, layer by layer."""
        z = self._hidden(x, 0, train, tape)
        for i in range(1, self.n_linear - 1):
            branch = self._hidden(z, i, train, tape)
            if self.residual:
                if "droppath" in self.kinds and train:
                    keep = self.h.keep["droppath"]
                    rt = (keep + self._uniform("droppath", (z.shape[1], 1))).floor_()
                    branch = branch.div(keep) * rt
                    if tape is not None:
                        tape[-1].path = rt
                z = z + branch
            else:
                z = branch
        if tape is not None:
            tape.append(_Saved(z, self.params[-2]))
        return torch.baddbmm(self.params[-1], z, self.params[-2])

    def _backward(self, tape: list[_Saved], grad: torch.Tensor) -> None:
        """Every parameter's gradient from the gradient of the predictions, into `self.grads`.

        The same kernels, in the same order, as autograd's backward of `forward` (bit for bit:
        tests/test_batched.py compares them for every regularizer, placement and activation),
        but writing weight gradients into buffers kept across steps. Autograd allocates a fresh
        [C, in, out] tensor per weight per step (measured, chunk of 8, 2 threads: 0.147 against
        0.118 ms per network-step; 0.130 when glibc keeps freed memory, so most of it is allocation).
        """
        G = self.grads
        last = len(tape) - 1
        for i in range(last, -1, -1):
            s = tape[i]
            if i < last:  # a hidden layer
                skip = grad
                if s.path is not None:  # DropPath: branch.div(keep) * rt
                    grad = grad * s.path / self.h.keep["droppath"]
                if self.placement == "before":  # act(z * f)
                    grad = self._act_backward(grad, s)
                    grad = grad if s.drop is None else grad * s.drop
                else:  # act(z) * f
                    grad = self._act_backward(grad if s.drop is None else grad * s.drop, s)
            torch.sum(grad, 1, keepdim=True, out=G[2 * i + 1])
            if s.wf is None:
                torch.bmm(s.x.transpose(1, 2), grad, out=G[2 * i])
            else:  # DropConnect: W * f
                torch.mul(torch.bmm(s.x.transpose(1, 2), grad), s.wf, out=G[2 * i])
            if i == 0:
                break  # the data needs no gradient
            g_in = torch.bmm(grad, s.W.transpose(1, 2))
            grad = skip + g_in if self.residual and 0 < i < last else g_in

    def _act_backward(self, grad: torch.Tensor, s: _Saved) -> torch.Tensor:
        if self.act is torch.relu:
            return torch.ops.aten.threshold_backward(grad, s.act_out, 0)
        if self.act is torch.tanh:
            return torch.ops.aten.tanh_backward(grad, s.act_out)
        return torch.ops.aten.gelu_backward(grad, s.pre)

    # ---- one training step ---------------------------------------------------------------
    @torch.no_grad()
    def step(self, objective: bool) -> torch.Tensor:
        """One full-batch step for every member.

        Returns each member's training MSE [C], or with `objective` the full training objective
        (MSE + L1 penalty, measured before the update, as the reference engine reports it).
        """
        tape: list[_Saved] = []
        d = self.forward(self.x, train=True, tape=tape) - self.y
        loss = d.pow(2).mean(dim=(1, 2))
        # d(sum of the members' means)/d pred, as autograd forms it: (1/n) * (2 d)
        self._backward(tape, self._inv_n * (2.0 * d))  # a sum over members: each gradient is its own
        if self.h.l1 is not None:
            if objective:
                loss = loss + self.h.l1.view(-1) * sum(p.abs().sum(dim=(1, 2)) for p in self.params)
            # The gradient of l1*sum|w| is l1*sign(w), the value autograd's abs backward gives;
            # adding it directly saves three passes over every parameter.
            torch._foreach_addcmul_(self.grads, torch._foreach_sign(self.params), [self.h.l1] * len(self.grads))
        self._optimizer_step()
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
        params, h, grads = self.params, self.h, self.grads
        rep = lambda t: [t] * len(params)  # noqa: E731
        if h.wd is not None:  # coupled L2: grad + wd*w
            grads = torch._foreach_add(grads, torch._foreach_mul(params, rep(h.wd)))
        if h.decay is not None:  # decoupled L2: w <- w * (1 - lr*wd)
            torch._foreach_mul_(params, rep(h.decay))
        buf = self.state[0]
        if self.step_no == 1:
            torch._foreach_copy_(buf, grads)
        else:
            torch._foreach_mul_(buf, rep(h.momentum))
            torch._foreach_add_(buf, grads)
        torch._foreach_sub_(params, torch._foreach_mul(buf, rep(h.lr)))

    @torch.no_grad()
    def evaluate(self) -> tuple[list[float], list[float]]:
        tr = (self.forward(self.x, train=False) - self.y).pow(2).mean(dim=(1, 2))
        te = (self.forward(self.tx, train=False) - self.ty).pow(2).mean(dim=(1, 2))
        return tr.tolist(), te.tolist()

    def train(self, cancel: threading.Event | None = None) -> list[RunResult]:
        """Train every member; `cancel` set (Ctrl-C in the main thread) stops within one epoch."""
        t0 = time.perf_counter()
        cfg = self.cfg0
        marks = set(eval_epochs(cfg.epochs, cfg.eval_every))
        results = [RunResult(c) for c in self.cfgs[: self.n_real]]
        alive = [True] * self.n_real
        for epoch in range(1, cfg.epochs + 1):
            if cancel is not None and cancel.is_set():
                raise Cancelled
            loss = self.step(objective=epoch in marks)
            finite = bool(torch.isfinite(loss[: self.n_real]).all())
            if not finite:
                for i, v in enumerate(loss[: self.n_real].tolist()):
                    if alive[i] and not math.isfinite(v):
                        alive[i] = False
                        results[i].status, results[i].reason = "failed", diverged_reason(epoch, v)
                if not any(alive):
                    break
            if epoch in marks:
                tr, te = self.evaluate()
                losses = loss.tolist()
                for i, r in enumerate(results):
                    if alive[i]:
                        r.curve.append((epoch, tr[i], te[i], losses[i]))
        if self.grid is not None:
            with torch.no_grad():
                pred = self.forward(self.grid, train=False)
            for i, r in enumerate(results):
                r.fit = list(zip(self.grid[i, :, 0].tolist(), pred[i, :, 0].tolist()))
        secs = (time.perf_counter() - t0) / self.n_real
        for r in results:
            r.seconds = secs
        return [settle(r) for r in results]


# Building initial weights goes through the global RNG (torch.manual_seed, as the reference engine
# does); worker threads take turns there.
_GLOBAL_RNG = threading.Lock()


class Cancelled(BaseException):
    """A worker thread stops training: not an error of its runs (they are not stored)."""


def _train_chunk(cfgs: Sequence["RunConfig"], size: int, cancel: threading.Event | None = None) -> list[RunResult]:
    """Train one chunk. If it raises (e.g. out of memory, or one run's data), each run is tried
    again on its own, so only the runs that raise alone fail: the others' numbers are the same
    in any chunk (invariance), so the retry changes nothing but the time taken."""
    try:
        with _GLOBAL_RNG:
            chunk = Chunk(cfgs, size)
        return chunk.train(cancel)
    except Exception as e:  # noqa: BLE001  these runs fail, the sweep goes on
        if len(cfgs) == 1:
            return failed_results(cfgs, e)
    return [r for c in cfgs for r in _train_chunk([c], 2, cancel)]


def plan_chunks(cfgs: Sequence["RunConfig"], machine: MachineFacts) -> list[tuple[list["RunConfig"], int]]:
    """Group runs by program and cut each group into chunks of at most max_chunk members for
    `machine`'s L2, balanced over its workers; each chunk is (members, size), size >= 2 (a lone
    run is padded with a copy of itself), largest cost first."""
    groups: dict[tuple, list[RunConfig]] = {}
    for c in cfgs:
        groups.setdefault(group_key(c, load_dataset(c)), []).append(c)
    chunks: list[Piece] = []
    for key, members in groups.items():
        c = members[0]
        n_params, work = step_work(c, *key[0])
        start = 0
        for size in split_group(len(members), max_chunk(n_params, 8 if c.dtype == "float64" else 4, machine.l2_bytes)):
            chunks.append((members[start : start + size], work * c.epochs))
            start += size
    # Largest first, so the last chunks to finish are short ones.
    return [(ms, max(len(ms), 2)) for ms, _ in sorted(balance(chunks, machine.workers), key=lambda ch: -chunk_cost(ch))]


class BatchedEngine:
    """Trains chunks on `workers` threads (default: one per core), planned for `machine`
    (default: this one, detected).

    Threads, not processes: torch releases the GIL inside its kernels, and threads start at
    once where a spawned process spends ~2 s importing torch (measured: 50-run sweep, 2 cores,
    8.5 s with two threads, 9.6 s with a spawned worker beside the main process, 13.8 s alone).
    """

    name = "batched"

    def __init__(self, workers: int | None = None, machine: MachineFacts | None = None) -> None:
        self.machine = machine if machine is not None else MachineFacts.detect(workers)
        self.workers = self.machine.workers

    def train(self, cfgs: Sequence["RunConfig"]) -> Iterator[RunResult]:
        chunks = plan_chunks(cfgs, self.machine)
        on_gpu = any(resolve_device(c.device).type == "cuda" for c in cfgs)
        with one_intraop_thread():
            if self.workers <= 1 or len(chunks) <= 1 or on_gpu:
                for members, size in chunks:
                    yield from _train_chunk(members, size)
            else:
                yield from _threaded(chunks, self.workers)


def _threaded(chunks: list[tuple[list["RunConfig"], int]], workers: int) -> Iterator[RunResult]:
    """Worker threads take chunks from one queue; this thread hands back results as they come."""
    import queue
    from collections import deque

    todo = deque(chunks)
    cancel = threading.Event()
    lock = threading.Lock()
    done: queue.Queue[tuple[str, Any]] = queue.Queue()

    def work() -> None:
        torch.set_num_threads(1)
        while True:
            with lock:
                if not todo:
                    break
                chunk = todo.popleft()
            try:
                done.put(("results", _train_chunk(*chunk, cancel)))
            except BaseException as e:  # handed to the main thread, which re-raises it
                done.put(("error", e))
                return
        done.put(("finished", None))

    threads = [threading.Thread(target=work, daemon=True, name=f"dropbench-worker-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    finished = 0
    try:
        while finished < workers:
            kind, value = done.get()
            if kind == "results":
                yield from value
            elif kind == "error":
                raise value
            else:
                finished += 1
    finally:
        # On error or Ctrl-C: workers stop within an epoch and are joined here. A worker left
        # running inside torch while the interpreter shuts down aborts the process
        # ("terminate called without an active exception") instead of exiting cleanly.
        with lock:
            todo.clear()
        cancel.set()
        for t in threads:
            t.join()
