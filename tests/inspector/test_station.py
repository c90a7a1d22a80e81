"""The station: frames -> model -> audit record -> decision, headless and through the CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from inspector.audit import AuditStore
from inspector.cli import main
from inspector.errors import SourceError
from inspector.pipeline import Inspector
from inspector.sources import FolderSource, open_source
from inspector.station import ReasonRequired, Station
from tests.inspector.conftest import copy_test_frames


@pytest.fixture()
def frames(tmp_path: Path, synthetic_pills) -> Path:
    d = copy_test_frames(synthetic_pills, tmp_path / "frames", last=2)
    (d / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return d


def test_station_records_and_enforces_reasons(store, trained_tiny, frames: Path) -> None:
    inspector = Inspector.load(trained_tiny, "cpu")
    inspector.thresholds = inspector.thresholds.with_decision(1e-9)  # every frame DEFECT: accepting overrules
    st = Station(store, inspector, "line-1")
    st.register_model(store.authenticate("eng", "eng-pass"))
    out = list(st.run(FolderSource(frames), batch_size=2))
    skipped = [o for o in out if isinstance(o, str)]
    items = [o for o in out if not isinstance(o, str)]
    assert len(items) == 5 and len(skipped) == 1 and "zz_corrupt.png" in skipped[0]
    assert all(it.inspection_id is not None for it in items)
    op = store.authenticate("ana", "ana-pass")
    item = items[0]
    assert all(it.result.verdict == "DEFECT" for it in items)
    with pytest.raises(ReasonRequired):
        st.decide(op, item, "accept")
    assert store.decisions() == []  # refused before it reached the store
    first = st.decide(op, item, "accept", reason_code="other", reason_text="seen under the lamp")
    second = st.decide(op, item, "reject", reason_code="other", reason_text="corrected")
    views = store.decisions()
    assert {v.id for v in views} == {first, second}
    assert [v.decision for v in store.decisions(current_only=True)] == ["reject"]
    assert st.counts.inspected == 5 and st.counts.unreadable == 1
    assert store.verify().ok


def test_sources_refuse_what_they_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="holds no images"):
        FolderSource(tmp_path)
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="cannot be read"):
        open_source(bad)
    with pytest.raises(SourceError, match="not found"):
        open_source(tmp_path / "missing")


def test_video_source_yields_frames(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    frames = list(open_source(path))
    assert len(frames) == 4 and all(f.ok and f.image.shape == (48, 64, 3) for f in frames)


def test_inspect_cli_records_decisions_and_verifies(
    trained_tiny, frames: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSPECTOR_ARGON2_FAST", "1")
    db = tmp_path / "cli.db"
    runner = CliRunner()
    s = AuditStore.open(db)
    s.add_user(None, "root", "Root", "admin", "pw-root-123")
    admin = s.authenticate("root", "pw-root-123")
    s.add_user(admin, "eng", "Eng", "engineer", "pw-eng-123")
    s.add_user(admin, "ana", "Ana", "operator", "pw-ana-123")
    s.close()
    r = runner.invoke(
        main,
        ["models", "register", "--model", str(trained_tiny), "--db", str(db), "--as", "eng"],
        env={"INSPECTOR_PASSWORD": "pw-eng-123"},
    )
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in frames.iterdir() if p.name != "zz_corrupt.png")
    csv_path = tmp_path / "decisions.csv"
    csv_path.write_text("frame,decision,reason\n" + "".join(f"{n},reject,operator saw a defect\n" for n in names[:2]))
    inspect_args = ["inspect", "--model", str(trained_tiny), "--input", str(frames), "--db", str(db)]
    inspect_args += ["--station", "line-9", "--operator", "ana", "--decisions", str(csv_path)]
    r = runner.invoke(main, inspect_args, env={"INSPECTOR_PASSWORD": "pw-ana-123"})
    assert r.exit_code == 0, r.output
    assert "5 inspected" in r.output and "2 decisions" in r.output and "1 unreadable" in r.output
    s = AuditStore.open(db)
    views = s.decisions()
    assert len(views) == 2 and {v.user_id for v in views} == {"ana"}
    s.close()
    r = runner.invoke(main, inspect_args, env={"INSPECTOR_PASSWORD": "wrong"})
    assert r.exit_code != 0 and "Traceback" not in r.output
    r = runner.invoke(main, ["audit", "verify", "--db", str(db)])
    assert r.exit_code == 0, r.output
