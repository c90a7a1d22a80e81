"""SLIC superpixels for LIME and KernelSHAP, from scikit-image.

scikit-image rather than OpenCV's ximgproc SLIC: ximgproc lives in opencv-contrib, which cannot
be installed beside the opencv-python-headless that inspector uses (both provide ``cv2``);
scikit-image is a plain wheel. Segments follow colour edges, so a chipped rim or a dirt spot
tends to be its own superpixel, which is what LIME's "switch a region off" needs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from skimage.segmentation import slic

from inspector.explainers import MethodContext, Target
from models.explain.perturbation import superpixel_attribution

SAMPLES = 96  # perturbed frames per explanation (``samples`` setting)


def superpixels(ctx: MethodContext) -> torch.Tensor:
    """(H, W) int64 segment ids of the frame, computed once per context and shared by methods."""
    if "superpixels" not in ctx.cache:
        n = int(ctx.setting("segments", 48))
        seg = slic(ctx.image_uint8(), n_segments=n, compactness=10.0, start_label=0, channel_axis=-1)
        ctx.cache["superpixels"] = torch.from_numpy(np.ascontiguousarray(seg).astype(np.int64))
    return ctx.cache["superpixels"]


def superpixel_method(method: str) -> Callable[[MethodContext, Target], torch.Tensor]:
    """LIME or KernelSHAP (``method``) of a target: superpixels switched to the good reference."""

    def run(ctx: MethodContext, target: Target) -> torch.Tensor:
        return superpixel_attribution(
            ctx.forward(target),
            ctx.x,
            superpixels(ctx),
            ctx.baseline(),
            method=method,
            n_samples=int(ctx.setting("samples", SAMPLES)),
            target=ctx.class_target(target),
        )[0]

    return run
