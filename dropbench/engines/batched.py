"""The batched engine: many runs as one tensor program with a leading run dimension.

Why it is fast: a 1-300-300-1 network on 20 points is a few percent arithmetic and the rest
Python and dispatch. Stacking C runs into [C, ...] tensors (batched matmuls, per-run p, lambda,
weight decay and lr as [C, 1, 1] tensors, one foreach optimizer step) pays that overhead once
per chunk instead of once per run.

Why a run's numbers do not depend on its company:
- every chunk has the same size C (padded with copies), so every matmul has the same shape;
- each worker computes with one thread, so no kernel splits work differently;
- a run's dropout masks come from its own generator, started from the global RNG state the
  reference engine is in after building the model under torch.manual_seed(seed); the masks are
  therefore exactly the reference engine's, whatever the chunk, worker or sweep;
- nothing reduces across runs: the loss is a sum over runs, so each run's gradient is its own.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from dropbench.data import Dataset, load_dataset
from dropbench.engines.base import RunResult, diverged_reason, eval_epochs, resolve_device

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


def chunk_size(n_params: int, dtype_bytes: int) -> int:
    """Members per chunk: as many as keep the optimizer's working set in a core's share of cache.

    Depends only on the model's size (never on the sweep), so a run always lands in a chunk of
    the same size. Measured on a 2-core Xeon: 8-16 members of a 1-300-300-1 MLP per chunk beat
    both smaller chunks (dispatch-bound) and larger ones (out of cache).
    """
    per_member = 4 * n_params * dtype_bytes  # param, grad, exp_avg, exp_avg_sq
    budget = 24 * 2**20
    return max(2, min(64, budget // max(per_member, 1)))


@dataclass
class _Hyper:
    """Per-member hyperparameters as [C, 1, 1] tensors."""

    keep: torch.Tensor | None  # 1 - p
    l1: torch.Tensor | None
    wd: torch.Tensor | None  # coupled weight decay (0 where decoupled)
    decay: torch.Tensor | None  # decoupled factor 1 - lr*wd (1 where coupled)
    lr: torch.Tensor
    one_minus_beta1: torch.Tensor
    beta2: torch.Tensor
    one_minus_beta2: torch.Tensor
    eps: torch.Tensor
    momentum: torch.Tensor


def _col(values: Sequence[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).to(dtype=dtype, device=device).view(-1, 1, 1)


def _drop_p(cfg: "RunConfig") -> float:
    r = cfg.reg
    for name in ("dropout", "vanilla_dropout", "droppath", "dropconnect"):
        sub = getattr(r, name)
        if sub is not None:
            return sub.p
    return 0.0


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
        self.x1d = [d for d in datasets[: self.n_real]] if datasets[0].n_features == 1 else None

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
        self.params = [torch.stack([w[i] for w in weights]).to(device=dev, dtype=dt).contiguous().requires_grad_() for i in range(len(weights[0]))]
        self.n_linear = len(self.params) // 2

        # Derived factors are computed in double, then cast, as torch.optim computes its scalars.
        col = lambda f: _col([f(c) for c in self.cfgs], dt, dev)  # noqa: E731
        kinds = self.kinds
        o = lambda c, k: getattr(c.optim, k, 0.0)  # noqa: E731
        l2 = lambda c: c.reg.l2  # noqa: E731
        self.h = _Hyper(
            keep=col(lambda c: 1 - _drop_p(c)) if kinds & {"dropout", "vanilla_dropout", "droppath", "dropconnect"} else None,
            l1=col(lambda c: c.reg.l1.weight) if "l1" in kinds else None,
            wd=col(lambda c: 0.0 if l2(c).decoupled else l2(c).weight_decay) if "l2" in kinds else None,
            decay=col(lambda c: 1 - c.optim.lr * l2(c).weight_decay if l2(c).decoupled else 1.0) if "l2" in kinds else None,
            lr=col(lambda c: c.optim.lr),
            one_minus_beta1=col(lambda c: 1 - o(c, "beta1")),
            beta2=col(lambda c: o(c, "beta2")),
            one_minus_beta2=col(lambda c: 1 - o(c, "beta2")),
            eps=col(lambda c: o(c, "eps")),
            momentum=col(lambda c: o(c, "momentum")),
        )
        self.py_lr = [c.optim.lr for c in self.cfgs]
        self.py_beta1 = [o(c, "beta1") for c in self.cfgs]
        self.py_beta2 = [o(c, "beta2") for c in self.cfgs]
        self.state = [[torch.zeros_like(p) for p in self.params] for _ in range(2)]
        self.step_no = 0

    # ---- masks: one generator per member, drawn in the reference engine's order ----------
    def _bernoulli(self, shape: tuple[int, ...]) -> torch.Tensor:
        keep = self.h.keep.view(-1).tolist()  # type: ignore[union-attr]
        ms = [torch.empty(shape, dtype=self.dtype).bernoulli_(k, generator=g) for k, g in zip(keep, self.gens)]
        return torch.stack(ms).to(self.device)

    def _uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.stack([torch.rand(shape, dtype=self.dtype, generator=g) for g in self.gens]).to(self.device)

    # ---- the network ---------------------------------------------------------------------
    def _hidden(self, x: torch.Tensor, i: int, train: bool) -> torch.Tensor:
        W, b = self.params[2 * i], self.params[2 * i + 1]
        keep = self.h.keep
        if train and "dropconnect" in self.kinds:
            mask = self._bernoulli((W.shape[2], W.shape[1])).transpose(1, 2)  # drawn as [out, in]
            W = W * (mask / keep)
        z = torch.baddbmm(b, x, W)
        if self.placement == "before":
            z = self._drop(z, train)
            return self.act(z)
        return self._drop(self.act(z), train)

    def _drop(self, z: torch.Tensor, train: bool) -> torch.Tensor:
        if "dropout" in self.kinds and train:
            return z * (self._bernoulli(tuple(z.shape[1:])) / self.h.keep)
        if "vanilla_dropout" in self.kinds:
            return z * self._bernoulli(tuple(z.shape[1:])) if train else z * self.h.keep
        return z

    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        z = self._hidden(x, 0, train)
        for i in range(1, self.n_linear - 1):
            branch = self._hidden(z, i, train)
            if self.residual:
                if "droppath" in self.kinds and train:
                    keep = self.h.keep
                    rt = (keep + self._uniform((z.shape[1], 1))).floor_()
                    branch = branch.div(keep) * rt
                z = z + branch
            else:
                z = branch
        return torch.baddbmm(self.params[-1], z, self.params[-2])

    # ---- one training step ---------------------------------------------------------------
    def step(self) -> torch.Tensor:
        """One full-batch step for every member; returns each member's objective [C]."""
        for p in self.params:
            p.grad = None
        pred = self.forward(self.x, train=True)
        loss = (pred - self.y).pow(2).mean(dim=(1, 2))
        if self.h.l1 is not None:
            loss = loss + self.h.l1.view(-1) * sum(p.abs().sum(dim=(1, 2)) for p in self.params)
        loss.sum().backward()  # a sum, not a mean: each member's gradient is its own
        self._optimizer_step()
        return loss.detach()

    @torch.no_grad()
    def _optimizer_step(self) -> None:
        self.step_no += 1
        t = self.step_no
        params = self.params
        grads = [p.grad for p in params]
        h = self.h
        n = len(params)
        rep = lambda t: [t] * n  # noqa: E731  per-member [C,1,1] factors, broadcast over each tensor
        if h.wd is not None:  # coupled L2: the optimizer's weight_decay
            grads = torch._foreach_add(grads, torch._foreach_mul(params, rep(h.wd)))
        if h.decay is not None:  # AdamW-style: w <- w * (1 - lr*wd)
            torch._foreach_mul_(params, rep(h.decay))
        if self.cfg0.optim.name == "adam":
            m, v = self.state
            torch._foreach_lerp_(m, grads, rep(h.one_minus_beta1))
            torch._foreach_mul_(v, rep(h.beta2))
            torch._foreach_addcmul_(v, grads, torch._foreach_mul(grads, rep(h.one_minus_beta2)))
            step_size = _col([lr / (1 - b**t) for lr, b in zip(self.py_lr, self.py_beta1)], self.dtype, self.device)
            bc2_sqrt = _col([math.sqrt(1 - b**t) for b in self.py_beta2], self.dtype, self.device)
            denom = torch._foreach_add(torch._foreach_div(torch._foreach_sqrt(v), rep(bc2_sqrt)), rep(h.eps))
            torch._foreach_sub_(params, torch._foreach_mul(torch._foreach_div(m, denom), rep(step_size)))
        else:
            buf = self.state[0]
            if t == 1:
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

    def train(self) -> list[RunResult]:
        t0 = time.perf_counter()
        cfg = self.cfg0
        marks = set(eval_epochs(cfg.epochs, cfg.eval_every))
        results = [RunResult(c) for c in self.cfgs[: self.n_real]]
        alive = [True] * self.n_real
        for epoch in range(1, cfg.epochs + 1):
            loss = self.step()
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
        secs = (time.perf_counter() - t0) / self.n_real
        for r in results:
            r.seconds = secs
        return results


def _train_chunk(cfgs: Sequence["RunConfig"], size: int) -> list[RunResult]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same kernels in every worker: results independent of placement
    try:
        return Chunk(cfgs, size).train()
    finally:
        torch.set_num_threads(threads)


def _worker_init() -> None:
    torch.set_num_threads(1)


def plan_chunks(cfgs: Sequence["RunConfig"]) -> list[tuple[list["RunConfig"], int]]:
    """Group runs by program and cut each group into chunks of its fixed size."""
    groups: dict[tuple, list[RunConfig]] = {}
    for c in cfgs:
        groups.setdefault(group_key(c, load_dataset(c)), []).append(c)
    chunks = []
    for key, members in groups.items():
        m = members[0].model
        n_in = key[0][1]
        n_params = (n_in + 1) * m.hidden + (m.depth - 1) * (m.hidden + 1) * m.hidden + m.hidden + 1
        size = chunk_size(n_params, 8 if members[0].dtype == "float64" else 4)
        chunks += [(members[i : i + size], size) for i in range(0, len(members), size)]
    return chunks


class BatchedEngine:
    name = "batched"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else (os.cpu_count() or 1)

    def train(self, cfgs: Sequence["RunConfig"]) -> Iterator[RunResult]:
        chunks = plan_chunks(cfgs)
        on_gpu = any(c.device != "cpu" and resolve_device(c.device).type == "cuda" for c in cfgs)
        if self.workers <= 1 or len(chunks) <= 1 or on_gpu:
            for members, size in chunks:
                yield from _train_chunk(members, size)
            return
        yield from _parallel(chunks, self.workers)


def _parallel(chunks: list[tuple[list["RunConfig"], int]], workers: int) -> Iterator[RunResult]:
    """Spread chunks over worker processes; the main process trains chunks too meanwhile."""
    import concurrent.futures as cf
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fork is unsafe once torch's OpenMP pool exists
    todo = list(chunks)
    with cf.ProcessPoolExecutor(max_workers=workers - 1, mp_context=ctx, initializer=_worker_init) as pool:
        futures: set[cf.Future] = set()

        def refill() -> None:
            # Two chunks in flight per worker, taken from the back; the main process takes the front.
            while todo and len(futures) < 2 * (workers - 1):
                members, size = todo.pop()
                futures.add(pool.submit(_train_chunk, members, size))

        refill()
        while todo:
            members, size = todo.pop(0)
            yield from _train_chunk(members, size)
            done = {f for f in futures if f.done()}
            futures -= done
            for f in done:
                yield from f.result()
            refill()
        for f in cf.as_completed(futures):
            yield from f.result()
