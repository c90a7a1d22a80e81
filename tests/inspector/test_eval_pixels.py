"""eval's pixel figures: on the frame's own aspect, and Grad-CAM's pooled pixel AUROC where masks exist."""

from __future__ import annotations

from inspector.evaluation import eval_grid, evaluate
from inspector.pipeline import Inspector


def test_eval_grid_keeps_the_frame_aspect() -> None:
    assert eval_grid((627, 250)) == (256, 102)
    assert eval_grid((96, 96)) == (96, 96)  # never upsampled


def test_eval_reports_map_and_gradcam_pixel_auroc_on_masked_sets(trained_tiny, synthetic_pills) -> None:
    root, manifest, _ = synthetic_pills
    rep = evaluate(Inspector.load(trained_tiny, "cpu"), manifest, root).report
    assert 0 <= rep["pixel_auroc"] <= 1 and 0 <= rep["aupro"] <= 1
    assert 0 <= rep["gradcam_pixel_auroc"] <= 1
    assert (
        evaluate(Inspector.load(trained_tiny, "cpu"), manifest, root, gradcam=False).report["gradcam_pixel_auroc"]
        is None
    )
