"""The search's evidence rule: a candidate replaces the defaults only when it beats them beyond chance."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from inspector import metrics
from inspector.candidate_scoring import WEIGHTS
from inspector.search_evidence import Evidence, gain_lower_bound


def _eval_set(
    quality: float, seed: int, n_good: int = 12, n_bad: int = 24, noise_seed: int | None = None
) -> tuple[Evidence, tuple[np.ndarray, ...]]:
    """Maps and scores whose separation of the pasted squares grows with ``quality`` (0: none).

    ``seed`` places the defects; ``noise_seed`` (default: the same) draws the maps' noise, so two
    candidates can see the same images with their own noise.
    """
    rng = np.random.default_rng(seed)
    n = n_good + n_bad
    labels = np.array([0] * n_good + [1] * n_bad)
    masks = np.zeros((n, 32, 32), np.uint8)
    maps = np.random.default_rng(seed if noise_seed is None else noise_seed).normal(0.0, 1.0, (n, 32, 32))
    for i in range(n_good, n):
        y, x = rng.integers(2, 24, 2)
        masks[i, y : y + 6, x : x + 6] = 1
        maps[i][masks[i] > 0] += 3.0 * quality
    scores = maps.reshape(n, -1).max(1)
    return Evidence.from_maps(scores, labels, maps, masks), (scores, labels, maps, masks)


def test_binned_figures_agree_with_the_exact_metrics() -> None:
    ev, (scores, labels, maps, masks) = _eval_set(0.6, seed=1)
    w = np.ones(len(labels))
    assert ev._image_auroc(w) == pytest.approx(metrics.image_auroc(scores, labels), abs=1e-9)
    assert ev._pixel_auroc(w) == pytest.approx(metrics.pixel_auroc(maps, masks), abs=0.005)
    assert ev._aupro(w) == pytest.approx(metrics.aupro(maps, masks, steps=100), abs=0.01)
    w3 = np.random.default_rng(0).integers(0, 4, len(labels)).astype(float)
    assert ev._image_auroc(w3) == pytest.approx(roc_auc_score(labels, scores, sample_weight=w3), abs=1e-12)
    # Counting an image twice is the same as listing it twice.
    w2 = w.copy()
    w2[-1] = 2
    twice = np.concatenate([maps, maps[-1:]]), np.concatenate([masks, masks[-1:]])
    assert ev._pixel_auroc(w2) == pytest.approx(metrics.pixel_auroc(*twice), abs=0.005)


def test_a_clearly_better_candidate_clears_the_bound_and_a_twin_does_not() -> None:
    weak, _ = _eval_set(0.1, seed=2)
    strong, _ = _eval_set(1.0, seed=2)  # same images, masks and noise; the defects stand out more
    assert gain_lower_bound(strong, weak, WEIGHTS) > 0.05
    assert gain_lower_bound(weak, strong, WEIGHTS) < 0
    assert gain_lower_bound(weak, weak, WEIGHTS) <= 0  # no gain at all: never beyond chance


def test_equal_candidates_rarely_pass_for_better() -> None:
    """Two candidates of the same quality with their own noise: the rule's false-switch rate."""
    passed = 0
    for k in range(20):
        a, _ = _eval_set(0.3, seed=100 + k, noise_seed=1000 + k)
        b, _ = _eval_set(0.3, seed=100 + k, noise_seed=2000 + k)
        passed += gain_lower_bound(b, a, WEIGHTS, n_resamples=100) > 0
    assert passed <= 3  # one-sided 95%: about 1 in 20 expected


def test_candidates_scored_on_different_images_are_refused() -> None:
    a, _ = _eval_set(0.5, seed=4)
    b, _ = _eval_set(0.5, seed=4, n_good=10, n_bad=26)
    with pytest.raises(ValueError, match="same evaluation images"):
        gain_lower_bound(a, b, WEIGHTS)
