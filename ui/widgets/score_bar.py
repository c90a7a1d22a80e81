"""The score on a horizontal bar with the OK / REVIEW / DEFECT zones and their thresholds."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from ui.widgets.painted import PaintedWidget

ZONE_COLOURS = {"OK": "#d7efd9", "REVIEW": "#fbe7bf", "DEFECT": "#f6d0cd"}


class ScoreBarWidget(PaintedWidget):
    """Draws zones below ``review``, between, and above ``decision``; the score as a marker.

    The scale runs to 1.5 x the decision threshold (or past the score), so the threshold sits at
    the same place for every frame and an operator reads the distance to it at a glance.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.score: float | None = None
        self.review: float | None = None
        self.decision: float | None = None
        self.setMinimumHeight(56)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_values(self, score: float | None, review: float | None, decision: float | None) -> None:
        self.score, self.review, self.decision = score, review, decision
        self.update()

    def _x(self, value: float, top: float, width: float) -> float:
        return 8 + width * max(0.0, min(1.0, value / top))

    def _paint(self, p: QPainter) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width() - 16, self.height()
        bar = QRectF(8, 6, w, h - 30)
        if self.decision is None or self.decision <= 0:
            p.fillRect(bar, QColor("#e8eaed"))
            p.drawText(bar, Qt.AlignmentFlag.AlignCenter, "score")
            return
        top = max(self.decision * 1.5, (self.score or 0) * 1.05)
        review = self.review if self.review is not None else self.decision
        xr, xd = self._x(review, top, w), self._x(self.decision, top, w)
        p.fillRect(QRectF(bar.left(), bar.top(), xr - bar.left(), bar.height()), QColor(ZONE_COLOURS["OK"]))
        p.fillRect(QRectF(xr, bar.top(), xd - xr, bar.height()), QColor(ZONE_COLOURS["REVIEW"]))
        p.fillRect(QRectF(xd, bar.top(), bar.right() - xd, bar.height()), QColor(ZONE_COLOURS["DEFECT"]))
        small = QFont(self.font())
        small.setPointSizeF(max(7.0, small.pointSizeF() * 0.85))
        p.setFont(small)
        p.setPen(QPen(QColor("#5f6368"), 1, Qt.PenStyle.DashLine))
        p.drawLine(int(xr), int(bar.top()), int(xr), int(bar.bottom()))
        p.setPen(QPen(QColor("#202124"), 2))
        p.drawLine(int(xd), int(bar.top()), int(xd), int(bar.bottom()))
        p.drawText(
            QRectF(xd - 60, bar.bottom() + 2, 120, 20), Qt.AlignmentFlag.AlignCenter, f"threshold {self.decision:.3f}"
        )
        if self.review is not None and xd - xr > 40:
            p.setPen(QColor("#5f6368"))
            p.drawText(QRectF(xr - 60, bar.bottom() + 2, 110, 20), Qt.AlignmentFlag.AlignRight, "review")
        if self.score is not None:
            xs = self._x(self.score, top, w)
            p.setPen(QPen(QColor("#202124"), 1))
            p.setBrush(QColor("#1a73e8"))
            p.drawRoundedRect(QRectF(xs - 4, bar.top() - 4, 8, bar.height() + 8), 3, 3)
