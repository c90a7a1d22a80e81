"""Patch scores to a pixel map: upsample to the input and smooth, as in PatchCore Sec. 3.3."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of radius 4 sigma (the same truncation anomalib uses)."""
    radius = max(1, int(4.0 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) maps with reflected borders."""
    if sigma <= 0:
        return maps
    k = gaussian_kernel(sigma).to(maps.device, maps.dtype)
    r = (k.numel() - 1) // 2
    x = F.pad(maps, (r, r, 0, 0), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, r, r), mode="reflect")
    return F.conv2d(x, k.view(1, 1, -1, 1))


def anomaly_map(patch_scores: torch.Tensor, size: tuple[int, int], sigma: float = 4.0) -> torch.Tensor:
    """(B, h, w) patch scores to (B, H, W) pixel scores."""
    up = F.interpolate(patch_scores.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    return smooth(up, sigma).squeeze(1)
