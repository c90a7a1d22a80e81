"""The engineer's work: import images, train and register, evaluate, compare, what-if thresholds."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from inspector import metrics
from inspector.app_logic.operator import effective_thresholds
from inspector.app_logic.session import AppSession, Progress
from inspector.audit import ModelInfo
from inspector.calibration import Thresholds
from inspector.manifest import Manifest, build_manifest, load_manifest
from inspector.settings import data_dir
from inspector.station import Station


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
    search: bool = False,
) -> int:
    """Trains a new model version from a manifest and records it in the store; returns its id.

    With ``search``, the settings are chosen on the product's good images (``train --search``);
    the choice and why are kept in model.json, and ``settings_report`` shows them.
    """
    from inspector.autoconfig import SearchOptions
    from inspector.pipeline import Inspector
    from inspector.training import train

    manifest: Manifest = load_manifest(manifest_path)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    out = data_dir() / "models" / f"{manifest.name}-{stamp}"
    train(
        manifest,
        root,
        out,
        config=training_config(session.train_config, manifest, root),
        device=session.device,
        progress=progress,
        should_stop=should_stop,
        trained_by=session.user.id,
        search=SearchOptions() if search else None,
    )
    if should_stop and should_stop():
        raise InterruptedError("training cancelled")
    add_defect_classifier(out, manifest_path, root, progress)
    station = Station(session.store, Inspector.load(out, session.device), session.station)
    return station.model_version_id or station.register_model(session.user)


def training_config(config: Any, manifest: Manifest, root: str | Path) -> Any:
    """The settings to train with when the engineer gave none, as ``inspector train`` picks them.

    Far-from-square frames keep their aspect (112 px across): squashing ksdd's commutators to a
    square cost 0.70 against 0.89 image AUROC; frames elongated both ways each keep their own.
    The search starts from that size by itself; this
    one serves when it does not run (not asked for, or too few images).
    """
    if config is not None:
        return config
    from inspector.autoconfig import default_input
    from models.patchcore import PatchCoreConfig

    h, w, keep = default_input(manifest, root)
    if h is None and not keep:
        return None
    return PatchCoreConfig(input_size=h or PatchCoreConfig.input_size, input_width=w, keep_aspect=keep)


def settings_report(model_dir: str | Path) -> str:
    """A model version's settings and how they were chosen: the search's table and reason, or none.

    Plain text for a monospace view: the engineer reads the same table ``train --search`` prints.
    """
    from inspector.autoconfig import format_table
    from inspector.frr import describe_calibration
    from inspector.map_settings import describe_map

    path = Path(model_dir) / "model.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"cannot read {path}: {exc}"
    cfg = doc.get("config") if isinstance(doc, dict) else None
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    cfg, meta = (cfg if isinstance(cfg, dict) else {}), (meta if isinstance(meta, dict) else {})
    calibration = [*describe_calibration(meta), *(f"warning: {w}" for w in meta.get("calibration_warnings") or [])]
    h = cfg.get("input_size")
    w = cfg.get("input_width") or h
    lines = [
        f"backbone {cfg.get('backbone')}, stages {'+'.join(cfg.get('layers') or [])}, input {h}x{w} px"
        + (" (its pixels, each frame at its own aspect)," if cfg.get("keep_aspect") else ",")
        + f" stride {cfg.get('feature_stride')}, coreset {cfg.get('coreset_ratio')}",
        describe_map(cfg),
        f"trained on {meta.get('n_train_images', '?')} good images"
        + (f" by {meta['trained_by']}" if meta.get("trained_by") else "")
        + f" at {meta.get('trained_at', '?')}",
        # What the CLI's train prints about the threshold, so the engineer sees it here too.
        *calibration,
        "",
    ]
    search = meta.get("settings_search") or {}
    if isinstance(search, dict) and "candidates" in search:
        try:
            lines.append(format_table(search))
        except (KeyError, TypeError, ValueError) as exc:  # a model.json written elsewhere, or edited
            lines.append(f"the settings search's record in {path} is unreadable ({type(exc).__name__}: {exc})")
    else:
        lines.append("settings given, not searched (train with the settings search to choose them per product)")
    # The table's rows fit a window; the reason, the footnotes, the map's and the threshold's lines
    # are wrapped to it.
    flat = [line for text in lines for line in text.split("\n")]
    prose = ("* chosen", "(", "anomaly map")
    wide = max(len(line) for line in flat if line not in calibration and not line.startswith(prose))
    return "\n".join(textwrap.fill(line, wide, subsequent_indent="  ") if len(line) > wide else line for line in flat)


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
