"""Defect type from pooled backbone features: a multinomial logistic regression in torch.

Few labelled defect images are enough for a linear model on frozen features, and a linear head
keeps Grad-CAM of a class meaningful (the gradient reaches the backbone stage through one
matrix). Everything the head needs is tensors plus names, so it saves into safetensors and
JSON: nothing is ever pickled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.patchcore.model import PatchCore

POOLED = "pooled"
DEFECT_CENTRED = "defect-centred"
DESCRIPTORS = (POOLED, DEFECT_CENTRED)


def pooled_features(feats: dict[str, torch.Tensor], layers: Sequence[str]) -> torch.Tensor:
    """Mean and max over space of each stage, concatenated: (B, 2 * sum of channels).

    The mean describes the whole part; the max keeps a small defect (a dirt spot) from being
    averaged away. Both are differentiable, so Grad-CAM can pass through them.
    """
    parts = []
    for layer in layers:
        f = feats[layer]
        parts += [f.mean(dim=(2, 3)), f.amax(dim=(2, 3))]
    return torch.cat(parts, dim=1)


def defect_weights(patch_scores: torch.Tensor) -> torch.Tensor:
    """(B, h, w) weights summing to 1 per image: each patch's anomaly score above the image's median.

    The median patch is ordinary pill surface, so only the part of the map that stands out from
    it (the defect) gets weight; a flat map (no patch above the median) weighs all patches alike.
    """
    flat = patch_scores.flatten(1)
    w = (flat - flat.median(dim=1, keepdim=True).values).clamp_min(0)
    total = w.sum(1, keepdim=True)
    w = torch.where(total > 0, w / total.clamp_min(1e-12), torch.full_like(w, 1.0 / w.shape[1]))
    return w.view_as(patch_scores)


def defect_centred_features(
    feats: dict[str, torch.Tensor], layers: Sequence[str], patch_scores: torch.Tensor
) -> torch.Tensor:
    """Each stage averaged with ``defect_weights`` (resized to the stage's grid): (B, sum of channels).

    Whole-image pooling describes the pill as much as the defect, so two defect types on the
    same pill look alike; weighting by where PatchCore's map stands out describes the defect.
    Chosen on pillQC with dirt as the new type (``scripts/bench_type_gate.py``).
    """
    w = defect_weights(patch_scores.detach().float())[:, None]
    parts = []
    for layer in layers:
        f = feats[layer]
        wr = F.interpolate(w, size=f.shape[-2:], mode="bilinear", align_corners=False).to(f.dtype)
        wr = wr / wr.sum(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        parts.append((f * wr).sum(dim=(2, 3)))
    return torch.cat(parts, dim=1)


def describe(
    feats: dict[str, torch.Tensor],
    layers: Sequence[str],
    descriptor: str = POOLED,
    patch_scores: torch.Tensor | None = None,
) -> torch.Tensor:
    """The defect descriptor a head or type gate was fitted on, from one forward pass's features."""
    if descriptor == POOLED:
        return pooled_features(feats, layers)
    if descriptor == DEFECT_CENTRED:
        if patch_scores is None:
            raise ValueError("the defect-centred descriptor needs the pass's patch scores (a fitted PatchCore)")
        return defect_centred_features(feats, layers, patch_scores)
    raise ValueError(f"unknown defect descriptor {descriptor!r}; known: {list(DESCRIPTORS)}")


@torch.no_grad()
def extract_descriptor(
    model: PatchCore, batches: Iterable[torch.Tensor], layers: Sequence[str] | None, descriptor: str
) -> torch.Tensor:
    """Descriptors (N, F) of image batches in [0, 1]: one backbone pass per batch, as at inspection."""
    if descriptor == POOLED:
        return extract_pooled(model, batches, layers)
    names = list(layers or model.config.layers)
    out = []
    for batch in batches:
        x = batch.to(model.mean.device)
        feats = model.extractor(model.normalize(x))
        _, patch = model.score_embedding(model.embed_features(feats, (x.shape[-2], x.shape[-1])), exact=True)
        out.append(describe(feats, names, descriptor, patch).float().cpu())
    if not out:
        raise ValueError("no images to extract features from")
    return torch.cat(out)


@torch.no_grad()
def extract_pooled(
    model: PatchCore, batches: Iterable[torch.Tensor], layers: Sequence[str] | None = None
) -> torch.Tensor:
    """Pooled features (N, F) of image batches in [0, 1], without autograd."""
    names = list(layers or model.config.layers)
    out = []
    for batch in batches:
        feats = model.extractor(model.normalize(batch.to(model.mean.device)))
        out.append(pooled_features(feats, names).float().cpu())
    if not out:
        raise ValueError("no images to extract features from")
    return torch.cat(out)


class DefectHead(nn.Module):
    """Standardised descriptors (``descriptor``: pooled by default) -> one logit per defect class."""

    def __init__(
        self, classes: Sequence[str], layers: Sequence[str], n_features: int, descriptor: str = POOLED
    ) -> None:
        super().__init__()
        if len(classes) < 2:
            raise ValueError(f"a defect classifier needs at least two classes, got {list(classes)}")
        if descriptor not in DESCRIPTORS:
            raise ValueError(f"unknown defect descriptor {descriptor!r}; known: {list(DESCRIPTORS)}")
        self.classes = list(classes)
        self.layers = list(layers)
        self.descriptor = descriptor
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_scale", torch.ones(n_features))
        self.linear = nn.Linear(n_features, len(classes))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear((pooled - self.feature_mean) * self.feature_scale)

    def probabilities(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(pooled), dim=1)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything learned, as named CPU tensors (what safetensors stores)."""
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

    @classmethod
    def from_tensors(
        cls,
        classes: Sequence[str],
        layers: Sequence[str],
        tensors: dict[str, torch.Tensor],
        descriptor: str = POOLED,
    ) -> DefectHead:
        """Rebuilds a head from ``tensors()`` output; shapes are checked against the class list."""
        if "linear.weight" not in tensors:
            raise ValueError("defect head tensors lack 'linear.weight'")
        n_features = int(tensors["linear.weight"].shape[1])
        head = cls(classes, layers, n_features, descriptor)
        head.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
        return head


def fit_defect_head(
    features: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[str],
    layers: Sequence[str],
    *,
    l2: float = 1e-2,
    max_iter: int = 200,
    descriptor: str = POOLED,
) -> DefectHead:
    """Fits the head by full-batch L-BFGS on class-balanced cross-entropy plus an L2 penalty.

    The problem is convex, so the result does not depend on a seed; class weights stop the
    common defect (pillQC has three dirt images per chip) from swallowing the rare one.
    """
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError("features must be (N, F) with one label per row")
    counts = torch.bincount(labels, minlength=len(classes)).float()
    if (counts == 0).any():
        missing = [c for c, n in zip(classes, counts.tolist(), strict=True) if n == 0]
        raise ValueError(f"no training examples for defect class(es) {missing}")
    head = DefectHead(classes, layers, features.shape[1], descriptor)
    x = features.float()
    mean, std = x.mean(0), x.std(0, unbiased=False)
    head.feature_mean.copy_(mean)
    head.feature_scale.copy_(torch.where(std > 1e-6, 1.0 / std.clamp_min(1e-6), torch.zeros_like(std)))
    nn.init.zeros_(head.linear.weight)
    nn.init.zeros_(head.linear.bias)
    weight = counts.sum() / (len(classes) * counts)
    opt = torch.optim.LBFGS(head.linear.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(x), labels, weight=weight) + l2 * head.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head
