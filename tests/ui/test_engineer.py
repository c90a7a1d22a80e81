"""The engineer's view: training through the worker, evaluation, a logged threshold change."""

from __future__ import annotations

from ui.engineer_view import EngineerWidget


def open_view(qtbot, session) -> EngineerWidget:
    view = EngineerWidget(session)
    qtbot.addWidget(view)
    view.resize(1300, 850)
    view.show()
    return view


def test_training_completes_through_the_worker(qtbot, store, make_session) -> None:
    view = open_view(qtbot, make_session("eng"))
    assert view.search_box.isChecked()  # the search is the default, as on the CLI
    view.search_box.setChecked(False)  # the tiny model's given settings: this test is about the worker
    before = view.models_table.rowCount()
    with qtbot.waitSignal(view.training_done, timeout=120000) as blocker:
        view.train_button.click()
        assert view.cancel_button.isEnabled()
    model_id = blocker.args[0]
    assert isinstance(model_id, int), model_id
    assert view.models_table.rowCount() == before + 1
    assert view.progress.value() == view.progress.maximum()
    assert store.model(model_id).trained_by == "eng"
    qtbot.waitUntil(lambda: view.worker is None)
    assert view.train_button.isEnabled()


def test_threshold_what_if_and_logged_save(qtbot, store, make_session) -> None:
    view = open_view(qtbot, make_session("eng"))
    with qtbot.waitSignal(view.evaluation_done, timeout=60000) as blocker:
        view.evaluate_selected()  # nothing selected: the active model
    summary = blocker.args[0]
    assert summary.model_id == store.test_model_id
    qtbot.waitUntil(lambda: view.worker is None)
    low = float(summary.scores.min()) - 1e-3
    view.set_threshold(low)
    assert "false-reject rate <b>100.0 %" in view.rates_label.text()
    high = float(summary.scores.max()) + 1e-3
    view.set_threshold(high)
    assert "false-reject rate <b>0.0 %" in view.rates_label.text()
    assert "miss rate <b>100.0 %" in view.rates_label.text()
    view.slider.setValue(0)  # the engineer drags the slider to the far left
    assert view.threshold() < low and "false-reject rate <b>100.0 %" in view.rates_label.text()
    view.set_threshold(high)
    view.save_threshold()
    view.reason_dialog.choose(text="fewer false rejects on line 1")
    with qtbot.waitSignal(view.changed, timeout=30000):
        view.reason_dialog.accept()  # recorded on a worker
    assert abs(store.model(summary.model_id).threshold - view.threshold()) < 1e-9
    assert "logged" in view.status.text()


def test_activation_needs_a_reason(qtbot, store, make_session) -> None:
    view = open_view(qtbot, make_session("eng"))
    view.models_table.selectRow(0)
    view.activate_selected()
    dialog = view.reason_dialog
    dialog.accept()  # empty: refused by the dialog
    assert dialog.isVisible()
    dialog.reject()
    assert "nothing changed" in view.status.text()


def test_settings_show_how_the_model_was_configured(qtbot, make_session) -> None:
    view = open_view(qtbot, make_session("eng"))
    view.show_settings()  # nothing selected: a message, no dialog
    assert "select a model version" in view.status.text()
    view.models_table.selectRow(0)
    view.show_settings()
    text = view.settings_text.toPlainText()
    assert "backbone" in text and "input" in text
    assert "not searched" in text  # the tiny test model was trained with given settings


def test_the_search_box_asks_training_for_the_settings_search(qtbot, make_session, monkeypatch) -> None:
    from inspector import app_logic

    asked: list[bool] = []

    def fake_train(session, manifest, root, *, progress=None, should_stop=None, search=False) -> int:
        asked.append(search)
        return 1

    monkeypatch.setattr(app_logic, "train_and_register", fake_train)
    view = open_view(qtbot, make_session("eng"))
    for checked in (False, True):
        view.search_box.setChecked(checked)
        with qtbot.waitSignal(view.training_done, timeout=30000):
            view.train_button.click()
        qtbot.waitUntil(lambda: view.worker is None)
    assert asked == [False, True]
