"""The engineer's screen: data, training, evaluation with a live threshold, model versions.

Training and evaluation run on a ``Worker``; every change that matters (a threshold, an
activation, a rollback) asks for a reason and goes through the audit store, which logs it, on a
one-off worker too: a store waiting out another writer's lock never freezes the screen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from inspector import app_logic
from inspector.errors import InspectorError
from ui.feedback_queue import FeedbackQueueWidget
from ui.widgets.plots import EvaluationPlotWidget
from ui.widgets.reason_dialog import ReasonDialog
from ui.workers import Worker, start_job, stop_jobs

MODEL_COLUMNS = ("id", "state", "backbone", "weights", "trained by", "created", "threshold", "folder")
COMPARE_COLUMNS = ("model", "image AUROC", "F1 max", "threshold", "false-reject rate", "miss rate")
SLIDER_STEPS = 1000


def _table(columns: tuple[str, ...]) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(list(columns))
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.verticalHeader().hide()
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    return t


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))


class EngineerWidget(QWidget):
    """Draws training progress, evaluation plots and model versions; forwards the engineer's input."""

    training_done = Signal(object)  # model id, or the exception
    evaluation_done = Signal(object)
    changed = Signal(str)  # a logged change (threshold, activation, rollback) is recorded: what, or why not

    def __init__(self, session: app_logic.AppSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.worker: Worker | None = None
        self.summary: app_logic.EvalSummary | None = None
        self.compared: dict[int, app_logic.EvalSummary] = {}
        self.reason_dialog: ReasonDialog | None = None
        self.changing = False  # a logged change is on its way to the store
        self._range = (0.0, 1.0)
        self._threshold = 0.0  # exact; the slider only has SLIDER_STEPS positions
        grid = QGridLayout(self)
        grid.addWidget(self._data_box(), 0, 0)
        grid.addWidget(self._models_box(), 0, 1)
        # Evaluation and the feedback queue share the lower half as tabs: stacked, the queue left
        # the evaluation plots no height at 1280x800.
        self.lower_tabs = QTabWidget()
        self.lower_tabs.addTab(self._eval_box(), "Evaluation and threshold")
        self.feedback_queue = FeedbackQueueWidget(session)
        self.lower_tabs.addTab(self.feedback_queue, "Feedback queue")
        grid.addWidget(self.lower_tabs, 1, 0, 1, 2)
        grid.setRowStretch(1, 1)
        grid.setColumnStretch(0, 2)
        grid.setColumnStretch(1, 3)
        self.refresh_models()

    # ------------------------------------------------------------------ layout
    def _data_box(self) -> QGroupBox:
        box = QGroupBox("Data and training")
        lay = QGridLayout(box)
        self.manifest_edit = QLineEdit(str(self.session.manifest_path or ""))
        self.root_edit = QLineEdit(str(self.session.data_root or ""))
        pick, imp = QPushButton("Pick manifest…"), QPushButton("Import folder…")
        pick.clicked.connect(self._pick_manifest)
        imp.clicked.connect(self._import_folder)
        lay.addWidget(QLabel("Manifest"), 0, 0)
        lay.addWidget(self.manifest_edit, 0, 1)
        lay.addWidget(pick, 0, 2)
        lay.addWidget(QLabel("Data root"), 1, 0)
        lay.addWidget(self.root_edit, 1, 1)
        lay.addWidget(imp, 1, 2)
        self.search_box = QCheckBox("Choose settings on this product's good images (slower)")
        self.search_box.setChecked(True)  # as ``inspector train``: the defaults stay unless beaten beyond chance
        self.search_box.setToolTip(
            "Scores candidate settings on synthetic defects pasted onto good training images; the defaults"
            " stay unless one beats them beyond chance. About 10-20x the training time."
        )
        self.train_button = QPushButton("Train new version")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.train_button.clicked.connect(self.start_training)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.stage = QLabel("")
        row = QHBoxLayout()
        row.addWidget(self.train_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        lay.addWidget(self.search_box, 2, 0, 1, 3)
        lay.addLayout(row, 3, 0, 1, 3)
        lay.addWidget(self.stage, 4, 0, 1, 3)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status, 5, 0, 1, 3)
        lay.setRowStretch(6, 1)
        return box

    def _models_box(self) -> QGroupBox:
        box = QGroupBox("Model versions")
        lay = QVBoxLayout(box)
        self.models_table = _table(MODEL_COLUMNS)
        lay.addWidget(self.models_table, 1)
        row = QHBoxLayout()
        buttons = (
            ("Evaluate", self.evaluate_selected),
            ("Compare selected", self.compare_selected),
            ("Activate…", self.activate_selected),
            ("Roll back…", self.rollback),
            ("Explanations…", self.show_explanations),
            ("Settings…", self.show_settings),
        )
        self.version_buttons: dict[str, QPushButton] = {}
        for text, slot in buttons:
            b = QPushButton(text)
            b.clicked.connect(slot)
            row.addWidget(b)
            self.version_buttons[text] = b
        lay.addLayout(row)
        self.compare_table = _table(COMPARE_COLUMNS)
        self.compare_table.setMaximumHeight(110)
        lay.addWidget(self.compare_table)
        return box

    def _eval_box(self) -> QGroupBox:
        box = QGroupBox("Evaluation and threshold")
        lay = QVBoxLayout(box)
        self.plot = EvaluationPlotWidget()
        lay.addWidget(self.plot, 1)
        row = QHBoxLayout()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setEnabled(False)
        self.slider.valueChanged.connect(self._threshold_moved)
        self.threshold_label = QLabel("threshold —")
        self.rates_label = QLabel("false-reject rate — · miss rate —")
        self.save_threshold_button = QPushButton("Save threshold…")
        self.save_threshold_button.setEnabled(False)
        self.save_threshold_button.clicked.connect(self.save_threshold)
        row.addWidget(QLabel("Threshold"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.threshold_label)
        row.addWidget(self.rates_label)
        row.addWidget(self.save_threshold_button)
        lay.addLayout(row)
        return box

    # ------------------------------------------------------------------ helpers
    def message(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color:#d93025;" if error else "color:#202124;")
        self.status.setText(text)

    def _busy(self, busy: bool) -> None:
        self.train_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _run(self, worker: Worker, on_result: Any, done_signal: Signal) -> None:
        if self.worker is not None:
            self.message("wait for the running job to finish, or cancel it", error=True)
            return
        self.worker = worker

        def returned(value: Any) -> None:
            on_result(value)
            done_signal.emit(value)

        def errored(exc: BaseException) -> None:
            cancelled = isinstance(exc, InterruptedError)
            text = str(exc) if isinstance(exc, InspectorError | InterruptedError) else f"{type(exc).__name__}: {exc}"
            self.message("cancelled" if cancelled else text, error=not cancelled)
            done_signal.emit(exc)

        def finished() -> None:
            self.worker = None
            self._busy(False)
            worker.deleteLater()

        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        self._busy(True)
        worker.start()

    def show_explanations(self) -> None:
        """The selected model's explanation report (verdicts, decision boundary) in its own window."""
        from inspector.app_logic.explanations import read_explain_report
        from ui.widgets.explain_verdicts import ExplainVerdictsWidget

        model = self._first_selected("its explanation report")
        if model is None:
            return
        self.explanations = ExplainVerdictsWidget()
        self.explanations.setWindowTitle(f"Explanations: model {model.id}")
        self.explanations.show_report(read_explain_report(model.model_dir))
        self.explanations.resize(960, 720)
        self.explanations.show()

    def show_settings(self) -> None:
        """The selected model's settings and, where it was searched, every candidate and the reason."""
        model = self._first_selected("its settings")
        if model is None:
            return
        dialog = QDialog(self)
        dialog.setWindowTitle(f"Settings: model {model.id}")
        text = QPlainTextEdit(app_logic.settings_report(model.model_dir))
        text.setReadOnly(True)
        text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        text.setStyleSheet("font-family: monospace;")
        QVBoxLayout(dialog).addWidget(text)
        lines = text.toPlainText().count("\n") + 1
        dialog.resize(1000, min(600, 60 + 18 * lines))  # the search's table, or two lines without one
        self.settings_dialog = dialog
        self.settings_text = text
        dialog.show()

    def _first_selected(self, what: str) -> Any:
        """The first selected model version, or None after asking the engineer to select one."""
        ids = self.selected_models()
        model = next((m for m in self.models if ids and m.id == ids[0]), None)
        if model is None:
            self.message(f"select a model version to see {what}", error=True)
        return model

    def selected_models(self) -> list[int]:
        rows = sorted({i.row() for i in self.models_table.selectedIndexes()})
        return [int(self.models_table.item(r, 0).text()) for r in rows]

    def refresh_models(self) -> None:
        try:
            self.models = self.session.store.models()
        except InspectorError as exc:
            self.message(f"cannot read model versions: {exc}", error=True)
            return
        _fill(self.models_table, app_logic.model_rows(self.models))

    def _paths(self) -> tuple[Path, Path] | None:
        manifest, root = self.manifest_edit.text().strip(), self.root_edit.text().strip()
        if not manifest:
            self.message("pick a manifest or import a folder first", error=True)
            return None
        return Path(manifest), Path(root) if root else Path(manifest).parent

    # ------------------------------------------------------------------ data and training
    def _pick_manifest(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Manifest", self.manifest_edit.text(), "Manifests (*.json)")
        if path:
            self.manifest_edit.setText(path)
            if not self.root_edit.text():
                self.root_edit.setText(str(Path(path).parent))

    def _import_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with one sub-folder per class ('good' = good parts)")
        if folder:
            self.import_folder(Path(folder))

    def import_folder(self, folder: Path, normal: str = "good") -> None:
        try:
            path = app_logic.import_folder(folder, normal)
        except InspectorError as exc:
            self.message(f"import failed: {exc}", error=True)
            return
        self.manifest_edit.setText(str(path))
        self.root_edit.setText(str(folder))
        self.message(f"manifest written: {path}")

    def start_training(self) -> None:
        paths = self._paths()
        if paths is None:
            return
        worker = Worker(
            app_logic.train_and_register,
            self.session,
            *paths,
            search=self.search_box.isChecked(),
            progress_arg="progress",
            stop_arg="should_stop",
        )
        worker.yielded.connect(self._on_progress)
        self.progress.setValue(0)
        self.message("training…")
        self._run(worker, self._trained, self.training_done)

    def _on_progress(self, value: Any) -> None:
        stage, done, total = value
        self.progress.setMaximum(max(1, int(total)))
        self.progress.setValue(int(done))
        self.stage.setText(f"{stage}: {done} / {total}")

    def _trained(self, model_id: int) -> None:
        self.refresh_models()
        self.message(f"model version {model_id} registered; evaluate it, then activate it to use it on the line")

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.abort()
            self.message("cancelling…")

    # ------------------------------------------------------------------ evaluation
    def _model(self, model_id: int) -> Any:
        return next(m for m in self.models if m.id == model_id)

    def evaluate_selected(self) -> None:
        ids = self.selected_models() or [m.id for m in self.models if m.active]
        paths = self._paths()
        if not ids or paths is None:
            if not ids:
                self.message("select a model version to evaluate", error=True)
            return
        worker = Worker(app_logic.evaluate_model, self.session, self._model(ids[0]), *paths)
        self.message(f"evaluating model version {ids[0]}…")
        self._run(worker, self._evaluated, self.evaluation_done)

    def _evaluated(self, summary: app_logic.EvalSummary) -> None:
        self.summary = summary
        if summary.model_id is not None:
            self.compared[summary.model_id] = summary
            _fill(self.compare_table, app_logic.compare_rows(self.compared))
        lo, hi = float(summary.scores.min()), float(summary.scores.max())
        pad = 0.1 * (hi - lo) + 1e-6
        self._range = (min(lo, summary.thresholds.decision) - pad, max(hi, summary.thresholds.decision) + pad)
        self.plot.show_evaluation(summary.scores, summary.labels, summary.roc, summary.thresholds.decision)
        self.slider.setEnabled(True)
        self.save_threshold_button.setEnabled(True)
        self.set_threshold(summary.thresholds.decision)
        self.message(f"model version {summary.model_id}: image AUROC {summary.report.get('image_auroc')}")

    def set_threshold(self, value: float) -> None:
        """Moves the threshold to an exact value (the slider follows as near as it can)."""
        lo, hi = self._range
        self.slider.blockSignals(True)
        self.slider.setValue(round((value - lo) / (hi - lo) * SLIDER_STEPS))
        self.slider.blockSignals(False)
        self._show_threshold(value)

    def threshold(self) -> float:
        return self._threshold

    def _threshold_moved(self, position: int) -> None:
        lo, hi = self._range
        self._show_threshold(lo + (hi - lo) * position / SLIDER_STEPS)

    def _show_threshold(self, t: float) -> None:
        self._threshold = t
        if self.summary is None:
            return
        frr, miss = app_logic.what_if(self.summary, t)
        fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f} %"  # noqa: E731
        self.threshold_label.setText(f"<b>{t:.4f}</b>")
        self.rates_label.setText(f"false-reject rate <b>{fmt(frr)}</b> · miss rate <b>{fmt(miss)}</b>")
        self.plot.set_threshold(t)

    def save_threshold(self) -> None:
        if self.summary is None or self.summary.model_id is None:
            return
        value, mid = self.threshold(), self.summary.model_id
        self._with_reason(
            f"Threshold of model {mid}",
            f"Set the decision threshold to {value:.4f}. Why?",
            lambda why: self.session.store.set_threshold(self.session.user, mid, value, why),
            f"threshold of model {mid} set to {value:.4f}",
        )

    def compare_selected(self) -> None:
        ids = [i for i in self.selected_models() if i not in self.compared]
        if not ids:
            self.message("evaluate models one by one (Evaluate) and they are compared below")
            return
        self.models_table.selectRow([m.id for m in self.models].index(ids[0]))
        self.evaluate_selected()

    # ------------------------------------------------------------------ versions
    def activate_selected(self) -> None:
        ids = self.selected_models()
        if not ids:
            self.message("select the model version to activate", error=True)
            return
        mid = ids[0]
        self._with_reason(
            f"Activate model {mid}",
            f"Model version {mid} will judge new frames. Why?",
            lambda why: self.session.store.activate_model(self.session.user, mid, why),
            f"model version {mid} is now active",
        )

    def rollback(self) -> None:
        self._with_reason(
            "Roll back",
            "Re-activate the model that was active before this one. Why?",
            lambda why: self.session.store.rollback_model(self.session.user, why),
            "rolled back to the previous model version",
        )

    def _with_reason(self, title: str, question: str, action: Any, done_text: str) -> None:
        """Asks why, then records the change on a worker; ``changed`` says when it is done."""
        if self.changing:
            self.message("wait: the previous change is still being recorded", error=True)
            return
        dlg = ReasonDialog(title, question, (), self)
        self.reason_dialog = dlg

        def finished(result: int) -> None:
            self.reason_dialog = None
            dlg.deleteLater()
            if not result:
                self.message("nothing changed")
                return
            why = dlg.text

            def record() -> list[Any]:  # on the worker: the change, then the table's new rows
                action(why)
                return self.session.store.models()

            self._set_changing(True)
            self.message(f"{title}: recording…")
            start_job(self, record, done=lambda models: self._changed(models, done_text), failed=self._change_failed)

        dlg.finished.connect(finished)
        dlg.open()

    def _set_changing(self, busy: bool) -> None:
        self.changing = busy
        self.save_threshold_button.setEnabled(not busy and self.summary is not None)
        for name in ("Activate…", "Roll back…"):
            self.version_buttons[name].setEnabled(not busy)

    def _changed(self, models: list[Any], done_text: str) -> None:
        self._set_changing(False)
        self.models = models
        _fill(self.models_table, app_logic.model_rows(models))
        text = f"{done_text} (logged with your reason)"
        self.message(text)
        self.changed.emit(text)

    def _change_failed(self, exc: BaseException) -> None:
        self._set_changing(False)
        text = str(exc) if isinstance(exc, InspectorError) else f"{type(exc).__name__}: {exc}"
        self.message(text, error=True)
        self.changed.emit(text)

    def shutdown(self) -> None:
        if self.worker is not None:
            self.worker.stop_and_wait()
        stop_jobs(self)  # a change on its way to the store is recorded before the view closes
