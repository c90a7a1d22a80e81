"""Decision thresholds chosen at training time and stored with the model.

Two regimes, as a line has them: with defective validation images the F1-optimal threshold;
with good images only, a quantile of held-out good scores for a target false-reject rate. A
REVIEW band below the decision threshold sends borderline parts to a person instead of guessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm
from sklearn.metrics import precision_recall_curve

DEFAULT_TARGET_FRR = 0.01


@dataclass(frozen=True)
class Thresholds:
    """Scores >= ``decision`` are DEFECT; [``review``, ``decision``) is REVIEW; below is OK.

    ``map_low``/``map_high`` fix the colour range of anomaly maps so that frames are comparable
    and a good part looks calm instead of being stretched to its own maximum.
    """

    decision: float
    review: float
    map_low: float
    map_high: float
    method: str
    target_frr: float | None = None

    def verdict(self, score: float) -> str:
        if score >= self.decision:
            return "DEFECT"
        if score >= self.review:
            return "REVIEW"
        return "OK"

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Thresholds:
        return cls(**d)  # type: ignore[arg-type]

    def with_decision(self, value: float) -> Thresholds:
        """A copy with a new decision threshold; the review band keeps its relative width."""
        ratio = self.review / self.decision if self.decision > 0 else 1.0
        return Thresholds(
            value,
            value * ratio,
            self.map_low,
            value * self.map_high / self.decision if self.decision > 0 else self.map_high,
            "manual",
            self.target_frr,
        )


def f1_optimal_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest F1 on labelled scores, and that F1."""
    precision, recall, thr = precision_recall_curve(labels, scores)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    best = int(np.argmax(f1[:-1])) if len(thr) else 0
    return (float(thr[best]) if len(thr) else float(np.max(scores))), float(f1[best])


def _map_range(good_maps: np.ndarray | None, decision: float) -> tuple[float, float]:
    low = float(np.percentile(good_maps, 50)) if good_maps is not None and good_maps.size else 0.0
    return min(low, decision * 0.9), decision * 1.5


def calibrate_good_only(
    good_scores: np.ndarray, good_maps: np.ndarray | None = None, target_frr: float = DEFAULT_TARGET_FRR
) -> Thresholds:
    """Threshold for a target false-reject rate from held-out good scores.

    A 1% quantile cannot be read off ten scores (it would be their maximum, about a 9% false-
    reject rate), so the tail is estimated from a normal fit, mean + z * sd, and the threshold is
    never below the empirical quantile. With many held-out images the two agree.
    """
    if len(good_scores) == 0:
        raise ValueError("calibration needs at least one held-out good image")
    if not 0 < target_frr < 1:
        raise ValueError("target false-reject rate must be between 0 and 1")
    scores = np.asarray(good_scores, dtype=np.float64)
    sd = float(scores.std(ddof=1)) if len(scores) > 1 else 0.1 * abs(float(scores[0]))
    mean = float(scores.mean())
    decision = max(float(np.quantile(scores, 1 - target_frr)), mean + float(norm.ppf(1 - target_frr)) * sd)
    review = max(float(np.quantile(scores, max(0.0, 1 - 10 * target_frr))),
                 mean + float(norm.ppf(max(0.5, 1 - 10 * target_frr))) * sd)
    review = min(review, decision * 0.95)
    low, high = _map_range(good_maps, decision)
    return Thresholds(decision, review, low, high, "good-only quantile", target_frr)


def calibrate_labelled(scores: np.ndarray, labels: np.ndarray, good_maps: np.ndarray | None = None) -> Thresholds:
    """F1-optimal decision threshold on validation images with both classes."""
    decision, _ = f1_optimal_threshold(scores, labels)
    good = scores[labels == 0]
    review = float(np.quantile(good, 0.9)) if len(good) else decision * 0.9
    review = min(review, decision * 0.95)
    low, high = _map_range(good_maps, decision)
    return Thresholds(decision, review, low, high, "F1-optimal on validation")
