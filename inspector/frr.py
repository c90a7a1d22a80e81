"""What a threshold promises about false rejects, read from n good scores, and how sure that is.

For a new good part whose score is exchangeable with n calibration scores of good parts (held
out, or leave-one-out), the chance that it scores above a threshold t that j of the n exceed is
at most a Beta(j + 1, n - j) variable: its mean (j + 1) / (n + 1) is the stated false-reject
rate, and its 95% quantile the stated upper bound. This is the order-statistic (conformal)
argument; the bound equals the one-sided Clopper-Pearson bound for j rejects in n trials. It
holds whatever the score distribution, which is why it is preferred to a normal-tail fit here.

The named minimum: below ``min_good_images(p)`` = ceil(ln(0.05) / ln(1 - p)) good images
(299 for p = 1%, 149 for 2%, 59 for 5%) even a threshold above every good score cannot show,
at 95% confidence, a false-reject rate of p or less: the bound 1 - 0.05^(1/n) stays above p.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import beta

CONFIDENCE = 0.95


def min_good_images(target_frr: float, confidence: float = CONFIDENCE) -> int:
    """Fewest good images whose maximum bounds the false-reject rate by ``target_frr`` at ``confidence``."""
    if not 0 < target_frr < 1:
        raise ValueError("target false-reject rate must be between 0 and 1")
    return math.ceil(math.log(1 - confidence) / math.log(1 - target_frr))


@dataclass(frozen=True)
class FrrStatement:
    """The false-reject rate a threshold promises, with its bound and the evidence behind it."""

    n_good: int  # good calibration scores
    n_above: int  # of them, how many the threshold rejects (score >= threshold)
    expected: float  # stated false-reject rate, (j + 1) / (n + 1)
    upper: float  # one-sided upper confidence bound
    confidence: float
    min_good: int | None = None  # the named minimum for the target (None: no target)

    @property
    def enough_images(self) -> bool:
        return self.min_good is None or self.n_good >= self.min_good

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        """One line for ``train`` and ``eval``."""
        text = (
            f"false-reject rate {100 * self.expected:.1f}% expected, at most {100 * self.upper:.1f}% "
            f"at {100 * self.confidence:.0f}% confidence, from {self.n_good} good images"
        )
        return text

    def warning(self, target_frr: float | None) -> str | None:
        """A warning when too few good images stand behind the statement, else None."""
        if self.enough_images or target_frr is None:
            return None
        return (
            f"only {self.n_good} good images: {self.min_good} are needed before the {100 * target_frr:g}% "
            f"false-reject target can be shown at {100 * self.confidence:.0f}% confidence (add good images)"
        )


def frr_statement(
    good_scores: np.ndarray, threshold: float, *, target_frr: float | None = None, confidence: float = CONFIDENCE
) -> FrrStatement:
    """The statement for ``threshold`` from the good calibration scores (DEFECT is score >= threshold)."""
    scores = np.asarray(good_scores, dtype=np.float64)
    n = int(scores.size)
    if n == 0:
        raise ValueError("a false-reject statement needs at least one good score")
    j = int((scores >= threshold).sum())
    upper = 1.0 if j >= n else float(beta.ppf(confidence, j + 1, n - j))
    return FrrStatement(
        n, j, (j + 1) / (n + 1), upper, confidence, min_good_images(target_frr, confidence) if target_frr else None
    )


def order_statistic_threshold(good_scores: np.ndarray, target_frr: float) -> float | None:
    """The lowest threshold among the good scores whose stated rate (j + 1) / (n + 1) is <= ``target_frr``.

    That is the r-th largest score, r = floor(target * (n + 1)), nudged just above it so the
    score itself is not rejected; None when r = 0 (fewer than 1 / target - 1 scores), where the
    caller must go above the largest score.
    """
    scores = np.sort(np.asarray(good_scores, dtype=np.float64))
    n = scores.size
    r = int(math.floor(target_frr * (n + 1) + 1e-9))
    if r < 1:
        return None
    # Threshold just above the r-th largest: r - 1 scores reach it, so j + 1 = r.
    return float(np.nextafter(scores[n - r], np.inf))


def describe_calibration(meta: dict[str, Any]) -> list[str]:
    """What a model's threshold rests on, from its model.json metadata: the levels and how many
    good images (or which sample of them) calibrated them, the false-reject statement and the
    least typical good images. ``train`` prints these lines and the engineer view shows them."""
    t = meta.get("thresholds") or {}
    decision, review = t.get("decision"), t.get("review")
    if not isinstance(decision, int | float):
        return ["thresholds: none recorded"]
    sampled = meta.get("calibration_sample")
    behind = f"{meta.get('n_calibration_images', '?')} calibration images" + (
        f", a seeded random sample of the {sampled['of']} good ones" if isinstance(sampled, dict) else ""
    )
    method = t.get("method") or "?"
    level = f", review from {review:.4f}" if isinstance(review, int | float) else ""
    lines = [f"threshold {decision:.4f} ({method}, {behind}){level}"]
    frr = t.get("frr")
    if isinstance(frr, dict):
        lines.append(FrrStatement(**frr).describe())
    top = meta.get("highest_good_scores") or []
    if top:  # a mislabelled or odd good image shows up here first
        lines.append("least typical good images: " + ", ".join(f"{p} ({s:.4f})" for p, s in top))
    return lines
