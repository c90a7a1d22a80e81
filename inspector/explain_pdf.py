"""The explanation report as a PDF (reportlab): verdict table, rules, example maps, decision boundary.

The decision-boundary plot is drawn with reportlab's own graphics, so the report needs no
plotting library: grid cells whose interpolated score is at or above the threshold are shaded,
images are dots coloured by class.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from reportlab.graphics.shapes import Circle, Drawing, Rect, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Image, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

PALETTE = [colors.HexColor(c) for c in ("#1f77b4", "#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")]
VERDICT_COLOUR = {"adds value here": "#d8f0d8", "decoration": "#f4f0d0", "misleading": "#f6d4d4"}


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _table(doc: dict[str, Any]) -> Table:
    head = [
        "method",
        "target",
        "verdict",
        "px AUROC",
        "AUPRO",
        "deletion\n(rand / shift)",
        "insertion\n(rand / shift)",
        "sanity\nbackbone",
        "sanity\nlabels",
        "stable\nshift / JPEG",
        "agree",
        "ms",
    ]
    rows = [head]
    for m in doc["methods"]:
        rows.append(
            [
                m["name"] + (" *" if m["fast"] else ""),
                m["target"],
                m["verdict"],
                _f(m["pixel_auroc"]),
                _f(m["aupro"]),
                f"{_f(m['deletion'])}\n({_f(m['deletion_random'])} / {_f(m['deletion_shifted'])})",
                f"{_f(m['insertion'])}\n({_f(m['insertion_random'])} / {_f(m['insertion_shifted'])})",
                _f(m["sanity_backbone"], 2),
                _f(m["sanity_labels"], 2),
                f"{_f(m['stability_shift'], 2)} / {_f(m['stability_jpeg'], 2)}",
                _f(m["agreement"], 2),
                _f(m["ms"], 0),
            ]
        )
    t = Table(rows, repeatRows=1)
    style = [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 7),
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
    ]
    for i, m in enumerate(doc["methods"], start=1):
        style.append(("BACKGROUND", (2, i), (2, i), colors.HexColor(VERDICT_COLOUR.get(m["verdict"], "#ffffff"))))
    t.setStyle(TableStyle(style))
    return t


def boundary_drawing(b: dict[str, Any], width: float = 150 * mm, height: float = 100 * mm) -> Drawing:
    """Scatter of the projected images over the shaded region where the interpolated score >= threshold."""
    d = Drawing(width, height)
    gx, gy, grid = np.array(b["grid_x"]), np.array(b["grid_y"]), np.array(b["grid_score"])
    pts = np.array(b["points"])

    def sx(v: float) -> float:
        return 10 + (v - gx[0]) / (gx[-1] - gx[0]) * (width - 110)

    def sy(v: float) -> float:
        return 10 + (v - gy[0]) / (gy[-1] - gy[0]) * (height - 20)

    cw, ch = (sx(gx[1]) - sx(gx[0])), (sy(gy[1]) - sy(gy[0]))
    d.add(Rect(10, 10, width - 110, height - 20, fillColor=colors.white, strokeColor=colors.grey))
    for r in range(grid.shape[0]):
        for c in range(grid.shape[1]):
            if grid[r, c] >= b["threshold"]:
                x0, y0 = sx(gx[c]) - cw / 2, sy(gy[r]) - ch / 2
                d.add(Rect(x0, y0, cw, ch, fillColor=colors.HexColor("#f8dede"), strokeColor=None, strokeWidth=0))
    classes = sorted(set(b["labels"]), key=lambda c: (c != "good", c))
    for k, cls in enumerate(classes):
        col = PALETTE[k % len(PALETTE)]
        for p, lab in zip(pts, b["labels"], strict=True):
            if lab == cls:
                d.add(Circle(sx(p[0]), sy(p[1]), 2.2, fillColor=col, strokeColor=col))
        d.add(Circle(width - 92, height - 20 - 12 * k, 3, fillColor=col, strokeColor=col))
        d.add(String(width - 85, height - 23 - 12 * k, cls, fontSize=8))
    d.add(Rect(width - 95, height - 23 - 12 * len(classes), 6, 6, fillColor=colors.HexColor("#f8dede"), strokeWidth=0))
    d.add(String(width - 85, height - 23 - 12 * len(classes), "score >= threshold", fontSize=8))
    ev = b["explained_variance"]
    d.add(String(12, 2, f"PC1 ({ev[0]:.0%} of variance) vs PC2 ({ev[1]:.0%})", fontSize=7))
    return d


def _png(image: np.ndarray, width: float) -> Image:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    h, w = image.shape[:2]
    return Image(io.BytesIO(buf.tobytes()), width=width, height=width * h / w)


def write_pdf(path: Path, doc: dict[str, Any], example: np.ndarray) -> Path:
    """Renders the report's JSON document (and one example panel) to a landscape A4 PDF."""
    styles = getSampleStyleSheet()
    body, small = styles["BodyText"], styles["BodyText"].clone("small", fontSize=7.5, leading=9)
    s = doc["sample"]
    story: list[Any] = [
        Paragraph(f"Explanation report: {Path(doc['model_dir']).name} on {doc['manifest']}", styles["Title"]),
        Paragraph(
            f"Model memory bank {doc['model_memory_bank_sha256'][:16]}..., input {doc['input_size']} px, "
            f"made {doc['created_at']} in {doc['seconds']} s. {len(s['defective'])} defective test images "
            f"(seed {s['seed']}, at most {s['limit_per_class']} per class); localisation on "
            f"{len(s['localisation'])} images with {s['localisation_on']}; centred blob's pixel AUROC "
            f"{_f(doc['centred_blob_pixel_auroc'])}. Defect head: {doc['defect_head']}. Shown to the operator on "
            f"every frame: <b>{doc['shown_on_every_frame']}</b> (* = fast enough for every frame).",
            body,
        ),
        Spacer(1, 4 * mm),
        _table(doc),
        Spacer(1, 3 * mm),
        Paragraph("<b>Rules</b> (inspector/explain_verdict.py):", small),
        *[Paragraph(f"- {r}", small) for r in doc["rules"]],
        Paragraph(
            "Deletion: mean normalised output while the top 0-50 % pixels are replaced by a good image's "
            "(lower = more faithful); insertion: the reverse (higher = more faithful); references: a smooth "
            "random map and the method's map shifted to a random place. Sanity and stability: Spearman rank "
            "correlation of pixel maps. Agreement: IoU of top-10 % regions with the anomaly map.",
            small,
        ),
        PageBreak(),
        Paragraph("Why each verdict", styles["Heading2"]),
        *[Paragraph(f"<b>{m['name']}</b> ({m['verdict']}): {'; '.join(m['reasons'])}", small) for m in doc["methods"]],
        Spacer(1, 3 * mm),
        Paragraph(f"Every method on one defective frame ({s['defective'][0]})", styles["Heading2"]),
        _png(example, 250 * mm),
        PageBreak(),
        Paragraph("Decision boundary", styles["Heading2"]),
        Paragraph(
            "Test images in a 2D PCA projection of standardised pooled backbone features; shaded where the "
            "score, interpolated from the nearest images, reaches the decision threshold "
            f"({doc['decision_boundary']['threshold']:.3f}). Defective images inside the good cluster: "
            f"{', '.join(doc['decision_boundary']['near_good_sources']) or 'none'}.",
            small,
        ),
        boundary_drawing(doc["decision_boundary"]),
    ]
    margins = {"leftMargin": 12 * mm, "rightMargin": 12 * mm, "topMargin": 10 * mm, "bottomMargin": 10 * mm}
    pdf = SimpleDocTemplate(str(path), pagesize=landscape(A4), **margins)
    pdf.build(story)
    return path
