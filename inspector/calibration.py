"""Decision thresholds chosen at training time and stored with the model.

Two regimes, as a line has them: with defective validation images the F1-optimal threshold;
with good images only, an order statistic of good scores (leave-one-out or held out) for a
target false-reject rate. A REVIEW band below the decision threshold sends borderline parts to
a person instead of guessing. Either way the false-reject rate the threshold promises is stated
with its confidence bound and the number of good images behind it (``inspector.frr``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.stats import norm
from sklearn.metrics import precision_recall_curve

from inspector.frr import frr_statement, order_statistic_threshold

# Chosen on crack (scripts/bench_thresholds.py, docs/measured.md "Thresholds"): at 1% even the tail fit left
# 5.5% of crack's defects under the decision threshold; at 2% it missed 1.0% and rejected 2.0%.
DEFAULT_TARGET_FRR = 0.02
# Share of good parts the REVIEW band may take, at least (the old default, 10x a 1% target).
DEFAULT_REVIEW_FRR = 0.10
RULES = ("tail", "order")
DEFAULT_RULE = "tail"
# The tail fit uses the m = max(10, n / 10) largest scores; below this many it is not tried.
MIN_TAIL_SCORES = 20


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
    # The tail fit behind a "tail" threshold (TailFit.to_json()); None for other rules.
    tail: dict[str, object] | None = None

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


@dataclass(frozen=True)
class TailFit:
    """An exponential fit to the upper tail of good scores (peaks over a threshold, shape 0).

    Above u, the (m + 1)-th largest of n scores, the excesses of the m largest are taken as
    exponential with scale ``sigma`` (their mean), so P(score > x) = (m / n) exp(-(x - u) / sigma)
    for x >= u. Every one of the m scores has a say in the level for a rate p, u + sigma *
    ln(m / (n p)), instead of the single largest score the order statistic needs once p is
    below about 1 / n: one atypical training image then moves it by 1/m of its excess, not all.
    """

    u: float
    sigma: float
    m: int
    n: int
    left_out: int = 0  # suspect scores (``suspect_scores``) not fitted; the statement counts them

    @classmethod
    def fit(cls, scores: np.ndarray) -> TailFit:
        x = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
        n = int(x.size)
        if n < MIN_TAIL_SCORES:
            raise ValueError(f"a tail fit needs at least {MIN_TAIL_SCORES} scores, got {n}")
        m = max(10, n // 10)
        u = float(x[m])
        return cls(u, max(float(x[:m].mean()) - u, 1e-12), m, n)

    def level(self, rate: float) -> float:
        """The score a share ``rate`` of good parts exceeds, by the fit (rate <= m / n)."""
        return self.u + self.sigma * float(np.log(self.m / (self.n * rate)))

    def rate(self, level: float) -> float:
        """The share of good parts the fit expects above ``level`` (>= u)."""
        return self.m / self.n * float(np.exp(-(level - self.u) / self.sigma))

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def suspect_scores(scores: np.ndarray, level: float = 0.05) -> list[int]:
    """Indices of good scores too high for the tail the others form: worth a look before trusting.

    Each candidate, from the largest down, is tested against the tail fitted without it: under
    that fit the chance that any of n good scores reaches it is n * rate; below ``level`` it is
    named. Stops at the first that is not suspect. None with fewer than MIN_TAIL_SCORES + 1.
    """
    x = np.asarray(scores, dtype=np.float64)
    order = np.argsort(x)[::-1]
    out: list[int] = []
    for i in order[: max(1, x.size // 20)]:
        rest = np.delete(x, out + [int(i)])
        if rest.size < MIN_TAIL_SCORES:
            break
        fit = TailFit.fit(rest)
        if x[i] < fit.u or x.size * fit.rate(float(x[i])) >= level:
            break
        out.append(int(i))
    return out


def calibrate_good_only(
    good_scores: np.ndarray,
    good_maps: np.ndarray | None = None,
    target_frr: float = DEFAULT_TARGET_FRR,
    review_frr: float | None = None,
    rule: str = DEFAULT_RULE,
) -> Thresholds:
    """Decision threshold for a target false-reject rate from good scores, REVIEW from ``review_frr``.

    ``rule="tail"`` reads the level from an exponential fit to the upper tail (``TailFit``),
    where there are at least MIN_TAIL_SCORES scores; ``"order"`` (and the tail rule below that)
    takes the order statistic, or a normal tail above the largest score when there are too few.
    Either way the statement of the false-reject rate (``inspector.frr``) is the distribution-
    free one, read from how many good scores the threshold rejects: a fit may choose the
    level, it never vouches for it.

    ``review_frr`` (default 10%, or 2x the target above 5%, at most 50%) is the share of good
    parts that may go to a person; the REVIEW band is where defects scoring like the
    best-looking tail of the good parts are caught instead of passed.
    """
    if len(good_scores) == 0:
        raise ValueError("calibration needs at least one good calibration image")
    if not 0 < target_frr < 1:
        raise ValueError("target false-reject rate must be between 0 and 1")
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule '{rule}'; choose one of {', '.join(RULES)}")
    scores = np.asarray(good_scores, dtype=np.float64)
    review_frr = min(0.5, max(DEFAULT_REVIEW_FRR, 2 * target_frr)) if review_frr is None else review_frr
    review_frr = max(review_frr, target_frr)
    fit = None
    if rule == "tail" and scores.size >= MIN_TAIL_SCORES:
        # A score the tail of the others makes implausible (a defect labelled good, say) is
        # named by ``train`` and does not set the level; the statement below still counts it.
        suspect = suspect_scores(scores)
        fit = replace(TailFit.fit(np.delete(scores, suspect)), left_out=len(suspect))
    if fit is not None and target_frr <= fit.m / fit.n:
        decision = fit.level(target_frr)
        review_level = fit.level(review_frr) if review_frr <= fit.m / fit.n else _good_only_level(scores, review_frr)[0]
        left = f", {fit.left_out} suspect left out" if fit.left_out else ""
        method = f"good-only exponential tail fit (m={fit.m} of {fit.n}{left})"
    else:
        decision, extrapolated = _good_only_level(scores, target_frr)
        review_level = _good_only_level(scores, review_frr)[0]
        method = "good-only, normal tail above the largest score" if extrapolated else "good-only order statistic"
        fit = None
    review = min(review_level, decision * 0.95)
    low, high = _map_range(good_maps, decision)
    statement = frr_statement(scores, decision, target_frr=target_frr)
    return Thresholds(
        decision, review, low, high, method, target_frr, statement.to_json(), fit.to_json() if fit else None
    )


def calibrate_labelled(scores: np.ndarray, labels: np.ndarray, good_maps: np.ndarray | None = None) -> Thresholds:
    """F1-optimal decision threshold on validation images with both classes."""
    decision, _ = f1_optimal_threshold(scores, labels)
    good = scores[labels == 0]
    review = float(np.quantile(good, 0.9)) if len(good) else decision * 0.9
    review = min(review, decision * 0.95)
    low, high = _map_range(good_maps, decision)
    statement = frr_statement(good, decision).to_json() if len(good) else None
    return Thresholds(decision, review, low, high, "F1-optimal on validation", None, statement)
