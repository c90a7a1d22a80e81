"""Greedy k-center coreset (PatchCore, Roth et al. 2022, Sec. 3.2), vectorised and seeded.

Written here rather than taken from anomalib: its ``KCenterGreedy`` recomputes the distance of
every row to the new centre with a full norm over the projected features per step (about 25
steps/s on 2 cores for pillQC); this version keeps a running minimum and updates it with one
fused vector-matrix product per step on the randomly projected features, which the benchmark
(``inspector bench``) measures side by side.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

ProgressFn = Callable[[int, int], None]

_PROJECT_CHUNK = 65536  # rows projected at a time: half-precision inputs never become one fp32 copy


def random_projection(features: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """Johnson-Lindenstrauss projection to ``dim`` dimensions (the paper uses 128), in fp32.

    Projects in row chunks, so a large half-precision feature matrix (10,000 images) is never
    converted to fp32 as a whole; without projection the features come back as fp32.
    """
    if dim <= 0 or dim >= features.shape[1]:
        return features.float()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    proj = (torch.randn(features.shape[1], dim, generator=gen) / dim**0.5).to(features.device)
    out = torch.empty(features.shape[0], dim, device=features.device)
    for start in range(0, features.shape[0], _PROJECT_CHUNK):
        torch.mm(features[start : start + _PROJECT_CHUNK].float(), proj, out=out[start : start + _PROJECT_CHUNK])
    return out


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Runs the step loop on one CPU thread.

    Each step is a memory-bound product of a millisecond or two: forking it over OpenMP threads
    gains little on an idle machine and, measured on a busy 2-core one, made each step ten
    times slower (every step waits for a thread that is not scheduled).
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def greedy_coreset(
    features: torch.Tensor,
    n_select: int,
    *,
    projection_dim: int = 128,
    seed: int = 0,
    progress: ProgressFn | None = None,
    progress_every: int = 256,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Returns the indices of ``n_select`` rows that greedily cover ``features``.

    Each step picks the row farthest from the chosen set, which is what makes the memory bank
    small without losing rare normal patterns. The first row is drawn with ``seed``, so the
    result is reproducible. ``should_stop`` lets a caller (a UI cancel button) end it early.
    ``features`` may be half precision (the memory-lean form ``PatchCore.fit`` keeps).
    """
    n = features.shape[0]
    if n_select >= n:
        return torch.arange(n, device=features.device)
    if n_select <= 0:
        raise ValueError("coreset must keep at least one row")
    with torch.no_grad():
        z = random_projection(features, projection_dim, seed)
        sq = (z * z).sum(1)
        # ||z - c||^2 = ||z||^2 + [z, 1] . [-2c, ||c||^2]: one product per step, written into a
        # preallocated buffer. The rows are stored transposed, (dim + 1, n): the product is then a
        # vector-matrix product that streams memory in order, about 3x faster on the CPU than a
        # matrix-vector product over (n, dim + 1) rows, which is what bounds each step.
        z_aug = torch.empty(z.shape[1] + 1, n, device=z.device)
        z_aug[:-1] = z.T
        z_aug[-1] = 1.0
        del z
        gen = torch.Generator(device="cpu").manual_seed(seed)
        idx = int(torch.randint(n, (1,), generator=gen))
        chosen = torch.empty(n_select, dtype=torch.long, device=z_aug.device)
        min_d = torch.full((n,), float("inf"), device=z_aug.device)
        d = torch.empty(n, device=z_aug.device)
        c_aug = torch.empty(z_aug.shape[0], device=z_aug.device)
        rows = z_aug.t()  # (n, dim + 1) view of the transposed storage; no copy
        with _one_thread(z_aug.device):
            _greedy_steps(rows, sq, chosen, min_d, d, c_aug, idx, progress, progress_every, should_stop)
        return chosen


def _greedy_steps(
    rows: torch.Tensor,
    sq: torch.Tensor,
    chosen: torch.Tensor,
    min_d: torch.Tensor,
    d: torch.Tensor,
    c_aug: torch.Tensor,
    idx: int,
    progress: ProgressFn | None,
    progress_every: int,
    should_stop: Callable[[], bool] | None,
) -> None:
    """The greedy loop proper: each step adds the farthest row and updates the running minimum."""
    z_aug = rows.t()
    n_select = chosen.shape[0]
    for i in range(n_select):
        chosen[i] = idx
        c_aug.copy_(z_aug[:, idx])
        c_aug[:-1] *= -2.0
        c_aug[-1] = sq[idx]
        torch.addmv(sq, rows, c_aug, out=d)
        torch.minimum(min_d, d, out=min_d)
        idx = int(torch.argmax(min_d))
        if progress is not None and (i % progress_every == 0 or i == n_select - 1):
            progress(i + 1, n_select)
        if should_stop is not None and i % progress_every == 0 and should_stop():
            raise InterruptedError("coreset selection cancelled")
