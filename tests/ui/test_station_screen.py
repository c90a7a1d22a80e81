"""The station's screen through a shift: legend and palettes, model shown, stale banner, stepping
back past the frames kept in memory, and the admin's user management."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from ui.operator_view import OperatorWidget
from ui.users_view import UsersWidget


def test_screen_through_a_short_shift(qtbot, store, make_session, frames: Path) -> None:
    eng = store.authenticate("eng", "eng-pass")
    store.set_threshold(eng, store.test_model_id, 1e9, "test: every frame OK")  # a reject overrules
    view = OperatorWidget(make_session("ana", keep=2))
    qtbot.addWidget(view)
    view.resize(1280, 800)
    view.show()
    with qtbot.waitSignal(view.stream_ended, timeout=60000):
        view.start_stream(str(frames), live=True)
    assert len(view.items) == 5 and view.station.history.in_memory <= 2
    assert view.model_label.text().startswith(f"model v{store.test_model_id}")
    assert view.legend.colours is not None and view.legend.title.startswith("anomaly map")
    map_colours = view.legend.colours.copy()
    qtbot.keyClick(view, Qt.Key.Key_2)  # Grad-CAM replaces the map, in its own palette
    assert view.show_gradcam.isChecked() and not view.show_map.isChecked()
    assert view.legend.title.startswith("Grad-CAM") and (view.legend.colours != map_colours).any()
    qtbot.keyClick(view, Qt.Key.Key_1)
    assert view.show_map.isChecked() and not view.show_gradcam.isChecked()

    view.show_item(4)
    qtbot.keyClick(view, Qt.Key.Key_R)  # overrules an OK: a reason is asked for, then refused
    view.reason_dialog.reject()
    assert "reason is required" in view.message_text()
    qtbot.keyClick(view, Qt.Key.Key_Left)
    assert view.message_text() == ""  # the note belonged to the frame left behind

    view.show_item(0)  # long gone from memory: reloaded from the audit store
    item = view.current()
    assert item is not None and item.extras.get("reloaded") and "reloaded" in view.explain_label.text()
    with qtbot.waitSignal(view.decided, timeout=30000):
        qtbot.keyClick(view, Qt.Key.Key_A)
    (d,) = store.decisions()
    assert d.inspection_id == item.inspection_id and d.decision == "accept"
    assert view.station.counts.accepted == 1 and view.count_labels["accepted"].text() == "1"


def test_admin_manages_users(qtbot, store, make_session) -> None:
    view = UsersWidget(make_session("root"))
    qtbot.addWidget(view)
    assert view.table.rowCount() == 5
    view.new_id.setText("cara")
    view.new_name.setText("Cara")
    view.new_role.setCurrentText("operator")
    view.new_password.setText("cara-pass-123")
    with qtbot.waitSignal(view.changed, timeout=30000) as added:
        view.add()
    assert added.args == ["user cara added"] and view.table.rowCount() == 6
    assert store.authenticate("cara", "cara-pass-123").role == "operator"
    ids = [view.table.item(r, 0).text() for r in range(view.table.rowCount())]
    view.table.selectRow(ids.index("cara"))
    with qtbot.waitSignal(view.changed, timeout=30000):
        view.reset_button.click()
    new_password = view.status.text().rsplit(": ", 1)[-1]
    assert store.authenticate("cara", new_password).id == "cara"
    with qtbot.waitSignal(view.changed, timeout=30000):
        view.deactivate_button.click()
    assert not next(u for u in store.list_users() if u.id == "cara").active
    view.table.selectRow(ids.index("root"))
    with qtbot.waitSignal(view.changed, timeout=30000) as refused:
        view.deactivate_button.click()  # the last admin cannot go
    assert refused.args[0].startswith("refused") and "admin" in refused.args[0]


def test_every_view_fits_a_1280x800_screen(qtbot, store, make_session) -> None:
    from ui.app import InspectorWindow

    root = store.authenticate("root", "root-pass")  # long names widen the auditor's filters
    store.add_user(root, "long", "Maria-Fernanda Rodrigues de Albuquerque", "operator", "long-pass-123")

    for user in ("ana", "eng", "aud", "root"):
        window = InspectorWindow(make_session(user))
        qtbot.addWidget(window)
        window.show()  # combos size themselves to their contents on first show
        qtbot.waitExposed(window)
        hint = window.minimumSizeHint()
        assert hint.width() <= 1280 and hint.height() <= 800, (user, hint)
