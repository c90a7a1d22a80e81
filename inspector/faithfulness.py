"""Deletion and insertion curves: does removing what a map points at change the model's output?

Deletion replaces the top-ranked pixels, in steps up to half the image, by an in-distribution
fill (a good image's pixels at the same place, or an inpainting); the output should fall fast
(lower area = more faithful). Insertion starts from the fill and puts the top-ranked pixels of
the frame back; the output should rise fast (higher area = more faithful). Black or a blur is no
fill for PatchCore: both are anomalies themselves (docs/measured.md, "Explanations").

Shared by ``scripts/bench_explain.py`` and the explanation report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np
import torch

from models.patchcore.anomaly_map import smooth

FRACTIONS = np.array([0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5])
OutputFn = Callable[[torch.Tensor], np.ndarray]  # images (B, 3, S, S) -> one output per image


def deletion_masks(ranking: np.ndarray) -> torch.Tensor:
    """(len(FRACTIONS), 1, H, W) binary masks of the top-ranked pixels, 0 to 50 % of the image."""
    order = np.argsort(-ranking.ravel(), kind="stable")
    masks = np.zeros((len(FRACTIONS), ranking.size), np.float32)
    for k, f in enumerate(FRACTIONS):
        masks[k, order[: int(round(f * ranking.size))]] = 1
    return torch.from_numpy(masks.reshape(len(FRACTIONS), 1, *ranking.shape))


def inpaint(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Each mask's pixels of the (1, 3, H, W) image filled from their surroundings (Telea, radius 3 px)."""
    img = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    out = [cv2.inpaint(img, (m[0].numpy() > 0).astype(np.uint8), 3, cv2.INPAINT_TELEA) for m in masks]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


def deletion_curve(
    output: OutputFn,
    x: torch.Tensor,
    ranking: np.ndarray,
    fill: torch.Tensor | Literal["inpaint"],
    feather: float = 0.0,
) -> np.ndarray:
    """Normalised outputs while the top-ranked pixels are replaced by ``fill``, 0 to 50 % of the image.

    ``feather`` > 0 softens the masks with a Gaussian of that many pixels, so the fill meets the
    image without a sharp seam: a seam is itself an anomaly to PatchCore.
    """
    masks = deletion_masks(ranking)
    replacement = inpaint(x, masks) if isinstance(fill, str) else fill
    soft = smooth(masks, feather).clamp(0, 1) if feather > 0 else masks
    values = output(x * (1 - soft) + replacement * soft)
    return values / max(float(values[0]), 1e-12)


def insertion_curve(output: OutputFn, x: torch.Tensor, ranking: np.ndarray, fill: torch.Tensor) -> np.ndarray:
    """Outputs while the top-ranked pixels of ``x`` are put into ``fill``, over the output of ``x``."""
    masks = deletion_masks(ranking)
    values = output(torch.cat([fill * (1 - masks) + x * masks, x]))
    return values[:-1] / max(float(values[-1]), 1e-12)


def curve_area(curve: np.ndarray) -> float:
    """Mean height of a curve over FRACTIONS (trapezoids, normalised by the 50 % span)."""
    return float(np.trapezoid(curve, FRACTIONS) / FRACTIONS[-1])
