import numpy as np
import pytest

from inspector.calibration import TailFit, Thresholds, calibrate_good_only, calibrate_labelled, suspect_scores
from inspector.metrics import aupro, per_defect_auroc, pixel_auroc, rates_at


def test_good_only_threshold_meets_the_target_rate() -> None:
    scores = np.random.default_rng(0).normal(1.0, 0.1, 2000)
    t = calibrate_good_only(scores, target_frr=0.05)
    frr, _ = rates_at(scores, np.zeros_like(scores, dtype=int), t.decision)
    assert 0.04 <= frr <= 0.06
    assert t.review < t.decision and t.map_low < t.decision < t.map_high
    with pytest.raises(ValueError):
        calibrate_good_only(np.array([]))


def test_labelled_threshold_is_f1_optimal() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.9, 1.0, 1.1])
    labels = np.array([0, 0, 0, 1, 1, 1])
    t = calibrate_labelled(scores, labels)
    assert 0.3 < t.decision <= 0.9
    assert [t.verdict(s) for s in (0.1, 1.0)] == ["OK", "DEFECT"]


def test_verdict_bands_and_round_trip() -> None:
    t = Thresholds(2.0, 1.5, 0.5, 3.0, "manual")
    assert [t.verdict(s) for s in (1.0, 1.7, 2.0)] == ["OK", "REVIEW", "DEFECT"]
    assert Thresholds.from_json(t.to_json()) == t
    moved = t.with_decision(4.0)
    assert moved.decision == 4.0 and moved.review == 3.0


def test_pixel_metrics_rank_a_perfect_map_first() -> None:
    masks = np.zeros((2, 16, 16), bool)
    masks[0, 4:8, 4:8] = True
    perfect = masks.astype(float)
    noisy = np.random.default_rng(1).random((2, 16, 16))
    assert pixel_auroc(perfect, masks) == 1.0
    assert aupro(perfect, masks) > 0.95 > aupro(noisy, masks)
    auc = per_defect_auroc(np.array([0.1, 0.9, 0.2]), np.array([0, 1, 1]), [None, "chip", "dirt"])
    assert auc == {"chip": 1.0, "dirt": 1.0}


def test_few_held_out_scores_still_give_a_tail_threshold() -> None:
    rng = np.random.default_rng(3)
    population = rng.normal(5.0, 0.5, 100_000)
    frrs = []
    for _ in range(200):
        t = calibrate_good_only(rng.choice(population, 10), target_frr=0.01)
        frrs.append(float((population >= t.decision).mean()))
    # an empirical 99% quantile of 10 scores rejects about 9% of good parts; the tail fit stays near 1-3%
    assert np.mean(frrs) < 0.04


def test_tail_fit_recovers_an_exponential_quantile_and_its_rate() -> None:
    rng = np.random.default_rng(5)
    fit = TailFit.fit(5.0 + rng.exponential(0.5, 4000))
    assert fit.level(0.01) == pytest.approx(5.0 + 0.5 * np.log(100), rel=0.02)
    assert fit.rate(fit.level(0.01)) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="at least 20"):
        TailFit.fit(np.arange(10.0))


def test_one_atypical_good_image_moves_the_tail_threshold_little() -> None:
    """The order statistic for 1% of 100 is the largest score: one outlier 3.0 above the rest
    moves it by 3.0. The tail rule names the outlier as suspect and fits the others; the
    statement still counts all 100 scores."""
    scores = np.random.default_rng(6).normal(7.8, 0.6, 100)
    typical = scores.copy()
    scores[0] = typical.max() + 3.0  # a defect labelled good, say
    typical[0] = np.median(typical)
    order = [calibrate_good_only(s, target_frr=0.01, rule="order").decision for s in (typical, scores)]
    tail = [calibrate_good_only(s, target_frr=0.01) for s in (typical, scores)]
    assert order[1] - order[0] > 2.9
    assert abs(tail[1].decision - tail[0].decision) < 0.3
    assert "tail fit" in tail[1].method and "1 suspect left out" in tail[1].method
    assert tail[1].tail["left_out"] == 1 and tail[0].tail["left_out"] == 0
    assert tail[1].frr["n_good"] == 100 and tail[1].frr["n_above"] == int((scores >= tail[1].decision).sum())
    assert suspect_scores(scores) == [0] and suspect_scores(typical) == []
    # without the exclusion the outlier would drag the fitted level up
    assert TailFit.fit(scores).level(0.01) - tail[1].decision > 0.5


def test_tail_rule_keeps_its_bound_on_fresh_good_parts() -> None:
    rng = np.random.default_rng(1)
    population = rng.gamma(4.0, 1.0, 200_000)
    trials, covered, true_rates = 300, 0, []
    for _ in range(trials):
        t = calibrate_good_only(rng.choice(population, 120), target_frr=0.02)
        true = float((population >= t.decision).mean())
        true_rates.append(true)
        covered += true <= t.frr["upper"]
    assert covered / trials >= 0.92
    # a fit of 12 scores is noisier than an order statistic: on average 2.5% for 2% here
    assert np.mean(true_rates) <= 0.02 * 1.35
