"""A widget base whose painter ends with the paint event."""

from __future__ import annotations

from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import QWidget


class PaintedWidget(QWidget):
    """Subclasses draw in ``_paint``; the painter is ended at once, never left to the garbage
    collector, which let it outlive the paint event and crashed libQt6Gui in the 100,000-frame soak."""

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        try:
            self._paint(p)
        finally:
            p.end()

    def _paint(self, p: QPainter) -> None:
        raise NotImplementedError
