import json
from pathlib import Path

import pytest

from inspector.errors import ManifestError
from inspector.manifest import build_manifest, load_manifest, parse_manifest, require_training_items, verify_manifest

SHA = "0" * 64


def doc(**item) -> dict:
    base = {"path": "a/b.png", "label": "normal", "split": "train", "sha256": SHA, "defect": None}
    base.update(item)
    return {"schema_version": 1, "name": "t", "items": [base]}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"path": "/etc/passwd"}, "absolute path"),
        ({"path": "C:/x.png"}, "absolute path"),
        ({"path": "good/../../x.png"}, "'..'"),
        ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
        ({"label": "ok"}, "label 'ok'"),
        ({"split": "holdout"}, "split 'holdout'"),
        ({"sha256": "abc"}, "64 lowercase hex"),
        ({"defect": "chip"}, "normal item cannot have defect"),
    ],
)
def test_item_problems_are_named(bad: dict, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(doc(**bad))


def test_top_level_problems(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="unknown field"):
        parse_manifest({**doc(), "extra": 1})
    with pytest.raises(ManifestError, match="schema_version"):
        parse_manifest({**doc(), "schema_version": 9})
    with pytest.raises(ManifestError, match="non-empty list"):
        parse_manifest({**doc(), "items": []})
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "nope.json")


def test_no_training_images() -> None:
    m = parse_manifest(doc(split="test"))
    with pytest.raises(ManifestError, match="no normal images in the train split"):
        require_training_items(m)


def test_folders_layout_round_trip_and_verify(synthetic_pills, tmp_path: Path) -> None:
    root, _, _ = synthetic_pills
    m = build_manifest(root / "pill", "folders", normal="good", train_count=5)
    assert len(m.split("train")) == 5 and m.defects == ["chip", "dirt"]
    path = tmp_path / "m.json"
    m.save(path)
    again = load_manifest(path)
    assert again.content_hash() == m.content_hash()
    assert verify_manifest(again, root / "pill") == []


def test_verify_lists_missing_and_changed_files(synthetic_pills, tmp_path: Path) -> None:
    root, manifest, _ = synthetic_pills
    copy = tmp_path / "data"
    for it in manifest.items[:3]:
        dst = copy / it.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes((root / it.path).read_bytes())
    (copy / manifest.items[1].path).write_bytes(b"changed")
    problems = verify_manifest(manifest, copy)
    assert f"checksum mismatch: {manifest.items[1].path}" in problems
    assert f"missing: {manifest.items[3].path}" in problems
    assert not any(manifest.items[0].path in p for p in problems)


def test_committed_manifests_are_valid() -> None:
    here = Path(__file__).resolve().parents[2] / "data_manifests"
    for name, n_train, n_test in (("pillqc", 100, 230), ("crack", 400, 400)):
        m = load_manifest(here / f"{name}.json")
        assert len(m.split("train")) == n_train and len(m.split("test")) == n_test
        assert json.loads((here / f"{name}.json").read_text())["name"] == name
