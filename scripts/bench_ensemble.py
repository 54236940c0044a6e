"""Variant (d) of the UCI workload: what a skilled PyTorch user writes instead of dropbench.

All runs of one data set (splits x the grid of p and weight decay) train as ONE program: plain
[R, ...] parameter tensors, torch.baddbmm forward, autograd backward, one torch.optim.Adam over
the [R, ...] tensors. Per-run p and weight decay are [R, 1, 1] tensors; the weight decay is
torch.optim.Adam's coupled L2 (grad += wd * w), on the weights only, as (a)'s parameter groups.
Dropout on the inputs and after the ReLU, inverted scaling, masks `torch.rand(...) < keep` from
the one global generator; each run's own order of the rows per epoch (a torch.randperm per run,
gathered). The network, data, epochs and batches are (a)'s (bench_uci.uci_loop).

What it gives up for its speed: a run's masks and order depend on which runs share its program
(one global stream), so its numbers are not reproducible run by run, nor bit for bit torch's
nn.Dropout. dropbench's (c) keeps both; issue 19's goal 2 asks (c) to be ahead of it anyway.
"""

from __future__ import annotations

import math
import time
from typing import Any

HIDDEN = 50
LR = 1e-3


def programs(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One program per data set (and training shape): its runs' data stacked, [R, n, d] and
    [R, n, 1], with p and weight decay as [R, 1, 1] columns."""
    import torch

    from dropbench.data.uci import splits

    groups: dict[tuple, list[tuple[dict[str, Any], Any]]] = {}
    for j in jobs:
        data = splits.dataset(j["dataset"], j["split"])
        groups.setdefault((j["dataset"], tuple(data.x_train.shape)), []).append((j, data))
    col = lambda vs: torch.tensor(vs, dtype=torch.float32).view(-1, 1, 1)  # noqa: E731
    return [dict(x=torch.stack([d.x_train for _, d in g]), y=torch.stack([d.y_train for _, d in g]),
                 tx=torch.stack([d.x_test for _, d in g]), ty=torch.stack([d.y_test for _, d in g]),
                 keep=col([1 - j["p"] for j, _ in g]), wd=col([j["wd"] for j, _ in g]),
                 batch_size=g[0][0]["batch_size"], epochs=g[0][0]["epochs"])
            for g in groups.values()]


def init(R: int, fan_in: int, fan_out: int) -> tuple[Any, Any]:
    """R independent nn.Linear initialisations (weight and bias uniform in +-1/sqrt(fan_in)),
    the weight as [R, in, out] for baddbmm."""
    import torch

    bound = 1 / math.sqrt(fan_in)
    w = (torch.rand(R, fan_in, fan_out) * 2 - 1) * bound
    b = (torch.rand(R, 1, fan_out) * 2 - 1) * bound
    return w.requires_grad_(), b.requires_grad_()


def dropout(h: Any, keep: Any) -> Any:
    """Inverted dropout with a per-run keep probability [R, 1, 1], from the global generator."""
    import torch

    return h * (torch.rand(h.shape) < keep) / keep


def train(prog: dict[str, Any], epochs: int | None = None) -> int:
    """Train one program; returns its run-steps (R per optimizer step)."""
    import torch

    x, y, keep, wd, B = prog["x"], prog["y"], prog["keep"], prog["wd"], prog["batch_size"]
    R, n, d = x.shape
    W1, b1 = init(R, d, HIDDEN)
    W2, b2 = init(R, HIDDEN, 1)
    opt = torch.optim.Adam([W1, b1, W2, b2], lr=LR)
    steps = 0
    for _ in range(prog["epochs"] if epochs is None else epochs):
        perm = torch.stack([torch.randperm(n) for _ in range(R)]).unsqueeze(2)
        xe, ye = torch.gather(x, 1, perm.expand(-1, -1, d)), torch.gather(y, 1, perm)
        for a in range(0, n, B):
            xb, yb = xe[:, a : a + B], ye[:, a : a + B]
            h = torch.relu(torch.baddbmm(b1, dropout(xb, keep), W1))
            pred = torch.baddbmm(b2, dropout(h, keep), W2)
            loss = (pred - yb).pow(2).mean(dim=(1, 2)).sum()  # each run's gradient is its own mean's
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():  # Adam's coupled L2, weights only
                W1.grad.addcmul_(wd, W1)
                W2.grad.addcmul_(wd, W2)
            opt.step()
            steps += R
    with torch.no_grad():  # the test MSE once at the end, as (a)
        pred = torch.baddbmm(b2, torch.relu(torch.baddbmm(b1, prog["tx"], W1)), W2)
        (pred - prog["ty"]).pow(2).mean(dim=(1, 2)).tolist()
    return steps


def variant_ensemble(jobs: list[dict[str, Any]], threads: int) -> dict[str, float]:
    """(d) at `threads` intra-op threads: data stacked and torch warmed up before the clock
    starts, then every data set's program, one after another."""
    import torch

    torch.set_num_threads(threads)
    progs = programs(jobs)
    train(progs[0], epochs=1)  # first-call costs (lazy init, allocator) stay out of the timing
    t0 = time.perf_counter()
    steps = sum(train(p) for p in progs)
    return {"train_seconds": time.perf_counter() - t0, "network_steps": steps}
