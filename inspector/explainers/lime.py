"""LIME on SLIC superpixels (imageLIME), of the anomaly score and of the defect type."""

from __future__ import annotations

import torch

from inspector.explainers import Method, MethodContext, Target, register
from inspector.explainers._superpixels import superpixels
from models.explain.perturbation import superpixel_attribution

SAMPLES = 96


def _run(ctx: MethodContext, target: Target) -> torch.Tensor:
    return superpixel_attribution(
        ctx.forward(target),
        ctx.x,
        superpixels(ctx),
        ctx.baseline(),
        method="lime",
        n_samples=int(ctx.setting("samples", SAMPLES)),
        target=ctx.class_target(target),
    )[0]


for _target, _name, _title in (
    ("score", "lime", "LIME of the score (superpixels)"),
    ("defect", "defect-lime", "LIME of the defect type (superpixels)"),
):
    register(
        Method(
            _name,
            _title,
            lambda ctx, t=_target: _run(ctx, t),
            target=_target,  # type: ignore[arg-type]
            cost=f"{SAMPLES} forward passes",
            reference="Ribeiro et al., 2016; Captum Lime, scikit-image SLIC",
        )
    )
