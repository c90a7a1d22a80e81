"""Input-gradient saliency of the anomaly score: |d score / d pixel|, lightly smoothed."""

from __future__ import annotations

import torch

from inspector.explainers import Method, MethodContext, register
from models.explain import saliency_map


def _compute(ctx: MethodContext) -> torch.Tensor:
    return saliency_map(ctx.model, ctx.x, sigma=ctx.side / 112)[0]


register(
    Method(
        "saliency",
        "input-gradient saliency",
        _compute,
        fast=True,
        cost="1 forward + 1 backward pass",
        reference="Simonyan et al., 2014; Captum Saliency",
    )
)
