"""Explanations of a frame's verdict, Qt-free: anomaly map, Grad-CAM, defect type, agreement.

``Explainer`` wraps an ``Inspector`` and hands back plain numpy results, like the pipeline does.
The methods themselves are the registry's (``inspector.explainers``, one file per method); this
module runs the inspection pass they share and times each one.
Every map comes back at the frame's size. The anomaly map is in score units; the other maps
have no calibrated unit (Grad-CAM is gradient x activation), so they are kept as shapes with a
peak of 1 and shown (``Explanation.display``) with zero at the colour scale's floor and the peak
at the frame's score: the hottest colour then means what it means on the anomaly map, and a
good part stays calm instead of being stretched to its own maximum.

Agreement is the IoU of the top 10 % pixels of the anomaly map and of Grad-CAM (only pixels
above zero count: Grad-CAM is often zero over most of the frame). 1 when both point at the
same region, about 0.05 for two unrelated maps (two random 10 % sets).

The defect classifier lives next to the model as ``defect_head.safetensors`` + ``defect_head.json``
(tensors and names only, never a pickle), tied to the model's memory bank by its sha256.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from inspector import explainers
from inspector.errors import ConfigError, InspectorError, ModelError
from inspector.images import sha256_file
from inspector.manifest import Manifest, ManifestItem, load_manifest
from inspector.pipeline import Inspector
from inspector.preprocess import model_input_hw, to_batch
from inspector.training import batches, load_items
from models.explain import (
    POOLED,
    DefectHead,
    anomaly_grad_cam,
    extract_descriptor,
    extract_pooled,
    fit_defect_head,
)

DEFAULT_METHODS = ("anomaly", "gradcam")
POOLED_HEAD_METHODS = ("defect-cam",)  # exact split of a linear head over mean/max-pooled stages
AGREEMENT_TOP = 0.10
HEAD_TENSORS = "defect_head.safetensors"
HEAD_JSON = "defect_head.json"
HEAD_FORMAT = "inspector-defect-head"


class ExplainError(InspectorError):
    """An explanation cannot be made as asked."""


class UnknownMethodError(ExplainError):
    """A method name that does not exist."""


class NoDefectClassifierError(ExplainError):
    """A defect Grad-CAM was asked of a model without a trained defect classifier."""


class DefectLabelsError(ExplainError):
    """The data has too few labelled defect images to train a defect classifier."""


@dataclass
class Explanation:
    """One frame's explanations; maps are float32 at the frame's size."""

    score: float
    threshold: float
    verdict: str
    maps: dict[str, np.ndarray]  # "anomaly" in score units; the others >= 0 with peak 1
    ms: dict[str, float]
    floor: float  # the colour scale's floor (``Thresholds.map_low``), where unit-free maps start
    agreement: float | None = None
    defect_type: str | None = None  # only for flagged frames (REVIEW/DEFECT) of a model with a head
    defect_probability: float | None = None
    defect_probabilities: dict[str, float] = field(default_factory=dict)

    def display(self, method: str) -> np.ndarray:
        """The map in score units, for ``overlay`` with the model's fixed colour range."""
        if method not in self.maps:
            raise ExplainError(f"no '{method}' map in this explanation; computed: {sorted(self.maps)}")
        m = self.maps[method]
        if method == "anomaly":
            return m
        top = max(self.score, self.floor)
        peak = float(m.max())
        unit = m / np.float32(peak) if peak > 0 else m  # resizing to the frame can shave the peak
        return np.where(m > 0, self.floor + unit * np.float32(top - self.floor), 0.0).astype(np.float32)

    def figures(self) -> dict[str, Any]:
        """The JSON-ready numbers: score, verdict, defect type, agreement, ms per method."""
        return {
            "score": self.score,
            "threshold": self.threshold,
            "verdict": self.verdict,
            "defect_type": self.defect_type,
            "defect_probability": self.defect_probability,
            "defect_probabilities": self.defect_probabilities,
            "agreement": self.agreement,
            "agreement_measure": f"IoU of the top {AGREEMENT_TOP:.0%} pixels of anomaly map and Grad-CAM",
            "methods": sorted(self.maps),
            "ms": {k: round(v, 2) for k, v in self.ms.items()},
        }


def top_region(amap: np.ndarray, share: float = AGREEMENT_TOP) -> np.ndarray:
    """Boolean mask of the ``share`` highest pixels that are above zero (ties broken by position)."""
    flat = amap.ravel()
    k = max(1, int(round(flat.size * share)))
    mask = np.zeros(flat.size, bool)
    mask[np.argpartition(-flat, k - 1)[:k]] = True
    return (mask & (flat > 0)).reshape(amap.shape)


def agreement(a: np.ndarray, b: np.ndarray, share: float = AGREEMENT_TOP) -> float | None:
    """IoU of the top-``share`` regions of two maps; None where either map is flat (no evidence)."""
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    if np.ptp(a) <= 0 or np.ptp(b) <= 0:
        return None
    ra, rb = top_region(a, share), top_region(b, share)
    union = (ra | rb).sum()
    return float((ra & rb).sum() / union) if union else None


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """Validates method names against the registry, with the known ones in the error."""
    known = explainers.names()
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        what = f"unknown explanation method(s) {unknown}" if unknown else "no explanation method given"
        raise UnknownMethodError(f"{what}; choose from {', '.join(known)}")
    return tuple(dict.fromkeys(methods))


def _unit(m: torch.Tensor) -> np.ndarray:
    """(H, W) map to numpy, negative evidence dropped, with peak 1 (all-zero stays zero)."""
    a = m.detach().float().cpu().clamp_min(0.0).reshape(m.shape[-2:]).numpy()
    peak = float(a.max()) if a.size else 0.0
    return (a / peak if peak > 0 else a).astype(np.float32)


def _to_frame(m: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    h, w = shape[:2]
    return m if m.shape == (h, w) else cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)


def _at_size(reference: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """The good reference images at ``x``'s size (a frame kept at its own aspect has its own)."""
    if reference is None or reference.shape[-2:] == x.shape[-2:]:
        return reference
    return F.interpolate(reference, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)


class Explainer:
    """Explains frames for one loaded model; without a defect head there is no defect type."""

    def __init__(
        self,
        inspector: Inspector,
        defect_head: DefectHead | None = None,
        layer: str | None = None,
        reference: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.inspector = inspector
        self.model = inspector.model
        self.head = defect_head.to(inspector.device) if defect_head is not None else None
        self.layer = layer
        # Good images: the in-distribution "off" for LIME/SHAP; without them a light blur is used.
        size = self.model.config.input_hw
        self.reference = to_batch(list(reference), size).to(inspector.device) if reference else None
        self.type_gate: Any = None  # issue 16: the open-set gate ("unknown type"), set by load()

    @classmethod
    def load(
        cls, inspector: Inspector, layer: str | None = None, reference: Sequence[np.ndarray] | None = None
    ) -> Explainer:
        """An explainer with the defect head saved next to the model, where there is one."""
        from inspector.defect_types import load_type_gate

        explainer = cls(inspector, load_defect_head(inspector), layer, reference)
        explainer.type_gate = load_type_gate(inspector.info.model_dir)
        return explainer

    @property
    def has_defect_classifier(self) -> bool:
        return self.head is not None

    def explain(
        self, image: np.ndarray, methods: Sequence[str] = DEFAULT_METHODS, settings: dict[str, Any] | None = None
    ) -> Explanation:
        """Explains one RGB uint8 frame with the named methods of the registry (``inspector.explainers``).

        Grad-CAM, the anomaly map and the defect type share one forward pass; ``ms["anomaly"]``
        is that pass and ``ms["gradcam"]`` Grad-CAM's cost on top of it (one backward pass).
        Every other method is timed on its own. A defect-head method on a frame the head has no
        class for is skipped. ``settings`` tunes methods (e.g. ``{"samples": 64}`` for LIME/SHAP).
        """
        wanted = check_methods(methods)
        specs = [explainers.get(m) for m in wanted]
        if any(s.target == "defect" for s in specs) and self.head is None:
            raise NoDefectClassifierError(
                f"this model has no defect classifier, so there is no {'/'.join(s.name for s in specs)}; train one "
                "with inspector train-defects (needs labelled images of at least two defect types)"
            )
        pooled_only = [s.name for s in specs if s.name in POOLED_HEAD_METHODS]
        if pooled_only and self.head is not None and self.head.descriptor != POOLED:
            raise ConfigError(
                f"this model's defect head reads the {self.head.descriptor} descriptor; {'/'.join(pooled_only)} "
                "splits a head on pooled features (inspector train-defects); defect-gradcam works with either"
            )
        x = to_batch([image], model_input_hw(self.model.config, image)).to(self.inspector.device)
        raw: dict[str, torch.Tensor] = {}
        ms: dict[str, float] = {}
        logits: torch.Tensor | None = None
        t0 = time.perf_counter()
        if "gradcam" in wanted:
            res = anomaly_grad_cam(self.model, x, self.layer, self.head)
            score, amap, logits = float(res.score[0]), res.anomaly_map[0], res.defect_logits
            raw["gradcam"] = res.cam[0]
            ms["anomaly"] = res.forward_ms
            ms["gradcam"] = (time.perf_counter() - t0) * 1000 - res.forward_ms
        else:
            pred = self.model.predict(x)
            score, amap = float(pred.score[0]), pred.anomaly_map[0]
            logits = self._logits(x) if self.head is not None else None
            ms["anomaly"] = (time.perf_counter() - t0) * 1000
        raw["anomaly"] = amap
        probs: dict[str, float] = {}
        best: int | None = None
        if self.head is not None and logits is not None:
            p = torch.softmax(logits[0].float(), 0).cpu()
            probs = {c: float(v) for c, v in zip(self.head.classes, p.tolist(), strict=True)}
            best = int(p.argmax())
        ctx = explainers.MethodContext(
            self.model, x, self.head, best, self.layer, _at_size(self.reference, x), dict(raw), settings or {}
        )
        for spec in specs:
            if spec.name in raw or (spec.target == "defect" and best is None):
                continue
            t = time.perf_counter()
            raw[spec.name] = spec.compute(ctx)
            ms[spec.name] = (time.perf_counter() - t) * 1000
        maps = {k: v.float().cpu().numpy() if k == "anomaly" else _unit(v) for k, v in raw.items()}
        verdict = self.inspector.thresholds.verdict(score)
        agree = agreement(maps["anomaly"], maps["gradcam"]) if "gradcam" in maps else None
        # The head only knows defect types: on a part judged OK its best guess would mislead.
        kind = self.head.classes[best] if self.head is not None and best is not None and verdict != "OK" else None
        if self.type_gate is not None and verdict != "OK":  # a type the gate does not trust is "unknown type"
            layers = self.head.layers if self.head else None
            pooled = extract_descriptor(self.model, [x], layers, self.type_gate.descriptor)
            kind = self.type_gate.decide(pooled, logits, self.head.classes if self.head else ())[0].name
        return Explanation(
            score,
            self.inspector.thresholds.decision,
            verdict,
            {k: _to_frame(v, image.shape) for k, v in maps.items()},
            ms,
            self.inspector.thresholds.map_low,
            agree,
            kind,
            probs.get(kind) if kind else None,
            probs,
        )

    @torch.no_grad()
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        assert self.head is not None
        return self.head(extract_descriptor(self.model, [x], self.head.layers, self.head.descriptor).to(x.device))


# --- the defect classifier next to the model -------------------------------------------------


def save_defect_head(head: DefectHead, model_dir: str | Path, bank_sha256: str, extra: dict[str, Any]) -> Path:
    """Writes the head's tensors (safetensors) and names (JSON), each written then renamed."""
    d = Path(model_dir)
    tmp = d / (HEAD_TENSORS + ".tmp")
    save_file(head.tensors(), str(tmp))
    tmp.replace(d / HEAD_TENSORS)
    doc = {
        "format": HEAD_FORMAT,
        "format_version": 1,
        "classes": head.classes,
        "layers": head.layers,
        "descriptor": head.descriptor,
        "model_memory_bank_sha256": bank_sha256,
        "tensors_sha256": sha256_file(d / HEAD_TENSORS),
        **extra,
    }
    tmp_json = d / (HEAD_JSON + ".tmp")
    tmp_json.write_text(json.dumps(doc, indent=2) + "\n")
    tmp_json.replace(d / HEAD_JSON)
    return d / HEAD_JSON


def read_sidecar_json(jpath: Path, fmt: str, what: str) -> dict[str, Any] | None:
    """The JSON half of a file pair saved next to a model (names; tensors in safetensors), or
    None where there is none; a corrupt or foreign file is a ModelError naming it."""
    if not jpath.exists():
        return None
    try:
        doc = json.loads(jpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ModelError(f"{jpath} is corrupt or unreadable: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ModelError(f"{jpath} is not {what}")
    return doc


def check_sidecar_tensors(tpath: Path, doc: dict[str, Any]) -> None:
    """The tensors file exists and matches the sha256 its JSON recorded."""
    if not tpath.is_file() or sha256_file(tpath) != doc.get("tensors_sha256"):
        raise ModelError(f"{tpath} is missing or does not match its recorded sha256")


def load_defect_head(inspector: Inspector) -> DefectHead | None:
    """The model's defect head, or None where it has none. Never unpickles.

    A head made for another memory bank (the model was retrained) is refused: its classes
    were learned on features another model may not share.
    """
    d = Path(inspector.info.model_dir)
    jpath, tpath = d / HEAD_JSON, d / HEAD_TENSORS
    doc = read_sidecar_json(jpath, HEAD_FORMAT, "an inspector defect classifier")
    if doc is None:
        return None
    if doc.get("model_memory_bank_sha256") != inspector.info.weights_sha256:
        raise ModelError(f"{jpath} was trained for another model; retrain it with inspector train-defects")
    check_sidecar_tensors(tpath, doc)
    try:
        descriptor = doc.get("descriptor", POOLED)  # heads saved before it was recorded read pooled features
        return DefectHead.from_tensors(doc["classes"], doc["layers"], load_file(str(tpath)), descriptor)
    except (SafetensorError, KeyError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{tpath} does not hold a usable defect classifier: {exc}") from None


@dataclass
class DefectHeadReport:
    """What training the defect head did, and how it fared on the held-out defect images."""

    head: DefectHead
    n_train: dict[str, int]
    n_heldout: dict[str, int]
    heldout_accuracy: float | None  # None where nothing was held out (share 1)
    per_class_accuracy: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted, in ``head.classes`` order
    train_paths: list[str]
    heldout_paths: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "classes": self.head.classes,
            "n_train": self.n_train,
            "n_heldout": self.n_heldout,
            "heldout_accuracy": self.heldout_accuracy,
            "per_class_accuracy": self.per_class_accuracy,
            "confusion": self.confusion,
        }


def split_defect_items(
    manifest: Manifest, share: float, seed: int, splits: Sequence[str] | None = None
) -> tuple[list[str], list[ManifestItem], list[ManifestItem]]:
    """Classes, training items and held-out items: a seeded ``share`` of each defect's images trains."""
    if not 0 < share <= 1:
        raise DefectLabelsError(f"defect training share must be in (0, 1], got {share}")
    pool = [it for it in manifest.items if it.is_anomalous and it.defect and (not splits or it.split in splits)]
    classes = sorted({it.defect for it in pool if it.defect})
    if len(classes) < 2:
        raise DefectLabelsError(
            f"{manifest.source_file or manifest.name}: labelled images of {len(classes)} defect type(s) "
            f"{classes}; a defect classifier needs at least two, so this model has none"
        )
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in classes:
        items = [it for it in pool if it.defect == c]
        order = rng.permutation(len(items))
        n = min(len(items), max(1, int(round(share * len(items)))))
        train += [items[i] for i in sorted(order[:n])]
        held += [items[i] for i in sorted(order[n:])]
    return classes, train, held


def _features(inspector: Inspector, items: list[ManifestItem], root: str | Path, layers: list[str]) -> torch.Tensor:
    # The model's own input rule, as the station applies it (frames kept at their aspect too).
    return extract_pooled(inspector.model, batches(load_items(items, root), inspector.model.config, 16), layers)


def train_defect_head(
    inspector_or_model_dir: Inspector | str | Path,
    manifest: Manifest | str | Path,
    root: str | Path,
    *,
    share: float = 0.5,
    splits: Sequence[str] | None = None,
    seed: int = 0,
    save: bool = True,
) -> DefectHeadReport:
    """Trains the defect classifier on a share of each defect's labelled images; tests on the rest.

    pillQC keeps chip and dirt in its test split only, so the caller chooses the share: the
    held-out images measure the head, and only they should be used to judge it afterwards.
    """
    inspector = (
        inspector_or_model_dir
        if isinstance(inspector_or_model_dir, Inspector)
        else Inspector.load(inspector_or_model_dir, "cpu")
    )
    m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    classes, train_items, held_items = split_defect_items(m, share, seed, splits)
    layers = list(inspector.model.config.layers)
    index = {c: i for i, c in enumerate(classes)}
    x = _features(inspector, train_items, root, layers)
    y = torch.tensor([index[str(it.defect)] for it in train_items])
    head = fit_defect_head(x, y, classes, layers)
    confusion = np.zeros((len(classes), len(classes)), int)
    if held_items:
        with torch.no_grad():
            pred = head(_features(inspector, held_items, root, layers)).argmax(1).numpy()
        for it, p in zip(held_items, pred, strict=True):
            confusion[index[str(it.defect)], int(p)] += 1
    rows = confusion.sum(1)
    report = DefectHeadReport(
        head,
        {c: sum(it.defect == c for it in train_items) for c in classes},
        {c: sum(it.defect == c for it in held_items) for c in classes},
        float(np.trace(confusion) / confusion.sum()) if held_items else None,
        {c: float(confusion[i, i] / rows[i]) for i, c in enumerate(classes) if rows[i]},
        confusion.tolist(),
        [it.path for it in train_items],
        [it.path for it in held_items],
    )
    if save:
        extra = {
            **report.to_json(),
            "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "manifest_sha256": m.content_hash(),
            "share": share,
            "seed": seed,
            "train_paths": report.train_paths,
        }
        save_defect_head(head, inspector.info.model_dir, inspector.info.weights_sha256, extra)
    return report
