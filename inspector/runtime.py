"""Process-wide start-up of the model runtime, for applications that run the model on a worker.

Measured on the 2-core CI host (issue 14): when torch's first parallel operation in the process
ran on a worker thread, every later operation on that worker was 10-40x slower (the station's
Grad-CAM pass took 1.7-2.3 s a frame instead of 61-82 ms). One small parallel operation on the
main thread first, before any worker uses torch, avoids it. It costs a torch import (about a
second) at application start and a few milliseconds of work.
"""

from __future__ import annotations


def warm_up_threads() -> None:
    """Runs one small multi-threaded convolution on the calling (main) thread."""
    import torch

    x = torch.rand(1, 32, 64, 64)
    torch.nn.functional.conv2d(x, torch.rand(32, 32, 3, 3)).sum()


def settle_heap(collect: bool = True) -> None:
    """Freezes every object alive now out of the garbage collector's sight (``gc.freeze``).

    Measured in the station's soak (issue 14): with torch, Qt, the explainers and the model
    loaded, the heap holds millions of objects, and each full (generation 2) collection walked
    them all: 505 ms on the loaded 2-core host, with the GIL held, so the screen froze for as
    long. These objects live for the whole shift; frozen, later full collections only walk what
    came after (longest 10-20 ms in the soak).

    ``collect`` first, so garbage is not frozen with them: at application start, before the
    window shows. When a stream starts, after the model loads, the collection itself would walk
    the newly imported modules (277 ms in the soak), so there it is skipped; what is frozen then
    is freed by reference counting when no longer used (the station keeps no reference cycle).
    """
    import gc

    if collect:
        gc.collect()
    gc.freeze()
