"""A frozen golden set per product, and promotion gated by it and by an engineer's e-signature.

The golden set is a list of labelled images (path, sha256, label, defect type) frozen into the
audit chain, so nobody can quietly swap an image that a candidate happens to fail. Every
candidate version is evaluated on it next to the active version; promotion is refused, with
one line naming the metric, when any figure falls by more than the tolerance. Otherwise the
engineer signs (password entered again at the moment of signing, and the signature's meaning
recorded), and the signature and the activation are committed together. Rollback stays the
one-step ``inspector models rollback``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.audit import AuditStore, User
from inspector.audit.feedback import events, record_event
from inspector.audit.roles import Action
from inspector.errors import ConfigError, InspectorError
from inspector.manifest import Manifest, ManifestItem

GOLDEN_FROZEN, GOLDEN_EVALUATED = "golden_set_frozen", "golden_evaluated"
PROMOTION_SIGNED, PROMOTION_REFUSED = "promotion_signed", "promotion_refused"
DEFAULT_TOLERANCE = 0.01
DEFAULT_MEANING = "reviewed and approved"
# Higher is better for every figure, so one rule compares them all.
METRICS = ("image_auroc", "defect_detection", "good_pass", "type_accuracy")


class PromotionRefused(InspectorError):
    """The candidate regresses on the golden set (or has no golden set to be judged on)."""


@dataclass(frozen=True)
class GoldenSet:
    event_id: int
    product: str
    manifest: Manifest


def model_dir_sha256(model_dir: str | Path) -> str:
    """One hash over every file of a version directory (names and bytes): bank, head and gate alike."""
    h = hashlib.sha256()
    d = Path(model_dir)
    for p in sorted(q for q in d.rglob("*") if q.is_file() and not q.name.endswith(".tmp")):
        h.update(p.relative_to(d).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def freeze(
    store: AuditStore, actor: User, product: str, manifest: Manifest, root: str | Path, replace_reason: str = ""
) -> GoldenSet:
    """Freezes ``manifest``'s images (checked against their sha256) as ``product``'s golden set."""
    from inspector.training import check_items

    if not manifest.items:
        raise ConfigError("a golden set needs labelled images")
    if {it.label for it in manifest.items} != {"normal", "anomalous"}:
        raise ConfigError("a golden set needs both good and defective images")
    if current(store, product) is not None and not replace_reason.strip():
        raise ConfigError(f"product {product!r} has a frozen golden set; replacing it needs a reason")
    check_items(manifest.items, root)
    items = [{"path": it.path, "sha256": it.sha256, "label": it.label, "defect": it.defect} for it in manifest.items]
    eid = record_event(
        store,
        actor,
        Action.REGISTER_MODEL,
        GOLDEN_FROZEN,
        product=product,
        manifest_sha256=manifest.content_hash(),
        items=items,
        replaces_reason=replace_reason.strip() or None,
    )
    return GoldenSet(eid, product, manifest)


def current(store: AuditStore, product: str) -> GoldenSet | None:
    """Read-only: the newest golden set frozen for ``product``."""
    found = [(eid, d) for eid, _, d in events(store, GOLDEN_FROZEN) if d.get("product") == product]
    if not found:
        return None
    eid, d = found[-1]
    items = [ManifestItem(i["path"], i["label"], "test", i["sha256"], i.get("defect")) for i in d["items"]]
    return GoldenSet(eid, product, Manifest(f"golden:{product}", items))


def evaluate_dir(model_dir: str | Path, golden: Manifest, root: str | Path, device: str = "cpu") -> dict[str, Any]:
    """The figures a version gets on the golden set, at its own trained thresholds."""
    from inspector.defect_types import classify
    from inspector.metrics import image_auroc
    from inspector.pipeline import Inspector
    from inspector.training import load_items

    inspector = Inspector.load(model_dir, device)
    images = load_items(golden.items, root)
    results = []
    for i in range(0, len(images), 16):
        results += inspector.inspect_images(images[i : i + 16])
    scores = np.array([r.score for r in results])
    labels = np.array([it.is_anomalous for it in golden.items], dtype=int)
    verdicts = [r.verdict for r in results]
    typed = [i for i, it in enumerate(golden.items) if it.is_anomalous and it.defect]
    type_acc = None
    if typed:
        names = [d.name for d in classify(inspector, [images[i] for i in typed])]
        type_acc = float(np.mean([n == golden.items[i].defect for n, i in zip(names, typed, strict=True)]))
    return {
        "image_auroc": image_auroc(scores, labels),
        "defect_detection": float(np.mean([v != "OK" for v, y in zip(verdicts, labels, strict=True) if y])),
        "good_pass": float(np.mean([v != "DEFECT" for v, y in zip(verdicts, labels, strict=True) if not y])),
        "type_accuracy": type_acc,
        "n_images": len(golden.items),
    }


def regressions(candidate: dict[str, Any], reference: dict[str, Any], tolerance: float) -> list[str]:
    """One phrase per figure where the candidate falls more than ``tolerance`` below the reference."""
    out = []
    for k in METRICS:
        ref, cand = reference.get(k), candidate.get(k)
        if ref is None:
            continue
        if cand is None or cand < ref - tolerance:
            shown = "none" if cand is None else f"{cand:.3f}"
            out.append(f"{k} {shown} < {ref:.3f} - {tolerance:g}")
    return out


def find_or_register(store: AuditStore, actor: User, model_dir: Path) -> int:
    """The version id of ``model_dir``, registering it if new, the way a station finds it: the
    same memory bank and every file of the directory (``model.json`` included) unchanged."""
    from inspector.audit.model_files import differences, hash_model_dir
    from inspector.pipeline import Inspector
    from models.patchcore.serialization import read_model_json

    info = Inspector.load(model_dir, "cpu")
    for m in reversed(store.models()):
        if m.weights_hash == info.info.weights_sha256 and m.files and not differences(model_dir, m.files):
            return m.id
    return store.register_model(
        actor,
        weights_hash=info.info.weights_sha256,
        backbone=info.info.backbone,
        manifest_hash=info.info.manifest_sha256 or "",
        thresholds=info.thresholds.to_json(),
        metrics={**info.info.metrics, "model_dir_sha256": model_dir_sha256(model_dir)},
        model_dir=str(model_dir.resolve()),
        files=hash_model_dir(model_dir),
        backbone_sha256=str(read_model_json(model_dir).get("backbone_sha256", "")),
    )


def promote(
    store: AuditStore,
    signer_id: str,
    password: str,
    model_dir: str | Path,
    product: str,
    root: str | Path,
    *,
    meaning: str = DEFAULT_MEANING,
    tolerance: float = DEFAULT_TOLERANCE,
    device: str = "cpu",
) -> int:
    """Activates ``model_dir`` after the golden-set gate and the signer's password; returns its id.

    Raises:
        PromotionRefused: no golden set, or a figure regresses beyond ``tolerance`` (logged).
        AuthenticationError: wrong password (logged as login_failed by the store).
    """
    if not meaning.strip():
        raise ConfigError("a signature needs its meaning, e.g. 'reviewed and approved'")
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance must be in [0, 1), got {tolerance}")
    user = store.authenticate(signer_id, password)  # the e-signature's password re-entry
    golden = current(store, product)
    if golden is None:
        raise PromotionRefused(f"product {product!r} has no golden set: freeze one with inspector golden set")
    mid = find_or_register(store, user, Path(model_dir))
    cand = evaluate_dir(model_dir, golden.manifest, root, device)
    record_event(
        store,
        user,
        Action.REGISTER_MODEL,
        GOLDEN_EVALUATED,
        model_id=mid,
        golden_event_id=golden.event_id,
        product=product,
        metrics=cand,
    )
    active = store.active_model()
    ref: dict[str, Any] = {}
    if active is not None and active.id != mid:
        ref = evaluate_dir(active.model_dir, golden.manifest, root, device)
        record_event(
            store,
            user,
            Action.REGISTER_MODEL,
            GOLDEN_EVALUATED,
            model_id=active.id,
            golden_event_id=golden.event_id,
            product=product,
            metrics=ref,
        )
    worse = regressions(cand, ref, tolerance)
    if worse:
        line = f"promotion refused: golden set '{product}' regresses against version {active.id if active else '-'}: "
        line += "; ".join(worse)
        record_event(
            store,
            user,
            Action.ACTIVATE_MODEL,
            PROMOTION_REFUSED,
            model_id=mid,
            product=product,
            golden_event_id=golden.event_id,
            reasons=worse,
            tolerance=tolerance,
        )
        raise PromotionRefused(line)
    with store.transaction():  # the signature and the activation stand or fall together
        record_event(
            store,
            user,
            Action.ACTIVATE_MODEL,
            PROMOTION_SIGNED,
            model_id=mid,
            signer=user.id,
            signer_name=user.name,
            meaning=meaning.strip(),
            product=product,
            golden_event_id=golden.event_id,
            tolerance=tolerance,
            candidate=cand,
            reference=ref or None,
            previous_model_id=active.id if active else None,
        )
        store.activate_model(user, mid, f"promoted with e-signature: {meaning.strip()}")
    return mid
