"""The operator's side panel: model, verdict, score, explanation, decision keys, shift counts."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QFrame, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ui.widgets.score_bar import ScoreBarWidget
from ui.widgets.verdict import VerdictWidget

COUNT_FIELDS = (("inspected", "inspected"), ("accepted", "accepted"), ("rejected", "rejected"),
                ("disagreements", "overruled"), ("unreadable", "unreadable"))


class DecisionPanelWidget(QFrame):
    """Only widgets: the operator view fills them and connects the buttons."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedWidth(340)
        lay = QVBoxLayout(self)
        self.model_label = QLabel("")
        self.model_label.setStyleSheet("color:#3c4043; font-weight:bold;")
        self.model_label.setWordWrap(True)
        lay.addWidget(self.model_label)
        self.verdict = VerdictWidget()
        lay.addWidget(self.verdict)
        self.score_label = QLabel("score —")
        f = QFont(self.score_label.font())
        f.setPointSizeF(f.pointSizeF() * 1.3)
        self.score_label.setFont(f)
        lay.addWidget(self.score_label)
        self.score_bar = ScoreBarWidget()
        lay.addWidget(self.score_bar)
        self.explain_label = QLabel("defect type: —\nexplanations: —")
        self.explain_label.setWordWrap(True)
        lay.addWidget(self.explain_label)
        buttons = QHBoxLayout()
        self.accept_button = QPushButton("Accept  (A)")
        self.reject_button = QPushButton("Reject  (R)")
        for b, colour in ((self.accept_button, "#1e8e3e"), (self.reject_button, "#d93025")):
            b.setMinimumHeight(56)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setStyleSheet(f"QPushButton {{ background:{colour}; color:white; font-size:16pt; font-weight:bold;"
                            " border-radius:8px; } QPushButton:disabled { background:#dadce0; color:#80868b; }")
            buttons.addWidget(b)
        lay.addLayout(buttons)
        nav = QHBoxLayout()
        self.prev_button = QPushButton("◀ Previous")
        self.next_button = QPushButton("Next ▶")
        for b in (self.prev_button, self.next_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            nav.addWidget(b)
        lay.addLayout(nav)
        self.decision_label = QLabel("")
        self.decision_label.setWordWrap(True)
        lay.addWidget(self.decision_label)
        shift = QGroupBox("This shift")
        counts = QGridLayout(shift)
        counts.setHorizontalSpacing(18)
        self.count_labels: dict[str, QLabel] = {}
        for i, (key, title) in enumerate(COUNT_FIELDS + (("OK", "OK"), ("REVIEW", "review"), ("DEFECT", "defect"))):
            value = QLabel("0")
            value.setAlignment(Qt.AlignmentFlag.AlignRight)
            value.setStyleSheet("font-weight:bold;")
            counts.addWidget(QLabel(title), i % 4, 2 * (i // 4))
            counts.addWidget(value, i % 4, 2 * (i // 4) + 1)
            self.count_labels[key] = value
        lay.addWidget(shift)
        lay.addStretch(1)
        hint = QLabel("A accept · R reject · 1 2 3 overlays · ← → frames · Space pause")
        hint.setStyleSheet("color:#5f6368;")
        hint.setWordWrap(True)
        lay.addWidget(hint)

