"""Deep Taylor decomposition (LRP, z+ rule) of the anomaly score and of the defect type."""

from __future__ import annotations

import torch

from inspector.explainers import MethodContext, Target, register_score_and_defect
from models.explain.deep_taylor import DeepTaylorNet, deep_taylor_map


def _run(ctx: MethodContext, target: Target) -> torch.Tensor:
    head = ctx.head if target == "defect" else None
    hw = (int(ctx.x.shape[-2]), int(ctx.x.shape[-1]))  # a frame at its own aspect pads otherwise
    key = f"deep-taylor-net-{target}-{id(ctx.model)}-{id(head)}-{hw}"
    if key not in ctx.cache:  # the LRP-ready copy of the stages, made once per context
        ctx.cache[key] = DeepTaylorNet(ctx.model, head, hw)
    return deep_taylor_map(
        ctx.model, ctx.x, head=head, class_index=ctx.class_target(target), sigma=ctx.side / 56, net=ctx.cache[key]
    )[0]


register_score_and_defect(
    "deeptaylor",
    "Deep Taylor (LRP z+) of {what}",
    _run,
    cost="2 forward + 1 backward pass",
    reference="Montavon et al., 2017; Captum LRP with Alpha1_Beta0 (z+) rules",
)
