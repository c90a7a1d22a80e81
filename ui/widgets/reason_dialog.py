"""Asks for a reason: a code from a fixed list (for the operator) and/or free text.

Used when an operator overrules the model and when an engineer changes a threshold or a model;
the store refuses those without a reason, so the dialog cannot be confirmed empty.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)


class ReasonDialog(QDialog):
    """A reason picker; ``code`` and ``text`` hold the answer after ``accept``."""

    def __init__(
        self,
        title: str,
        message: str,
        codes: Sequence[str] = (),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setModal(True)
        self.code: str | None = None
        self.text: str = ""
        lay = QVBoxLayout(self)
        info = QLabel(message)
        info.setWordWrap(True)
        lay.addWidget(info)
        self.codes = QComboBox()
        self.codes.addItem("choose a reason…", None)
        for c in codes:
            self.codes.addItem(c.replace("-", " "), c)
        self._has_codes = bool(codes)
        self.codes.setVisible(self._has_codes)
        lay.addWidget(self.codes)
        self.note = QLineEdit()
        self.note.setPlaceholderText("note (required for 'other')" if codes else "reason (recorded in the audit log)")
        lay.addWidget(self.note)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self.codes.currentIndexChanged.connect(self._check)
        self.note.textChanged.connect(self._check)
        self._check()

    def _complete(self) -> bool:
        code = self.codes.currentData()
        text = self.note.text().strip()
        if self._has_codes:
            return code is not None and (code != "other" or bool(text))
        return bool(text)

    def _check(self) -> None:
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(self._complete())

    def choose(self, code: str | None = None, text: str = "") -> None:
        """Fills the answer in (the keyboard path and tests use it)."""
        if code is not None:
            self.codes.setCurrentIndex(max(0, self.codes.findData(code)))
        self.note.setText(text)

    def accept(self) -> None:
        if not self._complete():
            return
        self.code = self.codes.currentData()
        self.text = self.note.text().strip()
        super().accept()
