"""The batched engine: many runs as one tensor program with a leading run dimension.

Three parts: engines/planner.py cuts a sweep into chunks (groups, sizes, workers; speed only),
engines/program.py is one chunk's tensor program (Chunk), and this module executes the plan on
its workers (forked processes, or threads).

Why it is fast: a step of a small network (the default 1-300-300-1 on 20 points) is mostly
Python and dispatch, little arithmetic. Stacking C runs into [C, ...] tensors (batched matmuls, per-run p, lambda,
weight decay and lr as [C, 1, 1] tensors, a hand-written backward, one fused optimizer step)
pays that overhead once per chunk instead of once per run.

Why a run's numbers do not depend on its company:
- every chunk has at least two members: a batch of one takes other matmul kernels (thin layers
  such as (20,300)@(300,1) then give different last bits), while in a batch of two or more a
  member gets the same bits at any size and position (tests/test_batched.py and
  tests/test_invariance.py check it on the machine they run on); a lone run is therefore
  padded with a copy of itself;
- each worker computes with one thread, so no kernel splits work differently;
- a chunk's tensors lie in member rows (engines/memberwise.py): each member's elements start
  a row, so element-wise ops loop member by member (the scalar tail of torch's vectorized loop
  is each member's own, not the last member's) and matrix products find each member at the
  alignment it has alone;
- a run's random draws come from its own generator, started from the global RNG state the
  reference engine is in after building the model under torch.manual_seed(seed); the masks are
  therefore exactly the reference engine's, whatever the chunk, worker or sweep;
- nothing reduces across runs: the backward is that of the sum of the runs' losses, so each
  run's gradient is its own.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch

from dropbench.engines.base import GLOBAL_RNG, failed_results, one_intraop_thread, resolve_device
from dropbench.engines.heap import steady_heap
from dropbench.engines.planner import MachineFacts, plan_chunks
from dropbench.engines import generic
from dropbench.engines.program import Chunk
from dropbench.engines.result import RunResult
from dropbench.models import PROGRAM

if TYPE_CHECKING:
    from dropbench.config import RunConfig


# Building initial weights goes through the global RNG (torch.manual_seed, as the reference engine
# does); worker threads take turns there (with the generic path's pieces: engines/generic.py).
_GLOBAL_RNG = GLOBAL_RNG


def _train_chunk(cfgs: Sequence["RunConfig"], size: int, cancel: threading.Event | None = None,
                 alone: generic.TrainOne | None = None) -> list[RunResult]:
    """Train one chunk. If it raises (e.g. out of memory, or one run's data), each run is tried
    again on its own, so only the runs that raise alone fail: the others' numbers are the same
    in any chunk (invariance), so the retry changes nothing but the time taken. A model the
    program does not compute (a plug-in's) trains member by member with `alone` (the reference
    engine's train_one, handed in by engines.get_engine: this module knows no other engine)."""
    if cfgs[0].model.name not in PROGRAM:
        return generic.train_members(cfgs, alone, cancel)
    try:
        with _GLOBAL_RNG:
            chunk = Chunk(cfgs, size)
        return chunk.train(cancel)
    except Exception as e:  # noqa: BLE001  these runs fail, the sweep goes on
        if len(cfgs) == 1:
            return failed_results(cfgs, e)
    return [r for c in cfgs for r in _train_chunk([c], 2, cancel, alone)]


class BatchedEngine:
    """Trains chunks on `workers` workers (default: one per core), planned for `machine`
    (default: this one, detected).

    The workers are processes forked from this one where the platform forks (Linux), threads
    elsewhere. A chunk of small networks (the UCI protocols' 50 hidden units) runs some forty
    ops a step, each a few microseconds, and releases the GIL around each: two threads then
    spend their time handing the GIL back and forth, and trained fewer runs a second together
    than one thread alone (docs/benchmarks.md). A forked process starts in milliseconds with
    everything this one has loaded (torch, the compiled kernels, plug-ins registered here), and
    each computes as it would alone: one intra-op thread, the same numbers.
    """

    name = "batched"

    def __init__(self, workers: int | None = None, machine: MachineFacts | None = None,
                 alone: generic.TrainOne | None = None, processes: bool | None = None) -> None:
        self.machine = machine if machine is not None else MachineFacts.detect(workers)
        self.workers = self.machine.workers
        self.alone = alone  # trains a plug-in model's run by itself (the generic path)
        self.processes = _can_fork() if processes is None else processes

    def train(self, cfgs: Sequence["RunConfig"]) -> Iterator[RunResult]:
        chunks = plan_chunks(cfgs, self.machine)
        on_gpu = any(resolve_device(c.device).type == "cuda" for c in cfgs)
        with one_intraop_thread(), steady_heap():
            if self.workers <= 1 or len(chunks) <= 1 or on_gpu:
                for members, size in chunks:
                    yield from _train_chunk(members, size, alone=self.alone)
            elif self.processes:
                yield from _forked(chunks, self.workers, self.alone)
            else:
                yield from _threaded(chunks, self.workers, self.alone)


# The main thread waits for workers in steps this long. The kernel hands a process's SIGINT to any
# of its threads, and where a helper thread (a worker pool's) takes it, Python only flags it for
# the main thread, which raises KeyboardInterrupt once it runs again: a wait with no end would
# leave Ctrl-C unanswered until the running chunks finish.
WAIT_STEP_S = 0.2


def _can_fork() -> bool:
    """Linux forks safely here; macOS offers fork but its system frameworks are not fork-safe."""
    import multiprocessing
    import sys

    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _worker_init() -> None:
    """A forked worker. It has what train() set before forking: one intra-op thread, glibc's
    malloc settings and the frozen heap (steady_heap). The signals that stop a sweep (Ctrl-C;
    SIGTERM and SLURM's preemption signal, which reach every process of a job) are the parent's
    to handle: its handlers decide when to stop (once the run at hand is stored; runner,
    launchers), and it ends the workers itself (SIGKILL)."""
    import os
    import signal

    preempt = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
    for sig in {signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR2", None), preempt} - {None}:
        signal.signal(sig, signal.SIG_IGN)


def _chunk_task(members: list["RunConfig"], size: int, alone: generic.TrainOne | None) -> list[RunResult]:
    """A forked worker's task (sent by name: the worker has this module as the parent had it)."""
    return _train_chunk(members, size, None, alone)


def _forked(chunks: list[tuple[list["RunConfig"], int]], workers: int, alone: generic.TrainOne | None = None) -> Iterator[RunResult]:
    """Worker processes take chunks in order (costliest first); results come back as they finish."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init)
    procs: list[Any] = []
    try:
        pending = {pool.submit(_chunk_task, members, size, alone) for members, size in chunks}
        procs = list((getattr(pool, "_processes", None) or {}).values())  # every worker, forked at the first submit
        while pending:
            finished, pending = wait(pending, timeout=WAIT_STEP_S, return_when=FIRST_COMPLETED)
            for f in finished:
                try:
                    results = f.result()
                except BrokenProcessPool:
                    raise RuntimeError("a worker process died while training (killed, or out of memory?); "
                                       "the runs stored so far are kept: run the sweep again to resume") from None
                yield from results
    finally:
        # On error, Ctrl-C or an early close: pending chunks are dropped and running ones stopped
        # (the workers ignore SIGTERM, _worker_init; a broken pool forgets its workers).
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        for proc in procs:
            proc.join()


def _threaded(chunks: list[tuple[list["RunConfig"], int]], workers: int, alone: generic.TrainOne | None = None) -> Iterator[RunResult]:
    """Worker threads take chunks from one queue; this thread hands back results as they come."""
    import queue
    from collections import deque

    todo = deque(chunks)
    cancel = threading.Event()
    lock = threading.Lock()
    done: queue.Queue[tuple[str, Any]] = queue.Queue()

    def work() -> None:
        torch.set_num_threads(1)
        while True:
            with lock:
                if not todo:
                    break
                chunk = todo.popleft()
            try:
                done.put(("results", _train_chunk(*chunk, cancel, alone)))
            except BaseException as e:  # handed to the main thread, which re-raises it
                done.put(("error", e))
                return
        done.put(("finished", None))

    threads = [threading.Thread(target=work, daemon=True, name=f"dropbench-worker-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    finished = 0
    try:
        while finished < workers:
            try:
                kind, value = done.get(timeout=WAIT_STEP_S)
            except queue.Empty:
                continue
            if kind == "results":
                yield from value
            elif kind == "error":
                raise value
            else:
                finished += 1
    finally:
        # On error or Ctrl-C: workers stop within an epoch and are joined here. A worker left
        # running inside torch while the interpreter shuts down aborts the process
        # ("terminate called without an active exception") instead of exiting cleanly.
        with lock:
            todo.clear()
        cancel.set()
        for t in threads:
            t.join()
