"""Golden set, signed promotion, refusal on regression, incremental update through the CLI, rollback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from inspector.audit import AuditStore, AuthenticationError
from inspector.audit.feedback import events
from inspector.cli import main
from inspector.errors import ConfigError
from inspector.golden import PromotionRefused, current, freeze, promote
from inspector.manifest import Manifest


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("INSPECTOR_ARGON2_FAST", "1")
    s = AuditStore.open(tmp_path / "audit.db")
    s.add_user(None, "root", "Root", "admin", "root-pass")
    admin = s.authenticate("root", "root-pass")
    s.add_user(admin, "eng", "Eve Eng", "engineer", "eng-pass")
    yield s
    s.close()


def _golden(manifest: Manifest) -> Manifest:
    return Manifest("golden", manifest.split("test"))


def _degraded(src: Path, out: Path) -> Path:
    """A candidate that misses every defect: its decision threshold is far above any score."""
    shutil.copytree(src, out)
    doc = json.loads((out / "model.json").read_text())
    doc["metadata"]["thresholds"].update(decision=1e9, review=1e9)
    (out / "model.json").write_text(json.dumps(doc))
    return out


def test_golden_set_is_frozen_with_checks(store: AuditStore, synthetic_pills) -> None:
    root, manifest, _ = synthetic_pills
    eng = store.authenticate("eng", "eng-pass")
    with pytest.raises(ConfigError, match="both good and defective"):
        freeze(store, eng, "pill", Manifest("g", manifest.split("train")), root)
    g = freeze(store, eng, "pill", _golden(manifest), root)
    with pytest.raises(ConfigError, match="needs a reason"):
        freeze(store, eng, "pill", _golden(manifest), root)
    assert current(store, "pill").event_id == g.event_id
    assert [it.sha256 for it in current(store, "pill").manifest.items] == [it.sha256 for it in _golden(manifest).items]
    assert current(store, "other") is None


def test_promotion_needs_the_gate_and_the_signature(store, synthetic_pills, trained_tiny, tmp_path) -> None:
    root, manifest, _ = synthetic_pills
    eng = store.authenticate("eng", "eng-pass")
    with pytest.raises(PromotionRefused, match="no golden set"):
        promote(store, "eng", "eng-pass", trained_tiny, "pill", root)
    freeze(store, eng, "pill", _golden(manifest), root)
    with pytest.raises(AuthenticationError):
        promote(store, "eng", "wrong", trained_tiny, "pill", root)
    assert store.active_model() is None
    v1 = promote(store, "eng", "eng-pass", trained_tiny, "pill", root)
    assert store.active_model().id == v1
    signed = events(store, "promotion_signed")[-1][2]
    assert signed["meaning"] == "reviewed and approved" and signed["signer_name"] == "Eve Eng"
    bad = _degraded(trained_tiny, tmp_path / "bad")
    with pytest.raises(PromotionRefused) as refused:
        promote(store, "eng", "eng-pass", bad, "pill", root)
    line = str(refused.value)
    assert "\n" not in line and "defect_detection 0.000" in line and f"version {v1}" in line
    assert store.active_model().id == v1  # nothing activated
    assert events(store, "promotion_refused")[-1][2]["reasons"]
    assert store.verify().ok


def test_update_then_promote_and_roll_back_through_the_cli(
    store, synthetic_pills, trained_tiny, tmp_path, monkeypatch
) -> None:
    from inspector.synthetic import write_dataset

    root, manifest, golden_path = synthetic_pills
    more_root = tmp_path / "more"
    more = write_dataset(more_root, "pill", n_train=4, n_test_good=0, n_test_defect=0, seed=7, size=96)
    more.save(tmp_path / "more.json")
    monkeypatch.setenv("INSPECTOR_PASSWORD", "eng-pass")
    db = str(store.db_path)
    run = CliRunner().invoke
    v2 = tmp_path / "v2"
    args = ["train", "--update", str(trained_tiny), "--add", str(tmp_path / "more.json"), "--root", str(more_root)]
    same = run(main, [*args, "--out", str(trained_tiny)])
    assert same.exit_code == 1 and "new version" in same.output
    out = run(main, [*args, "--out", str(v2)])
    assert out.exit_code == 0, out.output
    doc = json.loads((v2 / "model.json").read_text())
    assert doc["metadata"]["lineage"][-1]["added"] == [it.sha256 for it in more.items]
    assert doc["memory_bank_sha256"] != json.loads((trained_tiny / "model.json").read_text())["memory_bank_sha256"]
    _golden(manifest).save(tmp_path / "golden.json")
    assert run(main, ["golden", "set", "pill", "--manifest", str(tmp_path / "golden.json"), "--root", str(root),
                      "--as", "eng", "--db", db]).exit_code == 0  # fmt: skip
    promote_args = ["models", "promote", "--product", "pill", "--root", str(root), "--as", "eng", "--db", db]
    assert run(main, [*promote_args, "--model", str(trained_tiny)]).exit_code == 0
    # a bigger bank at the same thresholds flags fewer of the 8 tiny-model defects: one image is 0.125
    p2 = run(main, [*promote_args, "--model", str(v2), "--tolerance", "0.2"])
    assert p2.exit_code == 0, p2.output
    bad = _degraded(trained_tiny, tmp_path / "bad")
    refused = run(main, [*promote_args, "--model", str(bad)])
    assert refused.exit_code == 1 and refused.output.count("\n") == 1 and "promotion refused" in refused.output
    back = run(main, ["models", "rollback", "--db", db, "--as", "eng", "--reason", "check"])
    assert back.exit_code == 0 and Path(store.active_model().model_dir) == trained_tiny.resolve()
    assert run(main, ["audit", "verify", "--db", db]).exit_code == 0
