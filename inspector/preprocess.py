"""Frames (RGB uint8 arrays of any size) to the model's input tensor, and devices by name."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from inspector.errors import ConfigError


def resize_rgb(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` (square) or (height, width); area averaging when shrinking keeps fine
    defects from aliasing away."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if h > out_h and w > out_w else cv2.INTER_LINEAR
    return cv2.resize(image, (out_w, out_h), interpolation=interp)


def to_batch(images: Sequence[np.ndarray], size: int | tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) float tensor in [0, 1]; ``size`` is H = W or (H, W)."""
    arr = np.stack([resize_rgb(im, size) for im in images]).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA where there is none is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but no CUDA GPU is available (use --device auto or cpu)")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device '{name}'; choose auto, cpu or cuda")
    return torch.device(name)
