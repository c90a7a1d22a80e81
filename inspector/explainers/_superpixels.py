"""SLIC superpixels for LIME and KernelSHAP, from scikit-image.

scikit-image rather than OpenCV's ximgproc SLIC: ximgproc lives in opencv-contrib, which cannot
be installed beside the opencv-python-headless that inspector uses (both provide ``cv2``);
scikit-image is a plain wheel. Segments follow colour edges, so a chipped rim or a dirt spot
tends to be its own superpixel, which is what LIME's "switch a region off" needs.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.segmentation import slic

from inspector.explainers import MethodContext


def superpixels(ctx: MethodContext) -> torch.Tensor:
    """(H, W) int64 segment ids of the frame, computed once per context and shared by methods."""
    if "superpixels" not in ctx.cache:
        n = int(ctx.setting("segments", 48))
        seg = slic(ctx.image_uint8(), n_segments=n, compactness=10.0, start_label=0, channel_axis=-1)
        ctx.cache["superpixels"] = torch.from_numpy(np.ascontiguousarray(seg).astype(np.int64))
    return ctx.cache["superpixels"]
