"""Login: a user id and password checked by the audit store (which logs every attempt)."""

from __future__ import annotations

from PySide6.QtCore import Qt
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


class LoginDialog(QDialog):
    """Accepts only once the store authenticated the user; ``user`` holds them afterwards."""

    def __init__(self, store: AuditStore, parent: QWidget | None = None, hint: str = "") -> None:
        super().__init__(parent)
        self.store = store
        self.user: User | None = None
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
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Log in")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.user_id.setFocus(Qt.FocusReason.OtherFocusReason)

    def accept(self) -> None:
        try:
            self.user = self.store.authenticate(self.user_id.text().strip(), self.password.text())
        except InspectorError as exc:
            self.error.setText(str(exc))
            self.password.clear()
            self.password.setFocus()
            return
        super().accept()
