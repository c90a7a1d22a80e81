"""A finer anomaly map than the score's grid, from a second, small memory bank of earlier stages.

Issue 11: at 112 px and stride 8 the map is a 14x14 grid, so a dirt pill's specks become one
blob and a hairline crack a smear. Querying the score's own bank on a finer grid did not help
(measured: pixel AUROC 0.903 against 0.904 on crack training images with pasted defects): the
stages themselves are too coarse. Stages at stride 4 (``pixels`` + ``blocks.1`` + ``blocks.2``
of efficientnet-lite0) are, and the backbone computes them anyway on its way to ``blocks.3``, so
the map costs one more nearest-neighbour search per frame, not another forward pass.

The image score reads this bank only with the opt-in ``fine_score`` (``fine_score.py``). Its
distances are converted to the score bank's units (``unit``: the ratio of the two banks' median
distances of training patches outside them), so the map's colour range, which calibration ties
to the decision threshold, keeps its meaning.

Alone, it localised worse than the score's grid on ksdd's real masks, which are wide regions
around thin cracks. Averaged with the score grid's map (``blend``, ``map_blend="mean"``) it was
level with it there and better on pasted defects (docs/measured.md, "Sharper maps"). Searching every fine
cell cost up to 1.9x per frame with Grad-CAM, so the fine grid is searched only under the
frame's highest coarse scores (``focused``): x1.1-1.2 per frame, and no worse a map. That focused
blend is the default (``PatchCoreConfig``'s map settings); ``train --coarse-map`` leaves the
fine bank out.
Incremental updates (``train --update``) change the score bank only; this bank keeps the images
of the last full fit, and ``train --update`` says so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.components.coreset import greedy_coreset
from models.components.nearest import nearest_neighbours, squared_norms

# Training patches kept for the map's coreset (a random share of each batch). 50,000 rather than
# 200,000: on pasted defects on crack and pillQC *training* images the map lost at most 0.003 of
# (pixel AUROC + AUPRO) / 2 and crack's fit took 3.3 s instead of 9.8 s (docs/measured.md, "Sharper maps").
MAX_ROWS = 50_000
UNIT_SAMPLE = 20_000  # training patches whose distances set the unit conversion


class FineMap(nn.Module):
    """Patch features of ``layers`` every ``stride`` pixels, standardised, and their coreset."""

    def __init__(self, layers: tuple[str, ...], stride: int, coreset_ratio: float, seed: int = 0) -> None:
        super().__init__()
        self.layers, self.stride, self.coreset_ratio, self.seed = tuple(layers), int(stride), coreset_ratio, seed
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.register_buffer("bank", torch.empty(0))
        self.register_buffer("bank_sq", torch.empty(0))
        self.register_buffer("channel_mean", torch.empty(0))
        self.register_buffer("channel_scale", torch.empty(0))
        self.register_buffer("unit", torch.ones(()))
        # Which training image each bank row came from (fit order), for a leave-one-out fine
        # image score (models/patchcore/fine_score.py); not saved: only calibration reads it.
        self.register_buffer("bank_source", torch.empty(0, dtype=torch.long))

    @property
    def is_fitted(self) -> bool:
        return self.bank.numel() > 0

    def grid(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        return (-(-input_hw[0] // self.stride), -(-input_hw[1] // self.stride))

    def raw_embed(
        self, features: dict[str, torch.Tensor], input_hw: tuple[int, int], detach: bool = True
    ) -> torch.Tensor:
        """(B, C, h, w) unstandardised features on the map's grid: finer stages max-pooled to it
        (colour extremes of the ``pixels`` stage survive), coarser ones interpolated. ``detach``
        False keeps autograd, for an image score that reads this bank (Grad-CAM)."""
        size = self.grid(input_hw)
        out = []
        for layer in self.layers:
            m = self.pool(features[layer].detach() if detach else features[layer])
            if tuple(m.shape[-2:]) == size:
                out.append(m)
            elif m.shape[-2] > size[0]:
                h, w = int(m.shape[-2]), int(m.shape[-1])
                if h % size[0] == 0 and w % size[1] == 0:
                    out.append(F.max_pool2d(m, (h // size[0], w // size[1])))
                else:
                    out.append(F.adaptive_max_pool2d(m, size))
            else:
                out.append(F.interpolate(m, size=size, mode="bilinear", align_corners=False))
        return torch.cat(out, dim=1)

    def standardise(self, emb: torch.Tensor) -> torch.Tensor:
        return (emb - self.channel_mean.view(1, -1, 1, 1)) * self.channel_scale.view(1, -1, 1, 1)

    @staticmethod
    def rows(emb: torch.Tensor) -> torch.Tensor:
        return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])

    @torch.no_grad()
    def fit(
        self, raw_rows: torch.Tensor, score_bank_distance: torch.Tensor, sources: torch.Tensor | None = None
    ) -> None:
        """Builds the bank from raw training rows (N, C); ``score_bank_distance`` holds the score
        bank's coverage distances of training patches, the unit the map is converted into;
        ``sources`` (N,) the training image of each row."""
        if raw_rows.shape[0] == 0:
            raise ValueError("no training patches for the fine map")
        rows = raw_rows.float()
        mean, std = rows.mean(0), rows.std(0).clamp_min(1e-6)
        self.channel_mean, self.channel_scale = mean.to(self.bank.device), (1.0 / std).to(self.bank.device)
        feats = ((rows - mean) / std).to(self.bank.device)
        n_keep = max(1, int(round(feats.shape[0] * self.coreset_ratio)))
        idx = greedy_coreset(feats, n_keep, seed=self.seed)
        self.bank = feats[idx].contiguous()
        self.bank_sq = squared_norms(self.bank)
        self.bank_source = (
            sources[idx.to(sources.device)].long().to(self.bank.device)
            if sources is not None
            else torch.empty(0, dtype=torch.long, device=self.bank.device)
        )
        g = torch.Generator().manual_seed(self.seed)
        sample = feats[torch.randperm(feats.shape[0], generator=g)[:UNIT_SAMPLE].to(feats.device)]
        own, _ = nearest_neighbours(sample, self.bank, self.bank_sq)
        self.unit = (_typical(score_bank_distance) / _typical(own)).to(self.bank.device)

    def patch_scores(
        self,
        features: dict[str, torch.Tensor],
        input_hw: tuple[int, int],
        coarse: torch.Tensor | None = None,
        focus: float | None = None,
    ) -> torch.Tensor:
        """(B, h, w) nearest-bank distances on the map's grid, in the score bank's units.

        With ``coarse`` (the score grid's patch scores, (B, h0, w0)) and ``focus`` in (0, 1), only
        the ``focus`` share of fine cells under the frame's highest coarse scores is searched
        (``focused``); without, every cell is.
        """
        with torch.no_grad():
            emb = self.standardise(self.raw_embed(features, input_hw))
            b, c, h, w = emb.shape
            if coarse is not None and focus is not None and 0 < focus < 1:
                return focused(self, emb, coarse.detach().float(), focus)
            dist, _ = nearest_neighbours(self.rows(emb).contiguous(), self.bank, self.bank_sq)
            return (dist.reshape(b, h, w) * self.unit).float()


def focused(fm: FineMap, emb: torch.Tensor, coarse: torch.Tensor, focus: float) -> torch.Tensor:
    """The fine grid searched only where the coarse map is highest; elsewhere the coarse scores.

    Why: the fine search is over 4x the score's query patches and roughly doubled the cost per
    frame, mostly on parts of the frame the coarse grid already calls normal. The ``focus``
    share of fine cells under the frame's highest coarse scores is searched (a fixed number, so
    the cost per frame is fixed and the graph static for ONNX); every other cell takes its
    coarse score times the frame's median fine/coarse ratio over the searched cells, so the two
    kinds of cell share one scale. On pasted defects on crack and pillQC training images this
    localised better than searching every cell (the coarse fill is smoother where the part is
    normal) at a fifth of the search (docs/measured.md, "Sharper maps").
    """
    b, c, h, w = emb.shape
    up = F.interpolate(coarse[:, None], size=(h, w), mode="nearest").reshape(b, h * w)
    k = max(1, round(focus * int(h) * int(w)))  # int(): a traced (ONNX) shape is a tensor
    # Fine cells under one coarse cell tie, and topk's choice among ties is unspecified (ONNX
    # Runtime and torch differ), so ties are broken by position: a ramp of 1e-12 relative per
    # cell in float64, far below any real difference of coarse scores, far above float64's step.
    pos = torch.arange(h * w, device=up.device, dtype=torch.float64)
    idx = (up.double() * (1 - pos * 1e-12)).topk(k, dim=1).indices  # (B, k)
    rows = emb.permute(0, 2, 3, 1).reshape(b, h * w, c)
    picked = torch.gather(rows, 1, idx.unsqueeze(-1).expand(b, k, c)).reshape(b * k, c)
    dist, _ = nearest_neighbours(picked.contiguous(), fm.bank, fm.bank_sq)
    fine = dist.reshape(b, k).float() * fm.unit
    under = torch.gather(up, 1, idx).clamp_min(1e-6)
    ratio = (fine / under).sort(dim=1).values[:, k // 2 : k // 2 + 1]  # the median, as ONNX can trace it
    return (up * ratio).scatter(1, idx, fine).reshape(b, h, w)


BLENDS = ("fine", "mean")


def blend(coarse: torch.Tensor, fine: torch.Tensor, how: str) -> torch.Tensor:
    """The anomaly map from the score grid's map and the fine map, both (B, H, W) in score units.

    "fine": the fine map alone (``train --fine-map``; sharper, but it lost on ksdd's real masks,
    drawn as wide regions around thin cracks). "mean": their average, chosen on pasted defects on
    crack and pillQC *training* images with both exact and widened masks, so that neither kind of
    mask loses (``scripts/choose_map_blend.py``; docs/measured.md, "Sharper maps").
    """
    if how == "fine":
        return fine
    if how == "mean":
        return (coarse + fine) * 0.5
    raise ValueError(f"unknown map blend '{how}'; choose one of {BLENDS}")


def _typical(distances: torch.Tensor) -> torch.Tensor:
    """The median distance of patches that are not bank rows themselves (those are at zero, and
    their share is the coreset ratio, which differs between the two banks)."""
    d = distances.float().reshape(-1)
    d = d[d > 1e-3]
    return d.median().clamp_min(1e-6) if d.numel() else torch.ones(())
