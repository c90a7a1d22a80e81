"""The engineer's feedback queue: operator overrules and coded rejects, each confirmed or dismissed.

Draws the queue and the recorded frame; every ruling goes to ``inspector.audit.feedback``, which
checks the role and logs it in the audit chain. Nothing here decides anything.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from inspector import app_logic
from inspector.audit import feedback
from inspector.errors import InspectorError
from ui.widgets.image_view import FrameWidget

COLUMNS = ("decision", "verdict → decision", "operator", "reason code", "operator's reason", "frame", "score")


class FeedbackQueueWidget(QGroupBox):
    """Lists open candidates; Good / Defect type… / Noise / Dismiss… rule on the selected one."""

    def __init__(self, session: app_logic.AppSession, parent: QWidget | None = None) -> None:
        super().__init__("Feedback queue", parent)
        self.session = session
        self.items: list[feedback.Candidate] = []
        lay = QHBoxLayout(self)
        left = QVBoxLayout()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._show_frame)
        left.addWidget(self.table, 1)
        row = QHBoxLayout()
        for text, slot in (
            ("Good (for the bank)", self.confirm_good),
            ("Defect type…", self.confirm_defect),
            ("Noise", self.confirm_noise),
            ("Dismiss…", self.dismiss),
            ("Refresh", self.refresh),
        ):
            b = QPushButton(text)
            b.clicked.connect(slot)
            row.addWidget(b)
        left.addLayout(row)
        self.status = QLabel("")
        left.addWidget(self.status)
        lay.addLayout(left, 3)
        self.frame = FrameWidget("select a candidate")
        lay.addWidget(self.frame, 1)
        self.refresh()

    def refresh(self) -> None:
        try:
            self.items = feedback.candidates(self.session.store)
        except InspectorError as exc:
            self.status.setText(str(exc))
            return
        self.table.setRowCount(len(self.items))
        for r, c in enumerate(self.items):
            d = c.decision
            cells = (str(d.id), f"{d.verdict} → {d.decision}", d.user_id, d.reason_code or "", d.reason_text or "",
                     d.source, f"{d.score:.3f}")  # fmt: skip
            for col, text in enumerate(cells):
                self.table.setItem(r, col, QTableWidgetItem(text))
        self.status.setText(f"{len(self.items)} open candidate(s)")

    def selected(self) -> feedback.Candidate | None:
        rows = self.table.selectionModel().selectedRows()
        return self.items[rows[0].row()] if rows else None

    def _show_frame(self) -> None:
        c = self.selected()
        if c is None:
            self.frame.set_frame(None)
            return
        try:
            self.frame.set_frame(self.session.store.inspection(c.decision.inspection_id).frame, "frame missing")
        except InspectorError as exc:
            self.frame.set_frame(None, str(exc))

    def _rule(self, fn: object, *args: object) -> None:
        c = self.selected()
        if c is None:
            self.status.setText("select a candidate first")
            return
        try:
            fn(self.session.store, self.session.user, c.id, *args)  # type: ignore[operator]
        except InspectorError as exc:
            self.status.setText(str(exc))
            return
        self.refresh()

    def confirm_good(self) -> None:
        self._rule(feedback.confirm, "good")

    def confirm_noise(self) -> None:
        self._rule(feedback.confirm, "noise")

    def confirm_defect(self, defect_type: str | None = None) -> None:
        if not defect_type:
            defect_type, ok = QInputDialog.getText(self, "Defect type", "Type of this defect (new or known):")
            if not ok:
                return
        self._rule(feedback.confirm, "defect", defect_type)

    def dismiss(self, reason: str | None = None) -> None:
        if not reason:
            reason, ok = QInputDialog.getText(self, "Dismiss", "Why does it teach the model nothing?")
            if not ok:
                return
        self._rule(feedback.dismiss, reason)
