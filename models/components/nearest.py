"""Nearest-neighbour distances as one matrix product with precomputed norms.

``torch.cdist`` materialises the same product but re-derives the bank's norms on every call;
keeping them with the bank saves that work on each frame. Distances are clamped at zero before
the square root, where round-off could make them slightly negative.
"""

from __future__ import annotations

import torch


def squared_norms(bank: torch.Tensor) -> torch.Tensor:
    """Per-row squared norms of the memory bank, computed once when the bank is fixed."""
    return (bank * bank).sum(1)


def nearest_neighbours(
    queries: torch.Tensor,
    bank: torch.Tensor,
    bank_sq: torch.Tensor | None = None,
    k: int = 1,
    chunk: int = 16384,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distances and indices of the ``k`` nearest bank rows for each query row.

    Works under autograd: the distance to the chosen neighbour is differentiable in ``queries``,
    which Grad-CAM of the anomaly score needs. Queries are chunked to bound peak memory.
    """
    if bank_sq is None:
        bank_sq = squared_norms(bank)
    dists, idxs = [], []
    for start in range(0, queries.shape[0], chunk):
        q = queries[start : start + chunk]
        d2 = torch.addmm(bank_sq.unsqueeze(0), q, bank.T, alpha=-2.0) + (q * q).sum(1, keepdim=True)
        if k == 1:
            val, idx = d2.min(dim=1, keepdim=True)
        else:
            val, idx = d2.topk(k, dim=1, largest=False)
        dists.append(val.clamp_min(1e-12).sqrt())  # no inf gradient at 0
        idxs.append(idx)
    return torch.cat(dists), torch.cat(idxs)
