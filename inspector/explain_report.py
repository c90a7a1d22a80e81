"""``inspector explain-report``: every explanation method measured and judged on one model.

Writes ``explain_report.json`` and ``explain_report.pdf`` and, unless asked not to, records the
report's sha256 and verdicts in the model's ``model.json`` (``metadata.metrics.explain_report``).
Registering the model in the audit store copies those metrics into the model's audit record, so
an auditor sees which explanation the operator was shown (the registry's every-frame method) and
the evidence it was trusted on. Additive: nothing else in ``model.json`` changes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from inspector import explainers
from inspector.decision_boundary import decision_boundary
from inspector.errors import InspectorError
from inspector.explain import HEAD_JSON, Explainer, load_defect_head, train_defect_head
from inspector.explain_checks import Checks, Sample, load_samples
from inspector.explain_verdict import RULES, judge_all
from inspector.manifest import Manifest, load_manifest
from inspector.pipeline import Inspector
from inspector.training import batches, load_items
from models.explain import DefectHead, extract_pooled, fit_defect_head
from models.patchcore.serialization import CONFIG_FILE

REPORT_JSON = "explain_report.json"
REPORT_PDF = "explain_report.pdf"
ProgressFn = Callable[[str], None]


class ReportError(InspectorError):
    """The report cannot be made from this model and data."""


@dataclass
class ReportResult:
    doc: dict[str, Any]
    json_path: Path
    pdf_path: Path
    sha256: str


def _head_and_items(
    inspector: Inspector, manifest: Manifest, root: str | Path, seed: int
) -> tuple[DefectHead | None, list[str], str]:
    """The defect head to judge, the paths it was trained on, and a note on where it came from."""
    head = load_defect_head(inspector)
    if head is not None:
        doc = json.loads((Path(inspector.info.model_dir) / HEAD_JSON).read_text())
        return head, list(doc.get("train_paths", [])), "the model's saved defect classifier"
    if len({it.defect for it in manifest.items if it.is_anomalous and it.defect}) < 2:
        return None, [], "no defect classifier (fewer than two labelled defect types): defect-head methods skipped"
    r = train_defect_head(inspector, manifest, root, share=0.5, seed=seed, save=False)
    return r.head, r.train_paths, "a defect classifier trained for this report only (not saved; share 0.5)"


def _shuffled_head(
    inspector: Inspector, head: DefectHead, manifest: Manifest, root: str | Path, paths: Sequence[str], seed: int
) -> DefectHead | None:
    """The same head refitted on its training images with their labels shuffled (sanity check)."""
    by_path = {it.path: it for it in manifest.items}
    items = [by_path[p] for p in paths if p in by_path and by_path[p].defect in head.classes]
    if len(items) < 2:
        return None
    size = inspector.model.config  # the model's own input rule, as the station's
    feats = extract_pooled(inspector.model, batches(load_items(items, root), size, 16), head.layers)
    y = torch.tensor([head.classes.index(str(it.defect)) for it in items])
    perm = y[torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))]
    return fit_defect_head(feats, perm, head.classes, head.layers)


def _boundary(inspector: Inspector, manifest: Manifest, root: str | Path, limit: int, seed: int) -> dict[str, Any]:
    from inspector.explain_checks import pick_test_items

    items = pick_test_items(manifest, max(limit * 3, 12), seed + 3)
    images = load_items(items, root)
    size = inspector.model.config  # the model's own input rule, as the station's
    feats = extract_pooled(inspector.model, batches(images, size, 16)).numpy()
    scores = np.concatenate([r.score.cpu().numpy() for r in map(inspector.model.predict, batches(images, size, 16))])
    labels = [(it.defect or "defective") if it.is_anomalous else "good" for it in items]
    view = decision_boundary(feats, scores, labels, inspector.thresholds.decision)
    doc = view.to_json()
    doc["grid_x"] = np.round(view.grid_x, 4).tolist()
    doc["grid_y"] = np.round(view.grid_y, 4).tolist()
    doc["grid_score"] = np.round(view.grid_score, 4).tolist()
    doc["near_good_sources"] = [items[i].path for i in view.near_good]
    return doc


def example_panel(explainer: Explainer, sample: Sample, methods: Sequence[str], settings: dict[str, Any]) -> np.ndarray:
    """One defective frame with every method's map over it, in the model's colour range (RGB)."""
    from inspector.overlay import overlay

    t = explainer.inspector.thresholds
    e = explainer.explain(sample.image, tuple(dict.fromkeys(["anomaly", *methods])), settings)
    tiles = []
    for m in ["frame", *[m for m in methods if m in e.maps]]:
        tile = sample.image if m == "frame" else overlay(sample.image, e.display(m), t.map_low, t.map_high)
        tile = cv2.resize(tile, (160, 160), interpolation=cv2.INTER_NEAREST)
        bar = np.full((18, 160, 3), 255, np.uint8)
        cv2.putText(bar, m, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([bar, tile]))
    while len(tiles) % 5:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i : i + 5]) for i in range(0, len(tiles), 5)]
    return np.vstack(rows)


def record_in_model(model_dir: str | Path, summary: dict[str, Any]) -> None:
    """Adds the report's summary to ``model.json`` under ``metadata.metrics.explain_report`` (atomic)."""
    path = Path(model_dir) / CONFIG_FILE
    doc = json.loads(path.read_text())
    metrics = doc.setdefault("metadata", {}).setdefault("metrics", {})
    metrics["explain_report"] = summary
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    tmp.replace(path)


def build_report(
    model_dir: str | Path,
    manifest_path: str | Path,
    root: str | Path,
    out: str | Path,
    *,
    limit: int = 4,
    samples: int = 64,
    max_checks: int | None = None,
    seed: int = 0,
    methods: Sequence[str] | None = None,
    device: str = "cpu",
    record: bool = True,
    progress: ProgressFn | None = None,
) -> ReportResult:
    """Measures and judges ``methods`` (default: all registered) on one model; writes JSON and PDF."""
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    inspector = Inspector.load(model_dir, device)
    manifest = load_manifest(manifest_path)
    h, w = inspector.model.config.input_hw
    train = manifest.split("train")
    if not train:
        raise ReportError(f"{manifest_path}: no training images, so no good image to use as the fill")
    fill = cv2.resize(load_items(train[:1], root)[0], (w, h), interpolation=cv2.INTER_AREA)
    head, head_paths, head_note = _head_and_items(inspector, manifest, root, seed)
    say(head_note)
    wanted = list(methods or explainers.names())
    settings = {"samples": samples, "gradient_samples": 8}
    explainer = Explainer(inspector, head, reference=[fill])
    twin = Inspector(inspector.model.with_random_backbone(seed + 1), inspector.thresholds, inspector.info)
    random_backbone = Explainer(twin, head, reference=[fill])
    shuffled = _shuffled_head(inspector, head, manifest, root, head_paths, seed) if head is not None else None
    shuffled_explainer = Explainer(inspector, shuffled, reference=[fill]) if shuffled is not None else None
    defective, masked = load_samples(manifest, root, inspector.model.config, limit, seed)
    if not defective:
        raise ReportError(f"{manifest_path}: no defective test images to explain")
    where = "pasted" if masked and masked[0].pasted else "masked"
    say(f"{len(defective)} defective images; localisation on {len(masked)} {where}")
    checks = Checks(explainer, random_backbone, shuffled_explainer, fill, settings, seed, max_checks)
    figures = checks.run(wanted, defective, masked)
    blob_auroc = checks.blob_localisation(masked)
    judge_all(figures, blob_auroc)
    say("decision boundary")
    boundary = _boundary(inspector, manifest, root, limit, seed)
    example = example_panel(explainer, defective[0], [f.name for f in figures], settings)
    shown = explainers.every_frame_method()
    doc: dict[str, Any] = {
        "format": "inspector-explain-report",
        "format_version": 1,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model_dir": str(Path(model_dir).resolve()),
        "model_memory_bank_sha256": inspector.info.weights_sha256,
        "manifest": manifest.name,
        "manifest_sha256": manifest.content_hash(),
        "input_size": h,
        "input_hw": [h, w],
        "keep_aspect": inspector.model.config.keep_aspect,
        "sample": {
            "defective": [s.source for s in defective],
            "localisation": [s.source for s in masked],
            "localisation_on": "pasted defects" if masked and masked[0].pasted else "masks",
            "limit_per_class": limit,
            "seed": seed,
            "lime_shap_samples": samples,
            "sanity_and_stability_on": min(max_checks or len(defective), len(defective)),
        },
        "defect_head": head_note,
        "shown_on_every_frame": shown,
        "centred_blob_pixel_auroc": blob_auroc,
        "rules": RULES,
        "methods": [f.to_json() for f in figures],
        "decision_boundary": boundary,
        "seconds": round(time.perf_counter() - t0, 1),
        "torch_threads": torch.get_num_threads(),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / REPORT_JSON
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    from inspector.explain_pdf import write_pdf

    pdf_path = write_pdf(out / REPORT_PDF, doc, example)
    digest = hashlib.sha256(json_path.read_bytes()).hexdigest()
    if record:
        record_in_model(
            model_dir,
            {
                "json_sha256": digest,
                "pdf_sha256": hashlib.sha256(pdf_path.read_bytes()).hexdigest(),
                "created_at": doc["created_at"],
                "shown_on_every_frame": shown,
                "verdicts": {f.name: f.verdict for f in figures},
            },
        )
    return ReportResult(doc, json_path, pdf_path, digest)
