"""The operator's view on real widgets: keys decide, reasons are enforced, overlays toggle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from ui.operator_view import OperatorWidget


def run_stream(qtbot, view: OperatorWidget, spec: str) -> None:
    with qtbot.waitSignal(view.stream_ended, timeout=60000):
        view.start_stream(spec)


def open_view(qtbot, session) -> OperatorWidget:
    view = OperatorWidget(session)
    qtbot.addWidget(view)
    view.resize(1200, 800)
    view.show()
    return view


def set_threshold(store, value: float) -> None:
    eng = store.authenticate("eng", "eng-pass")
    store.set_threshold(eng, store.test_model_id, value, "test: force every verdict")


def test_accept_and_reject_keys_each_record_a_decision(qtbot, store, make_session, frames: Path) -> None:
    set_threshold(store, 1e-9)  # every frame is DEFECT: reject agrees with the model
    view = open_view(qtbot, make_session("ana"))
    run_stream(qtbot, view, str(frames))
    assert view.current().result.verdict == "DEFECT"
    view.show_item(0)
    with qtbot.waitSignal(view.decided):
        qtbot.keyClick(view, Qt.Key.Key_R)
    assert [d.decision for d in store.decisions()] == ["reject"]
    assert view.index == 1  # moved on to the next frame
    assert view.reason_dialog is None

    set_threshold(store, 1e9)  # a new stream: every frame OK, accept agrees
    run_stream(qtbot, view, str(frames))
    view.show_item(len(view.items) - 1)
    assert view.current().result.verdict == "OK"
    with qtbot.waitSignal(view.decided):
        qtbot.keyClick(view, Qt.Key.Key_A)
    views = store.decisions()
    assert [d.decision for d in views] == ["reject", "accept"]
    assert views[-1].user_id == "ana" and views[-1].station == "station-1"
    assert view.station.counts.accepted == 1


def test_disagreeing_reject_without_reason_is_refused(qtbot, store, make_session, frames: Path) -> None:
    set_threshold(store, 1e9)  # OK everywhere: a reject overrules the model
    view = open_view(qtbot, make_session("ana"))
    run_stream(qtbot, view, str(frames))
    view.show_item(0)
    qtbot.keyClick(view, Qt.Key.Key_R)
    dialog = view.reason_dialog
    assert dialog is not None and dialog.isVisible()
    assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    dialog.accept()  # an empty reason cannot be confirmed
    assert dialog.isVisible()
    dialog.reject()
    assert store.decisions() == []
    assert "reason is required" in view.message_text()
    assert view.current().decision is None

    qtbot.keyClick(view, Qt.Key.Key_R)
    dialog = view.reason_dialog
    dialog.choose("image-quality", "blurred edge")
    with qtbot.waitSignal(view.decided):
        dialog.accept()
    (d,) = store.decisions()
    assert d.decision == "reject" and d.disagrees and d.reason_code == "image-quality"
    assert d.reason_text == "blurred edge"


def test_overlay_keys_change_the_shown_image(qtbot, make_session, frames: Path) -> None:
    def fake_explainer(_inspector):
        def explain(result):
            h, w = result.image.shape[:2]
            cam = np.zeros((h, w), np.float32)
            cam[: h // 2] = 2 * result.score  # score units, like Explanation.display
            return cam, {"defect_type": "chip", "agreement": 0.8}

        return explain

    view = open_view(qtbot, make_session("ana", explain_factory=fake_explainer))
    run_stream(qtbot, view, str(frames))
    view.show_item(len(view.items) - 1)
    view.show_outline.setChecked(False)
    with_map = view.frame.frame().copy()
    qtbot.keyClick(view, Qt.Key.Key_1)
    plain = view.frame.frame().copy()
    assert not view.show_map.isChecked()
    assert not np.array_equal(with_map, plain)
    np.testing.assert_array_equal(plain, view.current().result.image)
    qtbot.keyClick(view, Qt.Key.Key_2)
    assert not np.array_equal(view.frame.frame(), plain)
    qtbot.keyClick(view, Qt.Key.Key_2)
    qtbot.keyClick(view, Qt.Key.Key_1)
    np.testing.assert_array_equal(view.frame.frame(), with_map)
    assert "chip" in view.explain_label.text() and "0.80" in view.explain_label.text()


def test_without_explainer_grad_cam_says_not_available(qtbot, make_session, frames: Path) -> None:
    view = open_view(qtbot, make_session("ana", explain_factory=lambda _i: None))
    run_stream(qtbot, view, str(frames))
    before = view.frame.frame().copy()
    qtbot.keyClick(view, Qt.Key.Key_2)
    np.testing.assert_array_equal(view.frame.frame(), before)
    assert "not available" in view.explain_label.text()


def test_corrupt_image_shows_a_message_and_the_stream_continues(qtbot, make_session, frames: Path) -> None:
    view = open_view(qtbot, make_session("ana"))
    run_stream(qtbot, view, str(frames))
    assert any("02_zz_corrupt.png" in m for m in view.messages)
    assert len(view.items) == 5  # every readable frame, the ones after the corrupt one included
    assert view.station.counts.unreadable == 1
    assert view.count_labels["unreadable"].text() == "1"


def test_unreadable_video_and_missing_camera_are_messages(qtbot, make_session, frames: Path, tmp_path: Path) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video")
    view = open_view(qtbot, make_session("ana"))
    run_stream(qtbot, view, str(bad))
    assert "cannot be read" in view.message_text()
    run_stream(qtbot, view, "camera:15")
    assert "camera 15" in view.message_text()
    run_stream(qtbot, view, str(frames))  # the view still works afterwards
    assert len(view.items) == 5


def test_queued_records_show_an_indicator(qtbot, store, make_session, monkeypatch) -> None:
    from ui.app import InspectorWindow

    window = InspectorWindow(make_session("ana"))
    qtbot.addWidget(window)
    assert window.poll_queue() == 0
    assert window.view("operator").queue_banner.isHidden()
    monkeypatch.setattr(store, "flush_queue", lambda: None)  # the database stays unreachable
    store.queue.put({"kind": "decision", "uid": "x"})
    assert window.poll_queue() == 1
    assert not window.view("operator").queue_banner.isHidden()
    assert "1 record(s) waiting" in window.queue_label.text()
