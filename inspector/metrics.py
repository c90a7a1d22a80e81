"""Evaluation figures, from scikit-learn where it has them.

AUPRO (Bergmann et al., MVTec AD) is not in scikit-learn; it is computed here from connected
components of the ground-truth masks, integrated up to a false-positive rate of 0.3.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from inspector.calibration import f1_optimal_threshold

AUPRO_FPR_LIMIT = 0.3  # the MVTec AD convention


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def per_defect_auroc(scores: np.ndarray, labels: np.ndarray, defects: list[str | None]) -> dict[str, float]:
    """AUROC of good images against each defect type alone."""
    out = {}
    for name in sorted({d for d in defects if d}):
        sel = np.array([lab == 0 or d == name for lab, d in zip(labels, defects, strict=True)])
        auc = image_auroc(scores[sel], labels[sel])
        if auc is not None:
            out[name] = auc
    return out


def _flat(a: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """All pixels of a stack, or of a list of per-frame arrays of different shapes, in one vector."""
    return a.ravel() if isinstance(a, np.ndarray) else np.concatenate([np.asarray(m).ravel() for m in a])


def pixel_auroc(maps: np.ndarray | Sequence[np.ndarray], masks: np.ndarray | Sequence[np.ndarray]) -> float | None:
    """Pooled over every pixel; ``maps`` and ``masks`` are stacks or per-frame lists (frames of any size)."""
    y = _flat(masks) > 0
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, _flat(maps)))


def aupro(
    maps: np.ndarray | Sequence[np.ndarray],
    masks: np.ndarray | Sequence[np.ndarray],
    fpr_limit: float = AUPRO_FPR_LIMIT,
    steps: int = 400,
) -> float | None:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit``; stacks or per-frame lists."""
    masks = [np.asarray(m) > 0 for m in masks]
    maps = [np.asarray(m) for m in maps]
    y = _flat(masks)
    if not y.any() or y.all():
        return None
    regions = []
    for i, m in enumerate(masks):
        n, lab = cv2.connectedComponents(m.astype(np.uint8))
        regions += [(i, lab == k) for k in range(1, n)]
    neg = np.concatenate([a[~m] for a, m in zip(maps, masks, strict=True)])
    values = _flat(maps)
    # Thresholds over the whole value range (not only the good pixels': they may all tie).
    thresholds = np.linspace(float(values.max()), float(values.min()), steps)
    fprs, pros = [0.0], [0.0]
    for t in thresholds:
        fprs.append(float((neg >= t).mean()))
        pros.append(float(np.mean([(maps[i][r] >= t).mean() for i, r in regions])))
    return pro_area(np.array(fprs), np.array(pros), fpr_limit)


def pro_area(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
    """The per-region-overlap curve's area up to ``fpr_limit``, normalised; points in any order.

    Shared with the settings search's bootstrap (``inspector.search_evidence``), which builds the
    same curve from reweighted per-image counts.
    """
    order = np.argsort(fpr, kind="stable")
    fpr, pro = fpr[order], pro[order]
    # Cut the curve at fpr_limit, interpolating the value there.
    pro_at_limit = float(np.interp(fpr_limit, fpr, pro))
    keep = fpr < fpr_limit
    area = np.trapezoid(np.append(pro[keep], pro_at_limit), np.append(fpr[keep], fpr_limit))
    return float(area / fpr_limit)


def rates_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    """False-reject rate (good parts called defective) and miss rate (defects called good)."""
    good, bad = scores[labels == 0], scores[labels == 1]
    frr = float((good >= threshold).mean()) if len(good) else None
    miss = float((bad < threshold).mean()) if len(bad) else None
    return frr, miss


def f1_max(scores: np.ndarray, labels: np.ndarray) -> float | None:
    if len(np.unique(labels)) < 2:
        return None
    return f1_optimal_threshold(scores, labels)[1]
