"""Login, the views each role sees, the store that cannot be opened, the worker, the thread guard."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from tests.ui.conftest import still_running
from ui.app import InspectorWindow, open_store
from ui.login_dialog import LoginDialog
from ui.workers import Worker


def test_login(qtbot, store) -> None:
    dlg = LoginDialog(store)
    qtbot.addWidget(dlg)
    dlg.user_id.setText("ana")
    dlg.password.setText("wrong-password")
    with qtbot.waitSignal(dlg.checked, timeout=30000) as blocker:
        dlg.accept()
    assert blocker.args == [False]
    assert dlg.user is None and "refused" in dlg.error.text() and dlg.result() == 0
    dlg.password.setText("ana-pass")
    with qtbot.waitSignal(dlg.checked, timeout=30000) as blocker:
        dlg.accept()
    assert blocker.args == [True]
    assert dlg.user is not None and dlg.user.role == "operator" and dlg.result() == 1


def test_a_retry_right_after_a_refusal_is_checked(qtbot, store) -> None:
    """The retry comes from a slot on the refusal, before the refused attempt's thread is reaped."""
    dlg = LoginDialog(store)
    qtbot.addWidget(dlg)
    dlg.user_id.setText("ana")
    dlg.password.setText("wrong-password")
    answers: list[bool] = []

    def retry(ok: bool) -> None:
        answers.append(ok)
        if not ok:
            dlg.password.setText("ana-pass")
            dlg.accept()

    dlg.checked.connect(retry)
    dlg.accept()
    qtbot.waitUntil(lambda: len(answers) == 2, timeout=30000)
    assert answers == [False, True] and dlg.user is not None


@pytest.mark.parametrize(
    ("user", "views"),
    [("ana", {"operator"}), ("eng", {"engineer"}), ("aud", {"auditor"}), ("root", {"auditor", "users"})],
)
def test_each_role_sees_only_its_views(qtbot, make_session, user: str, views: set[str]) -> None:
    window = InspectorWindow(make_session(user))
    qtbot.addWidget(window)
    assert set(window.views) == views
    titles = {window.tabs.tabText(i) for i in range(window.tabs.count())}
    assert ("Engineering" in titles) == ("engineer" in views)


def test_a_store_that_cannot_be_opened_is_a_message(qtbot, tmp_path: Path, monkeypatch) -> None:
    said: list[str] = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *a, **k: said.append(a[2]) or QMessageBox.StandardButton.Close)
    bad = tmp_path / "not-a-db.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    assert open_store(bad) is None
    assert said and "cannot be opened" in said[0]


def test_worker_yields_returns_and_stops(qtbot) -> None:
    def gen(n: int):
        yield from range(n)
        return "done"

    worker = Worker(gen, 3)
    got: list[object] = []
    worker.yielded.connect(got.append)
    worker.returned.connect(lambda v: got.append(("returned", v)))
    with qtbot.waitSignals([worker.returned, worker.finished], order="strict"):
        worker.start()
    assert got == [0, 1, 2, ("returned", "done")]

    gate = threading.Event()

    def endless():
        while True:
            gate.wait(0.01)
            yield 1

    stopper = Worker(endless)
    returned: list[object] = []
    stopper.returned.connect(returned.append)
    with qtbot.waitSignal(stopper.finished, timeout=5000):
        stopper.start()
        stopper.abort()
    assert returned == []  # a cancelled job returns nothing


def test_worker_errors_reach_the_ui_thread(qtbot) -> None:
    def fail() -> None:
        raise ValueError("bad input")

    worker = Worker(fail)
    with qtbot.waitSignal(worker.errored) as blocker:
        worker.start()
    assert isinstance(blocker.args[0], ValueError)
    worker.wait()


def test_thread_guard_sees_a_running_thread(qtbot) -> None:
    gate = threading.Event()
    worker = Worker(gate.wait, 10)
    worker.start()
    try:
        assert still_running([worker], grace_ms=50) == [worker]
    finally:
        gate.set()
        worker.wait()
    assert still_running([worker], grace_ms=50) == []


def test_demo_setup_dialog_survives_a_finished_stage(qtbot, monkeypatch, tmp_path: Path) -> None:
    """A stage that reaches its maximum must not close the dialog before the set-up returns."""
    import ui.app as app_mod
    from inspector.app_logic import DemoSetup

    made = DemoSetup(tmp_path / "a.db", tmp_path, tmp_path / "m.json", tmp_path, {"operator": "pw"}, tmp_path)

    gate = threading.Event()

    def fake_prepare(progress):
        for stage in ("features", "coreset", "audit store"):
            progress(stage, 3, 3)
        gate.wait(10)  # the last step still runs after its stage bar is full
        return made

    monkeypatch.setattr(app_mod.app_logic, "prepare_demo", fake_prepare)
    dialog = app_mod.DemoSetupDialog()
    qtbot.addWidget(dialog)
    # Opened only once the dialog has drawn the full "audit store" bar (connected after its own slot).
    dialog.worker.yielded.connect(lambda v: gate.set() if v[0] == "audit store" else None)
    assert dialog.exec() == 1
    assert dialog.result_setup is made


def test_demo_users_get_random_passwords(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("INSPECTOR_ARGON2_FAST", "1")
    from inspector.app_logic import create_demo_users
    from inspector.audit import AuditStore

    with AuditStore.open(tmp_path / "demo.db") as store:
        creds = create_demo_users(store)
        assert set(creds) == {"admin", "operator", "engineer", "auditor"}
        assert len(set(creds.values())) == 4
        for uid, pw in creds.items():
            assert store.authenticate(uid, pw).role == uid


def test_gui_command_is_registered_and_lazy() -> None:
    import subprocess
    import sys

    from click.testing import CliRunner

    from inspector.cli import main

    result = CliRunner().invoke(main, ["gui", "--help"])
    assert result.exit_code == 0 and "--demo" in result.output
    refused = CliRunner().invoke(main, ["gui", "--demo", "--db", "x.db"])
    assert refused.exit_code != 0 and "--demo" in refused.output
    probe = "import sys, inspector.cli; print(any(m.startswith('PySide6') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # importing the CLI does not load Qt
