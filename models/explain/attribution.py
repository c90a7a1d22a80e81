"""On-demand attributions of the anomaly score: occlusion sensitivity and input-gradient saliency.

Slower than Grad-CAM (occlusion runs one forward pass per window position), for an engineer's
closer look. Occlusion replaces each window by a heavily blurred copy of the image rather than
by black: a black square on a pill is itself an anomaly and would raise the score, while the
blurred copy removes fine detail (a chip's edge, a dirt spot) without adding a new one.
"""

from __future__ import annotations

import torch
from captum.attr import Occlusion, Saliency

from models.patchcore.anomaly_map import smooth
from models.patchcore.model import PatchCore


def blur_images(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (B, C, H, W) images per channel, with reflected borders."""
    b, c, h, w = images.shape
    return smooth(images.reshape(b * c, 1, h, w), sigma).reshape(b, c, h, w)


def occlusion_map(
    model: PatchCore,
    images: torch.Tensor,
    *,
    window: int | None = None,
    stride: int | None = None,
    per_eval: int = 16,
    sigma: float | None = None,
) -> torch.Tensor:
    """How much the score drops when each window is blurred away: (B, H, W), >= 0.

    The blur is light (sigma 1/56 of the side): a strong blur is itself an anomaly to PatchCore
    and raised the score wherever it landed on pillQC, leaving the map empty.
    Defaults: windows of 1/8 of the side moved by a whole window, 64 forward passes: on this
    project's 2-core CPU that is seconds, not minutes; pass a smaller ``stride`` for finer maps.
    """
    images = images.to(model.mean.device)
    side = images.shape[-1]
    window = window or max(4, side // 8)
    stride = stride or window
    baseline = blur_images(images, sigma=sigma or max(1.0, side / 56))
    with torch.no_grad():  # forward passes only: no graph to keep
        attr = Occlusion(model.score).attribute(
            images,
            sliding_window_shapes=(3, window, window),
            strides=(3, stride, stride),
            baselines=baseline,
            perturbations_per_eval=per_eval,
        )
    return attr.detach()[:, 0].clamp_min(0.0)  # the window spans all channels: they are equal


def saliency_map(model: PatchCore, images: torch.Tensor, *, sigma: float = 0.0) -> torch.Tensor:
    """|d score / d pixel|, the largest over colour channels: (B, H, W), >= 0.

    ``sigma`` > 0 smooths the speckle of raw gradients so the map reads as regions.
    """
    images = images.to(model.mean.device)
    images = images.detach().clone().requires_grad_(True)  # Captum warns when it has to set this itself
    grad = Saliency(model.score).attribute(images, abs=True).detach().amax(dim=1)
    if sigma > 0:
        grad = smooth(grad.unsqueeze(1), sigma).squeeze(1).clamp_min(0.0)
    return grad
