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
    """Standardised pooled features -> one logit per defect class."""

    def __init__(self, classes: Sequence[str], layers: Sequence[str], n_features: int) -> None:
        super().__init__()
        if len(classes) < 2:
            raise ValueError(f"a defect classifier needs at least two classes, got {list(classes)}")
        self.classes = list(classes)
        self.layers = list(layers)
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
        cls, classes: Sequence[str], layers: Sequence[str], tensors: dict[str, torch.Tensor]
    ) -> DefectHead:
        """Rebuilds a head from ``tensors()`` output; shapes are checked against the class list."""
        if "linear.weight" not in tensors:
            raise ValueError("defect head tensors lack 'linear.weight'")
        n_features = int(tensors["linear.weight"].shape[1])
        head = cls(classes, layers, n_features)
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
    head = DefectHead(classes, layers, features.shape[1])
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
