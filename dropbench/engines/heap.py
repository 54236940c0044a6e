"""Keeping the heaps out of training's way while the batched engine trains: numbers never depend
on any of this, only the time.

- Python's: the objects alive before training (configs, data, modules, the interpreter's own)
  leave the garbage collector's generations (gc.freeze), so the collections that a step's small
  objects trigger scan only what training made. They took about a tenth of a 240-run UCI chunk's
  training time.
- glibc's: freed memory stays in the process (mallopt) instead of going back to the system at
  each free, where the next tensor of the same size faults every page in again. An MC pass over
  a chunk of 40 on kin8nm's validation rows allocates and frees several 12 MB tensors; it took
  1.3-1.7x longer, and at times 4x, while memory went back and forth. Freed memory is handed
  back once, when training ends (malloc_trim).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Any, Iterator

# glibc's mallopt parameters (malloc.h) and the values used while training
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's maximum: blocks below it come from the heap, which keeps them
TRIM_THRESHOLD = 2**30  # free memory at the heap's top that stays in the process


def _libc() -> Any | None:
    """glibc's malloc controls, where this process has them (Linux with glibc); None elsewhere."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):
        return None


@contextmanager
def steady_heap() -> Iterator[None]:
    """While the block runs: the heap alive before it is frozen out of garbage collection, and
    glibc keeps freed memory (once set, for the rest of the process: mallopt has no undo); after
    it, the garbage collector sees everything again and free memory goes back to the system."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        if libc is not None:
            libc.malloc_trim(0)
