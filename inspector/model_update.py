"""A new model version from an old one plus confirmed good images (or minus wrong ones), no full refit.

The old version's directory is only read; the result is written to a new directory, so the
active model never changes under a running station.

Thresholds are recalibrated by the rule the full train uses (leave-one-out scores into
``inspector.calibration.calibrate_good_only``), without the old images: the new images' scores
come from the update's own search, the old images' from the top patches each model keeps
(``models/patchcore/loo_state.py``), exact where certified. A model without those patches (a
chunked fit, or calibrated on held-out or labelled images) keeps its thresholds, and says so.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from inspector.calibration import DEFAULT_RULE, DEFAULT_TARGET_FRR, calibrate_good_only
from inspector.errors import ConfigError, ManifestError, ModelError
from inspector.frr import FrrStatement
from inspector.manifest import Manifest, ManifestItem
from inspector.preprocess import resolve_device
from inspector.training import Progress, check_items, item_batches
from models.backbones import BackboneError
from models.patchcore import ModelFileError, PatchCore, load_patchcore, save_patchcore
from models.patchcore.anomaly_map import anomaly_map
from models.patchcore.incremental import PatchStatistics, UpdateReport, add_images, remove_images
from models.patchcore.loo_state import STATE_FILE, CalibrationState, rescore
from models.patchcore.serialization import read_model_json


@dataclass
class ModelUpdate:
    """What ``update_model`` wrote and measured."""

    model_dir: Path
    added: UpdateReport | None
    removed: UpdateReport | None
    seconds: float
    bank_rows: int
    # The updated model's cost per frame with Grad-CAM, measured when its settings were chosen
    # under a budget (None otherwise), and what the operator should know about it.
    ms_per_frame: float | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_dir": str(self.model_dir),
            "added": _report_json(self.added),
            "removed": _report_json(self.removed),
            "seconds": round(self.seconds, 3),
            "bank_rows": self.bank_rows,
            "ms_per_frame": self.ms_per_frame,
            "warnings": list(self.warnings),
        }


def budget_check(model: PatchCore, meta: dict[str, Any]) -> tuple[float | None, list[str]]:
    """The updated model's cost per frame against the budget its settings were chosen under.

    Why: an update adds rows to the memory bank, and the cost per frame grows with it (at 280x112,
    35 ms from 175 images' bank, 150 ms from 761), so a model chosen within the station's budget
    can leave it after a few updates, silently, where the full ``train`` would have cut the bank
    (``inspector.candidate_scoring``). Nothing is measured for a model whose settings were given.
    """
    search = meta.get("settings_search")
    budget = search.get("budget_ms") if isinstance(search, dict) else None
    if not isinstance(budget, int | float) or search.get("allow_over_budget"):
        return None, []
    from inspector.candidate_scoring import measure_near

    h, w = model.config.input_hw  # a frame kept at its own aspect has this many pixels too
    probe = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(model.mean.device)
    ms = measure_near(model, probe, float(budget))
    if ms <= budget:
        return round(ms, 2), []
    return round(ms, 2), [
        f"the updated memory bank ({model.memory_bank.shape[0]:,} rows) takes {ms:.1f} ms per frame with Grad-CAM,"
        f" over the {budget:g} ms budget its settings were chosen under; train a new version without --update"
        " (the settings search cuts the bank to fit) or raise the station's budget"
    ]


def threshold_line(meta: dict[str, Any]) -> str:
    """What an update did to the decision threshold, in one line for the CLI: the new level and
    its false-reject statement, or that the old one was kept and why."""
    t = meta.get("thresholds") or {}
    source = str(meta.get("thresholds_from") or "")
    decision = t.get("decision")
    if not isinstance(decision, int | float):
        return f"thresholds: {source or 'none recorded'}"
    if not source.startswith("recalibrated"):
        return f"threshold {decision:.4f} kept: {source}"
    before = (meta.get("recalibration") or {}).get("previous_decision")
    was = f" (was {before:.4f})" if isinstance(before, int | float) else ""
    frr = t.get("frr")
    said = f"; {FrrStatement(**frr).describe()}" if isinstance(frr, dict) else ""
    return f"threshold {decision:.4f}{was}, recalibrated on every image behind the bank{said}"


def _report_json(report: UpdateReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {f.name: getattr(report, f.name) for f in fields(report) if f.name != "new_images"}


@dataclass
class Recalibration:
    """The model.json entries an update writes about its thresholds, and the state to keep."""

    meta: dict[str, Any]
    state: CalibrationState | None


def recalibrate(
    model: PatchCore, src: Path, meta: dict[str, Any], added: UpdateReport | None, removed: UpdateReport | None
) -> Recalibration:
    """New thresholds for the updated bank from leave-one-out scores of every image behind it.

    Old images are re-scored from their kept top patches (``loo_state.rescore``); one whose
    kept patches no longer reach its bound (or any after a removal, which can raise distances)
    is uncertified and keeps the larger of its re-score and its previous score.
    """
    old = meta.get("thresholds") or {}
    if meta.get("calibration") != "leave-one-out" or not (src / STATE_FILE).is_file():
        why = (
            "the version updated from keeps no leave-one-out patches"
            " (calibrated otherwise, or trained before they were kept)"
        )
        return Recalibration(
            {"thresholds": old, "thresholds_from": f"the version updated from, not recalibrated: {why}"}, None
        )
    try:
        state = CalibrationState.load(str(src / STATE_FILE))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{src / STATE_FILE} is unreadable: {exc}") from None
    return recalibrated(model, state, old, added, removed)


def recalibrated(
    model: PatchCore,
    state: CalibrationState,
    old: dict[str, Any],
    added: UpdateReport | None,
    removed: UpdateReport | None,
) -> Recalibration:
    """``recalibrate`` from a loaded state and the old thresholds (what the benchmark times)."""
    tic = time.process_time()
    if removed is not None and removed.removed_ids:
        state = state.select(~torch.isin(state.ids, torch.tensor(removed.removed_ids)))
    scale = model.channel_scale.cpu()
    state = state.in_scale(scale)
    scores, certified = rescore(model, state)
    if removed is not None and removed.rows_removed:
        certified[:] = False
    scores = torch.where(certified, scores, torch.maximum(scores, state.scores))
    state = CalibrationState(state.ids, scores, state.rows, state.bound, state.scale)
    maps = None
    if added is not None and added.new_images is not None:
        new = added.new_images
        fresh = CalibrationState(new.ids, torch.zeros(len(new.ids), dtype=torch.float64), new.rows, new.bound, scale)
        new_scores, _ = rescore(model, fresh)  # certified by construction: every patch was searched
        state = CalibrationState.concat(state, CalibrationState(new.ids, new_scores, new.rows, new.bound, scale))
        size = model.config.input_hw
        maps = anomaly_map(new.patch_scores[:256].to(model.mean.device), size, model.config.sigma).cpu().numpy()
    target = float(old.get("target_frr") or DEFAULT_TARGET_FRR)
    values = state.scores.numpy()
    # Thresholds saved before the tail rule carry no "tail" key: keep the order statistic they had.
    rule = DEFAULT_RULE if "tail" in old else "order"
    thresholds = calibrate_good_only(values, maps, target, rule=rule)
    if maps is None and "map_low" in old:  # no new maps: the old colour range's floor stands
        thresholds = replace(thresholds, map_low=float(old["map_low"]))
    statement = thresholds.frr
    n_cert = int(certified.sum())
    info = {
        "thresholds": thresholds.to_json(),
        "thresholds_from": "recalibrated: leave-one-out scores of every image behind the bank",
        "calibration_scores": [float(v) for v in values],
        "recalibration": {
            "images": int(values.size),
            "rescored_exact": n_cert + (len(added.new_images.ids) if added and added.new_images else 0),
            "uncertified": int(certified.numel()) - n_cert,
            "previous_decision": old.get("decision"),
            "frr": statement,
            "cpu_seconds": round(time.process_time() - tic, 3),
        },
    }
    return Recalibration(info, state)


def patches_per_image(model: PatchCore) -> int:
    size = model.config.input_size
    with torch.no_grad():
        emb = model.embed(torch.zeros(1, 3, size, size, device=model.mean.device))
    return int(emb.shape[-1] * emb.shape[-2])


def bank_statistics(model: PatchCore, meta: dict[str, Any]) -> PatchStatistics:
    """The patch statistics of the images behind the bank: recorded by an earlier update, or
    rebuilt from the fit's channel statistics and its image count."""
    if "patch_statistics" in meta:
        return PatchStatistics.from_json(meta["patch_statistics"])
    n_images = int(meta.get("n_train_images") or 0)
    if n_images <= 0:
        raise ModelError("the model does not record how many images built its bank; retrain it with inspector train")
    n = n_images * patches_per_image(model)
    if model.channel_mean.numel():
        return PatchStatistics.of_model(model, n)
    c = int(model.memory_bank.shape[1])
    return PatchStatistics(n, torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64))


def _good_items(manifest: Manifest, what: str) -> list[ManifestItem]:
    if not manifest.items:
        raise ManifestError(f"{manifest.source_file or manifest.name}: no images to {what}")
    return list(manifest.items)


def _check_out(from_dir: Path, out_dir: Path) -> None:
    if out_dir.resolve() == from_dir.resolve():
        raise ConfigError(f"--out {out_dir} is the model being updated; an update always writes a new version")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"--out {out_dir} exists and is not empty; an update never overwrites a model")


def update_model(
    from_dir: str | Path,
    out_dir: str | Path,
    root: str | Path,
    *,
    add: Manifest | None = None,
    remove: Manifest | None = None,
    device: str = "auto",
    batch_size: int = 16,
    restandardize_at: float = 0.1,
    progress: Progress | None = None,
    updated_by: str | None = None,
) -> ModelUpdate:
    """Writes ``out_dir``: the model of ``from_dir`` with ``add``'s good images merged into its
    bank and ``remove``'s images taken out. Checks every file before any work starts."""
    src, out = Path(from_dir), Path(out_dir)
    if add is None and remove is None:
        raise ConfigError("nothing to do: give images to add and/or to remove")
    _check_out(src, out)
    add_items = _good_items(add, "add") if add is not None else []
    bad = [it.path for it in add_items if it.is_anomalous]
    if bad:
        raise ManifestError(f"only good images go into the memory bank; {len(bad)} are labelled anomalous: {bad[0]}")
    remove_items = _good_items(remove, "remove") if remove is not None else []
    check_items([*add_items, *remove_items], root, progress)
    try:
        model, meta = load_patchcore(src, resolve_device(device))
        doc = read_model_json(src)
    except (ModelFileError, BackboneError) as exc:
        raise ModelError(str(exc)) from None
    lineage: list[dict[str, Any]] = list(meta.get("lineage", []))
    seen = {h for step in lineage for h in step.get("added", [])} - {
        h for step in lineage for h in step.get("removed", [])
    }
    again = [it.path for it in add_items if it.sha256 in seen]
    if again:
        raise ManifestError(f"{len(again)} image(s) are in the bank already (added by an earlier update): {again[0]}")
    stats = bank_statistics(model, meta)
    # The model's own input rule: a non-square or own-aspect model's frames are not squares.
    size = model.config
    tic = time.perf_counter()
    removed = added = None
    if remove_items:
        removed = remove_images(
            model, item_batches(remove_items, root, size, batch_size), stats, restandardize_at=restandardize_at
        )
    if add_items:
        added = add_images(
            model,
            item_batches(add_items, root, size, batch_size),
            stats,
            restandardize_at=restandardize_at,
            progress=progress,
        )
    cal = recalibrate(model, src, meta, added, removed)
    seconds = time.perf_counter() - tic
    n_images = int(meta.get("n_train_images") or 0) + len(add_items) - (removed.images_matched if removed else 0)
    lineage.append(
        {
            "from_model_dir": str(src.resolve()),
            "from_memory_bank_sha256": doc["memory_bank_sha256"],
            "added": [it.sha256 for it in add_items],
            "removed": [it.sha256 for it in remove_items],
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "by": updated_by,
        }
    )
    new_meta = {
        **meta,
        "n_train_images": n_images,
        "patch_statistics": stats.to_json(),
        "lineage": lineage,
        "updated_from": str(src.resolve()),
        "update_seconds": round(seconds, 3),
        **cal.meta,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(),
        "trained_by": updated_by or meta.get("trained_by"),
    }
    save_patchcore(model, out, new_meta)
    if cal.state is not None:
        cal.state.save(str(out / STATE_FILE))
    _carry_defect_head(src, out)
    ms, warnings = budget_check(model, meta)
    return ModelUpdate(out, added, removed, seconds, int(model.memory_bank.shape[0]), ms, warnings)


def _carry_defect_head(src: Path, out: Path) -> None:
    """Copies the defect classifier (it reads backbone features, not the bank), re-keyed to the new bank."""
    from inspector.explain import HEAD_JSON, load_defect_head, save_defect_head
    from inspector.pipeline import Inspector

    if not (src / HEAD_JSON).is_file():
        return
    import json

    old = Inspector.load(src, "cpu")
    head = load_defect_head(old)
    if head is None:
        return
    extra = {k: v for k, v in json.loads((src / HEAD_JSON).read_text()).items() if k not in _HEAD_OWN_KEYS}
    new = read_model_json(out)
    save_defect_head(head, out, str(new["memory_bank_sha256"]), extra)
    from inspector.defect_types import copy_type_gate

    copy_type_gate(src, out)


_HEAD_OWN_KEYS = {
    "format",
    "format_version",
    "classes",
    "layers",
    "descriptor",
    "model_memory_bank_sha256",
    "tensors_sha256",
}
