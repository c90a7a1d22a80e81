"""Grad-CAM of PatchCore's image anomaly score (and of a defect class), through Captum.

As in pytorch-grad-cam, what is explained is a small target callable: ``ScoreTarget`` maps
images to the anomaly score, ``DefectTarget`` to defect-class logits. Captum's ``LayerGradCam``
does the rest (hooks, gradients, channel weights = pooled gradients, weighted sum, ReLU) and
releases its hooks itself, so no hook handles live here.

``ScoreTarget`` keeps what its one forward pass computed (patch scores, defect logits), so the
anomaly map, the score and Grad-CAM come from one forward and one backward pass: Grad-CAM
costs one backward pass on top of inference, as the issue asks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from torch import nn

from models.explain.defect_classifier import POOLED, DefectHead, describe, pooled_features
from models.patchcore.model import PatchCore


def deepest_layer(model: PatchCore) -> str:
    """The deepest backbone stage PatchCore reads: its features are the most semantic.

    With ``fine_score`` the image score also reads the fine bank, whose stages stop earlier: the
    deepest stage both read, so the score's gradient reaches it whichever bank scores highest.
    """
    order = [name for name, _ in model.extractor._stages]
    layers = list(model.config.layers)
    if model.config.fine_score and model.fine_map is not None:
        layers = [layer for layer in layers if layer in model.fine_map.layers] or layers
    # "pixels" is the input itself, not a module: Grad-CAM needs a stage with activations.
    return max((layer for layer in layers if layer in order), key=order.index)


def stage_module(model: PatchCore, layer: str | None = None) -> nn.Module:
    """The backbone stage module by its PatchCore name ("blocks.2", "layer3"); default the deepest."""
    name = layer or deepest_layer(model)
    stages = dict(model.extractor._stages)
    if name not in stages:
        raise ValueError(f"unknown backbone stage '{name}'; this backbone has {sorted(stages)}")
    return stages[name]


class ScoreTarget:
    """images -> image anomaly score (B,); remembers the pass's patch scores and defect logits."""

    def __init__(
        self,
        model: PatchCore,
        head: DefectHead | None = None,
        pooled_layers: Sequence[str] | None = None,
        descriptor: str = POOLED,
    ) -> None:
        self.model = model
        self.head = head
        self.pooled_layers = list(pooled_layers) if pooled_layers else None
        self.descriptor = descriptor  # what ``pooled`` holds: a type gate's descriptor
        self.score: torch.Tensor | None = None
        self.patch_scores: torch.Tensor | None = None
        self.map_patch_scores: torch.Tensor | None = None
        self.defect_logits: torch.Tensor | None = None
        self.pooled: torch.Tensor | None = None  # pooled features of ``pooled_layers``, for a type gate
        self.forward_ms = 0.0  # so callers can tell inference from Grad-CAM's extra cost

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        feats = self.model.extractor(self.model.normalize(images))
        score, patch = self.model.score_features(feats, (images.shape[-2], images.shape[-1]))
        self.score, self.patch_scores = score.detach(), patch.detach()
        # The map's own (finer) grid, from the same features and without gradients.
        self.map_patch_scores = self.model.map_patch_scores(feats, self.patch_scores, tuple(images.shape[-2:]))
        if self.head is not None:
            self.defect_logits = self.head(describe(feats, self.head.layers, self.head.descriptor, patch)).detach()
        if self.pooled_layers:
            self.pooled = describe(feats, self.pooled_layers, self.descriptor, patch).detach()
        self.forward_ms += (time.perf_counter() - t0) * 1000
        return score


class DefectTarget:
    """images -> defect-class logits (B, K): Grad-CAM of one class goes through the linear head."""

    def __init__(self, model: PatchCore, head: DefectHead) -> None:
        self.model = model
        self.head = head

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.model.extractor(self.model.normalize(images))
        if self.head.descriptor == POOLED:
            return self.head(pooled_features(feats, self.head.layers))
        _, patch = self.model.score_embedding(self.model.embed_features(feats, (images.shape[-2], images.shape[-1])))
        return self.head(describe(feats, self.head.layers, self.head.descriptor, patch))


def layer_grad_cam(
    target: ScoreTarget | DefectTarget,
    layer: nn.Module,
    images: torch.Tensor,
    class_index: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """ReLU(sum_c mean(dS/dA_c) * A_c) at ``layer``, bilinearly upsampled to (B, H, W)."""
    cam = LayerGradCam(target, layer).attribute(images, target=class_index, relu_attributions=True)
    up = F.interpolate(cam.detach(), size=images.shape[-2:], mode="bilinear", align_corners=False)
    return up[:, 0].clamp_min(0.0)  # bilinear interpolation of non-negative values stays >= 0


@dataclass
class ScoreCam:
    """One pass's results: Grad-CAM of the score and what the same forward pass gave."""

    cam: torch.Tensor  # (B, H, W), >= 0, in units of score x activation
    score: torch.Tensor  # (B,)
    anomaly_map: torch.Tensor  # (B, H, W), PatchCore's map at the input size
    defect_logits: torch.Tensor | None  # (B, K) where a defect head was given
    forward_ms: float  # time of the forward pass alone; the rest of the call is Grad-CAM's cost
    pooled: torch.Tensor | None = None  # (B, F) descriptors where ``pooled_layers`` were asked


def anomaly_grad_cam(
    model: PatchCore,
    images: torch.Tensor,
    layer: str | None = None,
    head: DefectHead | None = None,
    pooled_layers: Sequence[str] | None = None,
    descriptor: str = POOLED,
) -> ScoreCam:
    """Grad-CAM of the anomaly score, with the anomaly map, score (and, on request, the
    ``descriptor`` features of ``pooled_layers`` for a defect-type gate) of the same forward pass."""
    target = ScoreTarget(model, head, pooled_layers, descriptor)
    images = images.to(model.mean.device)
    cam = layer_grad_cam(target, stage_module(model, layer), images)
    score, patch, map_patch = target.score, target.patch_scores, target.map_patch_scores
    if score is None or patch is None or map_patch is None:  # pragma: no cover - Captum always runs it
        raise RuntimeError("Grad-CAM ran no forward pass")
    amap = model.map_from_grids(patch, map_patch, (images.shape[-2], images.shape[-1]))
    return ScoreCam(cam, score, amap, target.defect_logits, target.forward_ms, target.pooled)


def defect_grad_cam(
    model: PatchCore, head: DefectHead, images: torch.Tensor, class_index: torch.Tensor | int, layer: str | None = None
) -> torch.Tensor:
    """Grad-CAM of one defect class's logit (B, H, W), through the linear head."""
    images = images.to(model.mean.device)
    return layer_grad_cam(DefectTarget(model, head), stage_module(model, layer), images, class_index)
