"""Training data from the feedback queue: confirmed good frames as a manifest, defect examples as images."""

from __future__ import annotations

from pathlib import Path

from inspector.audit import AuditStore
from inspector.audit.feedback import candidates
from inspector.defect_types import TypeExample
from inspector.errors import ConfigError
from inspector.images import read_image, sha256_file
from inspector.manifest import Manifest, ManifestItem, load_manifest
from inspector.training import load_items


def _frame_path(store: AuditStore, inspection_id: int) -> Path:
    ins = store.inspection(inspection_id, images=False)
    if not ins.frame_path.is_file():
        raise ConfigError(f"frame of inspection {inspection_id} is missing: {ins.frame_path}")
    return ins.frame_path


def confirmed_good_manifest(store: AuditStore) -> tuple[Manifest, Path]:
    """A manifest of frames confirmed good (paths relative to the frames folder) and that folder."""
    root = store.frames_dir.resolve()
    items, seen = [], set()
    for c in candidates(store, status="confirmed"):
        if c.label != "good":
            continue
        p = _frame_path(store, c.decision.inspection_id).resolve()
        rel = p.relative_to(root).as_posix()
        if rel in seen:  # one frame inspected twice is one image for the bank
            continue
        seen.add(rel)
        items.append(ManifestItem(rel, "normal", "train", sha256_file(p)))
    return Manifest("confirmed-good", items, "frames the engineer confirmed good in the feedback queue"), root


def confirmed_defect_examples(store: AuditStore) -> list[TypeExample]:
    """Every frame the engineer confirmed as a defect example, with its type."""
    out = []
    for c in candidates(store, status="confirmed"):
        if c.label == "defect" and c.defect_type:
            p = _frame_path(store, c.decision.inspection_id)
            out.append(TypeExample(read_image(p), c.defect_type, f"inspection {c.decision.inspection_id}"))
    return out


def manifest_examples(manifest: str | Path | Manifest, root: str | Path, split: str | None = None) -> list[TypeExample]:
    """Labelled defect images of a manifest (optionally one split) as type examples."""
    m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    items = [it for it in m.items if it.is_anomalous and it.defect and (split is None or it.split == split)]
    return [TypeExample(img, str(it.defect), it.path) for it, img in zip(items, load_items(items, root), strict=True)]
