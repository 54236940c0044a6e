"""The floor of a workload and where (c)'s training time goes, in the same three parts.

The floor is the work no batched engine can skip, per run-step, on one core: a chunk's batched
matmuls (each layer's forward, weight gradient and, past the first layer, input gradient),
torch's fused Adam over the chunk's per-member views (weights decayed and biases not: two calls,
as the engine makes them), and the chunk's mask draws under a mask stream:
  torch  each member's float64 torch.rand from its own generator (the reference's draws);
  fast   dropbench.masks.CounterStream.bernoulli for all members at once (`masks=fast`).
Each part is timed alone, then all three together, at several chunk sizes: the planner's, and
the best one for this machine (issue 19, goal 3).

(c)'s split: the chunks the planner makes for (c)'s runs, trained one after another on one
thread with timers around torch.bmm / torch.baddbmm / torch.matmul (matmuls), Chunk's optimizer
step (optimizer), Chunk.bernoulli / Chunk.draws / CounterStream.bernoulli (masks); the rest of
Chunk.train is "everything else" (the evaluation, which is not training, is left out). A timed
call inside another counts once, in the outer one's part.
"""

from __future__ import annotations

import time
from typing import Any, Callable

CHUNK_SIZES = (8, 16, 32, 64, 80)
PARTS = ("matmuls", "optimizer", "masks")


def fast_stream() -> str | None:
    """None where the fast mask stream (`masks=fast`) is there; else why not, in a few words."""
    try:
        from dropbench.masks import CounterStream  # noqa: F401
        from dropbench.config import load

        load(["masks=fast"])
    except Exception as e:  # noqa: BLE001  (ImportError before it lands; a config error after a rename)
        return f"no fast stream in this checkout ({type(e).__name__})"
    return None


def _timed(f: Callable[[], None], min_seconds: float) -> float:
    """Seconds per call of f, after warming up, over at least min_seconds (and 3 calls)."""
    for _ in range(2):
        f()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < min_seconds:
        f()
        n += 1
    return (time.perf_counter() - t0) / n


def floor(case: dict[str, Any], sizes: list[int], streams: list[str], min_seconds: float) -> dict[str, dict[str, float]]:
    """Seconds per run-step, for each chunk size C: matmuls, optimizer, masks:<stream> and
    floor:<stream> (all three together). case: dims [in, hidden..., out], rows (each step's rows
    of an epoch), masks (the widths drawn per step, each on the step's rows), keep, wd_split."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    dims, rows, widths, keep = case["dims"], case["rows"], case["masks"], case["keep"]
    B = max(rows)
    out: dict[str, dict[str, float]] = {}
    for C in sizes:
        layers = list(zip(dims[:-1], dims[1:]))
        W = [torch.randn(C, i, o) / i**0.5 for i, o in layers]
        b = [torch.randn(C, 1, o) for _, o in layers]
        h = [torch.randn(C, B, i) for i, _ in layers]  # each layer's input
        g = [torch.randn(C, B, o) for _, o in layers]  # each layer's output gradient
        z = [torch.empty(C, B, o) for _, o in layers]
        gi = [torch.empty(C, B, i) for i, _ in layers]
        GW, Gb = [torch.empty_like(w) for w in W], [torch.randn_like(t) for t in b]
        state = lambda ts: ([torch.zeros_like(t) for t in ts], [torch.zeros_like(t) for t in ts])  # noqa: E731
        views = lambda ts: [t[i] for t in ts for i in range(C)]  # noqa: E731
        groups = [(W, GW, 1e-6), (b, Gb, 0.0)] if case["wd_split"] else [(W + b, GW + Gb, 0.0)]
        adam = [(views(p), views(gr), *map(views, state(p)), torch.zeros(()), wd) for p, gr, wd in groups]
        gens = [torch.Generator().manual_seed(i) for i in range(C)]
        bufs = [torch.empty(C, B, w, dtype=torch.float64) for w in widths]
        levels = None
        if "fast" in streams:
            from dropbench.masks import CounterStream, keep_levels

            stream, levels = CounterStream(seeds=list(range(1, C + 1))), np.array([keep_levels(keep)] * C)

        def matmuls(r: int) -> None:
            for k in range(len(layers)):
                torch.baddbmm(b[k], h[k][:, :r], W[k], out=z[k][:, :r])
                torch.bmm(h[k][:, :r].transpose(1, 2), g[k][:, :r], out=GW[k])
                if k:
                    torch.bmm(g[k][:, :r], W[k].transpose(1, 2), out=gi[k][:, :r])

        def optimizer(r: int) -> None:
            for p, gr, m, v, step, wd in adam:
                step += 1
                torch._fused_adam_(p, gr, m, v, [], [step] * len(p), lr=1e-3, beta1=0.9, beta2=0.999,
                                   weight_decay=wd, eps=1e-8, amsgrad=False, maximize=False)

        def masks_torch(r: int) -> None:
            for i, gen in enumerate(gens):
                for w, buf in zip(widths, bufs):
                    torch.rand((r, w), dtype=torch.float64, generator=gen, out=buf[i, :r])

        def masks_fast(r: int) -> None:
            stream.start_step()
            for w in widths:
                stream.bernoulli(levels, (r, w))

        draw = {"torch": masks_torch, "fast": masks_fast}
        epoch = lambda *fs: lambda: [f(r) for r in rows for f in fs]  # noqa: E731
        per = lambda f: _timed(f, min_seconds) / len(rows) / C  # noqa: E731
        res = {"matmuls": per(epoch(matmuls)), "optimizer": per(epoch(optimizer))}
        for s in streams:
            res[f"masks:{s}"] = per(epoch(draw[s]))
            res[f"floor:{s}"] = per(epoch(matmuls, optimizer, draw[s]))
        out[str(C)] = res
    return out


def split_c(words: list[str], workers: int) -> dict[str, Any]:
    """(c)'s training time on one thread, split into the floor's parts and everything else, for
    the runs of `dropbench run -m *words`, in the chunks the planner makes for `workers`."""
    import torch

    from dropbench import runner
    from dropbench.engines.planner import MachineFacts, plan_chunks
    from dropbench.engines.program import Chunk

    torch.set_num_threads(1)
    spent = dict.fromkeys((*PARTS, "evaluation"), 0.0)
    inside = [False]

    def timer(part: str, f: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            if inside[0]:
                return f(*a, **kw)
            inside[0] = True
            t = time.perf_counter()
            try:
                return f(*a, **kw)
            finally:
                spent[part] += time.perf_counter() - t
                inside[0] = False
        return timed

    patched: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, part: str) -> None:
        if name in vars(owner):
            patched.append((owner, name, vars(owner)[name]))
            setattr(owner, name, timer(part, getattr(owner, name)))

    for name in ("bmm", "baddbmm", "matmul"):
        patch(torch, name, "matmuls")
    if hasattr(Chunk, "_optimizer_step"):
        patch(Chunk, "_optimizer_step", "optimizer")
    else:  # an engine without the method: the fused kernels themselves
        patch(torch, "_fused_adam_", "optimizer")
        patch(torch, "_fused_adamw_", "optimizer")
    patch(Chunk, "bernoulli", "masks")
    patch(Chunk, "draws", "masks")
    patch(Chunk, "evaluate", "evaluation")
    try:
        from dropbench.masks import CounterStream

        patch(CounterStream, "bernoulli", "masks")
        patch(CounterStream, "scaled", "masks")  # the compiled kernels: masks and their product in one pass
    except ImportError:
        pass

    cfgs, _ = runner.plan(words, multirun=True)
    chunks = plan_chunks(cfgs, MachineFacts.detect(workers))
    from dropbench import masks

    masks.compiled()  # the compiled kernels, loaded before timing (dropbench run loads them before its clock)
    total = 0.0
    try:
        for members, size in chunks:
            chunk = Chunk(members, size)
            t = time.perf_counter()
            chunk.train()
            total += time.perf_counter() - t
    finally:  # this process may go on (a test): the functions as they were
        for owner, name, f in reversed(patched):
            setattr(owner, name, f)
    train = total - spent.pop("evaluation")
    return {"train": train, **spent, "else": train - sum(spent.values()),
            "sizes": sorted((size for _, size in chunks), reverse=True)}


def split_in_rounds(words: dict[str, list[str]], workers: int, rounds: int,
                    call: Callable[..., Any] | None = None) -> dict[str, dict[str, Any]]:
    """split_c for each stream's sweep, each in a fresh interpreter, in `rounds` interleaved
    rounds: per stream the round whose training time is the median (its parts stay one
    measurement's), with "rounds" the count: a second of training moves with a moment's noise
    on a shared machine (docs/benchmarks.md)."""
    from bench_common import call_in_child

    call = call or (lambda w: call_in_child("bench_floor", "split_c", w, workers))
    got: dict[str, list[dict[str, Any]]] = {s: [] for s in words}
    for _ in range(max(1, rounds)):
        for s, w in words.items():
            got[s].append(call(w))
    return {s: {**sorted(rs, key=lambda r: r["train"])[(len(rs) - 1) // 2], "rounds": len(rs)} for s, rs in got.items()}


# ---- in the benchmark's own process: the cases to time, and the report -------------------------
def case_of(cfg: Any, n_train: int, n_in: int) -> dict[str, Any]:
    """The floor's case for a run: its network's widths, its steps' rows, the widths its
    Bernoulli masks cover per step (input_dropout: the inputs; dropout: each hidden layer's
    output), its keep probability and whether its biases are left out of the weight decay.
    Other regularizers' draws (DropPath's one per row and layer) are left out: small, and on
    torch's generator under both streams."""
    from dropbench.engines.loop import batch_slices

    m, names = cfg.model, set(cfg.reg.names)
    slices = batch_slices(n_train, cfg.batch_size)
    widths = ([n_in] if "input_dropout" in names else []) + ([m.hidden] * m.depth if "dropout" in names else [])
    p = cfg.reg.dropout.p if "dropout" in names else (cfg.reg.input_dropout.p if "input_dropout" in names else 0.0)
    return {"dims": [n_in, *[m.hidden] * m.depth, 1],
            "rows": [b - a for a, b in slices] if slices else [n_train],
            "masks": widths, "keep": 1 - p,
            "wd_split": "l2" in names and not cfg.reg.l2.biases}


def planned(words: list[str], workers: int, label: Callable[[Any], str]) -> dict[str, dict[str, Any]]:
    """The planner's chunks for `dropbench run -m *words` on `workers`, by floor case: the case,
    its runs' labels, its run-steps, the chunk sizes timed (CHUNK_SIZES up to the largest group of its runs, and
    the planner's) and the planner's chunks as (size, run-steps)."""
    import json

    from dropbench import runner
    from dropbench.data import load_dataset
    from dropbench.engines.loop import steps_per_epoch
    from dropbench.engines.planner import MachineFacts, group_key, plan_chunks

    cfgs, _ = runner.plan(words, multirun=True)
    groups: dict[tuple, int] = {}
    for c in cfgs:
        k = group_key(c, load_dataset(c))
        groups[k] = groups.get(k, 0) + 1
    out: dict[str, dict[str, Any]] = {}
    for members, size in plan_chunks(cfgs, MachineFacts.detect(workers)):
        data = load_dataset(members[0])
        n, d = data.x_train.shape
        case = case_of(members[0], n, d)
        key = json.dumps({k: v for k, v in case.items() if k != "keep"}, sort_keys=True)  # p changes no cost
        e = out.setdefault(key, {"case": case, "run_steps": 0, "chunks": [], "group": 0,
                                                                  "labels": set()})
        e["labels"] |= {label(m) for m in members}
        steps = sum(m.epochs * steps_per_epoch(n, m.batch_size) for m in members)
        e["run_steps"] += steps
        e["chunks"].append((size, steps))
        e["group"] = max(e["group"], groups[group_key(members[0], data)])
    for e in out.values():
        e["label"] = ",".join(sorted(e.pop("labels")))
        e["sizes"] = sorted({*(s for s in CHUNK_SIZES if s < e["group"]), max(e["group"], 2), *(s for s, _ in e["chunks"])})
    return out


def measure_floor(cases: dict[str, dict[str, Any]], streams: list[str], min_seconds: float) -> None:
    """Time each case's floor in a fresh interpreter (adds "floor" to each case)."""
    from bench_common import call_in_child

    for e in cases.values():
        e["floor"] = call_in_child("bench_floor", "floor", e["case"], e["sizes"], streams, min_seconds)


def _total(cases: dict[str, dict[str, Any]], key: str, size: Callable[[dict[str, Any]], int] | None = None) -> float:
    """Seconds on one core for every case's run-steps: at the planner's chunks (size None), or
    at the size `size` picks for each case."""
    if size is None:
        return sum(steps * e["floor"][str(s)][key] for e in cases.values() for s, steps in e["chunks"])
    return sum(e["run_steps"] * e["floor"][str(size(e))][key] for e in cases.values())


def best_size(e: dict[str, Any], stream: str) -> int:
    return min(e["sizes"], key=lambda s: e["floor"][str(s)][f"floor:{stream}"])


def report(cases: dict[str, dict[str, Any]], streams: list[str],
           split: dict[str, dict[str, Any]], c_train: dict[str, float], workers: int) -> None:
    """Print the floor's parts, the chunk sizes, (c)'s split and its ratio to the floor, each
    figure with its mask stream."""
    us = lambda e, s, k: 1e6 * e["floor"][str(s)][k]  # noqa: E731
    print("  chunk sizes, and the floor in us per run-step at each (one core; * the best for this machine):")
    for e in cases.values():
        planner = ",".join(str(s) for s, _ in e["chunks"])
        print(f"    {e['label']:26} planner's chunks: {planner}")
        for st in streams:
            best = best_size(e, st)
            cells = "  ".join(f"C={s}: {us(e, s, f'floor:{st}'):.2f}{'*' if s == best else ''}" for s in e["sizes"])
            print(f"      masks={st:5} {cells}")
    for st in streams:
        at_best = lambda e: best_size(e, st)  # noqa: E731
        parts = {"matmuls": _total(cases, "matmuls", at_best), "optimizer": _total(cases, "optimizer", at_best),
                 "masks": _total(cases, f"masks:{st}", at_best)}
        whole, planner = _total(cases, f"floor:{st}", at_best), _total(cases, f"floor:{st}")
        shares = ", ".join(f"{k} {v:.3g} s ({100 * v / sum(parts.values()):.0f}%)" for k, v in parts.items())
        print(f"  floor, masks={st}, at the best chunk sizes: {whole:.3g} s on one core (parts alone: {shares}); "
              f"at the planner's chunks {planner:.3g} s")
        if st in split:
            sp = split[st]
            shares = ", ".join(f"{k} {100 * sp[k] / sp['train']:.0f}%" for k in (*PARTS, "else"))
            of = f" (the median of {sp['rounds']} rounds)" if sp.get("rounds", 1) > 1 else ""
            print(f"  (c), masks={st}, trained on one thread{of}: {sp['train']:.3g} s = {shares.replace('else', 'everything else')}; "
                  f"{sp['train'] / whole:.2f}x the floor at the best chunk sizes ({sp['train'] / planner:.2f}x at the planner's)")
        if st in c_train:
            print(f"  (c), masks={st}, end to end on {workers} workers: trained in {c_train[st]:.3g} s = "
                  f"{c_train[st] * workers / whole:.2f}x the best floor shared by {workers} cores "
                  f"(the floor is {100 * whole / (c_train[st] * workers):.0f}% of it)")
        elif st not in split:
            print(f"  (c), masks={st}: not run")
