"""Decision thresholds chosen at training time and stored with the model.

Two regimes, as a line has them: with defective validation images the F1-optimal threshold;
with good images only, an order statistic of good scores (leave-one-out or held out) for a
target false-reject rate. A REVIEW band below the decision threshold sends borderline parts to
a person instead of guessing. Either way the false-reject rate the threshold promises is stated
with its confidence bound and the number of good images behind it (``inspector.frr``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm
from sklearn.metrics import precision_recall_curve

from inspector.frr import frr_statement, order_statistic_threshold

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
    # FrrStatement.to_json() of the decision threshold: stated rate, bound, n good images.
    frr: dict[str, object] | None = None

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


def _good_only_level(scores: np.ndarray, frr: float) -> tuple[float, bool]:
    """Threshold for a stated false-reject rate ``frr``, and whether it had to be extrapolated.

    With n >= 1/frr - 1 scores it is an order statistic: (j + 1) / (n + 1) <= frr, no
    distribution assumed. With fewer (ten scores cannot show 1%: their maximum promises 9%) it
    goes above the largest score by a normal tail fit, mean + z * sd; the stated bound then
    still holds, as any threshold above the maximum rejects no more than the maximum does.
    """
    t = order_statistic_threshold(scores, frr)
    if t is not None:
        return t, False
    sd = float(scores.std(ddof=1)) if len(scores) > 1 else 0.1 * abs(float(scores[0]))
    top = float(np.nextafter(scores.max(), np.inf))
    return max(top, float(scores.mean()) + float(norm.ppf(1 - frr)) * sd), True


def calibrate_good_only(
    good_scores: np.ndarray,
    good_maps: np.ndarray | None = None,
    target_frr: float = DEFAULT_TARGET_FRR,
    review_frr: float | None = None,
) -> Thresholds:
    """Decision threshold for a target false-reject rate from good scores, REVIEW from ``review_frr``.

    ``review_frr`` (default 10x the target, at most 50%) is the share of good parts that may
    go to a person; the REVIEW band is where defects scoring like the best-looking tail of
    the good parts are caught instead of passed.
    """
    if len(good_scores) == 0:
        raise ValueError("calibration needs at least one good calibration image")
    if not 0 < target_frr < 1:
        raise ValueError("target false-reject rate must be between 0 and 1")
    scores = np.asarray(good_scores, dtype=np.float64)
    decision, extrapolated = _good_only_level(scores, target_frr)
    review_frr = min(0.5, 10 * target_frr) if review_frr is None else review_frr
    review = min(_good_only_level(scores, max(review_frr, target_frr))[0], decision * 0.95)
    low, high = _map_range(good_maps, decision)
    method = "good-only, normal tail above the largest score" if extrapolated else "good-only order statistic"
    statement = frr_statement(scores, decision, target_frr=target_frr)
    return Thresholds(decision, review, low, high, method, target_frr, statement.to_json())


def calibrate_labelled(scores: np.ndarray, labels: np.ndarray, good_maps: np.ndarray | None = None) -> Thresholds:
    """F1-optimal decision threshold on validation images with both classes."""
    decision, _ = f1_optimal_threshold(scores, labels)
    good = scores[labels == 0]
    review = float(np.quantile(good, 0.9)) if len(good) else decision * 0.9
    review = min(review, decision * 0.95)
    low, high = _map_range(good_maps, decision)
    statement = frr_statement(good, decision).to_json() if len(good) else None
    return Thresholds(decision, review, low, high, "F1-optimal on validation", None, statement)
