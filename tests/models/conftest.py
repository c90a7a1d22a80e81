"""Helpers shared by the model tests."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from inspector.synthetic import make_sample
from models.patchcore import PatchCore, PatchCoreConfig
from models.patchcore.anomaly_map import anomaly_map


def map_and_coarse_auroc(config: PatchCoreConfig, kind: str, defect: str, size: int = 112) -> tuple[float, float]:
    """Pooled pixel AUROC of ``config``'s map and of the plain 14x14 coarse map (sigma 4) on six
    generated defects, the model fitted on twelve generated good images."""
    model = PatchCore(config)
    good = [make_sample(kind, i, None, size=size).image for i in range(12)]
    model.fit([torch.from_numpy(np.stack(good)).permute(0, 3, 1, 2).float() / 255])
    bad = [make_sample(kind, i, defect, size=size) for i in range(6)]
    x = torch.from_numpy(np.stack([s.image for s in bad])).permute(0, 3, 1, 2).float() / 255
    pred = model.predict(x)
    masks = np.stack([s.mask > 127 for s in bad]).ravel()
    ours = roc_auc_score(masks, pred.anomaly_map.numpy().ravel())
    coarse = roc_auc_score(masks, anomaly_map(pred.patch_scores, (size, size), 4.0).numpy().ravel())
    return float(ours), float(coarse)


def flat_frames(n: int, seed: int = 0, hw: tuple[int, int] = (64, 96)) -> torch.Tensor:
    """``n`` near-uniform grey frames (a non-square ``hw``: maps must keep the frame's shape)."""
    return 0.5 + 0.05 * torch.randn(n, 3, *hw, generator=torch.Generator().manual_seed(seed))


def fit_on_flat_frames(config: PatchCoreConfig) -> PatchCore:
    """A model fitted on eight flat frames in two batches: the tiny map tests' common start."""
    model = PatchCore(config)
    model.fit([flat_frames(4, 0), flat_frames(4, 1)])
    return model
