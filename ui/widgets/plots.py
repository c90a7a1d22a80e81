"""ROC curve and score histograms (good vs defective) with the threshold line, via matplotlib's QtAgg."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtWidgets import QWidget


class EvaluationPlotWidget(FigureCanvasQTAgg):
    """Left: ROC; right: histograms with the threshold. Moving the threshold redraws one line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self.figure = Figure(figsize=(8, 3.2), layout="constrained")
        super().__init__(self.figure)
        self.setParent(parent)
        self.ax_roc, self.ax_hist = self.figure.subplots(1, 2)
        self._line = None
        self._roc_point = None
        self.scores = np.zeros(0)
        self.labels = np.zeros(0, int)
        self.show_empty()

    def show_empty(self, message: str = "evaluate a model to see its ROC and score histograms") -> None:
        for ax in (self.ax_roc, self.ax_hist):
            ax.clear()
            ax.set_xticks([])
            ax.set_yticks([])
        self.ax_roc.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=9)
        self._line = self._roc_point = None
        self.draw_idle()

    def show_evaluation(
        self, scores: np.ndarray, labels: np.ndarray, roc: tuple[np.ndarray, np.ndarray], threshold: float
    ) -> None:
        self.scores, self.labels = scores, labels
        ax = self.ax_roc
        ax.clear()
        fpr, tpr = roc
        if len(fpr):
            ax.plot(fpr, tpr, color="#1a73e8", lw=2)
            ax.plot([0, 1], [0, 1], color="#bdc1c6", lw=1, ls="--")
        else:
            ax.text(0.5, 0.5, "ROC needs good and defective images", ha="center", va="center", fontsize=9)
        ax.set_xlabel("false-positive rate (good parts rejected)")
        ax.set_ylabel("true-positive rate")
        ax.set_title("ROC", fontsize=10)
        h = self.ax_hist
        h.clear()
        bins = np.linspace(float(scores.min()), float(scores.max()) + 1e-9, 25) if len(scores) else 10
        h.hist(scores[labels == 0], bins=bins, alpha=0.6, color="#1e8e3e", label="good")
        h.hist(scores[labels == 1], bins=bins, alpha=0.6, color="#d93025", label="defective")
        h.set_xlabel("anomaly score")
        h.set_ylabel("images")
        h.set_title("score histograms", fontsize=10)
        h.legend(fontsize=8)
        self._line = h.axvline(threshold, color="#202124", lw=2, label="threshold")
        self._roc_point = None
        self.set_threshold(threshold)

    def set_threshold(self, threshold: float) -> None:
        if self._line is None:
            return
        self._line.set_xdata([threshold, threshold])
        good, bad = self.scores[self.labels == 0], self.scores[self.labels == 1]
        if len(good) and len(bad):
            x, y = float((good >= threshold).mean()), float((bad >= threshold).mean())
            if self._roc_point is None:
                (self._roc_point,) = self.ax_roc.plot([x], [y], "o", color="#202124", ms=7)
            else:
                self._roc_point.set_data([x], [y])
        self.draw_idle()
