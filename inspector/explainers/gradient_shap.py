"""GradientSHAP (expected gradients) of the anomaly score and of the defect type."""

from __future__ import annotations

import torch

from inspector.explainers import MethodContext, Target, register_score_and_defect
from models.explain.gradient_shap import gradient_shap_map

SAMPLES = 16


def _run(ctx: MethodContext, target: Target) -> torch.Tensor:
    baselines = ctx.reference if ctx.reference is not None else ctx.baseline()
    return gradient_shap_map(
        ctx.forward(target),
        ctx.x,
        baselines,
        n_samples=int(ctx.setting("gradient_samples", SAMPLES)),
        target=ctx.class_target(target),
        sigma=ctx.side / 56,
    )[0]


register_score_and_defect(
    "gradientshap",
    "GradientSHAP of {what}",
    _run,
    cost=f"{SAMPLES} forward + backward passes",
    reference="Lundberg & Lee, 2017; Captum GradientShap",
)
