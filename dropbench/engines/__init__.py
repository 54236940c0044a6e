"""The engines: the reference (engine=torch, one run at a time) and the batched one (many runs as
one tensor program), bit for bit the same numbers. This module is the only one that knows both.

    base.py       the interface (Engine), the device, one intra-op thread, failed runs
    result.py     RunResult: what an engine gives back for a run
    loop.py       the training loop both engines run, and every rule it keeps
    mc.py         MC evaluation's rules and statistics, shared by both
    reference.py  the reference engine
    planner.py    the batched engine's chunks (speed only); program.py one chunk's tensor
                  program; memberwise.py its tensors' layout; batched.py runs the plan on threads;
                  generic.py runs plug-ins written only in their torch form
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dropbench.errors import UserError

if TYPE_CHECKING:
    from dropbench.engines.base import Engine


def get_engine(name: str, workers: int | None = None) -> "Engine":
    """The engine called `name`; `workers` threads for the batched one (default: one per core)."""
    if name == "torch":
        from dropbench.engines.reference import ReferenceEngine

        return ReferenceEngine()
    if name == "batched":
        from dropbench.engines.batched import BatchedEngine
        from dropbench.engines.reference import train_one

        return BatchedEngine(workers, alone=train_one)  # plug-in models: member by member (generic.py)
    raise UserError(f"unknown engine={name}: choose from batched, torch")
