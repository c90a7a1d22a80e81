"""The verdict in large type on its colour: what an operator reads first, from a metre away."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QWidget

STYLES = {
    "OK": ("#1e8e3e", "#ffffff"),
    "REVIEW": ("#f29900", "#202124"),
    "DEFECT": ("#d93025", "#ffffff"),
    "OOD": ("#7b1fa2", "#ffffff"),  # out of domain: no verdict, goes to review
    None: ("#dadce0", "#5f6368"),
}
LABELS = {"OOD": "OUT-OF-DOMAIN"}


class VerdictWidget(QLabel):
    """OK green, REVIEW amber, DEFECT red; grey while no frame is shown."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("—", parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        f = QFont(self.font())
        f.setPointSizeF(f.pointSizeF() * 3.2)
        f.setBold(True)
        self.setFont(f)
        self.setMinimumHeight(96)
        self.verdict: str | None = None
        self.set_verdict(None)

    def set_verdict(self, verdict: str | None) -> None:
        self.verdict = verdict
        bg, fg = STYLES.get(verdict, STYLES[None])
        self.setStyleSheet(f"QLabel {{ background: {bg}; color: {fg}; border-radius: 10px; padding: 8px; }}")
        self.setText(LABELS.get(verdict or "", verdict or "waiting"))
