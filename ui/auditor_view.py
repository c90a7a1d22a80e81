"""The auditor's screen: the decision log with filters, the frame as recorded, verify, export.

Read-only except for exports, which the store logs. The detail pane draws the frame and maps
from the store (``store.inspection``), never from a live model, so it shows what was decided on.
Verify and export read the whole store, so they run on a worker and report by signal.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from inspector import app_logic
from inspector.audit import DecisionView
from inspector.errors import InspectorError
from ui.widgets.image_view import FrameWidget
from ui.workers import start_job, stop_jobs

COLUMNS = ("id", "time (UTC)", "operator", "station", "model", "verdict", "score", "decision", "reason")


def _date_to_utc(d: QDate, end: bool = False) -> datetime:
    """A local calendar day's start (or the next day's start) as a UTC time."""
    day = datetime(d.year(), d.month(), d.day()) + (timedelta(days=1) if end else timedelta())
    return datetime.combine(day.date(), time()).astimezone().astimezone(UTC)


class AuditorWidget(QWidget):
    """Draws the decisions the store returns for the chosen filters; forwards verify and export."""

    verified = Signal(object)  # True intact, False broken, None could not run
    exported = Signal(object)  # number of decisions written, None when refused

    def __init__(self, session: app_logic.AppSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.rows: list[DecisionView] = []
        lay = QVBoxLayout(self)
        lay.addLayout(self._filters())
        self.verify_label = QLabel("Chain not verified yet")
        self.verify_label.setWordWrap(True)
        self._style_verify(None)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selected)
        split.addWidget(self.table)
        detail = QWidget()
        dl = QVBoxLayout(detail)
        self.detail_frame = FrameWidget("select a decision to see the frame as it was recorded")
        self.detail_caption = QLabel("")
        self.detail_caption.setWordWrap(True)
        dl.addWidget(self.detail_frame, 1)
        dl.addWidget(self.detail_caption)
        split.addWidget(detail)
        split.setSizes([640, 560])
        lay.addWidget(split, 1)
        bottom = QHBoxLayout()
        verify = QPushButton("Verify chain")
        verify.clicked.connect(self.verify)
        csv_b, pdf_b = QPushButton("Export CSV…"), QPushButton("Export PDF…")
        csv_b.clicked.connect(lambda: self._export_dialog("csv"))
        pdf_b.clicked.connect(lambda: self._export_dialog("pdf"))
        bottom.addWidget(verify)
        bottom.addWidget(self.verify_label, 1)
        bottom.addWidget(csv_b)
        bottom.addWidget(pdf_b)
        lay.addLayout(bottom)
        self.status = QLabel("")
        lay.addWidget(self.status)
        self.reload_choices()
        self.refresh()

    # ------------------------------------------------------------------ filters
    def _filters(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setSpacing(6)
        self.use_since, self.use_until = QCheckBox("from"), QCheckBox("to")
        today = QDate.currentDate()
        self.since, self.until = QDateEdit(today.addDays(-7)), QDateEdit(today)
        for cb, de in ((self.use_since, self.since), (self.use_until, self.until)):
            de.setCalendarPopup(True)
            de.setDisplayFormat("yyyy-MM-dd")
            row.addWidget(cb)
            row.addWidget(de)
            cb.toggled.connect(self.refresh)
            de.dateChanged.connect(self.refresh)
        self.operator, self.station, self.model, self.verdict = (QComboBox() for _ in range(4))
        for label, combo in (("operator", self.operator), ("station", self.station), ("model", self.model),
                             ("verdict", self.verdict)):
            row.addWidget(QLabel(label))
            row.addWidget(combo)
            # Long operator names must not widen the window past a 1280-pixel screen.
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
            combo.currentIndexChanged.connect(self.refresh)
        self.disagreements = QCheckBox("overruled")
        self.disagreements.toggled.connect(self.refresh)
        row.addWidget(self.disagreements)
        row.addStretch(1)
        return row

    def reload_choices(self) -> None:
        """Fills the combos from the store (users, stations seen, model versions)."""
        store = self.session.store
        try:
            users = [u for u in store.list_users() if u.role == "operator"]
            stations = sorted({d.station for d in store.decisions()})
            models = store.models()
        except InspectorError as exc:
            self.status.setText(f"cannot read the audit store: {exc}")
            users, stations, models = [], [], []
        choices = {
            self.operator: [(f"{u.name} ({u.id})", u.id) for u in users],
            self.station: [(s, s) for s in stations],
            self.model: [(f"v{m.id} {m.backbone}", m.id) for m in models],
            self.verdict: [(v, v) for v in ("OK", "REVIEW", "DEFECT", "OOD")],
        }
        for combo, items in choices.items():
            combo.blockSignals(True)
            combo.clear()
            combo.addItem("any", None)
            for text, data in items:
                combo.addItem(text, data)
            combo.blockSignals(False)

    def filters(self) -> dict[str, object]:
        return app_logic.decision_filters(
            since=_date_to_utc(self.since.date()) if self.use_since.isChecked() else None,
            until=_date_to_utc(self.until.date(), end=True) if self.use_until.isChecked() else None,
            operator=self.operator.currentData(),
            station=self.station.currentData(),
            model_version=self.model.currentData(),
            verdict=self.verdict.currentData(),
            disagreements_only=self.disagreements.isChecked(),
        )

    def refresh(self, *_: object) -> None:
        try:
            self.rows = self.session.store.decisions(**self.filters())
        except InspectorError as exc:
            self.status.setText(f"cannot read decisions: {exc}")
            return
        self.table.setRowCount(len(self.rows))
        for r, d in enumerate(reversed(self.rows)):  # newest first
            values = (str(d.id), d.created_at.strftime("%Y-%m-%d %H:%M:%S"), d.user_name, d.station,
                      f"v{d.model_version_id}", d.verdict, f"{d.score:.4f}",
                      d.decision + (" (corrected)" if d.superseded_by else ""),
                      d.reason_text or d.reason_code or "")
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                if d.disagrees and c == 7:
                    item.setForeground(Qt.GlobalColor.darkRed)
                self.table.setItem(r, c, item)
        self.status.setText(f"{len(self.rows)} decision(s) shown")

    # ------------------------------------------------------------------ detail
    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        d = list(reversed(self.rows))[rows[0].row()]
        try:
            image, caption = app_logic.recorded_view(self.session.store, d.inspection_id)
        except InspectorError as exc:
            self.detail_frame.set_frame(None, f"cannot load inspection {d.inspection_id}: {exc}")
            return
        self.detail_frame.set_frame(image, caption)
        # The frame was re-hashed before drawing (inspector.app_logic.recorded_view): say a mismatch loudly.
        self.detail_caption.setStyleSheet("color:#c5221f;" if app_logic.FRAME_MISMATCH in caption else "")
        who = f"{d.user_name} ({d.user_id}, {d.user_role})"
        reason = f" · reason: {d.reason_text or d.reason_code}" if (d.reason_text or d.reason_code) else ""
        self.detail_caption.setText(
            f"<b>{caption}</b><br>{d.meaning} by {who} at {d.created_at:%Y-%m-%d %H:%M:%S} UTC{reason}<br>"
            f"model v{d.model_version_id} ({d.backbone}, weights {d.weights_hash[:12]}) · frame sha256 "
            f"{d.frame_sha256[:16]}"
        )

    # ------------------------------------------------------------------ verify and export
    def _style_verify(self, ok: bool | None) -> None:
        colour = {None: ("#e8eaed", "#202124"), True: ("#1e8e3e", "white"), False: ("#d93025", "white")}[ok]
        self.verify_label.setStyleSheet(
            f"background:{colour[0]}; color:{colour[1]}; padding:8px; border-radius:6px; font-weight:bold;"
        )

    def verify(self) -> None:
        """Starts the chain check on a worker; ``verified`` says the outcome."""
        self.verify_label.setText("Verifying the chain…")
        self._style_verify(None)
        start_job(self, self.session.store.verify, done=self._verify_done, failed=self._verify_failed)

    def _verify_failed(self, exc: BaseException) -> None:
        self.verify_label.setText(f"Verify could not run: {exc}")
        self._style_verify(False)
        self.verified.emit(None)

    def _verify_done(self, result: object) -> None:
        ok = bool(getattr(result, "ok", False))
        problems = list(getattr(result, "problems", []))
        text = (f"✔ Chain intact: all {result.records} records check out" if ok  # type: ignore[attr-defined]
                else f"✘ Chain BROKEN: {result.first}" + (f" (+{len(problems) - 1} more)"  # type: ignore[attr-defined]
                                                          if len(problems) > 1 else ""))
        warnings = list(getattr(result, "warnings", []))
        if warnings:
            text += " · " + "; ".join(warnings[:2])
        self.verify_label.setText(text)
        self._style_verify(ok)
        self.verified.emit(ok)

    def _export_dialog(self, fmt: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, f"Export {fmt.upper()}", f"audit.{fmt}",
                                              f"{fmt.upper()} (*.{fmt})")
        if path:
            self.export(fmt, Path(path))

    def export(self, fmt: str, path: Path) -> None:
        """Starts an export on a worker; ``exported`` carries the count (None when refused)."""
        store, user = self.session.store, self.session.user
        self.status.setText(f"exporting to {path}…")

        def done(n: object) -> None:
            self.status.setText(f"exported {n} decisions to {path}")
            self.exported.emit(n)

        def failed(exc: BaseException) -> None:
            self.status.setText(f"export refused: {exc}")
            self.exported.emit(None)

        start_job(self, store.export_csv if fmt == "csv" else store.export_pdf, user, path, done=done, failed=failed)

    def shutdown(self) -> None:
        stop_jobs(self)
