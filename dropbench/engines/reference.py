"""The reference engine: one run at a time, plain torch.nn modules, the seed's training loop."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch
from torch import nn

from dropbench import masks, regs
from dropbench.data import load_dataset
from dropbench.engines import loop
from dropbench.engines.base import failed_results, one_intraop_thread, resolve_device
from dropbench.engines.loop import fit_grid, shuffle_generator
from dropbench.engines.mc import MC_SLOTS, MCStats, mc_active, mc_block, mc_regs
from dropbench.engines.result import RunResult
from dropbench.models import build_model
from dropbench.optim import decayed, make_optimizer, weight_decay

if TYPE_CHECKING:
    from dropbench.config import RunConfig


def train_one(cfg: "RunConfig") -> RunResult:
    """One run, on one intra-op thread whatever the core count (see one_intraop_thread), with
    its fast mask stream (dropbench/masks.py) for the regularizers' torch forms."""
    stream = masks.CounterStream([cfg.seed])
    with one_intraop_thread(), masks.using(stream, train=cfg.masks == "fast", mc=cfg.eval.mc_masks == "fast"):
        return _train_one(cfg, stream)


def _train_one(cfg: "RunConfig", stream: masks.CounterStream) -> RunResult:
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    data = load_dataset(cfg).to(dtype, device)
    model = build_model(cfg, data.n_features).to(device=device, dtype=dtype)
    opt = make_optimizer(model, cfg)
    wd, decoupled = weight_decay(cfg)
    sgd_decoupled_wd = cfg.optim.name == "sgd" and decoupled
    to_decay = decayed(model, cfg)
    penalties = regs.active(cfg.reg, "loss")
    constraints = regs.active(cfg.reg, "after_step")
    # [W1, b1, ..., W_out, b_out], as the batched program's params: a module with parameters of
    # its own (a learned dropout rate) must not shift what a constraint reads.
    linear_params = [t for m in model.modules() if isinstance(m, nn.Linear) for t in (m.weight, m.bias)]
    learners = learning(cfg)  # regularizers whose own modules add to the objective (concrete dropout)
    mse = nn.MSELoss()
    n = data.x_train.shape[0]
    x, y = data.x_train, data.y_train  # the epoch's rows: in order, or as shuffle() drew them
    gen = shuffle_generator(cfg.seed)

    def shuffle() -> None:
        nonlocal x, y
        perm = torch.randperm(n, generator=gen).to(data.x_train.device)
        x, y = data.x_train[perm], data.y_train[perm]

    def step(rows: tuple[int, int] | None, objective: bool) -> list[float]:
        """One optimizer update on the epoch's rows a:b (None: all); the objective measured
        before it (always the full one here: backward needs it anyway)."""
        xb, yb = (x, y) if rows is None else (x[rows[0]:rows[1]], y[rows[0]:rows[1]])
        stream.start_step()
        loss = mse(model(xb), yb)
        for r, c in penalties:  # the network's parameters, as the batched program's (no learned rates)
            loss = loss + r.penalty(linear_params, c)
        for r, c in learners:
            term = r.torch_penalty(model, c, n)
            if term is not None:
                loss = loss + term
        opt.zero_grad()
        loss.backward()
        if sgd_decoupled_wd:
            with torch.no_grad():
                for p in to_decay:
                    p.mul_(1.0 - cfg.optim.lr * wd)
        opt.step()
        if constraints:
            with torch.no_grad():
                for r, c in constraints:
                    r.after_step(linear_params, c)
        return [loss.item()]

    def scores() -> list[tuple]:
        out = evaluate(model, data, cfg)
        model.train()  # evaluate leaves eval mode; training goes on in training mode
        return [out]

    def fit() -> list[list[tuple[float, float]]]:
        model.eval()
        with torch.no_grad():
            grid = fit_grid(data.x_train)
            curve = list(zip(grid[:, 0].tolist(), model(grid)[:, 0].tolist()))
        model.train()  # early stopping asks mid-training; training goes on in training mode
        return [curve]

    model.train()
    (result,) = loop.train([cfg], n, [data.y_std], step, scores, shuffle, fit if data.n_features == 1 else None, t0=t0)
    return result


def evaluate(model: nn.Module, data: Any, cfg: "RunConfig") -> tuple[float, float, float | None, float | None, list[float] | None, float | None]:
    """loop.Evaluation: train and test MSE in eval mode; with eval.mc_samples the MC test MSE,
    and with eval.tau the test log-likelihood (engines/mc.py: MCStats); the learned values; the
    MSE on the validation rows a loop-slot regularizer holds out (None without them)."""
    mse = nn.MSELoss()
    model.eval()
    with torch.no_grad():
        train_mse = mse(model(data.x_train), data.y_train).item()
        pred = model(data.x_test)
        test_mse = mse(pred, data.y_test).item()
        mc_mse, ll = mc_evaluate(model, data, cfg, pred)
        val_mse = mse(model(data.x_val), data.y_val).item() if data.x_val is not None else None
    learned = [v for r, c in learning(cfg) for v in (r.torch_learned(model, c) or [])]
    return train_mse, test_mse, mc_mse, ll, learned or None, val_mse


def learning(cfg: "RunConfig") -> list[tuple[Any, Any]]:
    """The selected regularizers with modules of their own that learn (Regularizer.torch_penalty)."""
    from dropbench.regs.base import Regularizer

    return [(r, c) for r, c in regs.active(cfg.reg) if type(r).torch_penalty is not Regularizer.torch_penalty]


def mc_evaluate(model: nn.Module, data: Any, cfg: "RunConfig", pred: torch.Tensor) -> tuple[float | None, float | None]:
    """(MC test MSE, test log-likelihood), None where not asked for.

    The T passes run in blocks (mc.mc_block) of the test set stacked pass by pass, with the
    dropout-family layers in training mode. Their masks come from the run's fast stream, keyed by
    pass (eval.mc_masks: fast), or continue the run's torch generator from where training is, on
    a copy of it: either way training goes on from the same state, so a run's training numbers
    do not depend on eval.mc_samples. Without a dropout-family layer every pass
    is `pred`, which then stands for all of them. The log-likelihood uses the MC passes, or
    `pred` alone when eval.mc_samples is 0.
    """
    T, tau = cfg.eval.mc_samples, cfg.eval.tau
    if T == 0 and tau is None:
        return None, None
    n = data.y_test.shape[0]
    y = data.y_test[:, 0].unsqueeze(0)
    if T == 0 or not mc_regs(cfg):
        stats = MCStats(y, [1], [tau], [data.y_std])
        stats.add(pred.view(1, 1, n), 0)
        return (stats.mse()[0] if T else None), stats.ll()[0]
    block = mc_block(cfg, n, data.n_features)
    stats = MCStats(y, [T], [tau], [data.y_std])
    xb = data.x_test.repeat(block, 1)  # pass-major: rows t*n .. t*n+n-1 are pass t
    dev = data.x_test.device
    stream = masks.stream()
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), mc_mode(model, cfg):
        for start in range(0, T, block):
            if stream is not None:
                stream.start_mc(start, block)
            stats.add(model(xb).view(1, block, n), start)
    return stats.mse()[0], stats.ll()[0]


@contextmanager
def mc_mode(model: nn.Module, cfg: "RunConfig") -> Iterator[None]:
    """The model in eval mode but for its MC-active regularizer layers (mc.mc_active), which
    draw as in training; eval mode again afterwards."""
    from dropbench.regs.base import _layer_classes

    reg_layer, reg_linear = _layer_classes()
    native: dict[type, bool] = {}  # torch's own modules that regularizers use (nn.Dropout, ...)
    for r, c in regs.active(cfg.reg):
        if r.slot in MC_SLOTS and r.slot != "weight":
            layer = r.torch_layer(c)
            if not isinstance(layer, reg_layer):
                if native.setdefault(type(layer), mc_active(r)) != mc_active(r):
                    raise RuntimeError(f"{type(layer).__name__} serves MC-active and other regularizers; give one its own module")
    model.eval()
    for m in model.modules():
        if isinstance(m, reg_layer):
            on = mc_active(m.reg)
        elif isinstance(m, reg_linear):
            on = any(mc_active(r) for r, _ in m.regs)
        else:
            on = native.get(type(m), False)
        if on:
            m.train()
    try:
        yield
    finally:
        model.eval()


class ReferenceEngine:
    name = "torch"

    def train(self, cfgs: Sequence["RunConfig"]) -> Iterator[RunResult]:
        for cfg in cfgs:
            try:
                result = train_one(cfg)
            except Exception as e:  # noqa: BLE001  one failing run must not end the sweep
                yield from failed_results([cfg], e)
            else:
                yield result
