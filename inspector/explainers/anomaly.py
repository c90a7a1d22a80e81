"""PatchCore's own anomaly map: the patch distances themselves, from the inspection pass."""

from __future__ import annotations

import torch

from inspector.explainers import Method, MethodContext, register


def _compute(ctx: MethodContext) -> torch.Tensor:
    if "anomaly" in ctx.pass_maps:
        return ctx.pass_maps["anomaly"]
    return ctx.model.predict(ctx.x).anomaly_map[0]


METHOD = register(
    Method(
        "anomaly",
        "anomaly map",
        _compute,
        fast=True,
        shared_pass=True,
        cost="the inspection pass",
        reference="Roth et al., 2022 (PatchCore)",
    )
)
