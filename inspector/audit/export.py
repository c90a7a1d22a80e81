"""Exports of the decision log: CSV for tools, PDF for people (Part 11 §11.50 manifestation).

Pure writers over plain records; the store checks the role and logs the export.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from inspector.audit.chain import VerifyResult
from inspector.audit.errors import AuditError
from inspector.audit.records import DecisionView

COLUMNS = (
    "decision_id",
    "time_utc",
    "user_id",
    "user_name",
    "user_role",
    "decision",
    "signature_meaning",
    "reason_code",
    "reason_text",
    "supersedes",
    "superseded_by",
    "inspection_id",
    "station",
    "source",
    "frame_index",
    "frame_sha256",
    "model_version",
    "weights_hash",
    "backbone",
    "score",
    "threshold",
    "model_verdict",
    "disagrees",
)


def utc(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _row(d: DecisionView) -> list[object]:
    return [
        d.id,
        utc(d.created_at),
        d.user_id,
        d.user_name,
        d.user_role,
        d.decision,
        d.meaning,
        d.reason_code or "",
        d.reason_text or "",
        d.supersedes_id or "",
        d.superseded_by or "",
        d.inspection_id,
        d.station,
        d.source,
        d.frame_index,
        d.frame_sha256,
        d.model_version_id,
        d.weights_hash,
        d.backbone,
        f"{d.score:.6g}",
        f"{d.threshold:.6g}",
        d.verdict,
        "yes" if d.disagrees else "no",
    ]


def _safe(value: object) -> object:
    """Neutralises spreadsheet formulas (CSV injection) in free-text cells."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _open_for_write(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AuditError(f"{path}: cannot write the export ({exc.strerror})") from None


def write_csv(rows: Sequence[DecisionView], path: Path) -> None:
    """One line per decision, UTF-8 with header; superseded decisions stay, linked both ways."""
    _open_for_write(path)
    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for d in rows:
                w.writerow([_safe(v) for v in _row(d)])
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise AuditError(f"{path}: cannot write the export ({exc.strerror})") from None


def write_pdf(rows: Sequence[DecisionView], result: VerifyResult, path: Path, *, store: str, exported_by: str) -> None:
    """A landscape report: header with the verification result, then one row per signature."""
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    _open_for_write(path)
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=7, leading=8.5)

    def p(text: object) -> Paragraph:
        return Paragraph(escape(str(text)), small)

    story = [
        Paragraph("Inspection decision audit trail", styles["Title"]),
        Paragraph(
            escape(f"Store: {store or 'database'} — exported {utc(datetime.now(UTC))} by {exported_by}"),
            styles["BodyText"],
        ),
        Paragraph(escape(f"Verification: {result.summary()}"), styles["BodyText"]),
    ]
    for w in result.warnings:
        story.append(Paragraph(escape(f"Warning: {w}"), styles["BodyText"]))
    for prob in result.problems[:20]:
        story.append(Paragraph(escape(f"Problem: {prob}"), styles["BodyText"]))
    story.append(Spacer(1, 4 * mm))
    header = [
        "#",
        "Time (UTC)",
        "Signed by",
        "Meaning of signature",
        "Reason",
        "Inspection",
        "Model verdict",
        "Model",
    ]
    data: list[list[object]] = [[p(h) for h in header]]
    for d in rows:
        reason = " — ".join(x for x in (d.reason_code, d.reason_text) if x) or ""
        if d.superseded_by:
            reason = (reason + f" [superseded by #{d.superseded_by}]").strip()
        data.append(
            [
                p(d.id),
                p(utc(d.created_at)),
                p(f"{d.user_name} ({d.user_id}, {d.user_role})"),
                p(d.meaning),
                p(reason),
                p(f"#{d.inspection_id} {d.station} frame {d.frame_index}\n{d.source}"),
                p(f"{d.verdict} (score {d.score:.4g} / thr {d.threshold:.4g})"),
                p(f"v{d.model_version_id} {d.backbone} {d.weights_hash[:12]}"),
            ]
        )
    if not rows:
        data.append([p("no decisions recorded")] + [p("")] * (len(header) - 1))
    widths = [10, 30, 40, 45, 55, 45, 35, 0]
    avail = landscape(A4)[0] - 20 * mm
    widths[-1] = avail / mm - sum(widths)
    table = Table(data, colWidths=[w * mm for w in widths], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story.append(table)
    doc = SimpleDocTemplate(
        str(path),
        pagesize=landscape(A4),
        leftMargin=10 * mm,
        rightMargin=10 * mm,
        topMargin=10 * mm,
        bottomMargin=10 * mm,
        title="Inspection decision audit trail",
    )
    try:
        doc.build(story)
    except OSError as exc:
        raise AuditError(f"{path}: cannot write the export ({exc.strerror})") from None
