#!/usr/bin/env python
"""The batched engine's generic path against a hand-written piece, for one built-in.

gaussian_dropout ships a hand-written batched piece; its twin below is the same regularizer
written only in its torch form (a plug-in: torch_forward, nothing else), which the batched engine
runs through engines/generic.py. Both train the same chunks (the default network, 1-300-300-1 on
noisy_linear's 20 points, full batch, --runs seeds in one chunk, one thread) and the script
reports:

- agreement: whether every run's curve and fit are the same bits in float32 (and the largest
  relative difference), and the largest relative difference in float64;
- throughput: network-steps per second of training for each, best of --repeat, and the ratio
  (hand-written / generic: the generic path's cost);
- the reference engine (engine=torch) on the same runs, for scale.

Usage:  python scripts/bench_generic.py [--runs 10] [--epochs 200] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import dataclass
from typing import Any

import torch

from dropbench import registration, testing
from dropbench.config import load
from dropbench.engines.base import one_intraop_thread
from dropbench.engines.batched import _train_chunk
from dropbench.engines.reference import train_one
from dropbench.provenance import cpu_model
from dropbench.regs.base import PROB, Regularizer, param


@dataclass(frozen=True)
class Config:
    p: float = param(0.5, PROB)


class TorchGaussian(Regularizer):
    """gaussian_dropout in its torch form only (no batched piece): the generic path's twin."""

    name = "torch_gaussian"
    order = 900
    slot = "activation"
    Config = Config
    shares_p = True

    def torch_forward(self, x: Any, conf: Config, training: bool) -> Any:
        if not training or conf.p == 0.0:
            return x
        return x * (1 + math.sqrt(conf.p / (1.0 - conf.p)) * torch.randn_like(x))


def cfgs(reg: str, runs: int, epochs: int, dtype: str, engine: str = "batched") -> list[Any]:
    return [load([f"reg={reg}", "p=0.3", f"epochs={epochs}", f"eval_every={epochs}", f"dtype={dtype}", f"engine={engine}",
                  f"seed={s}"]) for s in range(runs)]


def timed(fn: Any, repeat: int) -> tuple[float, list[Any]]:
    best, out = math.inf, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def max_rel(a: list[Any], b: list[Any]) -> float:
    return max(testing.curve_err(x, y) for x, y in zip(a, b))


def same_bits(a: list[Any], b: list[Any]) -> bool:
    return all(x.curve == y.curve and x.fit == y.fit for x, y in zip(a, b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="4 runs, 20 epochs, once: a smoke test")
    a = ap.parse_args()
    if a.quick:
        a.runs, a.epochs, a.repeat = 4, 20, 1
    torch.set_num_threads(1)
    print(f"# {cpu_model()} ({platform.machine()}), torch {torch.__version__}, "
          f"{a.runs} runs x {a.epochs} epochs, 1-300-300-1 on 20 rows, best of {a.repeat}")
    with registration.registered(TorchGaussian()), one_intraop_thread():
        hand32, gen32 = cfgs("gaussian_dropout", a.runs, a.epochs, "float32"), cfgs("torch_gaussian", a.runs, a.epochs, "float32")
        t_hand, r_hand = timed(lambda: _train_chunk(hand32, len(hand32)), a.repeat)
        t_gen, r_gen = timed(lambda: _train_chunk(gen32, len(gen32)), a.repeat)
        ref = cfgs("gaussian_dropout", a.runs, a.epochs, "float32", "torch")
        t_ref, _ = timed(lambda: [train_one(c) for c in ref], 1)
        small = min(a.epochs, 50)
        hand64 = _train_chunk(cfgs("gaussian_dropout", a.runs, small, "float64"), a.runs)
        gen64 = _train_chunk(cfgs("torch_gaussian", a.runs, small, "float64"), a.runs)
    assert all(r.status == "ok" for r in r_hand + r_gen), [r.reason for r in r_hand + r_gen if r.status != "ok"]
    steps = a.runs * a.epochs
    print(f"agreement float32: same bits {same_bits(r_hand, r_gen)}, max rel diff {max_rel(r_hand, r_gen):.3g}")
    print(f"agreement float64 ({small} epochs): same bits {same_bits(hand64, gen64)}, max rel diff {max_rel(hand64, gen64):.3g}")
    print("| path | train s | network-steps/s |")
    print("| --- | ---: | ---: |")
    for label, t in (("batched, hand-written piece", t_hand), ("batched, generic path (torch form only)", t_gen),
                     ("reference engine (engine=torch)", t_ref)):
        print(f"| {label} | {t:.2f} | {steps / t:,.0f} |")
    print(f"ratio hand-written / generic throughput: {t_gen / t_hand:.2f}x")


if __name__ == "__main__":
    main()
