#!/usr/bin/env python
"""Benchmark a workload several ways, side by side in one invocation.

--workload seed (default): the default 50-run sweep (noisy_linear, hidden 300, full batch)
    (a) the seed's plain training loop, one run after another in one process
    (b) the same loop over 2 worker processes
    (c) `dropbench run -m ...` with the batched engine, end to end, once per mask stream (--masks)
    then the machine bound (sgemm FLOP/s, copy bandwidth), and the floor and (c)'s split (below).

--workload uci: the UCI mini-batch workload of the MC-dropout protocol (yacht, boston_housing,
concrete x 20 splits x a 2 x 2 grid of p and weight decay, d -> 50 ReLU -> 1, dropout on the
inputs and after the activation, L2 on the weights only, Adam lr 1e-3), for each batch size
(32: the 2016 protocol, 128: the 2018 one)
    (a) a plain per-run torch loop (nn.Sequential, torch.optim.Adam, randperm per epoch), one process
    (b) the same loop with one process per core
    (c) `dropbench run -m ...` with the batched engine, end to end, once per mask stream (--masks)
    (d) what a skilled torch user writes instead (scripts/bench_ensemble.py): each data set's runs
        as one program of [R, ...] tensors, baddbmm, autograd and one Adam, masks from one global
        generator; at 1 and at 2 intra-op threads, the best marked; (c)/(d) per B (goal 2)
    then the floor and (c)'s split (below). The split files come from $DROPBENCH_UCI_DIR (else
    the download cache); where they are missing the script says so in one line and exits 2.

The floor and (c)'s split, for seed and uci (scripts/bench_floor.py): the floor is the work no
batched engine can skip, per run-step on one core, in three parts: the batched matmuls, fused
Adam, and the mask draws under each stream (torch: each run's float64 torch.rand from its own
generator; fast: dropbench.masks.CounterStream.bernoulli for a chunk at once). It is timed at the
planner's chunk sizes and at 8, 16, 32, 64, 80 (up to a group's runs), the best marked. (c)'s
training, re-run on one thread in the planner's chunks with timers around the same parts, is
split into matmuls, optimizer, masks and everything else. Printed: the planner's chunk sizes, the
floor per chunk size, its parts, (c)'s shares, (c) against the floor (on one thread, and end to end
against the floor shared by the cores), each figure with its mask stream. --masks torch,fast
(the default) runs both; fast is left out, with a line saying so, where this checkout has no
`masks: fast`.

--workload bookkeeping: planning and storing alone, in ms per run, for a 10,000-run one-epoch sweep
of a built-in data set (noisy_linear seed=range(10000)) and a UCI grid (+experiment=uci_mc_dropout_2018,
20 splits x 4 p x 3 tau, where the split files are there): plan (runner.plan: compose, validate,
derive, run ids; and the checks `dropbench run` makes before writing, runner._check_inputs) and store (results.write_run per run, with the one-row curve a one-epoch run has,
then results.consolidate). Against it, in the same rounds: planning by composing each job with
Hydra alone (config.load_job per job, the path before templates), on the first 1,000 jobs.
Each measurement is its own subprocess; rounds are interleaved, figures are medians.

--workload concrete: the cost of a training step of concrete_dropout against dropout's, on the default
network (noisy_linear, hidden 300, depth 2, full batch), one chunk of 10 runs each, one thread,
interleaved rounds in one process, medians (issue 19, goal 4: within 2x).

--workload workers: the UCI workload's runs (the same flags) trained by the batched engine on one
worker, on two threads and on two forked processes, interleaved rounds in one process, medians:
how its workers share two cores (scripts/bench_workers.py).

--workload all: seed and uci.

Each variant runs in its own subprocess, so the wall times include interpreter start-up and
imports, and peak memory is that process tree's largest resident set. Training throughput
(network-steps, or run-steps: one optimizer update of one run, per second) counts only training:
each variant reports the seconds it spent from its first training step to its last result.

Usage:  python scripts/benchmark.py [--seeds 10] [--epochs 500] [--quick]
        DROPBENCH_UCI_DIR=../shared/uci python scripts/benchmark.py --workload uci [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the workloads' modules beside this file

import bench_floor  # noqa: E402
from bench_common import c_training, in_child, in_rounds, measure  # noqa: E402
from bench_uci import (QUICK_UCI, UCI_DATASETS, UciPlan, missing_uci_files, uci_loop, uci_main, uci_n_train,  # noqa: E402,F401
                       uci_plan, uci_steps, streams_of, stream_words)

if TYPE_CHECKING:
    from dropbench.config import RunConfig

REGS = ["none", "l1", "l2", "dropout", "droppath"]


def _noop(_: int) -> None:
    return None


# ---- (a) and (b): the seed's loop ----------------------------------------------------------
def seed_loop(cfg: "RunConfig") -> int:
    """Seed 003's training loop for one run (default torch.optim.Adam, as the seed writes it)."""
    import torch
    from torch import nn

    from dropbench.data import load_dataset
    from dropbench.models.mlp import build as build_mlp
    from dropbench.regs.l1 import l1_penalty

    data = load_dataset(cfg)
    torch.manual_seed(cfg.seed)
    net = build_mlp(1, 1, cfg.model, cfg.reg)
    wd = cfg.reg.l2.weight_decay if cfg.reg.l2 else 0.0
    opt = torch.optim.Adam(net.parameters(), lr=cfg.optim.lr, weight_decay=wd)
    loss_fn = nn.MSELoss()
    for epoch in range(cfg.epochs):
        loss = loss_fn(net(data.x_train), data.y_train)
        if cfg.reg.l1:
            loss = loss + cfg.reg.l1.weight * l1_penalty(net.parameters())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch % cfg.eval_every == 0:
            net.eval()
            with torch.no_grad():
                loss_fn(net(data.x_test), data.y_test).item()
            net.train()
    return cfg.epochs


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    seed_loop(_warm_cfg())  # first-call costs (lazy init, allocator) stay out of the timing


def _warm_cfg() -> "RunConfig":
    from dropbench.config import load

    return load(["epochs=2"])


def variant_loop(jobs: list[list[str]], workers: int) -> None:
    """Configs are composed and torch warmed up before the clock starts: only training is timed."""
    from dropbench.config import load

    cfgs = [load(j) for j in jobs]
    seed_loop(_warm_cfg())
    if workers == 1:
        t0 = time.perf_counter()
        steps = sum(seed_loop(c) for c in cfgs)
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
            pool.map(_noop, range(workers))  # wait until every worker has started
            t0 = time.perf_counter()
            steps = sum(pool.map(seed_loop, cfgs, chunksize=1))
    print(json.dumps({"train_seconds": time.perf_counter() - t0, "network_steps": steps}))


# ---- the machine's bounds -------------------------------------------------------------------
def machine_bounds() -> dict:
    """What this machine can do: sustained fp32 matmul FLOP/s and copy bandwidth, both cores."""
    code = r"""
import torch, time, json
torch.set_num_threads(2)
a = torch.randn(2048, 2048); b = torch.randn(2048, 2048)
for _ in range(3): a @ b
t = time.perf_counter(); n = 10
for _ in range(n): a @ b
flops = 2 * 2048**3 * n / (time.perf_counter() - t)
x = torch.empty(64 * 2**20 // 4); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
t = time.perf_counter(); n = 20
for _ in range(n): y.copy_(x)
bw = 2 * x.numel() * 4 * n / (time.perf_counter() - t)
print(json.dumps({"flops": flops, "bandwidth": bw}))
"""
    return in_child(code)


def work_per_step(hidden: int = 300, n: int = 20) -> tuple[float, float]:
    """FLOPs and optimizer bytes of one training step of a 1-hidden-hidden-1 MLP on n points.

    FLOPs: forward 2*n*in*out per Linear, backward twice that (input and weight gradients);
    the first layer needs no input gradient. Bytes: Adam reads param, grad, exp_avg,
    exp_avg_sq and writes param, exp_avg, exp_avg_sq once each: 7 * 4 bytes per parameter,
    the least traffic a step can make when the state does not stay in cache.
    """
    layers = [(1, hidden), (hidden, hidden), (hidden, 1)]
    fwd = sum(2 * n * i * o for i, o in layers)
    bwd = sum(2 * n * i * o for i, o in layers) + sum(2 * n * i * o for i, o in layers[1:])
    params = sum(i * o + o for i, o in layers)
    return fwd + bwd, 7 * 4 * params


def seed_main(args: argparse.Namespace) -> None:
    """The seed workload: the default 50-run sweep three ways ((c) under each mask stream), the
    machine bound, then the floor and (c)'s split."""
    jobs = [[f"reg={r}", f"seed={s}", f"epochs={args.epochs}"] for r in REGS for s in range(args.seeds)]
    if args.variant == "loop":
        variant_loop(jobs, args.workers)
        return

    streams, left_out = streams_of(args)
    fast_there = bench_floor.fast_stream() is None
    sweep = [f"reg={','.join(REGS)}", f"seed=range({args.seeds})", f"epochs={args.epochs}"]
    c_name = "(c) dropbench run -m, masks={}".format
    me = [sys.executable, os.path.abspath(__file__), f"--seeds={args.seeds}", f"--epochs={args.epochs}"]
    with tempfile.TemporaryDirectory() as tmp:
        startup = measure(["dropbench", "run", "--cfg", "-m", f"reg={','.join(REGS)}", f"seed=range({args.seeds})"])
        variants = [("(a) seed loop, 1 process", [*me, "--variant=loop", "--workers=1"]),
                    ("(b) seed loop, 2 processes", [*me, "--variant=loop", "--workers=2"])]
        variants += [(c_name(s), ["dropbench", "run", "-m", *sweep, *stream_words(s, fast_there), f"out={tmp}/c{s}"])
                     for s in streams]

        def one(name: str, cmd: list[str]) -> dict[str, float]:
            m = measure(cmd)
            if name.startswith("(c)"):
                runs, train_s = c_training(m["out"])
                steps = runs * args.epochs
            else:
                d = json.loads(m["out"].strip().splitlines()[-1])
                train_s, steps = d["train_seconds"], d["network_steps"]
            return {"wall": m["wall"], "train": train_s, "steps": steps, "rss": m["maxrss_mb"]}

        results = in_rounds(variants, 1 if args.quick else args.rounds, ("(a)", "(b)"), one)

    bounds = machine_bounds()
    flops, nbytes = work_per_step()
    c = results[c_name(streams[-1])]
    t_flops = c["steps"] * flops / bounds["flops"]
    t_bytes = c["steps"] * nbytes / bounds["bandwidth"]
    n_runs = len(jobs)
    from dropbench.engines.planner import MachineFacts

    machine = MachineFacts.detect()  # what (c)'s chunk planner read: the numbers depend on it
    l2 = f"{machine.l2_bytes // 1024} KB L2 per core" if machine.l2_bytes else "L2 size unknown"
    print(f"\nBenchmark: {n_runs} runs (reg={','.join(REGS)} x {args.seeds} seeds), noisy_linear, hidden 300, "
          f"{args.epochs} epochs; {os.cpu_count()} cores, {l2}")
    print(f"(c): medians of {max(r['rounds'] for r in results.values())} interleaved round(s), each its own process; "
          "(a) and (b): one each")
    if left_out:
        print(left_out)
    hdr = (f"\n{'variant':34} {'wall s':>8} {'train s':>8} {'net-steps/s':>12} {'peak MB':>8} {'wall vs (c)':>12} "
           f"{'(c,' + streams[-1] + ')/x':>11}")
    print(hdr)
    print("-" * len(hdr))
    for name, r in results.items():
        thr = r["steps"] / r["train"]
        print(f"{name:34} {r['wall']:8.2f} {r['train']:8.2f} {thr:12,.0f} {r['rss']:8.0f} "
              f"{r['wall'] / c['wall']:11.2f}x {(c['steps'] / c['train']) / thr:10.2f}x")
    print("((a) and (b) draw dropout's masks from torch's generator, one run after another)")
    print(f"\nstart-up of dropbench run (imports + composing {n_runs} configs, --cfg): {startup['wall']:.2f} s")
    print(f"(c, masks={streams[-1]}) outside training (start-up, planning, writing results): {c['wall'] - c['train']:.2f} s")
    print(f"\nMachine bound for (c, masks={streams[-1]})'s training work, measured now on both cores:")
    print(f"  arithmetic: {flops / 1e6:.1f} MFLOP per network-step x {c['steps']} steps / "
          f"{bounds['flops'] / 1e9:.0f} GFLOP/s (2048^2 sgemm) = {t_flops:.2f} s")
    print(f"  memory:     {nbytes / 1e6:.2f} MB of Adam state traffic per step x {c['steps']} / "
          f"{bounds['bandwidth'] / 1e9:.1f} GB/s (64 MB copy) = {t_bytes:.2f} s")
    bound = max(t_flops, t_bytes)
    print(f"  (c) trained in {c['train']:.2f} s: {100 * bound / c['train']:.0f}% of the tighter bound ({bound:.2f} s)")

    workers = os.cpu_count() or 1
    print("\nFloor and (c)'s time (issue 19, goal 3; the standing goal: (c) at least 80% of the two-core floor):")
    cases = bench_floor.planned(sweep, workers, label=lambda cfg: "+".join(cfg.reg.names) or "none")
    bench_floor.measure_floor(cases, streams, 0.02 if args.quick else 0.2)
    split = bench_floor.split_in_rounds({s: [*sweep, *stream_words(s, fast_there)] for s in streams},
                                        workers, 1 if args.quick else args.rounds)
    bench_floor.report(cases, streams, split, {s: results[c_name(s)]["train"] for s in streams}, workers)


# ---- bookkeeping: planning and storing (issue 19, goal 5) --------------------------------------
BOOKKEEPING_SWEEPS = {
    "noisy_linear": ["data=noisy_linear", "epochs=1", "seed=range({n})"],
    "uci 2018 grid": ["+experiment=uci_mc_dropout_2018", "data.dataset=yacht", "data.split=range(20)",
                      "p=0.005,0.01,0.05,0.1", "eval.tau=0.25,0.5,0.75", "epochs=1", "seed=range({m})"],
}
PER_JOB_RUNS = 1000  # the per-job baseline plans this many jobs of each sweep (it is slow)


def bookkeeping_child(sweep: str, n: int, per_job: bool, scratch: Path) -> dict[str, float]:
    """One measurement, in this process: seconds to plan `n` runs of a sweep, and with the
    template path, to store them (write_run each, then consolidate) in a new folder under
    `scratch`, which the caller deletes after the last measurement: a sweep's folder is kept,
    and on ext4 without a journal, files deleted in the last minutes make each new file cost
    a scan of them (`recently_deleted` in the kernel's inode allocator; docs/benchmarks.md)."""
    import itertools

    import torch  # noqa: F401  (imported by any training process anyway: kept out of the figures)

    from dropbench import derive, results, runner
    from dropbench.config import expand_sweep, load_job
    from dropbench.engines.result import RunResult

    results._platform("cpu")  # the platform columns, read once per process (imports torch's config)
    words = [w.format(n=n, m=max(1, n // 240)) for w in BOOKKEEPING_SWEEPS[sweep]]
    t0 = time.perf_counter()
    if per_job:
        jobs = list(itertools.islice(expand_sweep(words), n))
        cfgs = derive.resolve(load_job(j)[0] for j in jobs)
        _ = [c.run_id for c in cfgs]
        return {"plan": time.perf_counter() - t0, "runs": len(cfgs)}
    cfgs, _ = runner.plan(words, multirun=True)
    cfgs = cfgs[:n]
    runner._check_inputs(cfgs)  # what `dropbench run` checks before writing anything: part of planning
    t1 = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="sweep-", dir=scratch))
    # The storing floor: the same folders and files (the first run's bytes) made, written and
    # renamed into place with nothing else, in the same process, interleaved run by run with
    # write_run: a virtual disk's cost per new file moves within minutes (with what was deleted
    # lately, above), so only side by side do the two see the same disk.
    floor_dir = out / "floor"
    floor_dir.mkdir()
    files: dict[str, bytes] = {}
    write = fs_floor = 0.0
    for i, cfg in enumerate(cfgs):
        r = RunResult(cfg)
        r.add_eval(1, 0.25, 0.5, 0.25, 1.0)
        t = time.perf_counter()
        results.write_run(out, r)
        write += time.perf_counter() - t
        if not files:  # read back outside both clocks
            files = {f.name: f.read_bytes() for f in (out / results.RUNS_DIR / cfg.run_id).iterdir()}
        t = time.perf_counter()
        tmp = floor_dir / f".{i}"
        tmp.mkdir()
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        os.replace(tmp, floor_dir / str(i))
        fs_floor += time.perf_counter() - t
    t2 = time.perf_counter()
    results.consolidate(out, [c.run_id for c in cfgs])
    t3 = time.perf_counter()
    return {"plan": t1 - t0, "write": write, "consolidate": t3 - t2, "fs_floor": fs_floor, "runs": len(cfgs)}


def bookkeeping_main(args: argparse.Namespace) -> None:
    n = 500 if args.quick else args.runs
    rounds = 1 if args.quick else args.rounds
    sweeps = ["noisy_linear"]
    if missing_uci_files(UciPlan(datasets=("yacht",), splits=20, batch_sizes=(128,), epochs=1)) is None:
        sweeps.append("uci 2018 grid")
    else:
        print("(the UCI split files are missing: the UCI sweep is left out; set DROPBENCH_UCI_DIR)", file=sys.stderr)
    scratch = Path(tempfile.mkdtemp(prefix="dropbench-bookkeeping-"))
    me = [sys.executable, os.path.abspath(__file__), "--workload=bookkeeping", f"--scratch={scratch}"]
    try:
        got = bookkeeping_rounds(me, sweeps, n, rounds)
    finally:
        print(f"(deleting the {rounds * len(sweeps)} sweeps' folders, after the last measurement) ...",
              file=sys.stderr, flush=True)
        shutil.rmtree(scratch, ignore_errors=True)
    bookkeeping_table(got, sweeps, rounds)


def bookkeeping_rounds(me: list[str], sweeps: list[str], n: int, rounds: int) -> dict[tuple[str, bool], list[dict[str, float]]]:
    got: dict[tuple[str, bool], list[dict[str, float]]] = {}
    for r in range(rounds):
        for sweep in sweeps:
            for per_job in (False, True):
                runs = min(n, PER_JOB_RUNS) if per_job else n
                print(f"round {r + 1}/{rounds}: {sweep}, {'per-job composition' if per_job else 'plan + store'}, "
                      f"{runs} runs ...", file=sys.stderr, flush=True)
                cmd = [*me, f"--variant=bookkeeping:{sweep}:{int(per_job)}", f"--runs={runs}"]
                m = measure(cmd)
                got.setdefault((sweep, per_job), []).append(json.loads(m["out"].strip().splitlines()[-1]))
    return got


def bookkeeping_table(got: dict[tuple[str, bool], list[dict[str, float]]], sweeps: list[str], rounds: int) -> None:
    print(f"\nBookkeeping: ms per run, medians of {rounds} interleaved round(s), each measurement its own process")
    hdr = (f"{'sweep':15} {'runs':>6} {'plan':>7} {'write':>7} {'consol.':>7} {'total':>7} {'per-job plan':>13} "
           f"{'plan ratio':>11} {'files floor':>12} {'write/floor':>12} {'above floor':>12}")
    print(hdr)
    print("-" * len(hdr))
    for sweep in sweeps:
        fast, slow = got[sweep, False], got[sweep, True]
        ms = lambda rows, k: statistics.median(1e3 * x[k] / x["runs"] for x in rows)  # noqa: E731
        plan, write, cons, per_job = ms(fast, "plan"), ms(fast, "write"), ms(fast, "consolidate"), ms(slow, "plan")
        ratio = statistics.median(  # per round, side by side
            (s["plan"] / s["runs"]) / (f["plan"] / f["runs"]) for f, s in zip(fast, slow))
        floor = ms(fast, "fs_floor")
        to_floor = statistics.median(f["write"] / f["fs_floor"] for f in fast)
        above = statistics.median(1e3 * (f["plan"] + f["write"] - f["fs_floor"] + f["consolidate"]) / f["runs"] for f in fast)
        print(f"{sweep:15} {int(fast[0]['runs']):6} {plan:7.2f} {write:7.2f} {cons:7.2f} {plan + write + cons:7.2f} "
              f"{per_job:13.2f} {ratio:10.1f}x {floor:12.2f} {to_floor:11.1f}x {above:12.2f}")
    print("goal: plan + store at most 2 ms per run (issue 19, goal 5). per-job plan: composing each job with Hydra "
          f"(the first {PER_JOB_RUNS} jobs); files floor: making a run's folder and files with nothing else "
          "(what write can never go below on this disk, measured run by run beside it); above floor: plan + write + "
          "consolidate less the files floor, dropbench's own share (the floor is the disk's: on ext4 without a "
          "journal each new file costs a scan of the files deleted in the last minutes, so every sweep's folder is "
          "kept until the last measurement, and a deletion just before the benchmark shows in the floor); "
          "plan includes Hydra's start-up")


def concrete_main(args: argparse.Namespace) -> None:
    import torch

    from dropbench import runner
    from dropbench.engines.program import Chunk

    torch.set_num_threads(1)
    chunks = {}
    for reg in ("dropout", "concrete_dropout"):
        cfgs, _ = runner.plan([f"reg={reg}", "epochs=1", "seed=range(10)"], multirun=True)
        chunks[reg] = Chunk(cfgs, len(cfgs))
    steps, rounds = (5, 3) if args.quick else (30, args.rounds * 3)

    def per_step(chunk: Any) -> float:
        t = time.perf_counter()
        for _ in range(steps):
            chunk.step(False)
        return (time.perf_counter() - t) / steps

    for chunk in chunks.values():
        per_step(chunk)  # warm
    got: dict[str, list[float]] = {r: [] for r in chunks}
    for _ in range(rounds):
        for reg, chunk in chunks.items():
            got[reg].append(per_step(chunk))
    ratio = statistics.median(c / d for d, c in zip(got["dropout"], got["concrete_dropout"]))
    print(f"\nconcrete_dropout against dropout: a chunk of 10 runs, hidden 300, depth 2, 20 rows, one thread, "
          f"{rounds} interleaved rounds of {steps} steps")
    for reg, ts in got.items():
        print(f"  {reg:17} {1e3 * statistics.median(ts):8.2f} ms per chunk step")
    print(f"  ratio {ratio:.2f}x (median of the rounds' ratios; goal: at most 2x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=("seed", "uci", "bookkeeping", "concrete", "workers", "all"), default="seed",
                    help="seed: the default 50-run sweep (default); uci: the UCI mini-batch workload; "
                         "bookkeeping: planning and storing per run; concrete: concrete_dropout's step against dropout's; "
                         "workers: the UCI workload's training on one worker, two threads, two processes; "
                         "all: seed and uci")
    ap.add_argument("--runs", type=int, default=10_000, help="bookkeeping: runs per sweep (default 10,000)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds, figures their medians: bookkeeping, workers, seed's (c), and uci's (c) and (d) (default 3)")
    ap.add_argument("--seeds", type=int, default=10, help="seed workload: seeds per regularizer")
    ap.add_argument("--epochs", type=int, help="epochs per run (seed workload 500, uci 20)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke test of this script: seed 3 seeds x 100 epochs; uci yacht, 2 splits, B=32, 2 epochs")
    ap.add_argument("--datasets", help=f"uci: data sets, comma separated (default {','.join(UCI_DATASETS)})")
    ap.add_argument("--splits", type=int, help="uci: splits per data set, 1..20 (default 20)")
    ap.add_argument("--batch-sizes", help="uci: batch sizes, comma separated (default 32,128: the 2016 and 2018 protocols)")
    ap.add_argument("--masks", help="seed and uci: the mask streams (c) trains under, comma separated "
                         "(default torch,fast; fast where this checkout has it)")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--scratch", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.workload == "concrete":
        concrete_main(args)
        return
    if args.workload == "workers":
        from bench_workers import workers_main

        workers_main(args)
        return
    if args.workload == "bookkeeping":
        if args.variant and args.variant.startswith("bookkeeping:"):
            _, sweep, per_job = args.variant.split(":")
            print(json.dumps(bookkeeping_child(sweep, args.runs, per_job == "1", Path(args.scratch))))
        else:
            bookkeeping_main(args)
        return
    if args.workload in ("seed", "all") and not (args.variant or "").startswith("uci-"):
        seed_args = argparse.Namespace(**vars(args))
        if args.quick:
            seed_args.seeds, seed_args.epochs = 3, 100
        elif seed_args.epochs is None:
            seed_args.epochs = 500
        seed_main(seed_args)
    if args.workload in ("uci", "all") and args.variant != "loop":
        uci_main(args)


if __name__ == "__main__":
    main()
