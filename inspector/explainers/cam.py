"""CAM of the defect-type head: its linear weights over the feature maps (no gradient)."""

from __future__ import annotations

import torch

from inspector.explainers import Method, MethodContext, register
from models.explain.cam import defect_cam


def _compute(ctx: MethodContext) -> torch.Tensor:
    assert ctx.head is not None and ctx.class_index is not None
    return defect_cam(ctx.model, ctx.head, ctx.x, ctx.class_index, sigma=ctx.side / 56)[0]


register(
    Method(
        "defect-cam",
        "CAM of the defect type",
        _compute,
        target="defect",
        cost="1 forward pass",
        reference="Zhou et al., 2016",
    )
)
