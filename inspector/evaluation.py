"""Evaluation of a trained model on a manifest's test split, in the names the CLI contract uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector import metrics
from inspector.errors import ImageError, ManifestError
from inspector.images import read_mask
from inspector.manifest import Manifest, resolve
from inspector.pipeline import Inspector
from inspector.training import load_items


@dataclass
class Evaluation:
    report: dict[str, Any]
    scores: np.ndarray
    labels: np.ndarray
    defects: list[str | None]
    paths: list[str]


EVAL_LONG_SIDE = 256


def eval_grid(shape: tuple[int, ...], long_side: int = EVAL_LONG_SIDE) -> tuple[int, int]:
    """(height, width) at which pixel figures are computed: the frame's own aspect, its long side
    at most ``long_side``. It depends on the data only, so models of any input size (and
    anomalib's, in the benchmark) are measured on the same pixels."""
    h, w = int(shape[0]), int(shape[1])
    f = min(1.0, long_side / max(h, w))
    return max(1, round(h * f)), max(1, round(w * f))


def to_grid(m: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return m if m.shape == hw else cv2.resize(m, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def _mask_on_grid(item: Any, root: str | Path, grid: tuple[int, int]) -> np.ndarray:
    """One frame's mask on ``grid`` (all False for a frame without one, a good frame)."""
    m = read_mask(resolve(root, item.mask)) if item.mask else np.zeros(grid, np.uint8)
    return cv2.resize(m, (grid[1], grid[0]), interpolation=cv2.INTER_NEAREST) > 127


def _has_masks(manifest_items: list) -> bool:
    return all(it.mask or not it.is_anomalous for it in manifest_items)


def _load_masks(manifest_items: list, root: str | Path, size: int | tuple[int, int]) -> np.ndarray | None:
    """Every frame's mask on one ``size`` grid, stacked; None unless every defective frame has one."""
    if not _has_masks(manifest_items):
        return None
    grid = (size, size) if isinstance(size, int) else size
    return np.stack([_mask_on_grid(it, root, grid) for it in manifest_items])


def frame_masks(manifest_items: list, root: str | Path, shapes: list[tuple[int, int]]) -> list[np.ndarray] | None:
    """Each test frame's mask on its own ``eval_grid``; None unless every defective frame has one."""
    if not _has_masks(manifest_items):
        return None
    return [_mask_on_grid(it, root, eval_grid(shape)) for it, shape in zip(manifest_items, shapes, strict=True)]


def pixel_figures(maps: list[np.ndarray], masks: list[np.ndarray] | None) -> dict[str, float | None]:
    """Pooled pixel AUROC and AUPRO of maps (any size) against ``frame_masks``: each map is brought
    onto its mask's grid, so frames of every size and aspect count on their own pixels."""
    if masks is None:
        return {"pixel_auroc": None, "aupro": None}
    on_grid = [to_grid(m, k.shape) for m, k in zip(maps, masks, strict=True)]
    return {"pixel_auroc": metrics.pixel_auroc(on_grid, masks), "aupro": metrics.aupro(on_grid, masks)}


def evaluate(
    inspector: Inspector,
    manifest: Manifest,
    root: str | Path,
    *,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
    gradcam: bool = True,
) -> Evaluation:
    """Scores the test split and computes the contract's figures.

    Pixel figures are computed over the good images and the defective ones with a mask, on
    ``eval_grid`` pixels; with ``gradcam`` Grad-CAM's pooled pixel AUROC is reported beside the map's.
    """
    items = manifest.split("test")
    if not items:
        raise ManifestError(f"{manifest.source_file or manifest.name}: no images in the test split")
    # Pixel figures over every good frame and each defective frame with a mask: one defect
    # without a mask should not cost the whole set its localisation figures.
    masked = [i for i, it in enumerate(items) if it.mask or not it.is_anomalous]
    n_masked = sum(items[i].is_anomalous for i in masked)
    explainer = None
    if gradcam and n_masked:
        from inspector.explain import Explainer

        explainer = Explainer(inspector)
    scores, maps_small, cams, shapes = [], [], [], []
    n_ood = 0
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        images = load_items(chunk, root)
        shapes += [im.shape[:2] for im in images]
        for im, r in zip(images, inspector.inspect_images(images), strict=True):
            # Each frame on its own grid: products whose frames vary in size and aspect (issue 11)
            # would be distorted on one grid taken from the first frame.
            size = eval_grid(im.shape)
            n_ood += r.out_of_domain is not None
            scores.append(r.score)
            maps_small.append(to_grid(r.anomaly_map, size))
            if explainer is not None:
                cams.append(to_grid(explainer.explain(im, ("gradcam",)).maps["gradcam"], size))
        if progress:
            progress(min(i + batch_size, len(items)), len(items))
    s = np.array(scores)
    labels = np.array([it.is_anomalous for it in items], dtype=int)
    defects = [it.defect for it in items]
    try:
        masks = frame_masks([items[i] for i in masked], root, [shapes[i] for i in masked]) if n_masked else None
    except ImageError as exc:
        raise ManifestError(f"cannot read a mask: {exc}") from None
    maps_masked = [maps_small[i] for i in masked]
    cams_masked = [cams[i] for i in masked] if cams else []
    frr, miss = metrics.rates_at(s, labels, inspector.thresholds.decision)
    report = {
        "image_auroc": metrics.image_auroc(s, labels),
        "per_defect": metrics.per_defect_auroc(s, labels, defects),
        **pixel_figures(maps_masked, masks),
        "gradcam_pixel_auroc": metrics.pixel_auroc(cams_masked, masks) if masks is not None and cams else None,
        # Defective frames behind the pixel figures, and those left out for want of a mask.
        "masked_defects": n_masked,
        "unmasked_defects": int(sum(it.is_anomalous for it in items)) - n_masked,
        "f1_max": metrics.f1_max(s, labels),
        "threshold": inspector.thresholds.decision,
        "false_reject_rate": frr,
        "miss_rate": miss,
        "n_normal": int((labels == 0).sum()),
        "n_anomalous": int((labels == 1).sum()),
        # What training promised about false rejects, to set beside the observed rate.
        "stated_frr": inspector.thresholds.frr,
        # With the REVIEW band: defects passed as OK (escapes) and the share of each class a person sees.
        **_review_band_rates(s, labels, inspector.thresholds.review, inspector.thresholds.decision),
        "out_of_domain": n_ood,
    }
    return Evaluation(report, s, labels, defects, [it.path for it in items])


def _review_band_rates(
    scores: np.ndarray, labels: np.ndarray, review: float, decision: float
) -> dict[str, float | None]:
    good, bad = scores[labels == 0], scores[labels == 1]
    band = (scores >= review) & (scores < decision)
    return {
        "escape_rate": float((bad < review).mean()) if bad.size else None,
        "review_rate_good": float(band[labels == 0].mean()) if good.size else None,
        "review_rate_defect": float(band[labels == 1].mean()) if bad.size else None,
    }


def format_report(report: dict[str, Any]) -> str:
    """A short table for the terminal."""

    def f(v: Any) -> str:
        return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    lines = [f"{'image AUROC':<22}{f(report['image_auroc'])}"]
    lines += [f"{'  ' + name:<22}{f(v)}" for name, v in report["per_defect"].items()]
    for key, label in (
        ("pixel_auroc", "pixel AUROC"),
        ("aupro", "AUPRO"),
        ("gradcam_pixel_auroc", "Grad-CAM pixel AUROC"),
        ("f1_max", "F1 max"),
        ("threshold", "threshold"),
        ("false_reject_rate", "false-reject rate"),
        ("miss_rate", "miss rate"),
    ):
        lines.append(f"{label:<22}{f(report.get(key))}")
    if report.get("escape_rate") is not None:
        lines.append(
            f"{'escapes (passed OK)':<22}{report['escape_rate']:.4f}; REVIEW: "
            f"{f(report['review_rate_good'])} of good, {f(report['review_rate_defect'])} of defective"
        )
    lines.append(f"{'images':<22}{report['n_normal']} good, {report['n_anomalous']} defective")
    unmasked, masked = report.get("unmasked_defects") or 0, report.get("masked_defects") or 0
    if unmasked and masked:
        lines.append(f"{'pixel figures':<22}over the {masked} defective images with a mask ({unmasked} have none)")
    elif unmasked:
        lines.append(f"{'pixel figures':<22}n/a: no defective image has a mask in the manifest")
    stated = report.get("stated_frr")
    if stated:
        lines.append(
            f"{'stated false-reject':<22}{stated['expected']:.4f} expected, <= {stated['upper']:.4f} "
            f"at {stated['confidence']:.0%} confidence, from {stated['n_good']} good images"
        )
    if report.get("out_of_domain"):
        lines.append(f"{'out of domain':<22}{report['out_of_domain']} frames")
    return "\n".join(lines)
