"""Explanations of PatchCore's decisions: Grad-CAM, occlusion, saliency, and the defect type."""

from models.explain.attribution import blur_images, occlusion_map, saliency_map
from models.explain.defect_classifier import (
    DEFECT_CENTRED,
    DESCRIPTORS,
    POOLED,
    DefectHead,
    defect_centred_features,
    describe,
    extract_descriptor,
    extract_pooled,
    fit_defect_head,
    pooled_features,
)
from models.explain.gradcam import (
    DefectTarget,
    ScoreCam,
    ScoreTarget,
    anomaly_grad_cam,
    deepest_layer,
    defect_grad_cam,
    layer_grad_cam,
    stage_module,
)

__all__ = [
    "DEFECT_CENTRED",
    "DESCRIPTORS",
    "POOLED",
    "DefectHead",
    "DefectTarget",
    "ScoreCam",
    "ScoreTarget",
    "anomaly_grad_cam",
    "blur_images",
    "deepest_layer",
    "defect_centred_features",
    "describe",
    "extract_descriptor",
    "defect_grad_cam",
    "extract_pooled",
    "fit_defect_head",
    "layer_grad_cam",
    "occlusion_map",
    "pooled_features",
    "saliency_map",
    "stage_module",
]
