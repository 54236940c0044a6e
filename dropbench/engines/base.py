"""The engine interface: what every engine takes and gives back, so a batched engine can stand
beside the reference, and the rules both keep about where and on how many threads a run computes."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence

from dropbench.engines.result import RunResult
from dropbench.errors import UserError

if TYPE_CHECKING:
    import torch

    from dropbench.config import RunConfig


class Engine(Protocol):
    """Trains runs and yields each RunResult as soon as it is done (any order)."""

    name: str

    def train(self, cfgs: Sequence["RunConfig"]) -> Iterator[RunResult]: ...


def failed_results(cfgs: Sequence["RunConfig"], error: Exception) -> list[RunResult]:
    """A run that raised is recorded, not lost: the sweep goes on without it."""
    reason = f"{type(error).__name__}: {' '.join(str(error).split())}"[:300]
    return [RunResult(c, status="failed", reason=reason) for c in cfgs]


@contextmanager
def one_intraop_thread() -> Iterator[None]:
    """Every run computes with one intra-op thread, whatever the machine's core count: the same
    kernels, so the same bits (a reduction split over threads, such as the L1 sum, rounds
    differently), and no threads spinning over ops too small to share. Parallelism comes from
    running different runs at once."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str) -> "torch.device":
    """A run's device, cpu or cuda: config.build resolves device=auto before the run exists (its
    run id names the device that runs it), so no run reaches an engine with auto."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda: no CUDA GPU is visible to torch here; use device=cpu or device=auto")
    return torch.device(device)


# torch's global generator: building initial weights (torch.manual_seed, as the reference engine
# does), the generic path's regularizers (which draw from it, each member's stream swapped in) and
# models it trains member by member. Worker threads take turns there.
GLOBAL_RNG = threading.RLock()
