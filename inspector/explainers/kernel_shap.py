"""KernelSHAP on the same SLIC superpixels as LIME, of the anomaly score and of the defect type."""

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
        method="kernelshap",
        n_samples=int(ctx.setting("samples", SAMPLES)),
        target=ctx.class_target(target),
    )[0]


for _target, _name, _title in (
    ("score", "kernelshap", "KernelSHAP of the score (superpixels)"),
    ("defect", "defect-kernelshap", "KernelSHAP of the defect type (superpixels)"),
):
    register(
        Method(
            _name,
            _title,
            lambda ctx, t=_target: _run(ctx, t),
            target=_target,  # type: ignore[arg-type]
            cost=f"{SAMPLES} forward passes",
            reference="Lundberg & Lee, 2017; Captum KernelShap, scikit-image SLIC",
        )
    )
