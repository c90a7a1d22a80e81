"""Occlusion sensitivity of the anomaly score: windows blurred away one at a time."""

from __future__ import annotations

import torch

from inspector.explainers import Method, MethodContext, register
from models.explain import occlusion_map


def _compute(ctx: MethodContext) -> torch.Tensor:
    return occlusion_map(ctx.model, ctx.x)[0]


register(
    Method(
        "occlusion",
        "occlusion sensitivity",
        _compute,
        cost="64 forward passes",
        reference="Zeiler & Fergus, 2014; Captum Occlusion",
    )
)
