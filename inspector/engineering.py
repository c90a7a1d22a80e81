"""What the app needs beyond drawing, kept Qt-free so it is tested without a display.

The ``ui`` package may not touch torch or the database directly (import-linter), so every step
that loads a model, trains, evaluates, composes overlays or reads the audit store for a view
lives here, as plain functions over plain data. The app calls them, mostly from its worker
thread, and draws what they return.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from inspector import metrics
from inspector.audit import AuditStore, ModelInfo, User
from inspector.calibration import Thresholds
from inspector.manifest import Manifest, build_manifest, load_manifest
from inspector.overlay import overlay, panels
from inspector.settings import data_dir
from inspector.station import Station

Progress = Callable[[str, int, int], None]
ExplainFn = Callable[[Any], tuple[np.ndarray | None, dict[str, Any]]]

# Which views each role sees. The store enforces the rights; this only keeps screens uncluttered.
ROLE_VIEWS: dict[str, tuple[str, ...]] = {
    "operator": ("operator",),
    "engineer": ("engineer",),
    "auditor": ("auditor",),
    "admin": ("auditor",),
}
DEMO_ROLES = ("admin", "operator", "engineer", "auditor")
DEMO_KIND = "pill"


def views_for(role: str) -> tuple[str, ...]:
    """The views a role may open; an unknown role sees nothing rather than everything."""
    return ROLE_VIEWS.get(role, ())


@dataclass
class AppSession:
    """The logged-in state every view shares: who, which store, which model, which station."""

    store: AuditStore
    user: User
    model_dir: Path | None = None
    station: str = "station-1"
    device: str = "auto"
    manifest_path: Path | None = None
    data_root: Path | None = None
    default_source: str = ""  # what the operator's source bar starts with
    train_config: Any = None  # a PatchCoreConfig; None means the default (tests pass a tiny one)
    explain_factory: Callable[[Any], ExplainFn | None] | None = None

    def current_model_dir(self) -> Path | None:
        """The store's active model wins: an engineer's activation reaches the next stream."""
        try:
            active = self.store.active_model()
        except Exception:  # a store that cannot be read must not stop the operator's view
            active = None
        if active is not None and Path(active.model_dir).is_dir():
            return Path(active.model_dir)
        return self.model_dir


# ---------------------------------------------------------------------------------------- demo
@dataclass
class DemoSetup:
    db_path: Path
    model_dir: Path
    manifest_path: Path
    data_root: Path
    credentials: dict[str, str]
    line_folder: Path


def make_line_folder(manifest_path: Path, data_root: Path, out: Path) -> Path:
    """The demo's "production line": the test images, good and defective interleaved, as files.

    An image folder is one of the station's sources, so the demo streams real files.
    """
    import shutil

    if out.is_dir() and any(out.iterdir()):
        return out
    out.mkdir(parents=True, exist_ok=True)
    test = load_manifest(manifest_path).split("test")
    good = [it for it in test if not it.is_anomalous]
    bad = [it for it in test if it.is_anomalous]
    order = []
    for i in range(max(len(good), len(bad))):
        order += good[i : i + 1] + ([bad[i]] if i < len(bad) and i % 2 == 0 else [])
    order += [b for i, b in enumerate(bad) if i % 2 == 1]
    for n, it in enumerate(order):
        src = data_root / it.path
        shutil.copy(src, out / f"part_{n:04d}{src.suffix}")
    return out


def demo_folder() -> Path:
    return data_dir() / "demo"


def create_demo_users(store: AuditStore) -> dict[str, str]:
    """Creates admin/operator/engineer/auditor with random passwords; returns id -> password.

    Random rather than fixed passwords, so a demo store copied to a real line is not open to
    anyone who read the README.
    """
    creds = {role: secrets.token_urlsafe(9) for role in DEMO_ROLES}
    admin = store.add_user(None, "admin", "Demo Admin", "admin", creds["admin"])
    for role in DEMO_ROLES[1:]:
        store.add_user(admin, role, f"Demo {role.title()}", role, creds[role])
    return creds


def _load_credentials(path: Path) -> dict[str, str]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in doc.items()}
    except (OSError, ValueError):
        return {}


def prepare_demo(progress: Progress | None = None, device: str = "auto") -> DemoSetup:
    """First start: synthetic data, a trained model, a demo store with users, the model active.

    Later starts find everything in place and only reopen it. The passwords are kept in a
    file readable by this user only, so they can be printed again at each start.
    """
    from inspector.demo import prepare_demo_model
    from inspector.pipeline import Inspector

    data_root, manifest_path, model_dir = prepare_demo_model(DEMO_KIND, device=device, progress=progress)
    add_defect_classifier(model_dir, manifest_path, data_root, progress)
    folder = demo_folder()
    folder.mkdir(parents=True, exist_ok=True)
    db_path, cred_path = folder / "audit.db", folder / "demo-users.json"
    if progress:
        progress("audit store", 0, 1)
    with AuditStore.open(db_path) as store:
        creds = _load_credentials(cred_path)
        if not store.list_users():
            creds = create_demo_users(store)
            cred_path.write_text(json.dumps(creds, indent=1) + "\n", encoding="utf-8")
            os.chmod(cred_path, 0o600)
        if store.active_model() is None and "engineer" in creds:
            engineer = store.authenticate("engineer", creds["engineer"])
            station = Station(store, Inspector.load(model_dir, "cpu"), "demo-setup")
            mid = station.model_version_id or station.register_model(engineer)
            store.activate_model(engineer, mid, "demo model trained on first start")
    if progress:
        progress("audit store", 1, 1)
    line = make_line_folder(manifest_path, data_root, folder / "line")
    return DemoSetup(db_path, model_dir, manifest_path, data_root, creds, line)


def add_defect_classifier(
    model_dir: Path, manifest_path: Path, data_root: Path, progress: Progress | None = None
) -> bool:
    """Trains the defect-type head beside a model when the data names two or more defect types.

    Without it the station still works and says "defect type: not available".
    """
    from inspector.errors import InspectorError

    try:
        from inspector.explain import HEAD_JSON, train_defect_head
    except ImportError:
        return False
    if (Path(model_dir) / HEAD_JSON).is_file():
        return True
    if progress:
        progress("defect classifier", 0, 1)
    try:
        train_defect_head(model_dir, manifest_path, data_root)
    except InspectorError:
        return False
    if progress:
        progress("defect classifier", 1, 1)
    return True


# ---------------------------------------------------------------------------------- station
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
    explain = session.explain_factory(inspector) if session.explain_factory else default_explainer(inspector)
    station = Station(session.store, inspector, session.station, explain=explain)
    inspector.thresholds = effective_thresholds(session.store, station.model_version_id, inspector.thresholds)
    return station


def run_station(session: AppSession, spec: str, batch_size: int = 1) -> Iterator[Any]:
    """The operator's stream, on the worker thread: first the station, then items and messages.

    Yields the ``Station`` once the model is loaded (so decisions can be taken on the UI thread,
    which never touches the model), then ``StationItem``s and strings naming skipped frames.
    Closing the generator closes the source, which releases a camera.
    """
    from inspector.sources import open_source

    source = open_source(spec)  # first, so a wrong path or a dead camera is said at once
    try:
        station = open_station(session)
        yield station
        yield f"reading {source.description}"
        yield from station.run(source, batch_size)
    finally:
        source.close()


def default_explainer(inspector: Any) -> ExplainFn | None:
    """Grad-CAM, defect type and agreement per frame from ``inspector.explain``, if present.

    Grad-CAM comes back in score units (``Explanation.display``), so it is drawn with the
    model's fixed colour range like the anomaly map. An explanation that fails on one frame
    leaves that frame without one; the station keeps inspecting.
    """
    try:
        from inspector.explain import Explainer
    except ImportError:
        return None
    try:
        explainer = Explainer.load(inspector)
    except Exception:  # no usable explainer: the view says "not available"
        return None

    def explain(result: Any) -> tuple[np.ndarray | None, dict[str, Any]]:
        try:
            e = explainer.explain(result.image, ("gradcam",))
        except Exception as exc:
            return None, {"explain_error": str(exc)}
        return e.display("gradcam"), {
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
    if show_map and anomaly_map is not None:
        out = overlay(out, anomaly_map, low, high, opacity=opacity)
    if show_gradcam and gradcam is not None:  # in score units, like the anomaly map
        out = overlay(out, gradcam, low, high, opacity=opacity)
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


# -------------------------------------------------------------------------------- engineering
def import_folder(folder: str | Path, normal: str = "good", train_share: float = 0.8) -> Path:
    """A manifest for a folder with one sub-folder per class; most good images train, the rest test.

    Written beside the folder's classes as ``<folder>/<name>.json`` (paths relative to it).
    """
    root = Path(folder)
    good = root / normal
    n_good = len([p for p in good.iterdir() if p.is_file()]) if good.is_dir() else 0
    manifest = build_manifest(root, "folders", normal=normal, train_count=max(1, int(n_good * train_share)))
    out = root / f"{root.name}.json"
    manifest.save(out)
    return out


def train_and_register(
    session: AppSession,
    manifest_path: Path,
    root: Path,
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Trains a new model version from a manifest and records it in the store; returns its id."""
    from inspector.pipeline import Inspector
    from inspector.training import train

    manifest: Manifest = load_manifest(manifest_path)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    out = data_dir() / "models" / f"{manifest.name}-{stamp}"
    train(
        manifest,
        root,
        out,
        config=session.train_config,
        device=session.device,
        progress=progress,
        should_stop=should_stop,
        trained_by=session.user.id,
    )
    if should_stop and should_stop():
        raise InterruptedError("training cancelled")
    add_defect_classifier(out, manifest_path, root, progress)
    station = Station(session.store, Inspector.load(out, session.device), session.station)
    return station.model_version_id or station.register_model(session.user)


@dataclass
class EvalSummary:
    """An evaluation's scores with the threshold it was made at: enough for what-if rates."""

    model_id: int | None
    scores: np.ndarray
    labels: np.ndarray
    report: dict[str, Any]
    thresholds: Thresholds
    roc: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.zeros(0), np.zeros(0)))


def evaluate_model(session: AppSession, model: ModelInfo, manifest_path: Path, root: Path) -> EvalSummary:
    """Scores a manifest's test split with a stored model version (call it off the UI thread)."""
    from sklearn.metrics import roc_curve

    from inspector.evaluation import evaluate
    from inspector.pipeline import Inspector

    inspector = Inspector.load(model.model_dir, session.device)
    inspector.thresholds = effective_thresholds(session.store, model.id, inspector.thresholds)
    ev = evaluate(inspector, load_manifest(manifest_path), root)
    roc = (np.zeros(0), np.zeros(0))
    if len(np.unique(ev.labels)) == 2:
        fpr, tpr, _ = roc_curve(ev.labels, ev.scores)
        roc = (fpr, tpr)
    return EvalSummary(model.id, ev.scores, ev.labels, ev.report, inspector.thresholds, roc)


def what_if(summary: EvalSummary, threshold: float) -> tuple[float | None, float | None]:
    """False-reject and miss rates the evaluation data would give at ``threshold``."""
    return metrics.rates_at(summary.scores, summary.labels, threshold)


def model_rows(models: list[ModelInfo]) -> list[list[str]]:
    """The engineer's model-version table, newest first."""
    rows = []
    for m in sorted(models, key=lambda m: m.id, reverse=True):
        thr = m.threshold  # the logged override, else the trained one
        rows.append(
            [
                str(m.id),
                "ACTIVE" if m.active else "",
                m.backbone,
                m.weights_hash[:10],
                m.trained_by,
                m.created_at.strftime("%Y-%m-%d %H:%M"),
                "" if thr is None else f"{thr:.4f}",
                Path(m.model_dir).name,
            ]
        )
    return rows


def _fmt(v: Any, percent: bool = False) -> str:
    if v is None:
        return "n/a"
    if percent:
        return f"{100 * v:.1f} %"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def compare_rows(summaries: dict[int, EvalSummary]) -> list[list[str]]:
    """One row per evaluated model version, on the same evaluation data."""
    rows = []
    for mid, s in sorted(summaries.items()):
        r = s.report
        rows.append(
            [
                str(mid),
                _fmt(r.get("image_auroc")),
                _fmt(r.get("f1_max")),
                _fmt(r.get("threshold")),
                _fmt(r.get("false_reject_rate"), percent=True),
                _fmt(r.get("miss_rate"), percent=True),
            ]
        )
    return rows


# ------------------------------------------------------------------------------------ auditor
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


def recorded_view(store: AuditStore, inspection_id: int, display: int = 280) -> tuple[np.ndarray | None, str]:
    """The frame and the maps as they were recorded, side by side, and a one-line caption."""
    rec = store.inspection(inspection_id)
    caption = f"{rec.verdict}  score {rec.score:.4f} / threshold {rec.threshold:.4f}  ({rec.source})"
    if rec.frame is None:
        return None, caption + " - recorded frame file is missing"
    try:
        th = store.model(rec.model_version_id).thresholds
        low, high = float(th.get("map_low", 0.0)), float(th.get("map_high", rec.threshold * 1.5))
    except Exception:
        low, high = 0.0, rec.threshold * 1.5
    maps: list[tuple[str, np.ndarray, float, float, float | None]] = []
    if rec.anomaly_map is not None:
        maps.append(("anomaly map", rec.anomaly_map, low, max(high, low + 1e-6), rec.threshold))
    if rec.gradcam is not None:  # recorded in score units (Explanation.display)
        maps.append(("Grad-CAM", rec.gradcam, low, max(high, low + 1e-6), None))
    return panels(rec.frame, maps, header=f"frame {rec.frame_index}", display=display), caption
