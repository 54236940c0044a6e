"""engines/heap.py: while the batched engine trains, the heap alive before is out of the garbage
collector's way and glibc keeps freed memory; afterwards both are as they were (speed only: the
numbers never depend on it)."""

from __future__ import annotations

import gc

from dropbench.engines import heap


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


def test_the_heap_is_frozen_while_training_and_handed_back_after(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(heap, "_libc", lambda: libc)
    before = gc.get_freeze_count()
    with heap.steady_heap():
        assert gc.get_freeze_count() > before  # what was alive sits outside the generations
        assert libc.calls == [("mallopt", heap.M_MMAP_THRESHOLD, heap.MMAP_THRESHOLD),
                              ("mallopt", heap.M_TRIM_THRESHOLD, heap.TRIM_THRESHOLD)]
    assert gc.get_freeze_count() == 0 and libc.calls[-1] == ("malloc_trim", 0)


def test_without_glibc_only_the_garbage_collector_is_told(monkeypatch):
    monkeypatch.setattr(heap, "_libc", lambda: None)
    with heap.steady_heap():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_the_engine_trains_inside_it(monkeypatch):
    from dropbench.config import load
    from dropbench.engines.batched import BatchedEngine

    seen = []
    real = heap.steady_heap

    def spy():
        seen.append("entered")
        return real()

    monkeypatch.setattr("dropbench.engines.batched.steady_heap", spy)
    results = list(BatchedEngine(workers=1).train([load(["epochs=2", "eval_every=1", f"seed={s}"]) for s in (1, 2)]))
    assert seen == ["entered"] and len(results) == 2 and gc.get_freeze_count() == 0
