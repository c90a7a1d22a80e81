"""The colour legend under the frame: the palette over the model's fixed range, threshold marked."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from ui.widgets.painted import PaintedWidget


class ColourLegendWidget(PaintedWidget):
    """Draws ``colours`` (256 x 3) from ``low`` to ``high`` with a tick at ``threshold``.

    The range is the model's calibration, the same for every frame, so the legend only changes
    when the layer shown changes (anomaly map or Grad-CAM, each in its own palette).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colours: np.ndarray | None = None
        self.low = self.high = self.threshold = 0.0
        self.title = ""
        self.setMinimumHeight(46)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_scale(self, colours: np.ndarray | None, low: float, high: float, threshold: float, title: str) -> None:
        self.colours, self.low, self.high, self.threshold, self.title = colours, low, high, threshold, title
        self.setToolTip(f"{title}: colours from {low:.3g} to {high:.3g}; the line is the threshold {threshold:.3g}")
        self.update()

    def _paint(self, p: QPainter) -> None:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self.colours is None:
            p.setPen(QColor("#5f6368"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no overlay shown")
            return
        fm = p.fontMetrics()
        left_text, right_text = f"{self.low:.3g}", f"{self.high:.3g}"
        x0 = fm.horizontalAdvance(left_text) + 8
        x1 = self.width() - fm.horizontalAdvance(right_text) - 8
        bar = QRectF(x0, 16, max(10, x1 - x0), 12)
        rgb = np.ascontiguousarray(np.repeat(self.colours[None, :, :], 2, axis=0))
        img = QImage(rgb.data, rgb.shape[1], rgb.shape[0], 3 * rgb.shape[1], QImage.Format.Format_RGB888).copy()
        p.drawImage(bar, img)
        p.setPen(QColor("#202124"))
        p.drawText(QRectF(0, 12, x0 - 4, 20), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, left_text)
        p.drawText(QRectF(x1 + 4, 12, 60, 20), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, right_text)
        p.drawText(QRectF(x0, 0, bar.width(), 15), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, self.title)
        if self.high > self.low:
            share = min(1.0, max(0.0, (self.threshold - self.low) / (self.high - self.low)))
            tx = bar.left() + share * bar.width()
            p.setPen(QPen(QColor("#ff28c8"), 3))
            p.drawLine(int(tx), int(bar.top()) - 3, int(tx), int(bar.bottom()) + 3)
            p.setPen(QColor("#202124"))
            label = f"threshold {self.threshold:.3g}"
            w = fm.horizontalAdvance(label)
            p.drawText(
                QRectF(min(max(x0, tx - w / 2), x1 - w), bar.bottom() + 1, w + 2, 14),
                Qt.AlignmentFlag.AlignLeft,
                label,
            )
