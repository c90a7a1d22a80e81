"""The admin's screen for users: add, deactivate or reactivate, reset a password, unlock.

Every change goes through ``inspector.app_logic.users`` to the audit store, which checks the
admin's right and logs it; password hashing is slow on purpose, so changes run on a worker.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from inspector import app_logic
from inspector.app_logic import users as user_admin
from inspector.errors import InspectorError
from ui.workers import start_job, stop_jobs

COLUMNS = ("id", "name", "role", "state", "created (UTC)")


class UsersWidget(QWidget):
    """A table of users and the admin's actions on the selected one."""

    changed = Signal(str)  # what was done, once the store recorded it (or why it was refused)

    def __init__(self, session: app_logic.AppSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        lay = QVBoxLayout(self)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        lay.addWidget(self.table, 1)
        actions = QHBoxLayout()
        self.deactivate_button = QPushButton("Deactivate")
        self.activate_button = QPushButton("Reactivate")
        self.reset_button = QPushButton("Reset password")
        self.unlock_button = QPushButton("Unlock")
        if not user_admin.can_unlock(session):
            self.unlock_button.setEnabled(False)
            self.unlock_button.setToolTip("this audit store keeps no lockouts")
        self.deactivate_button.clicked.connect(lambda: self._run("deactivated", user_admin.set_active, False))
        self.activate_button.clicked.connect(lambda: self._run("reactivated", user_admin.set_active, True))
        self.reset_button.clicked.connect(lambda: self._run("password reset", user_admin.reset_password))
        self.unlock_button.clicked.connect(lambda: self._run("unlocked", user_admin.unlock))
        for b in (self.deactivate_button, self.activate_button, self.reset_button, self.unlock_button):
            actions.addWidget(b)
        actions.addStretch(1)
        lay.addLayout(actions)
        lay.addWidget(self._add_box())
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.refresh()

    def _add_box(self) -> QGroupBox:
        box = QGroupBox("Add a user")
        form = QFormLayout(box)
        self.new_id, self.new_name, self.new_password = QLineEdit(), QLineEdit(), QLineEdit()
        self.new_password.setEchoMode(QLineEdit.EchoMode.Password)
        self.new_role = QComboBox()
        self.new_role.addItems(list(user_admin.ROLES))
        form.addRow("User id", self.new_id)
        form.addRow("Name", self.new_name)
        form.addRow("Role", self.new_role)
        form.addRow("Password", self.new_password)
        add = QPushButton("Add user")
        add.clicked.connect(self.add)
        form.addRow("", add)
        return box

    def refresh(self) -> None:
        try:
            rows = user_admin.users(self.session)
        except InspectorError as exc:
            self.status.setText(f"users cannot be read: {exc}")
            return
        self.table.setRowCount(len(rows))
        for r, u in enumerate(rows):
            values = (u.id, u.name, u.role, "active" if u.active else "deactivated", f"{u.created_at:%Y-%m-%d %H:%M}")
            for c, v in enumerate(values):
                self.table.setItem(r, c, QTableWidgetItem(v))

    def selected_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table.item(rows[0].row(), 0).text() if rows else None

    def add(self) -> None:
        args = (self.new_id.text(), self.new_name.text(), self.new_role.currentText(), self.new_password.text())
        self._start(f"user {args[0].strip()} added", user_admin.add_user, *args)

    def _run(self, what: str, fn: Any, *args: Any) -> None:
        uid = self.selected_id()
        if uid is None:
            self.status.setText("select a user first")
            return
        self._start(f"{uid}: {what}", fn, uid, *args)

    def _start(self, what: str, fn: Any, *args: Any) -> None:
        self.status.setText("working…")

        def done(value: Any) -> None:
            extra = f"; new password (hand it over once): {value[1]}" if isinstance(value, tuple) else ""
            self.status.setText(what + extra)
            self.new_password.clear()
            self.refresh()
            self.changed.emit(what)

        def failed(exc: BaseException) -> None:
            text = str(exc) if isinstance(exc, InspectorError) else f"{type(exc).__name__}: {exc}"
            self.status.setText(f"refused: {text}")
            self.changed.emit(f"refused: {text}")

        start_job(self, fn, self.session, *args, done=done, failed=failed)

    def shutdown(self) -> None:
        stop_jobs(self)
