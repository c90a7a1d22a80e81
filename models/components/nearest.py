"""Nearest-neighbour distances as one matrix product with precomputed norms.

``torch.cdist`` materialises the same product but re-derives the bank's norms on every call;
keeping them with the bank saves that work on each frame. Distances are clamped at zero before
the square root, where round-off could make them slightly negative.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


def squared_norms(bank: torch.Tensor) -> torch.Tensor:
    """Per-row squared norms of the memory bank, computed once when the bank is fixed."""
    return (bank * bank).sum(1)


_BLOCK_FLOATS = 1 << 25  # 128 MB of fp32 distances per block


def nearest_neighbours(
    queries: torch.Tensor,
    bank: torch.Tensor,
    bank_sq: torch.Tensor | None = None,
    k: int = 1,
    chunk: int = 16384,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distances and indices of the ``k`` nearest bank rows for each query row.

    Works under autograd: the distance to the chosen neighbour is differentiable in ``queries``,
    which Grad-CAM of the anomaly score needs. Queries are chunked so that one (rows, N)
    distance block stays near 128 MB whatever the bank's size (a 10,000-image bank has 176,000
    rows: 16,384 queries at once would need 11 GB).
    """
    if bank_sq is None:
        bank_sq = squared_norms(bank)
    chunk = max(1, min(chunk, _BLOCK_FLOATS // max(1, bank.shape[0])))
    differentiable = torch.is_grad_enabled() and queries.requires_grad
    dists, idxs = [], []
    for start in range(0, queries.shape[0], chunk):
        q = queries[start : start + chunk]
        with torch.no_grad():
            d2 = torch.addmm(bank_sq.unsqueeze(0), q, bank.T, alpha=-2.0) + (q * q).sum(1, keepdim=True)
            if k == 1:
                val, idx = d2.min(dim=1, keepdim=True)
            else:
                val, idx = d2.topk(k, dim=1, largest=False)
        if differentiable:
            val = val + _chosen_rows_gradient(q, bank, idx)
        dists.append(val.clamp_min(1e-12).sqrt())  # no inf gradient at 0
        idxs.append(idx)
    return torch.cat(dists), torch.cat(idxs)


def _chosen_rows_gradient(q: torch.Tensor, bank: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Zero in value, with the gradient of the squared distances to the chosen bank rows.

    Why: a nearest-neighbour distance's gradient reaches only its chosen row, 2 (q - m). Through
    the full (queries x bank) product, autograd kept that block for the backward pass and then
    multiplied a gradient that is zero but for one entry per row by the whole bank, as costly as
    the search itself (ksdd at 280x112 with an 8,575-row bank: 10 ms of a 55 ms frame with
    Grad-CAM). The value is left exactly as the search computed it, so a frame scores the same
    with or without an explanation.
    """
    direct = (q.unsqueeze(1) - bank[idx]).pow(2).sum(2)  # (rows, k)
    return direct - direct.detach()


# bf16 keeps 8 significant bits: unit round-off 2^-8 for each rounded input and the rounded output.
_BF16_U = 2.0**-8
# |computed - exact| of one augmented product <= _BOUND * sum|x_k||y_k|: two rounded inputs, the
# rounded output, and fp32 accumulation over a few hundred terms (the 1e-4).
_BOUND = 3 * _BF16_U + 3 * _BF16_U**2 + 1e-4


# Below this many bank rows the fp32 product is already cheap and the bf16 pass not worth it.
HALF_SEARCH_MIN_ROWS = 4096


def half_search_available(device: torch.device, bank_rows: int) -> bool:
    """bf16 products pay off on CPUs with native bf16 (AVX512-BF16, AMX) and large banks.

    CUDA's fp32 products are fast enough; ``INSPECTOR_EXACT_SEARCH=1`` turns the bf16 search off.
    """
    if device.type != "cpu" or bank_rows < HALF_SEARCH_MIN_ROWS or os.environ.get("INSPECTOR_EXACT_SEARCH"):
        return False
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check is not None and check())


@dataclass(frozen=True)
class HalfBank:
    """The memory bank centred and augmented, [m - c, ||m - c||^2], in bf16 for the search.

    Centring shrinks the norms the round-off scales with; the augmentation folds the bank's
    norms into the product, so one bf16 matrix product and one row minimum give every query's
    approximate squared distance.
    """

    centre: torch.Tensor  # (C,) fp32
    rows: torch.Tensor  # (N, C + 1) bf16
    max_norm: float  # largest ||m - c|| over the bank, for the error bound


def half_bank(bank: torch.Tensor) -> HalfBank:
    """Builds the bf16 search form of an fp32 bank (once per bank)."""
    centre = bank.mean(0)
    centred = bank - centre
    sq = (centred * centred).sum(1, keepdim=True)
    rows = torch.cat([centred, sq], dim=1).to(torch.bfloat16).contiguous()
    return HalfBank(centre, rows, float(sq.max().sqrt()))


def approximate_nearest(queries: torch.Tensor, bank: HalfBank, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate squared nearest-neighbour distances (n,) and a bound (n,) on their error.

    With q' = q - c and m' = m - c, ||q - m||^2 = ||q'||^2 + [-2q', 1] . [m', ||m'||^2]. The product
    runs in bf16 (about 4x the fp32 rate here); every rounding is bounded relative to
    sum_k |x_k||y_k| <= 2||q'|| max||m'|| + max||m'||^2, which gives a guaranteed interval
    [d2 - err, d2 + err] for the exact squared distance. Chunks of queries keep the (chunk, N)
    block in cache; without autograd only.
    """
    q = queries.float() - bank.centre
    q_sq = (q * q).sum(1)
    aug = torch.cat([q * -2.0, torch.ones_like(q[:, :1])], dim=1).to(torch.bfloat16)
    best = torch.empty(q.shape[0], device=q.device)
    for start in range(0, q.shape[0], chunk):
        block = torch.mm(aug[start : start + chunk], bank.rows.T)
        best[start : start + chunk] = block.amin(dim=1).float()
    r = bank.max_norm
    err = _BOUND * (2.0 * q_sq.sqrt() * r + r * r) + 1e-6 * q_sq
    return q_sq + best, err
