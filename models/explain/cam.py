"""CAM of the defect head (Zhou et al., 2016): the head's own weights laid over the feature maps.

The head is linear on pooled features (mean and max over space of each stage, standardised), so
a class logit splits exactly into per-location terms: the mean-pooled half contributes
w_c * s_c * A_c(x, y) / (h w) at every cell (the classic CAM of global average pooling), and the
max-pooled half contributes w'_c * s'_c * max A_c at the cell where channel c peaks. The map is
that decomposition scaled so its spatial mean is the logit's feature part, upsampled, and
ReLU'd: no gradient and no extra pass beyond the features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.explain.defect_classifier import DefectHead
from models.patchcore.anomaly_map import smooth
from models.patchcore.model import PatchCore


@torch.no_grad()
def cam_parts(model: PatchCore, head: DefectHead, images: torch.Tensor, class_index: int) -> list[torch.Tensor]:
    """Per stage, the class logit's feature part per cell: (B, h, w) maps whose spatial means sum
    to ``linear.weight[k] . (pooled * feature_scale)``, i.e. the logit less its constant terms."""
    images = images.to(model.mean.device)
    feats = model.extractor(model.normalize(images))
    w = head.linear.weight[class_index] * head.feature_scale
    parts, offset = [], 0
    for layer in head.layers:
        f = feats[layer].float()
        b, c, h, wd = f.shape
        w_mean, w_max = w[offset : offset + c], w[offset + c : offset + 2 * c]
        offset += 2 * c
        part = torch.einsum("bchw,c->bhw", f, w_mean)
        peak, where = f.reshape(b, c, -1).max(dim=2)
        spikes = torch.zeros(b, h * wd, device=f.device)
        spikes.scatter_add_(1, where, peak * w_max)
        parts.append(part + spikes.reshape(b, h, wd) * (h * wd))  # so the map's spatial mean is the logit's part
    return parts


def defect_cam(
    model: PatchCore, head: DefectHead, images: torch.Tensor, class_index: int, *, sigma: float = 0.0
) -> torch.Tensor:
    """CAM of one defect class: (B, H, W), >= 0, in logit units per cell."""
    size = images.shape[-2:]
    total = torch.zeros(images.shape[0], *size, device=model.mean.device)
    for part in cam_parts(model, head, images, class_index):
        total += F.interpolate(part.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]
    if sigma > 0:
        total = smooth(total.unsqueeze(1), sigma).squeeze(1)
    return total.clamp_min(0.0)
