"""Training from a manifest: check the files, fit PatchCore on good images, calibrate, save.

By default every good training image both builds the memory bank and calibrates the threshold:
each is scored with its own bank rows excluded (leave-one-out), so 100 good images give 100
calibration scores instead of 10 held out, and the bank keeps all 100 (past ``LOO_MAX_IMAGES``
good images, a seeded sample of them calibrates). ``calibration="holdout"``
keeps the older seeded split into bank images and a held-out share. A validation split with
defective images, where the manifest has one, calibrates the threshold instead.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from inspector.calibration import (
    DEFAULT_RULE,
    DEFAULT_TARGET_FRR,
    Thresholds,
    calibrate_good_only,
    calibrate_labelled,
    suspect_scores,
)
from inspector.domain import profile_items
from inspector.errors import ConfigError, ImageError, ManifestError
from inspector.frr import FrrStatement
from inspector.images import decode_image, sha256_bytes, sha256_file
from inspector.manifest import Manifest, ManifestItem, require_training_items, resolve
from inspector.preprocess import model_batches, resolve_device, to_batch
from models.backbones import BackboneError
from models.patchcore import PatchCore, PatchCoreConfig, save_patchcore
from models.patchcore.anomaly_map import to_size
from models.patchcore.leave_one_out import leave_one_out_scores
from models.patchcore.loo_state import STATE_FILE, CalibrationState, state_from_batches, state_from_fit

if TYPE_CHECKING:
    from inspector.autoconfig import SearchOptions, Selection

Progress = Callable[[str, int, int], None]
CALIBRATIONS = ("leave-one-out", "holdout")
# Below this the search's evaluation set is two good images with four pasted defects: no
# candidate can beat the defaults beyond chance there, so the search would only cost time.
MIN_SEARCH_IMAGES = 8
# Leave-one-out scores every calibration image against the whole bank, which grows with the
# images too, so its cost grows with their square: 290 s for 3,000 images on 2 cores, about an
# hour for 10,000 (``scripts/bench_scale.py``). Past this many good images the threshold is read
# from a seeded random sample of them: 2,000 leave-one-out scores state a 2% false-reject rate
# at most 2.6% at 95% confidence (10,000: 2.2%), a bound far tighter than the rate itself moves.
LOO_MAX_IMAGES = 2000


@dataclass
class TrainResult:
    model_dir: Path
    thresholds: Thresholds
    fit_seconds: float
    n_train: int
    n_calibration: int
    memory_bank_shape: tuple[int, ...]
    warnings: tuple[str, ...] = ()
    selection: Selection | None = None

    @property
    def frr(self) -> FrrStatement | None:
        """The decision threshold's false-reject statement (rate, bound, good images behind it)."""
        return FrrStatement(**self.thresholds.frr) if self.thresholds.frr else None  # type: ignore[arg-type]


def load_items(items: Sequence[ManifestItem], root: str | Path, *, check_sha: bool = True) -> list[np.ndarray]:
    """Reads manifest items as RGB uint8, refusing a file whose checksum does not match."""
    images = []
    for it in items:
        p = resolve(root, it.path)
        if not p.is_file():
            raise ImageError(f"{p}: file not found (listed in the manifest as {it.path})")
        data = p.read_bytes()
        if check_sha and sha256_bytes(data) != it.sha256:
            raise ManifestError(f"checksum mismatch: {it.path} differs from the manifest (run inspector data verify)")
        images.append(decode_image(data, str(p)))
    return images


def check_items(items: Sequence[ManifestItem], root: str | Path, progress: Progress | None = None) -> None:
    """Checks that every listed file exists and matches its checksum, before any long work starts."""
    for i, it in enumerate(items):
        if progress is not None and i % 64 == 0:
            progress("checking files", i, len(items))
        p = resolve(root, it.path)
        if not p.is_file():
            raise ImageError(f"{p}: file not found (listed in the manifest as {it.path})")
        if sha256_file(p) != it.sha256:
            raise ManifestError(f"checksum mismatch: {it.path} differs from the manifest (run inspector data verify)")
    if progress is not None:
        progress("checking files", len(items), len(items))


Size = int | tuple[int, int] | PatchCoreConfig  # one size for every frame, or the model's own rule


def batches(images: Sequence[np.ndarray], size: Size, batch_size: int) -> Iterator[torch.Tensor]:
    """Batches at ``size``; given a model's config, each frame at that model's input size
    (frames kept at their own aspect batch only with neighbours of the same size)."""
    if isinstance(size, PatchCoreConfig):
        yield from model_batches(images, size, batch_size)
        return
    for i in range(0, len(images), batch_size):
        yield to_batch(images[i : i + batch_size], size)


def item_batches(
    items: Sequence[ManifestItem], root: str | Path, size: Size, batch_size: int
) -> Iterator[torch.Tensor]:
    """Decodes and resizes a batch at a time, so 10,000 training images are never all in memory.

    Checksums are left to ``check_items``, run once before: a bad file then stops training
    before the first minute of work, not after the last.
    """
    for i in range(0, len(items), batch_size):
        yield from batches(load_items(items[i : i + batch_size], root, check_sha=False), size, batch_size)


def score_batches(model: PatchCore, image_batches: Iterable[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Image scores and anomaly maps for batches of frames; maps at the model's nominal input
    size, so frames kept at their own aspect stack (calibration reads only their values)."""
    scores, maps = [], []
    for b in image_batches:
        pred = model.predict(b)
        scores.append(pred.score.float().cpu().numpy())
        maps.append(to_size(pred.anomaly_map.float(), model.config.input_hw).cpu().numpy())
    return np.concatenate(scores), np.concatenate(maps)


def split_holdout(items: list[ManifestItem], share: float, seed: int) -> tuple[list[ManifestItem], list[ManifestItem]]:
    if not 0 <= share < 1:
        raise ConfigError("held-out share must be in [0, 1)")
    n_hold = int(round(len(items) * share))
    if share > 0:
        n_hold = max(1, n_hold)
    if len(items) - n_hold < 1:
        raise ManifestError("too few good training images to hold some out for calibration")
    order = np.random.default_rng(seed).permutation(len(items))
    hold = sorted(order[:n_hold].tolist())
    held = set(hold)
    return [items[i] for i in range(len(items)) if i not in held], [items[i] for i in hold]


def _counted(
    batches: Iterable[torch.Tensor], progress: Progress | None, stage: str, total: int
) -> Iterator[torch.Tensor]:
    """The batches, reporting how many images have passed (a second pass over 2,000 images takes minutes)."""
    done = 0
    for b in batches:
        yield b
        done += b.shape[0]
        if progress:
            progress(stage, done, total)


def calibration_sample(n_images: int, cap: int, seed: int) -> torch.Tensor | None:
    """Ascending ``fit`` positions of the images that calibrate, or None for all of them."""
    if n_images <= cap:
        return None
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n_images, generator=gen)[:cap].sort().values


def train(
    manifest: Manifest,
    root: str | Path,
    out_dir: str | Path,
    *,
    config: PatchCoreConfig | None = None,
    device: str = "auto",
    holdout_share: float = 0.1,
    target_frr: float = DEFAULT_TARGET_FRR,
    threshold_rule: str = DEFAULT_RULE,
    calibration: str = "leave-one-out",
    batch_size: int = 16,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    trained_by: str | None = None,
    search: SearchOptions | None = None,
    loo_max_images: int | None = None,
) -> TrainResult:
    """Fits, calibrates and saves a model; returns where and how it went.

    ``holdout_share`` is used only with ``calibration="holdout"``. ``threshold_rule`` is how a
    good-only threshold is read from the scores (``inspector.calibration.RULES``).

    With ``search``, the settings are chosen first from the good training images that fit the
    bank (``inspector.autoconfig``; never the calibration or test images), starting from
    ``config``'s other settings; the choice and every candidate's figures go into model.json.
    Leave-one-out calibrates on at most ``loo_max_images`` of them (default ``LOO_MAX_IMAGES``;
    ``calibration_sample``).
    """
    config = config or PatchCoreConfig()
    if calibration not in CALIBRATIONS:
        raise ConfigError(f"unknown calibration '{calibration}'; choose one of {', '.join(CALIBRATIONS)}")
    if not 0 < config.coreset_ratio <= 1:
        raise ConfigError(f"coreset ratio must be in (0, 1], got {config.coreset_ratio}")
    dev = resolve_device(device)
    good = require_training_items(manifest)
    val = manifest.split("val")
    labelled_val = len({it.label for it in val}) == 2
    loo = calibration == "leave-one-out" and not labelled_val
    if loo and len(good) < 2:
        raise ManifestError("leave-one-out calibration needs at least two good training images")
    holdout = labelled_val or loo
    fit_items, hold_items = (good, []) if holdout else split_holdout(good, holdout_share, config.seed)
    calibration_items = val if labelled_val else hold_items
    check_items([*fit_items, *calibration_items], root, progress)
    selection = None
    search_note = None
    if search is not None and len(fit_items) < MIN_SEARCH_IMAGES:
        search_note = (
            f"{len(fit_items)} good training images are too few for the settings search (it needs"
            f" {MIN_SEARCH_IMAGES}); the given settings are used"
        )
        search = None
    if search is not None:
        # The search ranks the score bank's settings; an opt-in fine image score rides along.
        fine = {"fine_score": config.fine_score, "fine_score_level": config.fine_score_level}
        config, selection = _search(fit_items, root, replace(config, fine_score=None), search, progress)
        config = replace(config, **fine)
    if config.fine_score and config.keep_aspect:
        raise ConfigError(
            "the fine image score needs one input size for every frame, and these frames keep their own aspect;"
            " add --squash-aspect to squash them, or leave out --fine-score"
        )
    torch.manual_seed(config.seed)
    try:
        model = PatchCore(config).to(dev)
    except BackboneError as exc:
        raise ConfigError(str(exc)) from None
    start = dt.datetime.now(dt.UTC)
    tic = time.perf_counter()
    # Frames at their own aspect batch only with same-sized neighbours: about one per batch.
    n_batches = len(fit_items) if config.keep_aspect else (len(fit_items) + batch_size - 1) // batch_size
    model.fit(
        item_batches(fit_items, root, config, batch_size),
        total_batches=n_batches,
        progress=progress,
        should_stop=should_stop,
    )
    fit_s = time.perf_counter() - tic
    tic_cal = time.perf_counter()
    top: list[tuple[str, float]] = []
    suspects: list[tuple[str, float]] = []
    cal_state: CalibrationState | None = None
    sampled: dict[str, int] | None = None  # leave-one-out from a sample of the images (LOO_MAX_IMAGES)
    if labelled_val:
        scores, maps = score_batches(model, item_batches(val, root, config, batch_size))
        labels = np.array([it.is_anomalous for it in val], dtype=int)
        thresholds = calibrate_labelled(scores, labels, maps[labels == 0])
        n_cal = len(val)
    elif loo:
        cap = LOO_MAX_IMAGES if loo_max_images is None else loo_max_images
        sample = calibration_sample(len(fit_items), cap, config.seed)
        cal_items = fit_items if sample is None else [fit_items[i] for i in sample.tolist()]
        if progress:
            progress("calibration", 0, len(cal_items))
        # A single-search fit kept its features: score from them and keep each image's top
        # patches, so an incremental update can recalibrate without these images.
        fitted = state_from_fit(model, ids=sample)
        if fitted is not None:
            loo_scores, loo_maps, cal_state = fitted
        else:  # the same images in the same order as fit, so image n is bank_source n
            again_batches = _counted(
                item_batches(cal_items, root, config, batch_size), progress, "calibration", len(cal_items)
            )
            again = state_from_batches(model, again_batches, ids=sample)
            if again is not None:
                loo_scores, loo_maps, cal_state = again
            else:  # a fine image score: leave_one_out_scores reads the fine bank too
                batches_again = item_batches(cal_items, root, config, batch_size)
                loo_scores, loo_maps = leave_one_out_scores(model, batches_again, ids=sample)
        scores, maps = loo_scores.numpy().astype(np.float64), loo_maps.numpy()
        thresholds = calibrate_good_only(scores, maps, target_frr, rule=threshold_rule)
        n_cal = len(cal_items)
        if sample is not None:
            sampled = {"images": n_cal, "of": len(fit_items), "seed": config.seed}
        # The good images that look least like the others: worth a look before trusting them.
        top = [(cal_items[i].path, round(float(scores[i]), 4)) for i in np.argsort(scores)[::-1][:3]]
        suspects = [(cal_items[i].path, round(float(scores[i]), 4)) for i in suspect_scores(scores)]
    elif hold_items:
        scores, maps = score_batches(model, item_batches(hold_items, root, config, batch_size))
        thresholds = calibrate_good_only(scores, maps, target_frr, rule=threshold_rule)
        n_cal = len(hold_items)
    else:
        raise ConfigError("no calibration images: use a held-out share > 0 or a validation split")
    cal_s = time.perf_counter() - tic_cal
    if progress:
        progress("calibration", n_cal, n_cal)
    statement = FrrStatement(**thresholds.frr) if thresholds.frr else None  # type: ignore[arg-type]
    domain = profile_items(good, root)  # what a frame must look like to get a verdict (inspector.domain)
    warning = statement.warning(thresholds.target_frr) if statement else None
    warnings = [warning] if warning else []
    if search_note:
        warnings.append(search_note)
    if suspects:
        warnings.append(
            "good training images scoring far above the tail of the others (a defect labelled good?): "
            + ", ".join(f"{path} ({score:g})" for path, score in suspects)
        )
    meta: dict[str, Any] = {
        "thresholds": thresholds.to_json(),
        "manifest_name": manifest.name,
        "manifest_sha256": manifest.content_hash(),
        "n_train_images": len(fit_items),
        "n_calibration_images": n_cal,
        "fit_seconds": round(fit_s, 3),
        "device": str(dev),
        "trained_at": start.isoformat(),
        "trained_by": trained_by,
        "calibration": "F1 on validation" if labelled_val else calibration,
        "calibration_scores": [float(s) for s in scores],
        "calibration_warnings": warnings,
        "calibration_seconds": round(cal_s, 3),
        "calibration_sample": sampled,
        "highest_good_scores": top,
        "suspect_good_images": suspects,
        "domain": domain.to_json(),
        "python": platform.python_version(),
        "settings_search": selection.to_json()
        if selection is not None
        else {"chosen_by": "given settings", **({"note": search_note} if search_note else {})},
    }
    out = save_patchcore(model, out_dir, meta)
    if cal_state is not None:
        cal_state.save(str(out / STATE_FILE))
    return TrainResult(
        out,
        thresholds,
        fit_s,
        len(fit_items),
        n_cal,
        tuple(model.memory_bank.shape),
        tuple(warnings),
        selection,
    )


def _search(
    fit_items: list[ManifestItem],
    root: str | Path,
    base: PatchCoreConfig,
    opts: SearchOptions,
    progress: Progress | None,
) -> tuple[PatchCoreConfig, Selection]:
    """Chooses settings on a seeded sample of the bank's own good images (decoded only those)."""
    from inspector.autoconfig import select_config

    n = min(len(fit_items), opts.sample_size())
    pick = sorted(np.random.default_rng(base.seed + 1).permutation(len(fit_items))[:n].tolist())
    images = load_items([fit_items[i] for i in pick], root, check_sha=False)
    try:
        return select_config(
            images,
            base=base,
            pinned=opts.pinned,
            budget_ms=opts.budget_ms,
            allow_over_budget=opts.allow_over_budget,
            n_fit=opts.n_fit,
            n_eval=opts.n_eval,
            n_final=len(fit_items),
            backbones=opts.backbones,
            layer_sets=opts.layer_sets,
            ratios=opts.ratios,
            require_evidence=opts.require_evidence,
            cut_bank=opts.cut_bank,
            progress=progress,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
