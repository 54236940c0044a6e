"""Chunk planning for the batched engine: which runs train together, in chunks of what size, on
how many workers. The plan changes only the speed, never a run's numbers (invariance), so every
fact about the machine is injected (MachineFacts) and tests can simulate any machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from dropbench import regs
from dropbench.data import Dataset, load_datasets
from dropbench.engines.loop import eval_epochs, steps_per_epoch
from dropbench.engines.mc import MC_SLOTS, mc_active, mc_block

if TYPE_CHECKING:
    from dropbench.config import RunConfig


def group_key(cfg: "RunConfig", data: Dataset) -> tuple:
    """Runs with equal keys share one program: same shapes, same ops, same schedule."""
    m = cfg.model
    return (
        tuple(data.x_train.shape), tuple(data.x_test.shape),
        None if data.x_val is None else tuple(data.x_val.shape),  # a loop-slot regularizer's validation rows
        m.hidden, m.depth, m.activation, m.placement, m.residual,
        tuple(cfg.reg.names), cfg.optim.name, cfg.dtype, cfg.device, cfg.epochs, cfg.eval_every,
        cfg.masks, cfg.eval.mc_masks,  # where masks come from
        cfg.batch_size,  # the steps' shapes and schedule
        tuple(r.program_key(c) for r, c in regs.active(cfg.reg)),  # e.g. concrete dropout on the inputs
    )


L2_MULTIPLE = 12  # a chunk's optimizer state may span this many cores' L2 caches (max_chunk)
DEFAULT_L2 = 2 * 2**20


def l2_cache_bytes(root: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """A core's L2 cache size from Linux sysfs; None where the machine does not say."""
    from pathlib import Path

    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    for index in sorted(Path(root).glob("index*")):
        try:
            if (index / "level").read_text().strip() != "2" or (index / "type").read_text().strip() == "Instruction":
                continue
            size = (index / "size").read_text().strip().upper()
            return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        except (OSError, ValueError, IndexError):
            continue
    return None


@dataclass(frozen=True)
class MachineFacts:
    """What the chunk planner reads about the machine, so that tests can simulate any machine.
    The plan changes only the speed, never a run's numbers (invariance)."""

    workers: int = 1  # workers (processes or threads), one chunk each at a time
    l2_bytes: int | None = None  # one core's L2 cache; None: unknown, DEFAULT_L2 is assumed

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")

    @classmethod
    def detect(cls, workers: int | None = None) -> "MachineFacts":
        """This machine: `workers` (default one per core) and its L2 size from sysfs."""
        return cls(workers if workers is not None else (os.cpu_count() or 1), l2_cache_bytes())


MAX_CHUNK = 256  # members: beyond this a step's fixed cost is already a small share
ACTIVATION_TENSORS = 6  # [rows, width] tensors a step keeps per hidden layer (input, pre, out, mask, grads)
MC_BYTES = 256 * 2**20  # an MC block's activations, per chunk: a memory bound, not a cache one


def max_chunk(n_params: int, dtype_bytes: int, l2: int | None, step_elements: int = 0, mc_elements: int = 0) -> int:
    """Most members per chunk, from a member's working set in a step and a core's L2 cache (None:
    unknown, DEFAULT_L2 is assumed): its optimizer state (param, grad, exp_avg, exp_avg_sq) and
    `step_elements` of activations (step_work_elements); and with MC evaluation, `mc_elements` per
    member of an MC block's activations within MC_BYTES.

    A larger chunk shares a step's fixed cost (Python, dispatch) among more members until its
    working set no longer stays near the core; timing chunk sizes puts that at about
    L2_MULTIPLE L2 caches, with a broad optimum, so the multiple need not be tuned per machine.
    The size changes no run's numbers (invariance), only the speed.
    """
    per_member = (4 * n_params + step_elements) * dtype_bytes
    most = L2_MULTIPLE * (l2 or DEFAULT_L2) // max(per_member, 1)
    if mc_elements:
        most = min(most, MC_BYTES // (mc_elements * dtype_bytes))
    return max(2, min(MAX_CHUNK, most))


def working_elements(cfg: "RunConfig", n_train: int, n_in: int, n_test: int) -> tuple[int, int]:
    """A member's activations in a training step and, where it evaluates MC passes, in an MC
    block (ACTIVATION_TENSORS per layer, rows x the layer's width; 0 without MC)."""
    m = cfg.model
    width = max(n_in, m.hidden)
    rows = n_train if cfg.batch_size is None else min(cfg.batch_size, n_train)
    step = ACTIVATION_TENSORS * rows * width * m.depth
    mc = 0
    if eval_work(cfg, n_test, n_in) > 0:
        mc = ACTIVATION_TENSORS * mc_block(cfg, n_test, n_in) * n_test * width * m.depth
    return step, mc


def split_group(n: int, most: int) -> list[int]:
    """Chunk sizes for a group of n runs: as few chunks as `most` allows, near-equal."""
    k = -(-n // most)
    base, extra = divmod(n, k)
    return [base + (i < extra) for i in range(k)]


CHUNK_OVERHEAD = 0.9  # a chunk step's fixed cost (Python, dispatch), in members' work: small chunks cost more per run


def makespan(costs: Sequence[float], workers: int) -> float:
    """When the last worker finishes, with chunks taken largest first from one queue."""
    loads = [0.0] * workers
    for c in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += c
    return max(loads)


def step_work(cfg: "RunConfig", n_train: int, n_in: int) -> tuple[int, float]:
    """A run's parameter count, and its training step's cost in parameters' worth of work: one
    per parameter, plus each selected regularizer's `cost` (dropbench/regs/).

    The costs come from timing each piece alone against a plain step; the chunk planner needs
    them only relative to each other.
    """
    m = cfg.model
    first, middle = n_in * m.hidden, (m.depth - 1) * m.hidden * m.hidden
    n_params = first + middle + m.depth * m.hidden + m.hidden + 1
    return n_params, n_params + sum(r.cost(m, n_train, n_in, n_params) for r, _ in regs.active(cfg.reg))


def run_work(cfg: "RunConfig", n_train: int, n_in: int, n_test: int = 0) -> float:
    """A run's whole training in parameters' worth of work: epochs x steps per epoch x a step's
    work, a step's on its batch's rows (the regularizers' masks scale with them), plus its MC
    evaluations on `n_test` rows (eval_work; none where n_test is 0)."""
    rows = n_train if cfg.batch_size is None else min(cfg.batch_size, n_train)
    training = step_work(cfg, rows, n_in)[1] * steps_per_epoch(n_train, cfg.batch_size) * cfg.epochs
    return training + eval_work(cfg, n_test, n_in)


# The MC evaluation in the same units. A pass's forward over the test rows costs MC_FORWARD_COST
# parameters' worth per row and parameter: one multiply-add of a batched matmul, a small fraction
# of a parameter's share of a training step (which adds Python, dispatch, the backward and the
# optimizer); and each MC-active regularizer draws its masks as in a training step on that many
# rows (its `cost`). Timing MC passes alone confirms the model's order of magnitude, which is
# all that ordering chunks needs.
MC_FORWARD_COST = 0.025


def eval_work(cfg: "RunConfig", n_test: int, n_in: int) -> float:
    """A run's MC-dropout evaluations (eval.mc_samples = T) in parameters' worth of work: at each
    eval epoch, T passes over the n_test test rows in blocks of engines/mc.mc_block passes (the
    last block is computed whole), each pass a forward plus the MC-active regularizers' mask
    draws. Zero without T or without an MC-active regularizer: every pass is then the eval-mode
    prediction, which the engines compute once. At T = 10,000 (the UCI protocol) this can
    exceed the whole training."""
    T = cfg.eval.mc_samples
    active = [r for r, _ in regs.active(cfg.reg) if r.slot in MC_SLOTS and mc_active(r)]
    if T <= 0 or n_test <= 0 or not active:
        return 0.0
    n_params = step_work(cfg, n_test, n_in)[0]
    block = mc_block(cfg, n_test, n_in)
    passes = -(-T // block) * block
    per_pass = MC_FORWARD_COST * n_test * n_params + sum(r.cost(cfg.model, n_test, n_in, n_params) for r in active)
    return len(eval_epochs(cfg.epochs, cfg.eval_every)) * passes * per_pass


Work = tuple[list["RunConfig"], float]  # a chunk's runs, and the cost of one run's training


def chunk_cost(piece: Work) -> float:
    """A chunk step costs (size + CHUNK_OVERHEAD) runs' work: small chunks are dearer per run."""
    return piece[1] * (max(len(piece[0]), 2) + CHUNK_OVERHEAD)


def balance(chunks: list[Work], workers: int, key: Callable[[Any], str] | None = None) -> list[Work]:
    """Halve the costliest chunk while that ends the sweep sooner: five groups of 10 on two
    workers train as 10+10+5 on each (27.7 units) rather than 10+10+10 against 10+10 (32.7).
    Adjacent runs with equal `key` (twins: training_key) stay in one half."""
    current = makespan([chunk_cost(c) for c in chunks], workers)
    while workers > 1 and chunks:
        big = max(chunks, key=chunk_cost)
        if len(big[0]) < 4:  # halves of at least 2: a chunk of one is padded to two
            break
        half = len(big[0]) - len(big[0]) // 2
        if key is not None:
            half = _twin_boundary(big[0], half, key)
        if not 0 < half < len(big[0]):
            break
        trial = [c for c in chunks if c is not big] + [(big[0][:half], big[1]), (big[0][half:], big[1])]
        shorter = makespan([chunk_cost(c) for c in trial], workers)
        if shorter >= current:
            break
        chunks, current = trial, shorter
    return chunks


def _twin_boundary(runs: Sequence[Any], i: int, key: Callable[[Any], str]) -> int:
    """The cut nearest i that keeps runs of equal key (adjacent, as plan_chunks orders them) together."""
    keys = [key(r) for r in runs]
    cuts = [j for j in range(1, len(runs)) if keys[j] != keys[j - 1]]
    return min(cuts, key=lambda j: (abs(j - i), j)) if cuts else 0


def training_key(cfg: "RunConfig") -> str:
    """What a run's training depends on: its whole config but eval.tau (which only weighs the
    test log-likelihood) and where results go. Runs with equal keys (twins) train as one chunk
    member (engines/program.py)."""
    cached = cfg.__dict__.get(_TRAINING_KEY)
    if cached is not None:
        return cached
    import json

    d = cfg.to_dict()
    d.pop("out", None)
    d["eval"] = {k: v for k, v in d["eval"].items() if k != "tau"}
    key = json.dumps(d, sort_keys=True, default=str)
    # kept on the (frozen) config, as its run id: planning, balancing and the chunk all ask
    object.__setattr__(cfg, _TRAINING_KEY, key)
    return key


_TRAINING_KEY = "_training_key"


def _trainings(cfgs: Sequence["RunConfig"]) -> int:
    return len({training_key(c) for c in cfgs})


def plan_chunks(cfgs: Sequence["RunConfig"], machine: MachineFacts) -> list[tuple[list["RunConfig"], int]]:
    """Group runs by program and cut each group into chunks of at most max_chunk members for
    `machine`'s L2, balanced over its workers; each chunk is (runs, size): size members, at least
    2 (a lone run is padded with a copy of itself), largest cost first.

    Twins (training_key) stay in one chunk and count as one member. Runs of one program may
    differ in eval.mc_samples, and a chunk computes its largest T for every member
    (engines/program.py): within a group, runs are ordered by T (stably, so equal T keep their
    order) before it is cut, and each chunk is costed by its largest T."""
    groups: dict[tuple, list[RunConfig]] = {}
    for c, data in zip(cfgs, load_datasets(cfgs)):  # each split read once: this is training's time
        groups.setdefault(group_key(c, data), []).append(c)
    chunks: list[Work] = []
    for key, members in groups.items():
        members = sorted(members, key=lambda m: m.eval.mc_samples)
        twins: dict[str, list[RunConfig]] = {}
        for m in members:
            twins.setdefault(training_key(m), []).append(m)
        trainings = list(twins.values())
        (n_train, n_in), (n_test, _) = key[0], key[1]
        n_params, _ = step_work(members[0], n_train, n_in)
        step_el, mc_el = working_elements(members[-1], n_train, n_in, n_test)  # the largest T last
        most = max_chunk(n_params, 8 if members[0].dtype == "float64" else 4, machine.l2_bytes, step_el, mc_el)
        start = 0
        for size in split_group(len(trainings), most):
            part = [m for t in trainings[start : start + size] for m in t]
            costliest = max(part, key=lambda m: m.eval.mc_samples)
            # a run's share of its chunk's cost: twins share one training
            chunks.append((part, run_work(costliest, n_train, n_in, n_test) * size / len(part)))
            start += size
    # Largest first, so the last chunks to finish are short ones.
    return [(ms, max(_trainings(ms), 2)) for ms, _ in sorted(balance(chunks, machine.workers, training_key), key=lambda ch: -chunk_cost(ch))]
