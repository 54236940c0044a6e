#!/usr/bin/env python
"""Benchmark the default 50-run sweep three ways, side by side in one invocation.

    (a) the seed's plain training loop, one run after another in one process
    (b) the same loop over 2 worker processes
    (c) `dropbench run -m ...` with the batched engine, end to end

Each variant runs in its own subprocess, so the wall times include interpreter start-up and
imports, and peak memory is that process tree's largest resident set. Training throughput
(network-steps per second) counts only training: each variant reports the seconds it spent
from its first training step to its last result.

Then the machine bound (sgemm FLOP/s, copy bandwidth) and the kernel floor (the batched matmuls
and fused Adam alone) for the same work.

Usage:  python scripts/benchmark.py [--seeds 10] [--epochs 500] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from typing import TYPE_CHECKING, Any

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
    from dropbench.models import build_mlp
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


# ---- measurement harness ---------------------------------------------------------------------
def measure(cmd: list[str]) -> dict:
    """Run cmd in a child that reports its wall time and its process tree's peak RSS."""
    probe = (
        "import resource, subprocess, sys, time, json;"
        "t=time.perf_counter(); p=subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "w=time.perf_counter()-t;"
        "print(json.dumps({'wall': w, 'rc': p.returncode, 'out': p.stdout, 'err': p.stderr[-2000:],"
        "'maxrss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024}))"
    )
    res = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, check=True)
    out = json.loads(res.stdout)
    if out["rc"] != 0:
        raise SystemExit(f"benchmark command failed ({' '.join(cmd)}):\n{out['err']}")
    return out


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
    return _in_child(code)


def _in_child(code: str) -> Any:
    """Run a measurement in a fresh interpreter (its own threads and caches); it prints JSON."""
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def kernel_floor(hidden: int = 300, n: int = 20, chunk: int = 10) -> float:
    """Seconds per network-step, on one core, of the work no batched engine can skip: the three
    hidden x hidden batched matmuls (forward, weight and input gradients) and torch's fused Adam
    over a chunk's parameters, with nothing else (no activations, masks, losses or Python
    bookkeeping). Measured, not computed: these kernels run well below sgemm peak at 20 rows."""
    code = f"""
import torch, time, json
torch.set_num_threads(1)
C, N, H = {chunk}, {n}, {hidden}
h = torch.randn(C, N, H); W = torch.randn(C, H, H); dz = torch.randn(C, N, H)
o1, o2, o3 = torch.empty(C, N, H), torch.empty(C, H, H), torch.empty(C, N, H)
P = [torch.randn(C, 1, H), torch.randn(C, 1, H), W, torch.randn(C, 1, H), torch.randn(C, H, 1), torch.randn(C, 1, 1)]
views = lambda ts: [t[i] for t in ts for i in range(C)]
p, g, m, v = views(P), views([torch.randn_like(t) for t in P]), views([torch.zeros_like(t) for t in P]), views([torch.zeros_like(t) for t in P])
step = torch.zeros(())
def work():
    torch.bmm(h, W, out=o1); torch.bmm(h.transpose(1, 2), dz, out=o2); torch.bmm(dz, W.transpose(1, 2), out=o3)
    step.add_(1)
    torch._fused_adam_(p, g, m, v, [], [step] * len(p), lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0,
                       eps=1e-8, amsgrad=False, maximize=False)
for _ in range(30): work()
t = time.perf_counter()
for _ in range(300): work()
print(json.dumps((time.perf_counter() - t) / 300 / C))
"""
    return _in_child(code)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="3 seeds, 100 epochs: a smoke test of this script")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.epochs = 3, 100
    jobs = [[f"reg={r}", f"seed={s}", f"epochs={args.epochs}"] for r in REGS for s in range(args.seeds)]
    if args.variant == "loop":
        variant_loop(jobs, args.workers)
        return

    me = [sys.executable, os.path.abspath(__file__), f"--seeds={args.seeds}", f"--epochs={args.epochs}"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        startup = measure(["dropbench", "run", "--cfg", "-m", f"reg={','.join(REGS)}", f"seed=range({args.seeds})"])
        for name, cmd in [
            ("(a) seed loop, 1 process", [*me, "--variant=loop", "--workers=1"]),
            ("(b) seed loop, 2 processes", [*me, "--variant=loop", "--workers=2"]),
            ("(c) dropbench run -m (batched)", ["dropbench", "run", "-m", f"reg={','.join(REGS)}",
                                                f"seed=range({args.seeds})", f"epochs={args.epochs}", f"out={tmp}/c"]),
        ]:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            m = measure(cmd)
            if name.startswith("(c)"):
                hit = re.search(r"trained (\d+) run\(s\) in ([\d.]+) s", m["out"])
                if not hit:
                    raise SystemExit(f"could not read dropbench's training time from:\n{m['out'][-1500:]}")
                train_s, steps = float(hit.group(2)), int(hit.group(1)) * args.epochs
            else:
                d = json.loads(m["out"].strip().splitlines()[-1])
                train_s, steps = d["train_seconds"], d["network_steps"]
            results[name] = {"wall": m["wall"], "train": train_s, "steps": steps, "rss": m["maxrss_mb"]}

    bounds = machine_bounds()
    flops, nbytes = work_per_step()
    c = results["(c) dropbench run -m (batched)"]
    t_flops = c["steps"] * flops / bounds["flops"]
    t_bytes = c["steps"] * nbytes / bounds["bandwidth"]
    n_runs = len(jobs)
    from dropbench.engines.batched import MachineFacts

    machine = MachineFacts.detect()  # what (c)'s chunk planner read: the numbers depend on it
    l2 = f"{machine.l2_bytes // 1024} KB L2 per core" if machine.l2_bytes else "L2 size unknown"
    print(f"\nBenchmark: {n_runs} runs (reg={','.join(REGS)} x {args.seeds} seeds), noisy_linear, hidden 300, "
          f"{args.epochs} epochs; {os.cpu_count()} cores, {l2}\n")
    hdr = f"{'variant':34} {'wall s':>8} {'train s':>8} {'net-steps/s':>12} {'peak MB':>8} {'wall vs (c)':>12} {'thru (c)/x':>11}"
    print(hdr)
    print("-" * len(hdr))
    for name, r in results.items():
        thr = r["steps"] / r["train"]
        print(f"{name:34} {r['wall']:8.2f} {r['train']:8.2f} {thr:12,.0f} {r['rss']:8.0f} "
              f"{r['wall'] / c['wall']:11.2f}x {(c['steps'] / c['train']) / thr:10.2f}x")
    print(f"\nstart-up of dropbench run (imports + composing {n_runs} configs, --cfg): {startup['wall']:.2f} s")
    print(f"(c) outside training (start-up, planning, writing results): {c['wall'] - c['train']:.2f} s")
    print("\nMachine bound for (c)'s training work, measured now on both cores:")
    print(f"  arithmetic: {flops / 1e6:.1f} MFLOP per network-step x {c['steps']} steps / "
          f"{bounds['flops'] / 1e9:.0f} GFLOP/s (2048^2 sgemm) = {t_flops:.2f} s")
    print(f"  memory:     {nbytes / 1e6:.2f} MB of Adam state traffic per step x {c['steps']} / "
          f"{bounds['bandwidth'] / 1e9:.1f} GB/s (64 MB copy) = {t_bytes:.2f} s")
    bound = max(t_flops, t_bytes)
    print(f"  (c) trained in {c['train']:.2f} s: {100 * bound / c['train']:.0f}% of the tighter bound ({bound:.2f} s)")
    floor = kernel_floor() * c["steps"]
    a = results["(a) seed loop, 1 process"]
    print("\nKernel floor: the 300x300 batched matmuls and fused Adam alone (chunks of 10, one core, measured now):")
    print(f"  {floor:.2f} s on one core, {floor / 2:.2f} s on two if they scaled perfectly; "
          f"10x over (a) needs training in {a['train'] / 10:.2f} s, (c) took {c['train']:.2f} s")


if __name__ == "__main__":
    main()
