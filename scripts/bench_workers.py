"""How the batched engine's workers share the cores: the UCI workload's runs (the same as
`--workload uci`) trained by BatchedEngine on one worker, on two threads and on two forked
processes, in interleaved rounds, each in this process (masks=fast). Training only: the
evaluation at the last epoch is included, planning and storing are not.

Why it is measured: a step of the UCI networks is some forty ops of a few microseconds, each
releasing the GIL; threads hand it back and forth, processes do not (engines/batched.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench_uci import checked_plan, uci_n_train, uci_steps

WAYS = {"1 worker": (1, False), "2 threads": (2, False), "2 processes": (2, True)}


def train_once(cfgs: list, workers: int, processes: bool) -> float:
    """Seconds for BatchedEngine to train `cfgs` on `workers` (threads, or forked processes)."""
    from dropbench.engines.batched import BatchedEngine
    from dropbench.engines.planner import MachineFacts

    engine = BatchedEngine(machine=MachineFacts.detect(workers), processes=processes)
    t = time.perf_counter()
    n = sum(1 for _ in engine.train(cfgs))
    if n != len(cfgs):
        raise SystemExit(f"benchmark: {n} results for {len(cfgs)} runs")
    return time.perf_counter() - t


def workers_main(args: argparse.Namespace) -> None:
    import torch

    from dropbench import masks, runner

    plan = checked_plan(args)
    masks.compiled()  # loaded before the clock, as `dropbench run` does
    torch.set_num_threads(1)
    rounds = 1 if args.quick else args.rounds
    shapes = uci_n_train(plan)
    print(f"\nWorkers: {plan.describe()}, masks=fast; training seconds, median of {rounds} interleaved round(s)")
    print(f"{'B':>4} {'way':12} {'train s':>8} {'run-steps/s':>12} {'vs 1 worker':>12}")
    for b in plan.batch_sizes:
        cfgs, _ = runner.plan([*plan.sweep(b), "masks=fast"], multirun=True)
        steps = uci_steps(plan, b, shapes)
        times: dict[str, list[float]] = {w: [] for w in WAYS}
        train_once(cfgs[:2], 1, False)  # warm: first-touch costs out of the figures
        for _ in range(rounds):
            for way, (workers, processes) in WAYS.items():
                times[way].append(train_once(cfgs, workers, processes))
        one = statistics.median(times["1 worker"])
        for way, ts in times.items():
            t = statistics.median(ts)
            print(f"{b:4} {way:12} {t:8.2f} {steps / t:12,.0f} {one / t:11.2f}x")
