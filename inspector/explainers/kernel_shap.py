"""KernelSHAP on the same SLIC superpixels as LIME, of the anomaly score and of the defect type."""

from __future__ import annotations

from inspector.explainers import register_score_and_defect
from inspector.explainers._superpixels import SAMPLES, superpixel_method

register_score_and_defect(
    "kernelshap",
    "KernelSHAP of {what} (superpixels)",
    superpixel_method("kernelshap"),
    cost=f"{SAMPLES} forward passes",
    reference="Lundberg & Lee, 2017; Captum KernelShap, scikit-image SLIC",
)
