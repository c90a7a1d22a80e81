"""Defect types learned from a handful of confirmed examples, with "unknown type" for the rest.

``train_types`` writes a new model version: the same memory bank, plus the defect head
(``models/explain/defect_classifier.py``) over the types that have enough examples, and the
open-set gate (``models/explain/type_gate.py``) over all of them. Frames are typed by the head
where there is one (two or more ready types), else by the nearest ready prototype, and the gate
turns a pick that lies too far from its type's examples into "unknown type".
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from inspector.errors import ConfigError, ModelError
from inspector.explain import (
    HEAD_JSON,
    HEAD_TENSORS,
    check_sidecar_tensors,
    load_defect_head,
    read_sidecar_json,
    save_defect_head,
)
from inspector.images import sha256_file
from inspector.pipeline import Inspector
from inspector.training import batches
from models.explain import DEFECT_CENTRED, extract_descriptor, fit_defect_head
from models.explain.type_gate import DEFAULT_QUANTILE, UNKNOWN, TypeDecision, TypeGate
from models.patchcore.loo_state import STATE_FILE
from models.patchcore.serialization import CONFIG_FILE, TENSOR_FILE

GATE_TENSORS = "type_gate.safetensors"
GATE_JSON = "type_gate.json"
GATE_FORMAT = "inspector-type-gate"


@dataclass
class TypeExample:
    """One labelled defect frame: RGB uint8, its type, and where it came from (path or inspection)."""

    image: np.ndarray
    defect_type: str
    source: str


def new_version_dir(src: Path, out: Path) -> None:
    """Copies a model's bank and settings into a fresh directory (never over an existing model)."""
    if out.resolve() == src.resolve():
        raise ConfigError(f"{out} is the model itself; a new version always goes to a new directory")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; a new version never overwrites a model")
    out.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, TENSOR_FILE, STATE_FILE):
        if name != STATE_FILE or (src / name).is_file():  # kept for recalibrating later updates
            shutil.copy2(src / name, out / name)


def _features(inspector: Inspector, images: Sequence[np.ndarray], descriptor: str) -> torch.Tensor:
    """The descriptor the station computes from its one pass (``analysis.py``), here without autograd."""
    # The model's own input rule: a non-square model's station pass is not a square one.
    return extract_descriptor(inspector.model, batches(list(images), inspector.model.config, 16), None, descriptor)


def train_types(
    model_dir: str | Path,
    out_dir: str | Path,
    examples: Sequence[TypeExample],
    *,
    quantile: float | None = None,
    min_examples: int = 5,
    descriptor: str = DEFECT_CENTRED,
) -> dict[str, Any]:
    """Writes ``out_dir``: ``model_dir``'s bank with a head and gate fitted on ``examples``.

    ``descriptor`` ("pooled" or "defect-centred", ``models.explain.DESCRIPTORS``) is what both
    the head and the gate read; the defect-centred one weights the backbone stages by the
    anomaly map of this model's bank. ``quantile`` defaults to the descriptor's
    (``type_gate.DEFAULT_QUANTILE``).
    """
    src, out = Path(model_dir), Path(out_dir)
    if not examples:
        raise ConfigError("no defect examples to learn types from")
    inspector = Inspector.load(src, "cpu")
    try:
        feats = _features(inspector, [e.image for e in examples], descriptor)
        labels = [e.defect_type for e in examples]
        q = DEFAULT_QUANTILE.get(descriptor, 0.95) if quantile is None else quantile
        gate = TypeGate.fit(feats, labels, quantile=q, min_examples=min_examples, descriptor=descriptor)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    new_version_dir(src, out)
    bank_sha = inspector.info.weights_sha256
    ready = gate.ready
    layers = list(inspector.model.config.layers)
    if len(ready) >= 2:
        rows = [i for i, lab in enumerate(labels) if lab in ready]
        index = {c: i for i, c in enumerate(ready)}
        y = torch.tensor([index[labels[i]] for i in rows])
        head = fit_defect_head(feats[rows], y, ready, layers, descriptor=descriptor)
        extra = {
            "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "n_train": {c: labels.count(c) for c in ready},
            "train_paths": [examples[i].source for i in rows],
            "from_feedback": True,
        }
        save_defect_head(head, out, bank_sha, extra)
    save_type_gate(gate, out, bank_sha, [e.source for e in examples])
    return {
        "classes": gate.classes,
        "counts": dict(Counter(labels)),
        "ready": ready,
        "radius": gate.radius,
        "descriptor": descriptor,
    }


def save_type_gate(gate: TypeGate, model_dir: Path, bank_sha256: str, sources: Sequence[str]) -> None:
    tmp = model_dir / (GATE_TENSORS + ".tmp")
    save_file(gate.tensors(), str(tmp))
    tmp.replace(model_dir / GATE_TENSORS)
    doc = {
        "format": GATE_FORMAT,
        "format_version": 1,
        **gate.to_json(),
        "model_memory_bank_sha256": bank_sha256,
        "tensors_sha256": sha256_file(model_dir / GATE_TENSORS),
        "sources": list(sources),
    }
    tmp_json = model_dir / (GATE_JSON + ".tmp")
    tmp_json.write_text(json.dumps(doc, indent=2) + "\n")
    tmp_json.replace(model_dir / GATE_JSON)


def load_type_gate(model_dir: str | Path) -> TypeGate | None:
    """The model's type gate, or None where it has none. Never unpickles; checks hashes."""
    d = Path(model_dir)
    jpath, tpath = d / GATE_JSON, d / GATE_TENSORS
    doc = read_sidecar_json(jpath, GATE_FORMAT, "an inspector type gate")
    if doc is None:
        return None
    check_sidecar_tensors(tpath, doc)
    try:
        return TypeGate.from_saved(doc, load_file(str(tpath)))
    except (SafetensorError, KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{tpath} does not hold a usable type gate: {exc}") from None


def copy_type_gate(src: Path, out: Path) -> None:
    """Carries a gate into an updated version. A pooled gate reads backbone features only; a
    defect-centred one also reads the bank's anomaly map, which an update of good images moves
    little (the weights are each patch's score above the image's median)."""
    gate = load_type_gate(src)
    if gate is None:
        return
    doc = json.loads((src / GATE_JSON).read_text())
    bank = json.loads((out / CONFIG_FILE).read_text())["memory_bank_sha256"]
    save_type_gate(gate, out, bank, doc.get("sources", []))


def classify(inspector: Inspector, images: Sequence[np.ndarray]) -> list[TypeDecision]:
    """Defect type per frame, or ``UNKNOWN``; without a gate every frame is unknown."""
    gate = load_type_gate(inspector.info.model_dir)
    if gate is None:
        return [TypeDecision(UNKNOWN, float("nan"), "") for _ in images]
    feats = _features(inspector, images, gate.descriptor)
    head = load_defect_head(inspector) if (Path(inspector.info.model_dir) / HEAD_JSON).exists() else None
    if head is not None and head.descriptor != gate.descriptor:
        raise ModelError(
            f"{inspector.info.model_dir}: the defect head reads the {head.descriptor} descriptor and the type gate "
            f"the {gate.descriptor} one; retrain them together with inspector feedback train-types"
        )
    logits = None
    if head is not None and (Path(inspector.info.model_dir) / HEAD_TENSORS).exists():
        with torch.no_grad():
            logits = head(feats)
    return gate.decide(feats, logits, head.classes if head is not None else ())
