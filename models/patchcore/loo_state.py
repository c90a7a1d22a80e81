"""What an incremental update needs to recalibrate without the old images: each training image's
few highest-scoring patches under leave-one-out, and a bound on all its other patches.

A leave-one-out image score (``leave_one_out.score_excluding``) is a function of the image's
patch with the largest distance to the bank rows of other images (and of that patch's
neighbourhood). When rows are only added, no patch's distance can grow. So if an image's ``m``
kept patches, re-scored against the new bank, still reach the bound (the largest distance any
of its other patches had), the best patch is among them and the re-score is exact: the same call
on the kept patches gives the same number as on the whole image. Where it is not reached (or
rows were removed), the image's score is uncertified and the caller says so.

Kept per image: ``m`` raw fp16 patch rows (8 rows x 126 channels: 2 KB), the bound, and the
channel scale the bound was measured in (a later re-standardisation scales it conservatively).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, save_file

from models.patchcore.anomaly_map import anomaly_map, to_size
from models.patchcore.leave_one_out import batch_ids, score_excluding
from models.patchcore.model import PatchCore

TOP_PATCHES = 8
STATE_FILE = "calibration_patches.safetensors"


@dataclass
class CalibrationState:
    """Per calibration image: bank_source id, leave-one-out score, kept raw patches, bound."""

    ids: torch.Tensor  # (n,) long
    scores: torch.Tensor  # (n,) float64
    rows: torch.Tensor  # (n, m, C) fp16, raw (unstandardised) features
    bound: torch.Tensor  # (n,) fp32: no other patch of the image was farther from the bank
    scale: torch.Tensor  # (C,) the channel scale the bounds were measured in

    def save(self, path: str) -> None:
        tensors = {
            "ids": self.ids.long().contiguous(),
            "scores": self.scores.double().contiguous(),
            "rows": self.rows.half().contiguous(),
            "bound": self.bound.float().contiguous(),
            "scale": self.scale.float().contiguous(),
        }
        save_file(tensors, path)

    @classmethod
    def load(cls, path: str) -> CalibrationState:
        t = load_file(path)
        n = t["ids"].shape[0]
        if t["scores"].shape != (n,) or t["rows"].shape[0] != n or t["bound"].shape != (n,):
            raise ValueError(f"{path}: calibration patch tensors do not agree in length")
        return cls(t["ids"], t["scores"], t["rows"], t["bound"], t["scale"])

    def select(self, keep: torch.Tensor) -> CalibrationState:
        return CalibrationState(self.ids[keep], self.scores[keep], self.rows[keep], self.bound[keep], self.scale)

    def in_scale(self, scale: torch.Tensor) -> CalibrationState:
        """The same state with its bounds in the units of channel ``scale`` (scaled up, so still bounds)."""
        ratio = _ratio(scale, self.scale)
        return CalibrationState(self.ids, self.scores, self.rows, self.bound * ratio, scale.cpu().clone())

    @classmethod
    def concat(cls, a: CalibrationState, b: CalibrationState) -> CalibrationState:
        """Both states must have their bounds in the same scale (``in_scale``)."""
        return cls(
            torch.cat([a.ids, b.ids]),
            torch.cat([a.scores, b.scores]),
            torch.cat([a.rows, b.rows]),
            torch.cat([a.bound, b.bound]),
            b.scale,
        )


def _ratio(new: torch.Tensor, old: torch.Tensor) -> float:
    """Distances in scale ``new`` are at most this many times those in scale ``old``."""
    if not (new.numel() and old.numel()):
        return 1.0
    return float((new.cpu() / old.cpu().clamp_min(1e-12)).max().clamp_min(1.0))


def _standardise(model: PatchCore, raw: torch.Tensor) -> torch.Tensor:
    x = raw.float().to(model.mean.device)
    if model.config.standardize and model.channel_mean.numel():
        x = (x - model.channel_mean) * model.channel_scale
    return x


def raw_rows(model: PatchCore, emb: torch.Tensor) -> torch.Tensor:
    """Raw fp16-rounded patch rows (B*h*w, C) of an embedding, as ``fit`` keeps them."""
    rows = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).float()
    if model.config.standardize and model.channel_mean.numel():
        rows = rows / model.channel_scale + model.channel_mean
    return rows.half().float()


def top_patches(raw: torch.Tensor, dist: torch.Tensor, m: int = TOP_PATCHES) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``m`` raw rows (B, m, C) with the largest distances (B, P), and the (m+1)-th distance."""
    m = min(m, dist.shape[1])
    order = dist.argsort(dim=1, descending=True)
    rows = raw.gather(1, order[:, :m, None].expand(-1, -1, raw.shape[2]))
    bound = dist.gather(1, order[:, m : m + 1])[:, 0] if dist.shape[1] > m else torch.zeros(dist.shape[0])
    return rows.half(), bound.float()


@torch.no_grad()
def rescore(model: PatchCore, state: CalibrationState, block: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Leave-one-out scores of the state's images against ``model``'s bank, from their kept patches,
    and whether each is certified exact (its kept patches still reach the bound)."""
    if not state.ids.numel():
        return torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.bool)
    # Distances in the scale in use are at most max(new / old scale) times those in the old one.
    ratio = _ratio(model.channel_scale, state.scale)
    scores, certified = [], []
    for start in range(0, state.ids.shape[0], block):
        rows = _standardise(model, state.rows[start : start + block])  # (b, m, C)
        emb = rows.permute(0, 2, 1).unsqueeze(2)  # (b, C, 1, m): the kept patches as a 1 x m image
        s, patch = score_excluding(model, emb, state.ids[start : start + block].to(model.mean.device))
        scores.append(s.double().cpu())
        certified.append(patch.flatten(1).amax(1).cpu() >= state.bound[start : start + block] * ratio)
    return torch.cat(scores), torch.cat(certified)


@torch.no_grad()
def state_from_fit(
    model: PatchCore,
    block: int = 16,
    max_maps: int = 256,
    m: int = TOP_PATCHES,
    ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, CalibrationState] | None:
    """Leave-one-out scores and maps of a single-search fit from its kept features (``fit_rows``,
    dropped afterwards), plus the calibration state; None when the fit kept no features.

    The scores are ``score_excluding``'s, image by image in ``fit`` order, as
    ``leave_one_out_scores`` gives them; the extra is only which patches scored highest.
    ``ids`` (ascending ``fit`` positions) calibrates on those images only (``calibration_sample``).
    """
    if model.config.fine_score:
        # The kept patches are the score bank's only: a score that also reads the fine bank is
        # calibrated by leave_one_out_scores (from ``fit_rows`` and ``fit_fine_loo``) and keeps
        # no update state, so ``train --update`` keeps its thresholds and says why.
        return None
    cached, model.fit_rows = model.fit_rows, None
    if cached is None:
        return None
    rows, (h, w) = cached
    device = model.mean.device
    per_image = rows.view(-1, h * w, rows.shape[1])
    ids = torch.arange(per_image.shape[0]) if ids is None else ids.cpu().long()
    n = ids.numel()
    size = model.config.input_hw
    scores, maps, kept, bounds = [], [], [], []
    for start in range(0, n, block):
        part_ids = ids[start : start + block]
        raw = per_image[part_ids]
        emb = _standardise(model, raw).view(-1, h, w, rows.shape[1]).permute(0, 3, 1, 2)
        s, patch = score_excluding(model, emb, part_ids.to(device))
        scores.append(s.double().cpu())
        r, b = top_patches(raw.float(), patch.flatten(1).cpu(), m)
        kept.append(r)
        bounds.append(b)
        if start < max_maps:
            maps.append(anomaly_map(patch[: max_maps - start], size, model.config.sigma).cpu())
    s_all = torch.cat(scores)
    scale = model.channel_scale.cpu().clone()
    state = CalibrationState(ids.clone(), s_all, torch.cat(kept), torch.cat(bounds), scale)
    return s_all, torch.cat(maps), state


@torch.no_grad()
def state_from_batches(
    model: PatchCore,
    batches: Iterable[torch.Tensor],
    max_maps: int = 256,
    m: int = TOP_PATCHES,
    ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, CalibrationState] | None:
    """``state_from_fit`` for a fit that kept no features: its images again, in ``fit`` order
    (image n is ``bank_source`` n), in batches of any input size. None with ``fine_score``.

    Why: frames kept at their own aspect (several patch grids) and chunked fits (more patches
    than one coreset search) kept no calibration state, so ``train --update`` could not
    recalibrate them. The scores are ``leave_one_out_scores``'s (the same ``score_excluding``
    of the same embeddings); maps are resized to the nominal input, as they only set the colour
    range. With ``ids`` the batches hold only those images (ascending ``fit`` positions, the
    ``calibration_sample``), in that order.
    """
    if model.config.fine_score:
        return None  # its score also reads the fine bank: see state_from_fit
    device, size = model.mean.device, model.config.input_hw
    scores, maps, kept, bounds = [], [], [], []
    next_id = 0
    for batch in batches:
        batch = batch.to(device)
        hw = (int(batch.shape[-2]), int(batch.shape[-1]))
        emb = model.embed(batch)
        s, patch = score_excluding(model, emb, batch_ids(ids, next_id, emb.shape[0], device))
        scores.append(s.double().cpu())
        rows = raw_rows(model, emb).view(emb.shape[0], -1, emb.shape[1])
        r, b = top_patches(rows.cpu(), patch.flatten(1).float().cpu(), m)
        kept.append(r)
        bounds.append(b)
        if next_id < max_maps:
            maps.append(to_size(anomaly_map(patch[: max_maps - next_id], hw, model.config.sigma), size).cpu())
        next_id += emb.shape[0]
    if not scores:
        raise ValueError("no training images to calibrate on")
    if ids is not None and next_id != ids.numel():
        raise ValueError(f"{next_id} images for {ids.numel()} calibration ids")
    s_all = torch.cat(scores)
    state = CalibrationState(
        torch.arange(next_id) if ids is None else ids.cpu().long().clone(),
        s_all,
        torch.cat(kept),
        torch.cat(bounds),
        model.channel_scale.cpu().clone(),
    )
    return s_all, torch.cat(maps), state
