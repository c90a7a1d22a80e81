"""The application: style, first-start demo set-up, login, and the main window by role.

``run_app`` is what ``inspector gui`` calls. The window holds one tab per view the user's role
allows (``app_logic.views_for``); the store checks every right again, so hiding a view is
for clarity, not security.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QColor, QFont, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QTabWidget,
    QToolBar,
    QWidget,
)

from inspector import app_logic
from inspector.audit import AuditStore
from inspector.errors import InspectorError
from ui.auditor_view import AuditorWidget
from ui.engineer_view import EngineerWidget
from ui.login_dialog import LoginDialog
from ui.operator_view import OperatorWidget
from ui.users_view import UsersWidget
from ui.workers import Worker, start_job, stop_jobs

VIEW_CLASSES: dict[str, tuple[str, type[QWidget]]] = {
    "operator": ("Station", OperatorWidget),
    "engineer": ("Engineering", EngineerWidget),
    "auditor": ("Audit log", AuditorWidget),
    "users": ("Users", UsersWidget),
}
SIZE = (1280, 800)  # the smallest screen the station is laid out for
QUEUE_POLL_MS = 2000


def create_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication with Fusion and a calm light palette (the same on every platform)."""
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("inspector")
    app.setStyle("Fusion")
    pal = QPalette()
    for role, colour in (
        (QPalette.ColorRole.Window, "#f5f6f7"),
        (QPalette.ColorRole.Base, "#ffffff"),
        (QPalette.ColorRole.AlternateBase, "#eef0f2"),
        (QPalette.ColorRole.Button, "#e8eaed"),
        (QPalette.ColorRole.Highlight, "#1a73e8"),
        (QPalette.ColorRole.HighlightedText, "#ffffff"),
        (QPalette.ColorRole.Text, "#202124"),
        (QPalette.ColorRole.WindowText, "#202124"),
        (QPalette.ColorRole.ButtonText, "#202124"),
    ):
        pal.setColor(role, QColor(colour))
    app.setPalette(pal)
    font = QFont(app.font())
    font.setPointSizeF(max(font.pointSizeF(), 10.5))
    app.setFont(font)
    from inspector.runtime import settle_heap, warm_up_threads

    warm_up_threads()  # before any worker runs the model: see inspector.runtime
    settle_heap()  # full collections stop walking torch's and Qt's objects: no half-second freezes
    return app


class InspectorWindow(QMainWindow):
    """One tab per view the user's role allows; a retry-queue indicator for everyone."""

    def __init__(self, session: app_logic.AppSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.logged_out = False
        self.setWindowTitle(f"inspector · {session.user.name} ({session.user.role})")
        screen = QApplication.primaryScreen()
        room = screen.availableGeometry() if screen is not None else None
        self.resize(min(SIZE[0], room.width()) if room else SIZE[0], min(SIZE[1], room.height()) if room else SIZE[1])
        self.tabs = QTabWidget()
        self.views: dict[str, QWidget] = {}
        for name in app_logic.views_for(session.user.role):
            title, cls = VIEW_CLASSES[name]
            view = cls(session)
            self.views[name] = view
            self.tabs.addTab(view, title)
        if not self.views:
            self.tabs.addTab(QLabel(f"the role '{session.user.role}' has no views"), "—")
        self.setCentralWidget(self.tabs)
        bar = QToolBar("session")
        bar.setMovable(False)
        who = QLabel(f"  {session.user.name} · {session.user.role} · station {session.station}  ")
        bar.addWidget(who)
        bar.addAction("Log out", self.log_out)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.queue_label = QLabel("")
        self.statusBar().addPermanentWidget(self.queue_label)
        self.statusBar().showMessage(f"audit store: {session.store.db_path or session.store.url}")
        self.queue_timer = QTimer(self)
        self.queue_timer.timeout.connect(self.poll_queue)
        self.queue_timer.start(QUEUE_POLL_MS)
        self.poll_queue()

    def view(self, name: str) -> Any:
        return self.views.get(name)

    def poll_queue(self) -> int:
        """Shows how many records wait and retries them on a worker (nothing is dropped).

        Counting is cheap; the flush is not (a locked database retries with back-off), so it
        never runs on the UI thread. Through the operator's station, its banner hears of it.
        """
        store = self.session.store
        n = store.queue_length
        self._show_queue(n)
        if n and not self.__dict__.get("jobs"):
            op = self.views.get("operator")
            station = getattr(op, "station", None)
            flush = station.flush_queue if station is not None else self._flush_store
            start_job(self, flush, done=self._show_queue, failed=lambda _exc: self._show_queue(store.queue_length))
        return n

    def _flush_store(self) -> int:
        self.session.store.flush_queue()
        return self.session.store.queue_length

    def _show_queue(self, n: int) -> None:
        self.queue_label.setText(f"⚠ {n} record(s) waiting in the retry queue" if n else "audit store: connected")
        self.queue_label.setStyleSheet("color:#b06000; font-weight:bold;" if n else "color:#1e8e3e;")
        op = self.views.get("operator")
        if isinstance(op, OperatorWidget) and op.station is None:  # a station tells its view itself
            op.set_queue_length(n)

    def log_out(self) -> None:
        self.logged_out = True
        self.close()

    def shutdown(self) -> None:
        """Stops every worker thread before the widgets go."""
        self.queue_timer.stop()
        stop_jobs(self)
        for v in self.views.values():
            stop = getattr(v, "shutdown", None)
            if stop:
                stop()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        self.shutdown()
        super().closeEvent(event)


class DemoSetupDialog(QProgressDialog):
    """First start of the demo: makes data, trains, creates users, behind a progress bar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Preparing the demo: synthetic pills, then training (first start only)…", "", 0, 0, parent)
        self.setWindowTitle("inspector · first start")
        self.setCancelButton(None)
        self.setAutoClose(False)  # a stage reaching its maximum must not end the dialog early
        self.setAutoReset(False)
        self.setMinimumDuration(0)
        self.setMinimumWidth(460)
        self.result_setup: app_logic.DemoSetup | None = None
        self.error: BaseException | None = None
        self.worker = Worker(app_logic.prepare_demo, progress_arg="progress")
        self.worker.yielded.connect(self._progress)
        self.worker.returned.connect(self._done)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(self._finished)

    def exec(self) -> int:
        self.worker.start()
        return super().exec()

    def _progress(self, value: Any) -> None:
        stage, done, total = value
        self.setLabelText(f"Preparing the demo (first start only): {stage} {done}/{total}")
        self.setMaximum(max(1, int(total)))
        self.setValue(int(done))

    def _done(self, setup: app_logic.DemoSetup) -> None:
        self.result_setup = setup

    def _failed(self, exc: BaseException) -> None:
        self.error = exc

    def _finished(self) -> None:
        self.worker.wait()
        self.done(1 if self.result_setup else 0)


def open_store(path: str | Path | None, parent: QWidget | None = None) -> AuditStore | None:
    """Opens the store; when it cannot be opened, says why and offers to pick another file."""
    while True:
        try:
            return AuditStore.open(path)
        except InspectorError as exc:
            answer = QMessageBox.critical(
                parent,
                "Audit database",
                f"The audit database cannot be opened:\n\n{exc}\n\nOpen another database file?",
                QMessageBox.StandardButton.Open | QMessageBox.StandardButton.Close,
            )
            if answer != QMessageBox.StandardButton.Open:
                return None
            chosen, _ = QFileDialog.getSaveFileName(parent, "Audit database", "", "SQLite (*.db);;All files (*)")
            if not chosen:
                return None
            path = chosen


def run_app(
    db: str | None = None,
    model: Path | None = None,
    demo: bool = False,
    echo: Callable[[str], Any] = print,
) -> int:
    """Starts the app; returns the process exit code."""
    app = create_app()
    manifest = data_root = None
    hint = line = ""
    if demo:
        dlg = DemoSetupDialog()
        dlg.exec()
        setup = dlg.result_setup
        if setup is None:
            QMessageBox.critical(None, "Demo", f"The demo could not be prepared:\n\n{dlg.error}")
            return 1
        db, model, manifest, data_root = str(setup.db_path), setup.model_dir, setup.manifest_path, setup.data_root
        line = str(setup.line_folder)
        echo("demo users (passwords for this demo store only):")
        for uid, pw in setup.credentials.items():
            echo(f"  {uid:<9} {pw}")
        hint = "Demo: users operator, engineer, auditor and admin; their passwords are printed in the terminal."
    store = open_store(db)
    if store is None:
        return 1
    try:
        while True:
            login = LoginDialog(store, hint=hint)
            if not login.exec() or login.user is None:
                return 0
            session = app_logic.AppSession(
                store, login.user, model_dir=model, manifest_path=manifest, data_root=data_root, default_source=line
            )
            window = InspectorWindow(session)
            window.show()
            app.exec()
            if not window.logged_out:
                return 0
    finally:
        store.close()
