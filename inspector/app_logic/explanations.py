"""What the engineer view shows of a model's explanation report: verdict rows and the boundary view.

Reads the ``explain_report.json`` that ``inspector explain-report`` writes next to the model (or
elsewhere with ``--out``); Qt-free and torch-free, so the view stays a drawing layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPORT_JSON = "explain_report.json"  # as inspector.explain_report.REPORT_JSON, without importing torch
COLUMNS = ("method", "explains", "verdict", "pixel AUROC", "sanity", "stable", "ms", "why")


def read_explain_report(path: str | Path) -> dict[str, Any] | None:
    """The report in a model directory (or the JSON file itself); None where there is none."""
    p = Path(path)
    p = p / REPORT_JSON if p.is_dir() else p
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == "inspector-explain-report" else None


def _f(v: Any, d: int = 3) -> str:
    return "-" if v is None else f"{v:.{d}f}"


def verdict_rows(doc: dict[str, Any]) -> list[list[str]]:
    """One row per method, in ``COLUMNS`` order; the every-frame method is marked."""
    shown = doc.get("shown_on_every_frame")
    rows = []
    for m in doc.get("methods", []):
        sanity = _f(m.get("sanity_backbone"), 2)
        if m.get("sanity_labels") is not None:
            sanity += f" / {_f(m['sanity_labels'], 2)}"
        rows.append(
            [
                m["name"] + (" (on every frame)" if m["name"] == shown else ""),
                m["target"],
                m["verdict"],
                _f(m.get("pixel_auroc")),
                sanity,
                f"{_f(m.get('stability_shift'), 2)} / {_f(m.get('stability_jpeg'), 2)}",
                _f(m.get("ms"), 0),
                "; ".join(m.get("reasons", [])),
            ]
        )
    return rows
