"""The inspection pipeline: frame -> model -> result, with the model's provenance attached.

``Inspector`` is the one object the CLI, the headless station and the app share. It owns the
model and its device; callers hand it frames and get plain results back (numpy, floats), so
nothing above this layer touches torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from inspector.calibration import Thresholds
from inspector.domain import OUT_OF_DOMAIN, DomainProfile
from inspector.errors import ModelError
from inspector.images import SourceFormat, frame_sha256
from inspector.preprocess import resolve_device, size_groups, to_batch
from models.backbones import BackboneError
from models.patchcore import ModelFileError, PatchCore, PatchCoreConfig, load_patchcore
from models.patchcore.serialization import read_model_json


@dataclass(frozen=True)
class ModelInfo:
    """What an audit record needs to say which model decided."""

    model_dir: str
    weights_sha256: str
    backbone: str
    layers: tuple[str, ...]
    input_size: int
    manifest_sha256: str | None
    metrics: dict[str, Any]
    trained_at: str | None


@dataclass
class InspectionResult:
    frame_index: int
    source: str
    image: np.ndarray  # RGB uint8 as received
    score: float
    threshold: float
    review_threshold: float
    verdict: str  # OK | REVIEW | DEFECT | OOD (out of domain: routed to review, see inspector.domain)
    anomaly_map: np.ndarray  # float32, frame-sized, in score units
    latency_ms: float
    frame_sha256: str
    extras: dict[str, Any] = field(default_factory=dict)
    out_of_domain: str | None = None  # why the frame does not look like the training images


ScoreFn = Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]]


def inspect_batch(
    images: Sequence[np.ndarray],
    input_size: int | tuple[int, int] | PatchCoreConfig,
    score_fn: ScoreFn,
    thresholds: Thresholds,
    sources: Sequence[str] | None = None,
    start_index: int = 0,
    extras: dict[str, Any] | None = None,
) -> list[InspectionResult]:
    """Preprocesses, scores with ``score_fn`` (torch or ONNX Runtime), and turns the outputs into
    results with maps resized to each frame: every runtime shares this one path.

    Given a model's config, frames it keeps at their own aspect are scored in runs of one size.
    """
    if not images:
        return []
    t0 = time.perf_counter()
    if isinstance(input_size, PatchCoreConfig):
        scores: list[float] = [0.0] * len(images)
        maps: list[np.ndarray] = [np.empty(0, np.float32)] * len(images)
        for idx, hw in size_groups(images, input_size):
            s, m = score_fn(to_batch([images[i] for i in idx], hw))
            for j, i in enumerate(idx):
                scores[i], maps[i] = float(s[j]), m[j]
        out_scores, out_maps = np.asarray(scores), maps
    else:
        out_scores, out_maps = score_fn(to_batch(images, input_size))
    per_frame_ms = (time.perf_counter() - t0) * 1000 / len(images)
    return to_results(images, out_scores, out_maps, per_frame_ms, thresholds, sources, start_index, extras)


def to_results(
    images: Sequence[np.ndarray],
    scores: np.ndarray,
    maps: np.ndarray | Sequence[np.ndarray],
    per_frame_ms: float,
    thresholds: Thresholds,
    sources: Sequence[str] | None = None,
    start_index: int = 0,
    extras: dict[str, Any] | None = None,
) -> list[InspectionResult]:
    """Scores and input-sized maps to results with maps at each frame's size (shared by every path)."""
    results = []
    for i, (img, s, m) in enumerate(zip(images, scores, maps, strict=True)):
        h, w = img.shape[:2]
        full = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) if (h, w) != m.shape else m
        results.append(
            InspectionResult(
                start_index + i,
                sources[i] if sources else f"frame {start_index + i}",
                img,
                float(s),
                thresholds.decision,
                thresholds.review,
                thresholds.verdict(float(s)),
                full.astype(np.float32),
                per_frame_ms,
                frame_sha256(img),
                dict(extras or {}),
            )
        )
    return results


class Inspector:
    """A loaded model with its thresholds, ready to inspect frames in batches."""

    def __init__(
        self, model: PatchCore, thresholds: Thresholds, info: ModelInfo, domain: DomainProfile | None = None
    ) -> None:
        self.model = model
        self.thresholds = thresholds
        self.info = info
        self.domain = domain  # None for models trained before domain profiles: nothing checked

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "auto") -> Inspector:
        dev = resolve_device(device)
        try:
            model, meta = load_patchcore(model_dir, dev)
            doc = read_model_json(model_dir)
        except (ModelFileError, BackboneError) as exc:
            raise ModelError(str(exc)) from None
        if "thresholds" not in meta:
            raise ModelError(f"model {model_dir} has no calibrated thresholds; retrain it with inspector train")
        thresholds = Thresholds.from_json(meta["thresholds"])
        info = ModelInfo(
            str(Path(model_dir).resolve()),
            str(doc["memory_bank_sha256"]),
            model.config.backbone,
            tuple(model.config.layers),
            model.config.input_size,
            meta.get("manifest_sha256"),
            meta.get("metrics", {}),
            meta.get("trained_at"),
        )
        domain = DomainProfile.from_json(meta["domain"]) if meta.get("domain") else None
        return cls(model, thresholds, info, domain)

    @property
    def device(self) -> torch.device:
        return self.model.mean.device

    def inspect_images(
        self,
        images: Sequence[np.ndarray],
        *,
        sources: Sequence[str] | None = None,
        start_index: int = 0,
        formats: Sequence[SourceFormat | None] | None = None,
    ) -> list[InspectionResult]:
        """Scores a batch of RGB uint8 frames; maps come back at each frame's own size.

        A frame unlike the training images (``formats``: each file's channels and bit depth,
        where known) keeps its score and map but gets the OOD verdict and the reason.
        """
        results = inspect_batch(images, self.model.config, self._score_maps, self.thresholds, sources, start_index)
        return self.mark_out_of_domain(results, formats)

    def mark_out_of_domain(
        self, results: list[InspectionResult], formats: Sequence[SourceFormat | None] | None = None
    ) -> list[InspectionResult]:
        """Gives frames unlike the training images the OOD verdict and the reason (in place)."""
        if self.domain is not None:
            for i, r in enumerate(results):
                reason = self.domain.check(r.image, formats[i] if formats else None)
                if reason is not None:
                    r.verdict, r.out_of_domain = OUT_OF_DOMAIN, reason
        return results

    def _score_maps(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        pred = self.model.predict(batch)
        return pred.score.float().cpu().numpy(), pred.anomaly_map.float().cpu().numpy()

    def inspect_stream(
        self, frames: Iterable[tuple[str, np.ndarray]], batch_size: int = 1
    ) -> Iterator[InspectionResult]:
        """Yields one result per (name, frame); batching trades latency for throughput."""
        pending: list[tuple[str, np.ndarray]] = []
        index = 0
        for item in frames:
            pending.append(item)
            if len(pending) >= batch_size:
                yield from self.inspect_images(
                    [f for _, f in pending], sources=[n for n, _ in pending], start_index=index
                )
                index += len(pending)
                pending = []
        if pending:
            yield from self.inspect_images([f for _, f in pending], sources=[n for n, _ in pending], start_index=index)
