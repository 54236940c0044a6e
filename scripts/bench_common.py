"""What every workload of scripts/benchmark.py measures with: a command in its own process tree
(wall time, peak memory), or a function of a sibling module in a fresh interpreter."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent


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


def in_child(code: str) -> Any:
    """Run a measurement in a fresh interpreter (its own threads and caches); it prints JSON."""
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def call_in_child(module: str, func: str, *args: Any) -> Any:
    """module.func(*args) (JSON in, JSON out) in a fresh interpreter: no thread, cache or
    allocator state of this process, nor of an earlier measurement, leaks into the figure."""
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import {module}; "
            f"print(json.dumps({module}.{func}(*json.loads(sys.argv[1]))))")
    res = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"benchmark: {module}.{func} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def c_training(out: str) -> tuple[int, float]:
    """(runs, seconds) from `dropbench run`'s "trained N run(s) in S s" line: (c)'s training time."""
    import re

    hit = re.search(r"trained (\d+) run\(s\) in ([\d.]+) s", out)
    if not hit:
        raise SystemExit(f"could not read dropbench's training time from:\n{out[-1500:]}")
    return int(hit.group(1)), float(hit.group(2))


def in_rounds(variants: list[tuple[str, list[str]]], rounds: int, once: tuple[str, ...],
              one: Callable[[str, list[str]], dict[str, float]], label: str = "") -> dict[str, dict[str, float]]:
    """Each variant measured by one(name, cmd) in `rounds` interleaved rounds (those whose name
    starts with one of `once` in the first only: they run for tens of seconds), each round into a
    new out= folder (a finished one would be skipped). A second of training moves with a
    moment's noise on a shared machine, so each figure is the median over the rounds;
    peak memory the largest; "rounds" says how many."""
    got: dict[str, list[dict[str, float]]] = {}
    for r in range(max(1, rounds)):
        for name, cmd in variants:
            n = 1 if name.startswith(once) else max(1, rounds)
            if r >= n:
                continue
            print(f"running {label}{name} (round {r + 1}/{n}) ...", file=sys.stderr, flush=True)
            got.setdefault(name, []).append(one(name, [f"{w}-{r}" if w.startswith("out=") else w for w in cmd]))
    return {name: {**{k: statistics.median(x[k] for x in rs) for k in rs[0] if k != "rss"},
                   "rss": max(x["rss"] for x in rs), "rounds": len(rs)} for name, rs in got.items()}
