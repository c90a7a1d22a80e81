"""Leave-one-out scores of the training images: each scored with its own bank rows excluded.

A good image scored against a bank that holds its own patches scores near zero, so its score
says nothing about a new good part. Excluding the rows that came from it (``bank_source``)
makes every training image a held-out image for calibration, instead of setting aside a few:
with 100 good images the threshold is read from 100 scores, not 10, and the bank keeps all 100.

The rows an image contributed are few (the coreset keeps ~10% of all patches, spread over all
images), so the bank without them is nearly the bank a new image meets.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from models.patchcore.anomaly_map import anomaly_map
from models.patchcore.model import PatchCore

_BLOCK_ROWS = 65536  # bank rows per distance block: (h*w) x 65536 fp32 is 51 MB at a 14x14 grid


def _masked_nearest(
    queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor, banned: torch.Tensor, k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances and indices of the ``k`` nearest bank rows not listed in ``banned``."""
    q_sq = (queries * queries).sum(1, keepdim=True)
    best_d: torch.Tensor | None = None
    best_i: torch.Tensor | None = None
    for start in range(0, bank.shape[0], _BLOCK_ROWS):
        block = bank[start : start + _BLOCK_ROWS]
        d2 = torch.addmm(bank_sq[start : start + _BLOCK_ROWS].unsqueeze(0), queries, block.T, alpha=-2.0) + q_sq
        local = banned[(banned >= start) & (banned < start + block.shape[0])] - start
        d2[:, local] = float("inf")
        kk = min(k, block.shape[0])
        val, idx = d2.topk(kk, dim=1, largest=False)
        idx = idx + start
        if best_d is None or best_i is None:
            best_d, best_i = val, idx
        else:
            both_d, both_i = torch.cat([best_d, val], 1), torch.cat([best_i, idx], 1)
            best_d, order = both_d.topk(min(k, both_d.shape[1]), dim=1, largest=False)
            best_i = both_i.gather(1, order)
    assert best_d is not None and best_i is not None
    return best_d.clamp_min(1e-12).sqrt(), best_i


def score_excluding(model: PatchCore, emb: torch.Tensor, image_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image scores (B,) and patch scores (B, h, w), image b searched without the rows of ``image_ids[b]``.

    The same scoring as ``PatchCore.score_embedding`` (nearest-row distance, Eq. 7 reweighting
    with the neighbourhood of m* also taken without the excluded rows), exact fp32. An id with
    no rows in the bank (e.g. -1) gives the ordinary score.
    """
    if not model.is_fitted:
        raise RuntimeError("PatchCore has no memory bank: fit it first")
    if model.bank_source.numel() != model.memory_bank.shape[0]:
        raise RuntimeError("this memory bank does not record which image each row came from; refit it")
    bank, bank_sq, source = model.memory_bank, model.bank_sq, model.bank_source
    b, c, h, w = emb.shape
    k = min(model.config.num_neighbours, bank.shape[0])
    scores, patches = [], []
    for i in range(b):
        banned = (source == image_ids[i]).nonzero().flatten()
        if banned.numel() >= bank.shape[0]:
            raise ValueError("leave-one-out needs at least two training images in the bank")
        q = emb[i].permute(1, 2, 0).reshape(-1, c)
        dist, idx = _masked_nearest(q, bank, bank_sq, banned)
        top = int(dist[:, 0].argmax())
        m_test, m_star = q[top], bank[idx[top, 0]]
        _, support = _masked_nearest(m_star.unsqueeze(0), bank, bank_sq, banned, k=k)
        d_support = torch.linalg.vector_norm(bank[support[0]] - m_test.unsqueeze(0), dim=1)
        weight = 1.0 - torch.softmax(d_support, dim=0)[0]
        scores.append(weight * dist[top, 0])
        patches.append(dist[:, 0].view(h, w))
    return torch.stack(scores), torch.stack(patches)


@torch.no_grad()
def leave_one_out_scores(
    model: PatchCore, batches: Iterable[torch.Tensor], first_id: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and anomaly maps of the training images, given again in ``fit`` order.

    Image n of the batches is taken to be training image ``first_id + n``: the caller must
    pass the same images in the same order as to ``fit``.
    """
    device = model.mean.device
    scores, maps = [], []
    next_id = first_id
    for batch in batches:
        batch = batch.to(device)
        ids = torch.arange(next_id, next_id + batch.shape[0], device=device)
        next_id += batch.shape[0]
        s, patch = score_excluding(model, model.embed(batch), ids)
        scores.append(s.cpu())
        maps.append(anomaly_map(patch, (batch.shape[-2], batch.shape[-1]), model.config.sigma).cpu())
    return torch.cat(scores), torch.cat(maps)
