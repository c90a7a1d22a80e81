"""One model pass per frame: score, anomaly map, Grad-CAM and defect type together.

The station used to inspect a frame (one forward pass) and then hand it to ``Explainer``, which
preprocessed it again and ran its own forward pass before Grad-CAM's backward pass: two
backbone passes per frame. ``FrameAnalyser`` runs the forward pass once, with gradients, keeps
what it computed (``ScoreTarget`` remembers patch scores and defect logits), and adds the one
backward pass Grad-CAM needs. Results come back in the pipeline's ``InspectionResult`` form, so
the station records them exactly as before.

The score comes from the exact fp32 nearest-neighbour search (gradients need it); the plain
pipeline may take the certified bf16 search, which gives the same image score to float
round-off (see ``PatchCore.score_embedding``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from inspector.errors import ModelError
from inspector.pipeline import InspectionResult, Inspector, to_results
from inspector.preprocess import size_groups, to_batch
from models.explain import POOLED, DefectHead, anomaly_grad_cam


@dataclass
class FrameAnalysis:
    """One frame's result plus its Grad-CAM (score units, for the fixed colour range) and figures."""

    result: InspectionResult
    gradcam: np.ndarray | None
    extras: dict[str, Any] = field(default_factory=dict)


class FrameAnalyser:
    """Inspects and explains a batch of frames with one forward and one backward pass."""

    def __init__(self, inspector: Inspector, defect_head: DefectHead | None = None, layer: str | None = None) -> None:
        self.inspector = inspector
        self.head = defect_head.to(inspector.device) if defect_head is not None else None
        self.layer = layer
        self.type_gate: Any = None  # the open-set gate ("unknown type"), set by load()

    @classmethod
    def load(cls, inspector: Inspector, layer: str | None = None) -> FrameAnalyser:
        """An analyser with the defect head and type gate saved next to the model, where there are."""
        from inspector.defect_types import load_type_gate
        from inspector.explain import load_defect_head

        analyser = cls(inspector, load_defect_head(inspector), layer)
        analyser.type_gate = load_type_gate(inspector.info.model_dir)
        head, gate = analyser.head, analyser.type_gate
        if head is not None and gate is not None and head.descriptor != gate.descriptor:
            raise ModelError(
                f"{inspector.info.model_dir}: the defect head reads the {head.descriptor} descriptor and the type "
                f"gate the {gate.descriptor} one; retrain them together with inspector feedback train-types"
            )
        return analyser

    def analyse(
        self,
        images: Sequence[np.ndarray],
        *,
        sources: Sequence[str] | None = None,
        start_index: int = 0,
        formats: Sequence[Any] | None = None,
    ) -> list[FrameAnalysis]:
        """Results, Grad-CAMs and defect types of RGB uint8 frames, maps at each frame's size."""
        from inspector.explain import Explanation, agreement

        if not images:
            return []
        model = self.inspector.model
        groups = list(size_groups(images, model.config))
        if len(groups) > 1:  # frames kept at their own aspect: one pass per run of one input size
            parts: list[FrameAnalysis] = []
            for idx, _ in groups:
                parts += self.analyse(
                    [images[i] for i in idx],
                    sources=[sources[i] for i in idx] if sources else [f"frame {start_index + i}" for i in idx],
                    start_index=start_index + idx[0],
                    formats=[formats[i] for i in idx] if formats else None,
                )
            for i, a in enumerate(parts):
                a.result.frame_index = start_index + i
            return parts
        thresholds = self.inspector.thresholds
        x = to_batch(images, groups[0][1]).to(self.inspector.device)
        t0 = time.perf_counter()
        # The gate reads the descriptor it was fitted on (whole-image pooled, or weighted by this
        # pass's anomaly map), of the head's stages, else the model's: no second backbone pass.
        gate_layers = (self.head.layers if self.head else model.config.layers) if self.type_gate else None
        descriptor = self.type_gate.descriptor if self.type_gate else POOLED
        res = anomaly_grad_cam(model, x, self.layer, self.head, gate_layers, descriptor)
        per_frame_ms = (time.perf_counter() - t0) * 1000 / len(images)
        scores = res.score.float().cpu().numpy()
        results = to_results(
            images, scores, res.anomaly_map.float().cpu().numpy(), per_frame_ms, thresholds, sources, start_index
        )
        self.inspector.mark_out_of_domain(results, formats)
        cams = res.cam.float().cpu().numpy()
        probs = torch.softmax(res.defect_logits.float(), 1).cpu().numpy() if res.defect_logits is not None else None
        out = []
        for i, r in enumerate(results):
            h, w = r.image.shape[:2]
            cam = cams[i] if cams[i].shape == (h, w) else cv2.resize(cams[i], (w, h), interpolation=cv2.INTER_LINEAR)
            peak = float(cam.max())
            unit = (cam / peak if peak > 0 else cam).astype(np.float32)
            kind, p_kind, p_all = None, None, {}
            if self.head is not None and probs is not None:
                p_all = {c: float(v) for c, v in zip(self.head.classes, probs[i], strict=True)}
                if r.verdict != "OK":  # the head only knows defect types: on an OK part it would mislead
                    kind = self.head.classes[int(probs[i].argmax())]
                    p_kind = p_all[kind]
            if self.type_gate is not None and res.pooled is not None and r.verdict != "OK":
                logits = res.defect_logits[i : i + 1].float().cpu() if res.defect_logits is not None else None
                classes = self.head.classes if self.head is not None else ()
                kind = self.type_gate.decide(res.pooled[i : i + 1].float().cpu(), logits, classes)[0].name
                p_kind = p_all.get(kind)  # none for "unknown type" or a type only the gate knows
            e = Explanation(
                r.score,
                r.threshold,
                r.verdict,
                {"anomaly": r.anomaly_map, "gradcam": unit},
                {"anomaly+gradcam": per_frame_ms},
                thresholds.map_low,
                agreement(r.anomaly_map, unit),
                kind,
                p_kind,
                p_all,
            )
            out.append(
                FrameAnalysis(
                    r,
                    e.display("gradcam"),
                    {"defect_type": kind, "defect_probability": p_kind, "agreement": e.agreement},
                )
            )
        return out
