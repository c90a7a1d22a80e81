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
