"""Decision-boundary view: good and defective images in a 2D PCA projection of image-level features,
with where the threshold falls. Qt-free; the report plots it and the engineer view can draw it.

Image-level features are the pooled backbone features the defect head also reads (mean and max
over space of each stage), standardised. PCA (scikit-learn) keeps the two directions of most
variance. PatchCore's score is not a function of those two coordinates, so the boundary drawn is
the score interpolated over the plane (distance-weighted k nearest images) at the threshold: it
shows which defects sit inside the good cluster, not an exact decision surface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsRegressor

GRID = 60


@dataclass
class BoundaryView:
    points: np.ndarray  # (N, 2)
    labels: list[str]  # "good" or the defect type
    scores: np.ndarray  # (N,)
    threshold: float
    explained: tuple[float, float]  # variance share of the two axes
    grid_x: np.ndarray  # (GRID,)
    grid_y: np.ndarray  # (GRID,)
    grid_score: np.ndarray  # (GRID, GRID), rows follow grid_y
    near_good: list[int]  # defective images inside the good cluster (closest first)

    def to_json(self) -> dict[str, Any]:
        return {
            "points": np.round(self.points, 4).tolist(),
            "labels": self.labels,
            "scores": np.round(self.scores, 4).tolist(),
            "threshold": self.threshold,
            "explained_variance": [round(v, 4) for v in self.explained],
            "near_good": self.near_good,
            "method": "PCA of standardised pooled features; boundary = kNN-interpolated score at the threshold",
        }


def decision_boundary(
    features: np.ndarray, scores: np.ndarray, labels: Sequence[str], threshold: float, k: int = 5
) -> BoundaryView:
    """Projects (N, F) image features to 2D and interpolates the score over a grid around them."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) != len(scores) or len(x) != len(labels) or len(x) < 3:
        raise ValueError("decision boundary needs (N, F) features with N >= 3, one score and label each")
    std = x.std(0)
    z = (x - x.mean(0)) / np.where(std > 1e-9, std, 1.0)
    pca = PCA(n_components=2, random_state=0).fit(z)
    pts = pca.transform(z)
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.1 * np.maximum(hi - lo, 1e-6)
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], GRID)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], GRID)
    knn = KNeighborsRegressor(n_neighbors=min(k, len(pts)), weights="distance").fit(pts, scores)
    mesh = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    grid = knn.predict(mesh).reshape(GRID, GRID)
    good = np.array([lab == "good" for lab in labels])
    near: list[int] = []
    if good.sum() >= 2 and (~good).any():
        centre = pts[good].mean(0)
        radius = np.percentile(np.linalg.norm(pts[good] - centre, axis=1), 90)
        dist = np.linalg.norm(pts - centre, axis=1)
        near = [int(i) for i in np.argsort(dist) if not good[i] and dist[i] <= radius]
    ev = pca.explained_variance_ratio_
    return BoundaryView(
        pts, list(labels), np.asarray(scores, float), float(threshold), (float(ev[0]), float(ev[1])), gx, gy, grid, near
    )
