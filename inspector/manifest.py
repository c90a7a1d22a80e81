"""Dataset manifests: which files, with which labels, splits and checksums; never the images.

A manifest is plain JSON so it can be reviewed in a pull request. Paths are relative to a data
root that is a setting, which keeps manifests portable between stations and CI.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from inspector.errors import ManifestError
from inspector.images import IMAGE_SUFFIXES, sha256_file

SCHEMA_VERSION = 1
LABELS = ("normal", "anomalous")
SPLITS = ("train", "val", "test")
ITEM_FIELDS = {"path", "label", "defect", "split", "sha256", "mask"}
TOP_FIELDS = {"schema_version", "name", "description", "items"}
LAYOUTS = ("pillqc", "folders", "mvtec")


@dataclass(frozen=True)
class ManifestItem:
    path: str
    label: str
    split: str
    sha256: str
    defect: str | None = None
    mask: str | None = None

    @property
    def is_anomalous(self) -> bool:
        return self.label == "anomalous"


@dataclass
class Manifest:
    name: str
    items: list[ManifestItem]
    description: str = ""
    schema_version: int = SCHEMA_VERSION
    source_file: str | None = field(default=None, compare=False)

    def split(self, name: str) -> list[ManifestItem]:
        return [it for it in self.items if it.split == name]

    @property
    def defects(self) -> list[str]:
        return sorted({it.defect for it in self.items if it.defect})

    def to_json(self) -> dict[str, object]:
        items = []
        for it in self.items:
            d = asdict(it)
            if d["mask"] is None:
                del d["mask"]
            items.append(d)
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "description": self.description,
            "items": items,
        }

    def content_hash(self) -> str:
        """sha256 of the canonical JSON: what a model records to say which data trained it."""
        canon = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")


def _check_relative(path: object, where: str) -> str:
    if not isinstance(path, str) or not path:
        raise ManifestError(f"{where}: path must be a non-empty string")
    p = PurePosixPath(path.replace("\\", "/"))
    if p.is_absolute() or path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise ManifestError(f"{where}: absolute path '{path}' refused; paths are relative to the data root")
    if ".." in p.parts:
        raise ManifestError(f"{where}: path '{path}' refused: '..' may not leave the data root")
    return str(p)


def _parse_item(raw: object, i: int) -> ManifestItem:
    where = f"item {i}"
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: must be an object")
    unknown = set(raw) - ITEM_FIELDS
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {sorted(unknown)}")
    for key in ("path", "label", "split", "sha256"):
        if key not in raw:
            raise ManifestError(f"{where}: missing field '{key}'")
    path = _check_relative(raw["path"], where)
    where = f"item {i} ({path})"
    if raw["label"] not in LABELS:
        raise ManifestError(f"{where}: label '{raw['label']}' is not one of {LABELS}")
    if raw["split"] not in SPLITS:
        raise ManifestError(f"{where}: split '{raw['split']}' is not one of {SPLITS}")
    sha = raw["sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"{where}: sha256 must be 64 lowercase hex digits")
    defect = raw.get("defect")
    if defect is not None and (not isinstance(defect, str) or not defect):
        raise ManifestError(f"{where}: defect must be a name or null")
    if raw["label"] == "normal" and defect:
        raise ManifestError(f"{where}: a normal item cannot have defect '{defect}'")
    mask = raw.get("mask")
    if mask is not None:
        mask = _check_relative(mask, where + " mask")
    return ManifestItem(path, raw["label"], raw["split"], sha, defect, mask)


def parse_manifest(doc: object, source: str = "manifest") -> Manifest:
    """Validates a manifest document; every problem names the item and the field."""
    if not isinstance(doc, dict):
        raise ManifestError(f"{source}: a manifest must be a JSON object")
    unknown = set(doc) - TOP_FIELDS
    if unknown:
        raise ManifestError(f"{source}: unknown field(s) {sorted(unknown)}")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(
            f"{source}: schema_version {doc.get('schema_version')!r} is not supported (expected {SCHEMA_VERSION})"
        )
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{source}: missing 'name'")
    raw_items = doc.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise ManifestError(f"{source}: 'items' must be a non-empty list")
    try:
        items = [_parse_item(raw, i) for i, raw in enumerate(raw_items)]
    except ManifestError as exc:
        raise ManifestError(f"{source}: {exc}") from None
    seen: set[str] = set()
    for it in items:
        if it.path in seen:
            raise ManifestError(f"{source}: path '{it.path}' is listed twice")
        seen.add(it.path)
    desc = doc.get("description", "")
    return Manifest(name, items, desc if isinstance(desc, str) else "", SCHEMA_VERSION, source)


def load_manifest(path: str | Path) -> Manifest:
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"manifest not found: {p}")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{p}: not valid JSON ({exc})") from None
    return parse_manifest(doc, str(p))


def require_training_items(manifest: Manifest) -> list[ManifestItem]:
    """The good training images; a manifest without any cannot train PatchCore."""
    train = [it for it in manifest.split("train") if it.label == "normal"]
    if not train:
        raise ManifestError(f"{manifest.source_file or manifest.name}: no normal images in the train split")
    return train


def resolve(root: str | Path, rel: str) -> Path:
    return Path(root) / rel


def verify_manifest(
    manifest: Manifest, root: str | Path, progress: Callable[[int, int], None] | None = None
) -> list[str]:
    """Lists every problem (missing file, checksum mismatch, missing mask); empty when all is well."""
    root = Path(root)
    if not root.is_dir():
        return [f"data root not found: {root}"]
    problems = []
    for i, it in enumerate(manifest.items):
        p = resolve(root, it.path)
        if not p.is_file():
            problems.append(f"missing: {it.path}")
        elif sha256_file(p) != it.sha256:
            problems.append(f"checksum mismatch: {it.path}")
        if it.mask and not resolve(root, it.mask).is_file():
            problems.append(f"missing mask: {it.mask}")
        if progress:
            progress(i + 1, len(manifest.items))
    return problems


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_mask(folder: Path, stem: str) -> Path | None:
    """The mask of image ``stem`` in ``folder``: ``<stem>_mask.png`` (MVTec AD) first, then
    ``<stem>_mask`` or ``<stem>`` with any image suffix, in any case (other public sets and
    converters name them so; a mask that goes unfound silently costs the set its pixel figures)."""
    if not folder.is_dir():
        return None
    exact = folder / f"{stem}_mask.png"
    if exact.is_file():
        return exact
    by_name = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    for base in (f"{stem}_mask", stem):
        for suffix in IMAGE_SUFFIXES:
            hit = by_name.get(f"{base}{suffix}".lower())
            if hit is not None:
                return hit
    return None


def mask_coverage(manifest: Manifest) -> dict[str, tuple[int, int]]:
    """Per defect type of the test split: (defective images with a mask, all of them)."""
    out: dict[str, tuple[int, int]] = {}
    for it in manifest.split("test"):
        if it.is_anomalous:
            have, total = out.get(it.defect or "defect", (0, 0))
            out[it.defect or "defect"] = (have + (it.mask is not None), total + 1)
    return out


def _item(root: Path, p: Path, label: str, split: str, defect: str | None, mask: Path | None) -> ManifestItem:
    rel = p.relative_to(root).as_posix()
    return ManifestItem(rel, label, split, sha256_file(p), defect, mask.relative_to(root).as_posix() if mask else None)


def build_manifest(
    root: str | Path,
    layout: str,
    *,
    name: str | None = None,
    normal: str | None = None,
    train_count: int | None = None,
    defect_names: dict[str, str] | None = None,
) -> Manifest:
    """Writes a manifest for a folder of images.

    ``folders`` (and ``pillqc``, its special case with ``normal`` as the good class): one
    sub-folder per class; the first ``train_count`` good images by name train, the rest test.
    ``mvtec``: ``train/good``, ``test/<defect>`` and ``ground_truth/<defect>/<stem>_mask.png``
    (or another name ``find_mask`` knows);
    there ``train_count`` keeps the first N of ``train/good`` and leaves the rest out.
    ``train_count=0`` makes an evaluation-only manifest: every listed image is in the test split,
    for a model trained elsewhere (``inspector train`` refuses it with a clear message).
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"data folder not found: {root}")
    if layout not in LAYOUTS:
        raise ManifestError(f"unknown layout '{layout}'; choose one of {LAYOUTS}")
    if train_count is not None and train_count < 0:
        raise ManifestError(f"--train-count must be 0 or more, got {train_count}")
    items: list[ManifestItem] = []
    if layout == "mvtec":
        train_good = _images_in(root / "train" / "good") if (root / "train" / "good").is_dir() else []
        if train_count is not None and train_count > len(train_good):
            raise ManifestError(f"--train-count {train_count} exceeds the {len(train_good)} images in train/good")
        for p in train_good[:train_count]:
            items.append(_item(root, p, "normal", "train", None, None))
        test = root / "test"
        for cls in sorted(d for d in test.iterdir() if d.is_dir()) if test.is_dir() else []:
            for p in _images_in(cls):
                if cls.name == "good":
                    items.append(_item(root, p, "normal", "test", None, None))
                else:
                    m = find_mask(root / "ground_truth" / cls.name, p.stem)
                    items.append(_item(root, p, "anomalous", "test", cls.name, m))
    else:
        normal = normal or ("normal" if layout == "pillqc" else None)
        classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        names = [c.name for c in classes]
        if normal is None:
            raise ManifestError("layout 'folders' needs --normal NAME (the sub-folder of good images)")
        if normal not in names:
            raise ManifestError(f"good-image folder '{normal}' not found in {root} (found: {names})")
        for cls in classes:
            files = _images_in(cls)
            if cls.name == normal:
                n_train = len(files) if train_count is None else train_count
                if n_train > len(files):
                    raise ManifestError(f"--train-count {n_train} exceeds the {len(files)} good images")
                for j, p in enumerate(files):
                    items.append(_item(root, p, "normal", "train" if j < n_train else "test", None, None))
            else:
                defect = (defect_names or {}).get(cls.name, cls.name)
                items.extend(_item(root, p, "anomalous", "test", defect, None) for p in files)
    if not items:
        raise ManifestError(f"no images found in {root} for layout '{layout}'")
    return Manifest(name or root.name, items)


def iter_paths(items: Iterable[ManifestItem], root: str | Path) -> list[Path]:
    return [resolve(root, it.path) for it in items]
