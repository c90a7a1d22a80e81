"""LIME on SLIC superpixels (imageLIME), of the anomaly score and of the defect type."""

from __future__ import annotations

from inspector.explainers import register_score_and_defect
from inspector.explainers._superpixels import SAMPLES, superpixel_method

register_score_and_defect(
    "lime",
    "LIME of {what} (superpixels)",
    superpixel_method("lime"),
    cost=f"{SAMPLES} forward passes",
    reference="Ribeiro et al., 2016; Captum Lime, scikit-image SLIC",
)
