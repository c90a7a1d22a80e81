"""Login: a user id and password checked by the audit store (which logs every attempt).

The check hashes the password with argon2 (about half a second on purpose), so it runs on a
worker; the dialog stays responsive and says it is checking.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from inspector.audit import AuditStore, User
from inspector.errors import InspectorError
from ui.workers import start_job, stop_jobs


class LoginDialog(QDialog):
    """Accepts only once the store authenticated the user; ``user`` holds them afterwards."""

    checked = Signal(bool)  # a login attempt finished: accepted or refused

    def __init__(self, store: AuditStore, parent: QWidget | None = None, hint: str = "") -> None:
        super().__init__(parent)
        self.store = store
        self.user: User | None = None
        # An attempt is over when its answer arrives, not when its thread has wound down: a retry
        # typed right after a refusal must be checked, not dropped while the old worker exits.
        self._checking = False
        self.setWindowTitle("inspector · log in")
        self.setMinimumWidth(360)
        lay = QVBoxLayout(self)
        title = QLabel("<h2>Log in</h2>")
        lay.addWidget(title)
        if hint:
            note = QLabel(hint)
            note.setWordWrap(True)
            note.setStyleSheet("color:#5f6368;")
            lay.addWidget(note)
        form = QFormLayout()
        self.user_id = QLineEdit()
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        form.addRow("User", self.user_id)
        form.addRow("Password", self.password)
        lay.addLayout(form)
        self.error = QLabel("")
        self.error.setStyleSheet("color:#d93025;")
        self.error.setWordWrap(True)
        lay.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons = buttons
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Log in")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.user_id.setFocus(Qt.FocusReason.OtherFocusReason)

    def accept(self) -> None:
        """Starts the password check on a worker; the dialog closes when it succeeds."""
        if self._checking:
            return
        self._checking = True
        self.error.setStyleSheet("color:#5f6368;")
        self.error.setText("checking…")
        self.buttons.setEnabled(False)
        start_job(
            self, self.store.authenticate, self.user_id.text().strip(), self.password.text(),
            done=self._accepted, failed=self._refused,
        )

    def _accepted(self, user: User) -> None:
        self._checking = False
        self.buttons.setEnabled(True)
        self.error.setText("")
        self.user = user
        super().accept()
        self.checked.emit(True)

    def _refused(self, exc: BaseException) -> None:
        self._checking = False
        self.buttons.setEnabled(True)
        self.error.setStyleSheet("color:#d93025;")
        self.error.setText(str(exc) if isinstance(exc, InspectorError) else f"login failed: {exc}")
        self.password.clear()
        self.password.setFocus()
        self.checked.emit(False)

    def done(self, result: int) -> None:  # noqa: D401 - Qt's name
        stop_jobs(self)
        super().done(result)
