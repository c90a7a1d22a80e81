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
from math import prod

import torch

from models.patchcore.anomaly_map import anomaly_map, to_size
from models.patchcore.model import PatchCore, aggregate_patches

_BLOCK_FLOATS = 1 << 24  # 64 MB of fp32 distances per block, whatever the bank's size


def _masked_nearest(
    queries: torch.Tensor,
    ids: torch.Tensor,
    bank: torch.Tensor,
    bank_sq: torch.Tensor,
    source: torch.Tensor,
    k: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances and indices (B, P, k) of the ``k`` nearest bank rows to each of the P queries
    of image b, among the rows whose ``source`` is not ``ids[b]``: one matrix product per block
    of bank rows for the whole batch, the excluded rows masked to infinity."""
    b, p, c = queries.shape
    flat = queries.reshape(b * p, c).contiguous()
    q_sq = (flat * flat).sum(1, keepdim=True)
    block = max(k, min(bank.shape[0], _BLOCK_FLOATS // max(1, b * p)))
    best_d: torch.Tensor | None = None
    best_i: torch.Tensor | None = None
    for start in range(0, bank.shape[0], block):
        stop = min(bank.shape[0], start + block)
        d2 = torch.addmm(bank_sq[start:stop].unsqueeze(0), flat, bank[start:stop].T, alpha=-2.0) + q_sq
        own = (source[start:stop].unsqueeze(0) == ids.unsqueeze(1)).unsqueeze(1)  # (B, 1, rows)
        d2 = d2.view(b, p, -1).masked_fill_(own, float("inf"))
        if k == 1:
            val, idx = d2.min(dim=2, keepdim=True)
        else:
            val, idx = d2.topk(min(k, stop - start), dim=2, largest=False)
        idx = idx + start
        if best_d is None or best_i is None:
            best_d, best_i = val, idx
        else:
            both_d, both_i = torch.cat([best_d, val], 2), torch.cat([best_i, idx], 2)
            best_d, order = both_d.topk(min(k, both_d.shape[2]), dim=2, largest=False)
            best_i = both_i.gather(2, order)
    assert best_d is not None and best_i is not None
    return best_d.clamp_min(1e-12).sqrt(), best_i


def score_excluding(model: PatchCore, emb: torch.Tensor, image_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image scores (B,) and patch scores (B, h, w), image b searched without the rows of ``image_ids[b]``.

    The same scoring as ``PatchCore.score_embedding`` (nearest-row distance; the mean of the
    ``score_topk`` largest, or for 1 the Eq. 7 reweighting with the neighbourhood of m* also
    taken without the excluded rows), exact fp32. An id with
    no rows in the bank (e.g. -1) gives the ordinary score.
    """
    if not model.is_fitted:
        raise RuntimeError("PatchCore has no memory bank: fit it first")
    if model.bank_source.numel() != model.memory_bank.shape[0]:
        raise RuntimeError("this memory bank does not record which image each row came from; refit it")
    bank, bank_sq, source = model.memory_bank, model.bank_sq, model.bank_source
    ids = image_ids.to(source.device)
    if bool((source == source[0]).all()) and bool((ids == source[0]).any()):
        raise ValueError("leave-one-out needs at least two training images in the bank")
    b, c, h, w = emb.shape
    q = emb.permute(0, 2, 3, 1).reshape(b, h * w, c)
    dist, idx = _masked_nearest(q, ids, bank, bank_sq, source)
    patch = dist[:, :, 0]  # (B, hw)
    if model.config.score_topk > 1:
        return aggregate_patches(patch, model.config.score_topk), patch.view(b, h, w)
    top = patch.argmax(dim=1)
    rows = torch.arange(b, device=emb.device)
    s_star, m_star = patch[rows, top], idx[rows, top, 0]
    m_test = q[rows, top]  # (B, C)
    k = min(model.config.num_neighbours, bank.shape[0])
    _, support = _masked_nearest(bank[m_star].unsqueeze(1), ids, bank, bank_sq, source, k=k)
    d_support = torch.linalg.vector_norm(bank[support[:, 0]] - m_test.unsqueeze(1), dim=2)  # (B, k)
    weight = 1.0 - torch.softmax(d_support, dim=1)[:, 0]
    return weight * s_star, patch.view(b, h, w)


def batch_ids(ids: torch.Tensor | None, first: int, count: int, device: torch.device) -> torch.Tensor:
    """``fit`` positions of ``count`` images that follow the ``first`` already seen: their own
    positions, or with ``ids`` (a sample's ascending positions) the sample's entries."""
    pos = torch.arange(first, first + count)
    if ids is None:
        return pos.to(device)
    if first + count > ids.numel():
        raise ValueError(f"more images than the {ids.numel()} calibration ids given")
    return ids[pos].to(device)


@torch.no_grad()
def leave_one_out_scores(
    model: PatchCore,
    batches: Iterable[torch.Tensor] | None = None,
    block: int = 16,
    max_maps: int = 256,
    ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of the training images in ``fit`` order, and anomaly maps (input size) of the first
    ``max_maps`` (they only set the map colour range; 10,000 maps would take 500 MB).

    A fit that was one coreset chunk kept its patch features (``fit_rows``): they are used,
    and then dropped, so small sets pay no second pass over their images. Otherwise
    ``batches`` must give the same images in the same order as to ``fit`` (image n is
    ``bank_source`` n). A ``fine_score`` model's score also reads the fine bank: its
    leave-one-out scores come from the fit (``fit_fine_loo``) where it kept them, else the
    images are embedded again. ``ids`` (ascending ``fit`` positions) scores those images only;
    ``batches`` then hold just them, in that order.
    """
    device = model.mean.device
    size = model.config.input_hw  # non-square models (a fine-score one calibrates here) keep their aspect
    scores, maps = [], []
    cached, model.fit_rows = model.fit_rows, None
    fine_loo, model.fit_fine_loo = model.fit_fine_loo, None
    fine = model.config.fine_score and model.score_scale.numel() == 2
    if cached is not None and fine and (fine_loo is None or fine_loo.numel() != cached[0].shape[0] // prod(cached[1])):
        cached = None  # the fine bank's scores of these images were not kept: embed them again
    if cached is not None:
        rows, (h, w) = cached
        per_image = rows.view(-1, h * w, rows.shape[1])
        wanted = torch.arange(per_image.shape[0]) if ids is None else ids.cpu().long()
        for start in range(0, wanted.numel(), block):
            part_ids = wanted[start : start + block]
            part = per_image[part_ids].to(device).float()
            if model.config.standardize and model.channel_mean.numel():
                part = (part - model.channel_mean) * model.channel_scale
            emb = part.view(-1, h, w, part.shape[2]).permute(0, 3, 1, 2)
            s, patch = score_excluding(model, emb, part_ids.to(device))
            if fine and fine_loo is not None:
                from models.patchcore.fine_score import combine

                part_fine = fine_loo[part_ids].to(s)
                s = combine(str(model.config.fine_score), s, part_fine, model.score_scale)
            scores.append(s.cpu())
            if start < max_maps:
                maps.append(anomaly_map(patch[: max_maps - start], size, model.config.sigma).cpu())
        return torch.cat(scores), torch.cat(maps)
    if batches is None:
        raise ValueError("the fit's features were not kept (a chunked fit): pass the training images again")
    next_id = 0
    for batch in batches:
        batch = batch.to(device)
        s, patch = _score_batch_excluding(model, batch, batch_ids(ids, next_id, batch.shape[0], device))
        scores.append(s.cpu())
        if next_id < max_maps:
            amap = anomaly_map(patch[: max_maps - next_id], (batch.shape[-2], batch.shape[-1]), model.config.sigma)
            maps.append(to_size(amap, size).cpu())  # a frame kept at its own aspect: stacked at the nominal size
        next_id += batch.shape[0]
    return torch.cat(scores), torch.cat(maps)


def _score_batch_excluding(
    model: PatchCore, batch: torch.Tensor, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``score_excluding`` of images; with ``fine_score`` the fine bank's leave-one-out score is
    combined in as ``PatchCore.score_features`` does, so thresholds read the score used live."""
    hw = (batch.shape[-2], batch.shape[-1])
    feats = model.extractor(model.normalize(batch).contiguous(memory_format=torch.channels_last))
    s, patch = score_excluding(model, model.embed_features(feats, hw), ids)
    if model.config.fine_score and model.fine_map is not None and model.score_scale.numel() == 2:
        from models.patchcore.fine_score import combine, fine_scores_excluding

        fine = fine_scores_excluding(model.fine_map, model.fine_map.raw_embed(feats, hw), ids)
        s = combine(model.config.fine_score, s, fine.to(s.dtype), model.score_scale)
    return s, patch
