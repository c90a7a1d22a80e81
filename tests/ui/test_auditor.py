"""The auditor's view: filters narrow the table, the detail shows the recorded frame, verify, export."""

from __future__ import annotations

from pathlib import Path

from inspector.pipeline import Inspector
from inspector.sources import FolderSource
from inspector.station import Station
from ui.auditor_view import AuditorWidget


def record_shift(store, trained_tiny: Path, frames: Path) -> None:
    """Three decisions on OK frames: ana accepts twice on line-1, bob rejects (overrules) on line-2."""
    inspector = Inspector.load(trained_tiny, "cpu")
    inspector.thresholds = inspector.thresholds.with_decision(1e9)  # every frame OK
    ana, bob = store.authenticate("ana", "ana-pass"), store.authenticate("bob", "bob-pass")
    line1, line2 = Station(store, inspector, "line-1"), Station(store, inspector, "line-2")
    items = [i for i in line1.run(FolderSource(frames)) if not isinstance(i, str)]
    for it in items[:2]:
        line1.decide(ana, it, "accept")
    other = next(i for i in line2.run(FolderSource(frames)) if not isinstance(i, str))
    line2.decide(bob, other, "reject", reason_code="other", reason_text="seen by eye")


def test_filters_narrow_the_table(qtbot, store, make_session, trained_tiny: Path, frames: Path) -> None:
    record_shift(store, trained_tiny, frames)
    view = AuditorWidget(make_session("aud"))
    qtbot.addWidget(view)
    assert view.table.rowCount() == 3
    view.operator.setCurrentIndex(view.operator.findData("bob"))
    assert view.table.rowCount() == 1
    view.operator.setCurrentIndex(0)
    view.station.setCurrentIndex(view.station.findData("line-1"))
    assert view.table.rowCount() == 2
    view.station.setCurrentIndex(0)
    view.use_until.setChecked(True)
    view.until.setDate(view.until.date().addDays(-3))
    assert view.table.rowCount() == 0
    view.use_until.setChecked(False)
    assert view.table.rowCount() == 3
    view.verdict.setCurrentIndex(view.verdict.findData("DEFECT"))
    assert view.table.rowCount() == 0
    view.verdict.setCurrentIndex(view.verdict.findData("OK"))
    assert view.table.rowCount() == 3
    view.disagreements.setChecked(True)
    assert view.table.rowCount() == 1 and view.rows[0].user_id == "bob"
    assert view.table.item(0, 8).text() == "seen by eye"


def test_detail_verify_and_export(qtbot, store, make_session, trained_tiny: Path, frames: Path, tmp_path: Path) -> None:
    record_shift(store, trained_tiny, frames)
    view = AuditorWidget(make_session("aud"))
    qtbot.addWidget(view)
    view.table.selectRow(0)
    assert view.detail_frame.frame() is not None
    assert "score" in view.detail_caption.text()
    with qtbot.waitSignal(view.verified, timeout=30000) as blocker:
        view.verify()
    assert blocker.args == [True] and "intact" in view.verify_label.text()
    with qtbot.waitSignal(view.exported, timeout=30000) as blocker:
        view.export("csv", tmp_path / "a.csv")
    assert blocker.args == [3] and (tmp_path / "a.csv").stat().st_size > 0
    with qtbot.waitSignal(view.exported, timeout=30000) as blocker:
        view.export("pdf", tmp_path / "a.pdf")
    assert blocker.args == [3] and (tmp_path / "a.pdf").read_bytes()[:4] == b"%PDF"


def test_a_broken_chain_is_shown_plainly(qtbot, store, make_session, trained_tiny: Path, frames: Path) -> None:
    import sqlite3

    record_shift(store, trained_tiny, frames)
    con = sqlite3.connect(store.db_path)  # an attacker in the sqlite3 shell: triggers first
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        con.execute(f"DROP TRIGGER {name}")
    con.execute("UPDATE decisions SET decision = 'accept' WHERE id = (SELECT MAX(id) FROM decisions)")
    con.commit()
    con.close()
    view = AuditorWidget(make_session("aud"))
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.verified, timeout=30000) as blocker:
        view.verify()
    assert blocker.args == [False]
    assert "BROKEN" in view.verify_label.text()
