"""False-reject statements: the bound must cover the true rate as often as it claims."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inspector.calibration import calibrate_good_only
from inspector.frr import FrrStatement, frr_statement, min_good_images, order_statistic_threshold


def test_named_minimum_is_the_success_run_count() -> None:
    assert [min_good_images(p) for p in (0.01, 0.02, 0.05)] == [299, 149, 59]
    # At the minimum the bound at the largest score reaches the target; one fewer and it cannot.
    for p in (0.01, 0.05):
        n = min_good_images(p)
        at_max = lambda k: frr_statement(np.arange(k, dtype=float), k).upper  # noqa: E731
        assert at_max(n) <= p < at_max(n - 1)
    with pytest.raises(ValueError):
        min_good_images(0)


def test_statement_counts_rejects_and_bounds_them() -> None:
    scores = np.arange(1, 101, dtype=float)  # 100 good scores 1..100
    s = frr_statement(scores, 98.5, target_frr=0.02)
    assert (s.n_good, s.n_above) == (100, 2)
    assert s.expected == pytest.approx(3 / 101)
    assert 0.05 < s.upper < 0.09  # Clopper-Pearson 95% upper bound for 2 of 100 is 0.0616
    assert s.upper == pytest.approx(0.0616, abs=5e-4)
    assert "only 100 good images: 149 are needed" in s.warning(0.02)
    assert frr_statement(np.arange(400.0), 1e9, target_frr=0.01).warning(0.01) is None
    assert FrrStatement(**json.loads(json.dumps(s.to_json()))) == s


def test_order_statistic_threshold_promises_at_most_the_target() -> None:
    scores = np.random.default_rng(0).normal(size=199)
    t = order_statistic_threshold(scores, 0.01)  # r = floor(0.01 * 200) = 2: just above the 2nd largest
    assert t is not None and (scores >= t).sum() == 1
    assert frr_statement(scores, t).expected <= 0.01
    assert order_statistic_threshold(scores[:50], 0.01) is None  # 50 scores cannot state 1%


def test_bound_covers_the_true_rate_on_fresh_good_parts() -> None:
    """Leave-one-out or held out, a new good part is one more draw: the 95% bound must cover its rate."""
    rng = np.random.default_rng(1)
    population = rng.gamma(4.0, 1.0, 200_000)  # skewed, like patch distances
    covered, true_rates = 0, []
    trials = 400
    for _ in range(trials):
        t = calibrate_good_only(rng.choice(population, 120), target_frr=0.02, rule="order")
        true = float((population >= t.decision).mean())
        true_rates.append(true)
        covered += true <= t.frr["upper"]
    assert covered / trials >= 0.92  # nominal 95%
    assert np.mean(true_rates) <= 0.02 * 1.15  # stated rate <= target, on average


def test_few_images_extrapolate_above_the_largest_score_and_still_state_a_bound() -> None:
    scores = np.random.default_rng(2).normal(5, 0.5, 10)
    t = calibrate_good_only(scores, target_frr=0.01)
    assert t.decision > scores.max() and "normal tail" in t.method
    assert t.frr["n_good"] == 10 and t.frr["expected"] == pytest.approx(1 / 11)
    assert t.frr["upper"] == pytest.approx(1 - 0.05 ** (1 / 10), rel=1e-6)
    assert t.frr["min_good"] == 299
