"""GradientSHAP of the anomaly score or a defect logit, through Captum.

Expected gradients (Erion et al., 2021; Lundberg & Lee's GradientExplainer): gradient x (input -
baseline) averaged over baselines drawn from a reference set and noisy interpolation points.
The reference set is the product's own good images where given; a light blur otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.attr import GradientShap

from models.patchcore.anomaly_map import smooth

Forward = Callable[[torch.Tensor], torch.Tensor]


def gradient_shap_map(
    forward: Forward,
    images: torch.Tensor,
    baselines: torch.Tensor,
    *,
    n_samples: int = 16,
    stdevs: float = 0.02,
    target: int | None = None,
    sigma: float = 0.0,
    seed: int = 0,
) -> torch.Tensor:
    """Sum over colour channels of the SHAP values: (B, H, W), signed; ``sigma`` > 0 smooths speckle."""
    x = images.detach().clone().requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attr = GradientShap(forward).attribute(
            x, baselines=baselines.to(x.device), n_samples=n_samples, stdevs=stdevs, target=target
        )
    m = attr.detach().sum(dim=1)
    if sigma > 0:
        m = smooth(m.unsqueeze(1), sigma).squeeze(1)
    return m
