"""A frame shown as large as its space allows, aspect kept; it only draws what it is given."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from ui.widgets.painted import PaintedWidget


def to_qimage(rgb: np.ndarray) -> QImage:
    """RGB uint8 H x W x 3 -> a QImage that owns a copy of the pixels."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("expected an RGB uint8 image")
    data = np.ascontiguousarray(rgb)
    h, w = data.shape[:2]
    return QImage(data.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class FrameWidget(PaintedWidget):
    """Paints one RGB frame scaled to fit; a caption shows when there is no frame."""

    def __init__(self, placeholder: str = "no frame", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._array: np.ndarray | None = None
        self._placeholder = placeholder
        self.setMinimumSize(240, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_frame(self, rgb: np.ndarray | None, placeholder: str | None = None) -> None:
        self._array = rgb
        self._image = to_qimage(rgb) if rgb is not None else None
        if placeholder is not None:
            self._placeholder = placeholder
        self.update()

    def frame(self) -> np.ndarray | None:
        """The pixels now shown (tests compare them when an overlay is toggled)."""
        return self._array

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(640, 480)

    def _paint(self, p: QPainter) -> None:
        p.fillRect(self.rect(), QColor("#1e2126"))
        if self._image is None:
            p.setPen(QColor("#9aa0a6"))
            f = QFont(self.font())
            f.setPointSizeF(f.pointSizeF() * 1.4)
            p.setFont(f)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            return
        size = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        target = QRect(0, 0, size.width(), size.height())
        target.moveCenter(self.rect().center())
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawImage(target, self._image)
