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
    "signer_recorded_at_signing",
    "record_problems",
)


def utc(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def record_marks(rows: Sequence[DecisionView], result: VerifyResult) -> dict[int, list[str]]:
    """Per decision id, the verify problems of the decision, its inspection or its model."""
    by_key: dict[tuple[str, object], list[str]] = {}
    for p in result.problems:
        if p.table is not None and p.row_id is not None:
            by_key.setdefault((p.table, p.row_id), []).append(str(p))
    marks: dict[int, list[str]] = {}
    for d in rows:
        found = (
            by_key.get(("decisions", d.id), [])
            + by_key.get(("inspections", d.inspection_id), [])
            + by_key.get(("model_versions", d.model_version_id), [])
            + by_key.get(("model_files", d.model_version_id), [])
        )
        if found:
            marks[d.id] = found
    return marks


def _row(d: DecisionView, marks: Sequence[str]) -> list[object]:
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
        "yes" if d.signer_recorded else "no (current name and role)",
        " | ".join(marks),
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


def write_csv(rows: Sequence[DecisionView], path: Path, result: VerifyResult | None = None) -> None:
    """One line per decision, UTF-8 with header; superseded decisions stay, linked both ways.

    Fields of any size are written whole (a reader may need ``csv.field_size_limit`` raised);
    a row whose record verify found broken says so in ``record_problems``.
    """
    marks = record_marks(rows, result) if result is not None else {}
    _open_for_write(path)
    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for d in rows:
                w.writerow([_safe(v) for v in _row(d, marks.get(d.id, []))])
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise AuditError(f"{path}: cannot write the export ({exc.strerror})") from None


def write_pdf(rows: Sequence[DecisionView], result: VerifyResult, path: Path, *, store: str, exported_by: str) -> None:
    """A report an auditor can hand on: the verification result first, then one card per
    signature (name and role at signing, UTC time, meaning, reason wrapped over as many pages as
    it needs), broken records and overruled model verdicts marked. Every glyph is embedded."""
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import HRFlowable, Paragraph, SimpleDocTemplate, Spacer

    from inspector.audit.pdf_text import FONTS, chunks, markup, missing_glyphs, paragraph_markup, register_fonts

    register_fonts()
    _open_for_write(path)
    body = ParagraphStyle("body", fontName="InspSans", fontSize=8.5, leading=11, splitLongWords=1)
    small = ParagraphStyle("small", parent=body, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#333333"))
    title = ParagraphStyle("title", parent=body, fontName="InspSansBold", fontSize=15, leading=19, spaceAfter=4)
    band = ParagraphStyle("band", parent=body, borderPadding=2, spaceBefore=3, spaceAfter=3)
    bad = ParagraphStyle("bad", parent=band, textColor=colors.white, backColor=colors.HexColor("#c5221f"))
    warn = ParagraphStyle("warn", parent=band, backColor=colors.HexColor("#fbbc04"))
    good = ParagraphStyle("good", parent=band, textColor=colors.white, backColor=colors.HexColor("#188038"))
    marks = record_marks(rows, result)

    story: list[object] = [
        Paragraph("Inspection decision audit trail", title),
        Paragraph(markup(f"Store: {store or 'database'} — exported {utc(datetime.now(UTC))} by {exported_by}"), body),
        Spacer(1, 2 * mm),
        Paragraph(markup(f"Verification: {result.summary()}"), good if result.ok else bad),
        Spacer(1, 2 * mm),
    ]
    texts = (f"{d.user_name}{d.reason_code or ''}{d.reason_text or ''}{d.source}{d.station}" for d in rows)
    missing = missing_glyphs("".join(texts))
    if missing:  # said on the page, so a box is never mistaken for what was signed
        packages = " ".join(sorted({pkg for _, _, pkg, _ in FONTS}))
        story.append(
            Paragraph(
                f"Warning: {len(missing)} character(s) have no installed font and show as boxes "
                f"(install {packages}): " + escape(" ".join(f"U+{ord(c):04X}" for c in sorted(missing)[:40])),
                warn,
            )
        )
    for w in result.warnings:
        story.append(Paragraph(markup(f"Warning: {w}"), small))
    for prob in result.problems[:200]:
        story.append(Paragraph(markup(f"Problem: {prob}"), small))
    if len(result.problems) > 200:
        story.append(
            Paragraph(f"... and {len(result.problems) - 200} more problems (run inspector audit verify)", small)
        )
    story.append(Spacer(1, 3 * mm))
    if not rows:
        story.append(Paragraph("no decisions recorded", body))
    for d in rows:
        story.append(HRFlowable(width="100%", thickness=0.4, color=colors.grey, spaceBefore=3, spaceAfter=3))
        head = f"<b>Decision #{d.id}</b> · {utc(d.created_at)} · {markup(d.meaning)}"
        story.append(Paragraph(head, body))
        for m in marks.get(d.id, []):
            story.append(Paragraph(markup(f"BROKEN RECORD: {m}"), bad))
        if d.disagrees:
            story.append(
                Paragraph(
                    markup(f"OVERRULES THE MODEL: {d.decision}ed the model's {d.verdict} verdict (reason below)"), warn
                )
            )
        at = "at signing" if d.signer_recorded else "now; not recorded at signing (before schema 0002)"
        # Each piece gets its own bidi run, so a right-to-left name stays a name in a left-to-right line.
        signer = markup(d.user_name) + " " + markup(f"({d.user_id}, {d.user_role} {at})")
        story.append(Paragraph("Signed by: " + signer, body))
        if d.superseded_by:
            story.append(Paragraph(f"Superseded by decision #{d.superseded_by}", small))
        story.append(
            Paragraph(
                markup(
                    f"Inspection #{d.inspection_id} · {d.station} · frame {d.frame_index} · {d.source[:500]} · "
                    f"model verdict {d.verdict} (score {d.score:.4g} / threshold {d.threshold:.4g}) · "
                    f"model v{d.model_version_id} {d.backbone} {d.weights_hash[:12]} · "
                    f"frame sha256 {d.frame_sha256[:16]}"
                ),
                small,
            )
        )
        if d.reason_code:
            story.append(Paragraph("Reason code: " + markup(d.reason_code), body))
        if d.reason_text:
            groups = chunks(d.reason_text)
            story.append(Paragraph(f"Reason ({len(d.reason_text):,} characters): " + paragraph_markup(groups[0]), body))
            story += [Paragraph(paragraph_markup(g), body) for g in groups[1:]]
    doc = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=14 * mm,
        rightMargin=14 * mm,
        topMargin=14 * mm,
        bottomMargin=14 * mm,
        title="Inspection decision audit trail",
    )
    try:
        doc.build(story, onFirstPage=_footer, onLaterPages=_footer)
    except OSError as exc:
        raise AuditError(f"{path}: cannot write the export ({exc.strerror})") from None


def _footer(canvas: object, doc: object) -> None:
    canvas.saveState()  # type: ignore[attr-defined]
    canvas.setFont("InspSans", 7)  # type: ignore[attr-defined]
    canvas.drawRightString(200 * 2.8346, 8 * 2.8346, f"page {doc.page}")  # type: ignore[attr-defined]
    canvas.restoreState()  # type: ignore[attr-defined]
