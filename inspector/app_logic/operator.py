"""The operator's station: streaming a source through the model, the overlay, the record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from inspector.app_logic.session import AppSession, ExplainFn
from inspector.audit import AuditStore
from inspector.calibration import Thresholds
from inspector.overlay import COLORMAP, GRADCAM_COLORMAP, overlay, palette
from inspector.station import Station


def effective_thresholds(store: AuditStore, model_id: int | None, trained: Thresholds) -> Thresholds:
    """The trained thresholds with the store's logged override applied, if an engineer set one."""
    if model_id is None:
        return trained
    try:
        value = store.model(model_id).threshold
    except Exception:
        return trained
    if value is None or abs(value - trained.decision) < 1e-12:
        return trained
    return trained.with_decision(value)


def open_station(session: AppSession) -> Station:
    """Loads the model and builds the station; call it on the thread that will run the model."""
    from inspector.errors import ModelError
    from inspector.pipeline import Inspector

    model_dir = session.current_model_dir()
    if model_dir is None:
        raise ModelError("no model: activate one in the engineer view or start with --model DIR")
    inspector = Inspector.load(model_dir, session.device)
    if session.explain_factory is not None:  # a custom explainer runs after the pipeline's own pass
        station = Station(
            session.store, inspector, session.station, explain=session.explain_factory(inspector), keep=session.keep
        )
    else:  # score, map, Grad-CAM and defect type from one model pass per frame
        station = Station(
            session.store, inspector, session.station, analyse=default_analyser(inspector), keep=session.keep
        )
    inspector.thresholds = effective_thresholds(session.store, station.model_version_id, inspector.thresholds)
    return station


def default_analyser(inspector: Any) -> Any:
    """``FrameAnalyser.analyse`` for the model, or None (plain inspection) where it cannot be built."""
    try:
        from inspector.analysis import FrameAnalyser

        return FrameAnalyser.load(inspector).analyse
    except Exception:  # e.g. a defect head for another model: the view says "not available"
        return None


def run_station(session: AppSession, spec: str, batch_size: int = 1) -> Iterator[Any]:
    """The operator's stream, on the worker thread: first the station, then items and messages.

    Yields the ``Station`` once the model is loaded (so decisions can be taken on the UI thread,
    which never touches the model), then per frame a ``StationItem`` (or ``SUBMITTED`` when the
    session writes records on their own thread: the item follows as ``frame_ready``) and strings
    naming skipped frames.
    Closing the generator closes the source, which releases a camera.
    """
    from inspector.runtime import settle_heap
    from inspector.sources import open_source

    source = open_source(spec)  # first, so a wrong path or a dead camera is said at once
    station: Station | None = None
    try:
        station = open_station(session)
        settle_heap(collect=False)  # the model's objects too: full collections on a long shift stay short
        if session.record_writer:
            station.start_writer()  # records are written on their own thread, in order
        yield station
        yield f"reading {source.description}"
        yield from station.run(source, batch_size)
    finally:
        try:
            if station is not None:
                station.close_writer()  # every frame read is recorded before the stream ends
        finally:
            source.close()


def default_explainer(inspector: Any) -> ExplainFn | None:
    """Grad-CAM, defect type and agreement per frame from ``inspector.explain``, if present.

    Grad-CAM comes back in score units (``Explanation.display``), so it is drawn with the
    model's fixed colour range like the anomaly map. An explanation that fails on one frame
    leaves that frame without one; the station keeps inspecting.
    """
    try:
        from inspector import explainers
        from inspector.explain import Explainer
    except ImportError:
        return None
    method = explainers.every_frame_method()  # the registry's fast method of the inspection pass
    try:
        explainer = Explainer.load(inspector)
    except Exception:  # no usable explainer: the view says "not available"
        return None

    def explain(result: Any) -> tuple[np.ndarray | None, dict[str, Any]]:
        try:
            e = explainer.explain(result.image, (method,))
        except Exception as exc:
            return None, {"explain_error": str(exc)}
        return e.display(method), {
            "defect_type": e.defect_type,
            "defect_probability": e.defect_probability,
            "agreement": e.agreement,
        }

    return explain


def explain_fields(extras: dict[str, Any]) -> tuple[str | None, float | None]:
    """Defect type and agreement from an explainer's extras, whatever it names them."""
    defect = extras.get("defect_type") or extras.get("defect") or extras.get("defect_class")
    agree = extras.get("agreement")
    if agree is None:
        agree = extras.get("agreement_score")
    return (str(defect) if defect else None), (float(agree) if isinstance(agree, (int, float)) else None)


def compose_overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray | None,
    gradcam: np.ndarray | None,
    thresholds: Thresholds,
    *,
    show_map: bool,
    show_gradcam: bool,
    show_outline: bool,
    opacity: float,
) -> np.ndarray:
    """The operator's frame with the chosen layers, all drawn by ``inspector.overlay``."""
    out = image
    # A threshold moved far below training's colour range could invert it; keep high > low.
    low, high = thresholds.map_low, max(thresholds.map_high, thresholds.map_low + 1e-6)
    if show_gradcam and gradcam is not None:  # in score units, in its own palette; never over the map
        out = overlay(out, gradcam, low, high, opacity=opacity, colormap=GRADCAM_COLORMAP)
    elif show_map and anomaly_map is not None:
        out = overlay(out, anomaly_map, low, high, opacity=opacity)
    if show_outline and anomaly_map is not None:
        out = overlay(
            out,
            anomaly_map,
            low,
            high,
            opacity=0.0,
            contour_level=thresholds.decision,
            contour_colour=(255, 40, 200),
        )
    return out


def legend(thresholds: Thresholds, gradcam: bool) -> tuple[np.ndarray, float, float, float, str]:
    """What the colour legend shows: palette, fixed range, decision threshold, and a title."""
    low, high = thresholds.map_low, max(thresholds.map_high, thresholds.map_low + 1e-6)
    title = "Grad-CAM (where the score came from)" if gradcam else "anomaly map (score units)"
    return palette(GRADCAM_COLORMAP if gradcam else COLORMAP), low, high, thresholds.decision, title


def agreement_words(agreement: float | None) -> str:
    """The map-vs-Grad-CAM agreement as an operator reads it (two unrelated maps give about 0.05)."""
    if agreement is None:
        return "not available"
    if agreement >= 0.5:
        return f"both point at the same area ({agreement:.2f})"
    if agreement >= 0.2:
        return f"they partly overlap ({agreement:.2f})"
    return f"they point at different areas: check the part by eye ({agreement:.2f})"


def model_caption(station: Station | None, store: AuditStore, model_dir: Any) -> str:
    """ "model v3 · efficientnet_lite0 · trained 2026-11-30": which model is judging, always on screen."""
    if station is not None:
        info = station.inspector.info
        version = f"v{station.model_version_id}" if station.model_version_id is not None else "not registered"
        trained = f" · trained {info.trained_at[:10]}" if info.trained_at else ""
        return f"model {version} · {info.backbone}{trained}"
    try:
        active = store.active_model()
    except Exception:
        active = None
    if active is not None:
        return f"model v{active.id} · {active.backbone} (active)"
    return f"model {model_dir}" if model_dir else "no model chosen"
