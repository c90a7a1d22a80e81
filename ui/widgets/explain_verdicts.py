"""The engineer's view of a model's explanation report: verdict per method and the decision boundary."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from inspector.app_logic.explanations import COLUMNS, verdict_rows

COLOURS = {"adds value here": "#d8f0d8", "decoration": "#f4f0d0", "misleading": "#f6d4d4"}


class ExplainVerdictsWidget(QWidget):
    """Verdict table on top, the 2D PCA view of good and defective images with the threshold below."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        self.caption = QLabel("no explanation report for this model: run inspector explain-report")
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        lay.addWidget(self.table, 1)
        self.figure = Figure(figsize=(5, 3.2), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        lay.addWidget(self.canvas, 1)

    def show_report(self, doc: dict[str, Any] | None) -> None:
        self.figure.clear()
        if doc is None:
            self.table.setRowCount(0)
            self.canvas.draw_idle()
            return
        self.caption.setText(
            f"{doc['manifest']}: shown on every frame: {doc['shown_on_every_frame']}; "
            f"localisation on {doc['sample']['localisation_on']}; made {doc['created_at']}"
        )
        rows = verdict_rows(doc)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                if COLUMNS[c] == "verdict" and text in COLOURS:
                    item.setBackground(QColor(COLOURS[text]))
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        self._boundary(doc["decision_boundary"])

    def _boundary(self, b: dict[str, Any]) -> None:
        ax = self.figure.add_subplot(1, 1, 1)
        gx, gy, grid = np.array(b["grid_x"]), np.array(b["grid_y"]), np.array(b["grid_score"])
        ax.contourf(gx, gy, grid >= b["threshold"], levels=[0.5, 1.5], colors=["#f8dede"])
        ax.contour(gx, gy, grid, levels=[b["threshold"]], colors=["#c03030"], linewidths=1)
        pts, labels = np.array(b["points"]), np.array(b["labels"])
        for cls in sorted(set(labels), key=lambda c: (c != "good", c)):
            sel = labels == cls
            ax.scatter(pts[sel, 0], pts[sel, 1], s=14, label=cls)
        ev = b["explained_variance"]
        ax.set_xlabel(f"PC1 ({ev[0]:.0%})")
        ax.set_ylabel(f"PC2 ({ev[1]:.0%})")
        ax.set_title("test images; shaded: score >= threshold", fontsize=9)
        ax.legend(fontsize=7)
        self.canvas.draw_idle()
