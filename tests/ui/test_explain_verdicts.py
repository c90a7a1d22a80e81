"""The engineer's explanation window: verdict rows and the decision-boundary plot from a report JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inspector.app_logic.explanations import COLUMNS, read_explain_report, verdict_rows
from ui.widgets.explain_verdicts import ExplainVerdictsWidget


def report_doc() -> dict:
    g = np.linspace(-1, 1, 5)
    method = {
        "target": "score",
        "pixel_auroc": 0.95,
        "sanity_backbone": 0.1,
        "sanity_labels": None,
        "stability_shift": 0.8,
        "stability_jpeg": 0.9,
        "ms": 2.0,
        "reasons": ["passes every checked rule"],
    }
    return {
        "format": "inspector-explain-report",
        "manifest": "pills",
        "created_at": "2026-01-01T00:00:00+00:00",
        "shown_on_every_frame": "gradcam",
        "sample": {"localisation_on": "masks"},
        "methods": [
            {**method, "name": "gradcam", "verdict": "adds value here"},
            {**method, "name": "lime", "verdict": "misleading", "reasons": ["fails sanity"]},
        ],
        "decision_boundary": {
            "points": [[-0.5, -0.5], [0.5, 0.5], [0.6, 0.4]],
            "labels": ["good", "chip", "chip"],
            "threshold": 1.0,
            "explained_variance": [0.6, 0.2],
            "grid_x": g.tolist(),
            "grid_y": g.tolist(),
            "grid_score": (np.add.outer(g, g) + 1).tolist(),
        },
    }


def test_report_is_read_from_a_model_directory_and_bad_files_are_none(tmp_path: Path) -> None:
    assert read_explain_report(tmp_path) is None
    (tmp_path / "explain_report.json").write_text("{not json")
    assert read_explain_report(tmp_path) is None
    (tmp_path / "explain_report.json").write_text(json.dumps(report_doc()))
    doc = read_explain_report(tmp_path)
    assert doc is not None
    rows = verdict_rows(doc)
    assert rows[0][0] == "gradcam (on every frame)" and rows[1][2] == "misleading" and rows[1][-1] == "fails sanity"
    assert all(len(r) == len(COLUMNS) for r in rows)


def test_widget_shows_verdicts_and_the_boundary(qtbot) -> None:
    w = ExplainVerdictsWidget()
    qtbot.addWidget(w)
    w.show_report(report_doc())
    assert w.table.rowCount() == 2
    assert w.table.item(1, COLUMNS.index("verdict")).text() == "misleading"
    assert "gradcam" in w.caption.text()
    ax = w.figure.axes[0]
    assert len(ax.collections) >= 2  # the shaded region, the boundary line and the points
    w.show_report(None)
    assert w.table.rowCount() == 0
