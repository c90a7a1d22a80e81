"""Grad-CAM of the anomaly score (from the inspection pass) and of the defect-type head."""

from __future__ import annotations

import torch

from inspector.explainers import Method, MethodContext, register
from models.explain import anomaly_grad_cam, defect_grad_cam


def _score(ctx: MethodContext) -> torch.Tensor:
    if "gradcam" in ctx.pass_maps:
        return ctx.pass_maps["gradcam"]
    return anomaly_grad_cam(ctx.model, ctx.x, ctx.layer).cam[0]


def _defect(ctx: MethodContext) -> torch.Tensor:
    assert ctx.head is not None and ctx.class_index is not None
    return defect_grad_cam(ctx.model, ctx.head, ctx.x, ctx.class_index, ctx.layer)[0]


register(
    Method(
        "gradcam",
        "Grad-CAM of the score",
        _score,
        fast=True,
        shared_pass=True,
        cost="1 backward pass on top of inspection",
        reference="Selvaraju et al., 2017; Captum LayerGradCam",
    )
)
register(
    Method(
        "defect-gradcam",
        "Grad-CAM of the defect type",
        _defect,
        target="defect",
        cost="1 forward + 1 backward pass",
        reference="Selvaraju et al., 2017; Captum LayerGradCam",
    )
)
