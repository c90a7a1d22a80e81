"""An image score that also reads the finer (stride-4) bank: thin defects at the score's grid.

Issue 11: at 112 px and stride 8 a hairline crack is a fraction of a feature cell, and the
image score (the largest patch distance to the stride-8 bank) misses some of them. The fine
map's bank (``fine_map.FineMap``: ``pixels`` + the stride-4 and stride-8 stages, queried every
4 px) comes from the same forward pass, so its largest patch distance is a second image score
at the cost of one more nearest-neighbour search.

The two scores are made comparable by dividing each by its own *good-image scale*: a quantile
of the training images' leave-one-out scores, measured at fit time (never on test images).
``combine`` then takes their maximum ("max"), their mean ("sum") or the fine one alone
("fine"), and multiplies back by the coarse scale so the result stays in the score bank's units
(the map's colour range, tied to the threshold, keeps its meaning).

The fine score is the plain largest patch distance (no Eq. 7 reweighting), in the score bank's
units (``FineMap.unit``). It keeps autograd when its features do, so Grad-CAM can differentiate
it; note that its stages stop at stride 8, so its gradient reaches only those stages.
"""

from __future__ import annotations

import torch

from models.components.nearest import nearest_neighbours
from models.patchcore.fine_map import FineMap
from models.patchcore.leave_one_out import _masked_nearest
from models.patchcore.model import FINE_SCORE_MODES as MODES


def fine_image_scores(fine: FineMap, features: dict[str, torch.Tensor], input_hw: tuple[int, int]) -> torch.Tensor:
    """(B,) largest fine patch distance per image; differentiable.

    The search over every patch runs without autograd; only the winning patch's distance to its
    nearest row is recomputed with it. Same value and gradient (a maximum's gradient flows
    through its argmax only), without a backward pass through the (4 x patches, rows) product.
    """
    emb = fine.standardise(fine.raw_embed(features, input_hw, detach=False))
    b, c, h, w = emb.shape
    rows = fine.rows(emb).contiguous()
    with torch.no_grad():
        dist, idx = nearest_neighbours(rows.detach(), fine.bank, fine.bank_sq)
    dist, idx = dist.view(b, h * w), idx.view(b, h * w)
    if not (torch.is_grad_enabled() and rows.requires_grad):
        return dist.amax(dim=1) * fine.unit
    top = dist.argmax(dim=1)
    pick = torch.arange(b, device=rows.device)
    query = rows.view(b, h * w, c)[pick, top]
    nearest = fine.bank[idx[pick, top]]
    return torch.linalg.vector_norm(query - nearest, dim=1).clamp_min(1e-6) * fine.unit


@torch.no_grad()
def fine_scores_excluding(fine: FineMap, raw_emb: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
    """(B,) fine image scores of training images, image b searched without the fine bank's rows
    of ``image_ids[b]`` (leave-one-out, as ``leave_one_out.score_excluding`` for the score bank)."""
    if fine.bank_source.numel() != fine.bank.shape[0]:
        raise RuntimeError("the fine bank does not record which image each row came from; refit it")
    emb = fine.standardise(raw_emb.float().to(fine.bank.device))
    b, c, h, w = emb.shape
    q = emb.permute(0, 2, 3, 1).reshape(b, h * w, c)
    dist, _ = _masked_nearest(q, image_ids.to(fine.bank.device), fine.bank, fine.bank_sq, fine.bank_source)
    return dist[:, :, 0].amax(dim=1) * fine.unit


def good_scale(loo_scores: torch.Tensor, level: float) -> torch.Tensor:
    """The ``level`` quantile of good training images' leave-one-out scores (a positive scalar)."""
    s = loo_scores.double().reshape(-1)
    if s.numel() == 0:
        raise ValueError("no leave-one-out scores to set the score's scale from")
    return torch.quantile(s, float(level)).clamp_min(1e-6).float()


def combine(mode: str, coarse: torch.Tensor, fine: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The image score from the coarse and fine scores, each over its good-image scale
    (``scale`` = (coarse scale, fine scale)), in the coarse score's units."""
    sc, sf = scale[0].to(coarse.dtype), scale[1].to(coarse.dtype)
    f = fine.to(coarse.dtype) * (sc / sf)
    if mode == "max":
        return torch.maximum(coarse, f)
    if mode == "sum":
        return 0.5 * (coarse + f)
    if mode == "fine":
        return f
    raise ValueError(f"unknown fine_score '{mode}'; choose one of {MODES}")
