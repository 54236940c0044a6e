"""Progress of a sweep being trained: the lines `run` and `tune` print when piped (ProgressLines),
and the events the library API hands to a caller's callback (Progress). Standard library only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Progress:
    """One event of a sweep being trained, for the API's `progress=` callback: once when training
    starts (done 0, run_id None), then once per run stored (its id and status, ok or failed).

    phase: "run" for run(); "search" then "final" for tune(). total: the runs this phase trains
    (those already finished in the folder are not counted)."""

    phase: str
    done: int
    total: int
    run_id: str | None = None
    status: str | None = None


class ProgressLines:
    """Progress without a bar (piped, or --quiet): a line on stderr now and then, and always a
    last one. Lines come at most every `interval` seconds, and later ones at most every tenth of
    the time elapsed, so a long sweep prints tens of lines, not one per run."""

    def __init__(self, write: Callable[[str], None], clock: Callable[[], float] = time.monotonic, interval: float = 2.0) -> None:
        self.write, self.clock, self.interval = write, clock, interval
        self.total = self.done = 0
        self.t0 = self.last = 0.0

    def start(self, total: int) -> None:
        self.total, self.done = total, 0
        self.t0 = self.last = self.clock()

    def advance(self) -> None:
        self.done += 1
        now = self.clock()
        if self.done < self.total and now - self.last >= max(self.interval, 0.1 * (now - self.t0)):
            self.last = now
            elapsed = now - self.t0
            eta = elapsed / self.done * (self.total - self.done)
            self.write(f"dropbench: {self.done}/{self.total} runs done, {elapsed:.1f} s, eta {eta:.0f} s")

    def finish(self) -> None:
        if self.total:  # nothing to train: the summary says so
            self.write(f"dropbench: {self.done}/{self.total} runs done, {self.clock() - self.t0:.1f} s")
            self.total = 0
