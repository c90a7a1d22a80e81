import numpy as np
import pytest

from inspector.calibration import Thresholds, calibrate_good_only, calibrate_labelled
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
