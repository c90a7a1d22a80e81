"""Superpixel attributions of the anomaly score or a defect logit: LIME and KernelSHAP, through Captum.

Both switch groups of pixels (superpixels, given as a ``feature_mask``) on and off and fit a
surrogate to the resulting outputs: LIME a locally weighted linear model (imageLIME, Ribeiro et
al., 2016), KernelSHAP the linear model whose weights are Shapley values (Lundberg & Lee, 2017).
"Off" is the ``baseline`` image, never black: a black patch is itself an anomaly to PatchCore,
so the fill must come from the product's own good parts (or a light blur where none is given).

The segmentation is the caller's (inspector computes SLIC superpixels): this module stays torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from captum.attr import KernelShap, Lime

Forward = Callable[[torch.Tensor], torch.Tensor]


def superpixel_attribution(
    forward: Forward,
    images: torch.Tensor,
    feature_mask: torch.Tensor,
    baseline: torch.Tensor,
    *,
    method: Literal["lime", "kernelshap"] = "lime",
    n_samples: int = 128,
    per_eval: int = 32,
    target: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Per-pixel weight of each pixel's superpixel: (B, H, W), signed (positive = raises the output).

    ``feature_mask`` is (B, H, W) or (H, W) integer superpixel ids; ``baseline`` is the "off"
    image, same shape as ``images``. Seeded: Captum draws its samples from torch's generator.
    """
    if feature_mask.ndim == 2:
        feature_mask = feature_mask.unsqueeze(0)
    mask = feature_mask.to(images.device).long().unsqueeze(1).expand(-1, images.shape[1], -1, -1)
    explainer = Lime(forward) if method == "lime" else KernelShap(forward)
    out = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # forward passes only: no graph to keep
        torch.manual_seed(seed)
        for i in range(images.shape[0]):  # Captum's surrogate models take one image at a time
            attr = explainer.attribute(
                images[i : i + 1],
                baselines=baseline[i : i + 1],
                target=target,
                feature_mask=mask[i : i + 1],
                n_samples=n_samples,
                perturbations_per_eval=per_eval,
            )
            out.append(attr[:, 0].detach())  # one group spans all channels: they are equal
    return torch.cat(out)
