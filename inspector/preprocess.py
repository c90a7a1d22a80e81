"""Frames (RGB uint8 arrays of any size) to the model's input tensor, and devices by name."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import torch

from inspector.errors import ConfigError
from models.patchcore import PatchCoreConfig


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


def model_input_hw(config: PatchCoreConfig, image: np.ndarray) -> tuple[int, int]:
    """The input (height, width) this model gives ``image``: one size for all, or with
    ``keep_aspect`` the frame's own aspect (``PatchCoreConfig.frame_input_hw``)."""
    return config.frame_input_hw((int(image.shape[0]), int(image.shape[1])))


def size_groups(
    images: Sequence[np.ndarray], config: PatchCoreConfig, batch_size: int | None = None
) -> Iterator[tuple[list[int], tuple[int, int]]]:
    """Runs of consecutive frames that share an input size, at most ``batch_size`` long: their
    indices and the size. Order is kept, so a fit's image n stays ``bank_source`` n."""
    run: list[int] = []
    run_hw: tuple[int, int] | None = None
    for i, im in enumerate(images):
        hw = model_input_hw(config, im)
        if run and (hw != run_hw or (batch_size is not None and len(run) >= batch_size)):
            assert run_hw is not None
            yield run, run_hw
            run = []
        run.append(i)
        run_hw = hw
    if run:
        assert run_hw is not None
        yield run, run_hw


def model_batches(images: Sequence[np.ndarray], config: PatchCoreConfig, batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of at most ``batch_size`` frames at the model's input size, in order; frames kept
    at their own aspect batch only with neighbours of the same size."""
    for idx, hw in size_groups(images, config, batch_size):
        yield to_batch([images[i] for i in idx], hw)
