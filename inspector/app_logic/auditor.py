"""The auditor's browsing: filters for the decision log and a recorded frame as it was seen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from inspector import explainers
from inspector.audit import AuditStore
from inspector.overlay import method_panels


def decision_filters(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    operator: str | None = None,
    station: str | None = None,
    model_version: int | None = None,
    verdict: str | None = None,
    disagreements_only: bool = False,
) -> dict[str, Any]:
    """Only the filters that are set, as ``AuditStore.decisions`` takes them."""
    f: dict[str, Any] = {
        "since": since,
        "until": until,
        "operator": operator or None,
        "station": station or None,
        "model_version": model_version,
        "verdict": verdict or None,
    }
    out = {k: v for k, v in f.items() if v is not None}
    if disagreements_only:
        out["disagreements_only"] = True
    return out


FRAME_MISMATCH = "FRAME FILE DOES NOT MATCH ITS RECORD"


def recorded_view(store: AuditStore, inspection_id: int, display: int = 280) -> tuple[np.ndarray | None, str]:
    """The frame and the maps as they were recorded, side by side, and a one-line caption.

    The store re-hashes the frame file before it is shown; a file replaced after recording is
    still drawn (the auditor may need to see it) but the caption and the picture say so.
    """
    rec = store.inspection(inspection_id)
    caption = f"{rec.verdict}  score {rec.score:.4f} / threshold {rec.threshold:.4f}  ({rec.source})"
    if rec.frame is None:
        return None, caption + " - recorded frame file is missing"
    header = f"frame {rec.frame_index}"
    if rec.frame_matches is False:
        caption = f"{FRAME_MISMATCH} (recorded sha256 {rec.frame_sha256[:16]}): {caption}"
        header = f"{header} - {FRAME_MISMATCH}"
    try:
        model = store.model(rec.model_version_id)
        th = model.thresholds
        low, high = float(th.get("map_low", 0.0)), float(th.get("map_high", rec.threshold * 1.5))
        caption += explanation_note(model.metrics)
    except Exception:
        low, high = 0.0, rec.threshold * 1.5
    shown = [("anomaly", "anomaly map", rec.anomaly_map)] if rec.anomaly_map is not None else []
    if rec.gradcam is not None:  # recorded in score units (Explanation.display)
        method = explainers.every_frame_method()
        shown.append((method, explainers.get(method).title, rec.gradcam))
    png = method_panels(rec.frame, shown, low, max(high, low + 1e-6), rec.threshold, header=header, display=display)
    return png, caption


def explanation_note(metrics: dict[str, Any]) -> str:
    """Which explanation the operator was shown and the report that judged it, from the model's record."""
    rep = metrics.get("explain_report") if isinstance(metrics, dict) else None
    if not isinstance(rep, dict):
        return " - explanation shown: not judged (no explanation report recorded with this model)"
    shown = rep.get("shown_on_every_frame", "?")
    verdict = rep.get("verdicts", {}).get(shown, "?")
    digest = str(rep.get("json_sha256", ""))[:12]
    return f" - explanation shown: {shown}, judged '{verdict}' (explanation report {digest})"
