"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022)."""

from models.patchcore.model import PatchCore, PatchCoreConfig, Prediction
from models.patchcore.serialization import ModelFileError, load_patchcore, save_patchcore

__all__ = [
    "ModelFileError",
    "PatchCore",
    "PatchCoreConfig",
    "Prediction",
    "load_patchcore",
    "save_patchcore",
]
