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
    new out= folder (a finished one would be skipped). A second of training moves by a third
    with a moment's noise on a shared machine, so each figure is the median over the rounds;
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


# A new file costs a few tens of microseconds on a settled disk (ext4, xfs, tmpfs). On ext4 without
# a journal the kernel checks each inode freed in the last minutes before it reuses one (ialloc.c,
# recently_deleted), and after a large folder is deleted a new file costs up to twenty times as
# much for about five minutes: in a workload that stores runs, the parent storing beside the
# workers then takes their CPU. Above this the disk is taken as unsettled.
SETTLED_FILE_S = 100e-6


def new_file_seconds(where: str | None = None, n: int = 100) -> float:
    """Seconds per new file (folder entries made, written and closed) in a new folder under
    `where` (the temporary folder by default); the probe's files are kept until the process ends,
    since deleting them is what slows the next ones."""
    import atexit
    import shutil
    import tempfile
    import time

    folder = Path(tempfile.mkdtemp(prefix="dropbench-disk-probe-", dir=where))
    atexit.register(shutil.rmtree, folder, True)
    t = time.perf_counter()
    for i in range(n):
        (folder / str(i)).write_bytes(b"x")
    return (time.perf_counter() - t) / n


def settle_disk(limit_s: float = 360.0, probe: Callable[[], float] = new_file_seconds,
                sleep: Callable[[float], None] | None = None, clock: Callable[[], float] | None = None) -> float:
    """Wait, up to limit_s, until a new file costs at most SETTLED_FILE_S, so that figures of
    workloads that store runs are not those of a disk still slowed by the last deletions (an
    earlier benchmark's, the test suite's). Returns the last probe; says on stderr what it waited for."""
    import time

    sleep, clock = sleep or time.sleep, clock or time.monotonic
    start = clock()
    cost = probe()
    while cost > SETTLED_FILE_S:
        if clock() - start >= limit_s:
            print(f"warning: a new file still costs {1e6 * cost:.0f} us after {limit_s:.0f} s (settled: at most "
                  f"{1e6 * SETTLED_FILE_S:.0f} us); storing runs is slower than usual in these figures",
                  file=sys.stderr, flush=True)
            return cost
        print(f"waiting for the disk to settle: a new file costs {1e6 * cost:.0f} us (files deleted in the last "
              f"minutes slow new ones) ...", file=sys.stderr, flush=True)
        sleep(20.0)
        cost = probe()
    return cost


def disk_line(cost: float) -> str:
    """The probe's figure, as the report prints it."""
    state = "settled" if cost <= SETTLED_FILE_S else "NOT settled: storing runs slower than usual"
    return f"disk: a new file cost {1e6 * cost:.0f} us before measuring ({state})"
