"""The operator's screen: the frame, the verdict, accept or reject by key, the shift's counts.

Keyboard first: A accept, R reject, 1/2/3 overlays, Left/Right previous/next, Space pause.
Inference runs in a ``Worker`` over ``app_logic.run_station``; this widget subscribes to the
station's events (frame ready, decision recorded, queue changed, model changed), draws, and
forwards decisions to ``Station.decide``, which owns the rules (a reason when overruling) and
runs on a worker too: a store retrying through an outage never freezes the screen. The station
keeps only its newest frames in memory; stepping further back reloads from the audit store.
Records are written by the station's writer thread; a frame arrives here once it is recorded.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from inspector import app_logic
from inspector.app_logic import operator as operator_logic
from inspector.errors import InspectorError
from inspector.station import REASON_CODES, ReasonRequired, Station, StationItem, Submitted
from ui.station_bridge import StationBridge
from ui.widgets.decision_panel import COUNT_FIELDS, DecisionPanelWidget
from ui.widgets.image_view import FrameWidget
from ui.widgets.legend import ColourLegendWidget
from ui.widgets.reason_dialog import ReasonDialog
from ui.widgets.source_bar import SourceBarWidget
from ui.workers import Worker, start_job, stop_jobs

IN_FLIGHT = 8  # frames the stream may run ahead of the screen: bounded, yet loose enough that the
# model does not wait on every repaint (2 tied the stream to the UI thread's scheduling on a busy CPU)
BACKLOG = 8  # undecided frames before a folder or video stream waits for the operator


class OperatorWidget(QWidget):
    """Draws the station's items; every decision goes through ``Station.decide``."""

    frame_shown = Signal(int)  # index of the item now drawn
    decided = Signal(object)  # the item, after its decision was recorded (or queued)
    stream_ended = Signal()

    def __init__(self, session: app_logic.AppSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.station: Station | None = None
        self.worker: Worker | None = None
        self.bridge = StationBridge(self)
        self.bridge.frame_ready.connect(self._on_frame)
        self.bridge.frame_skipped.connect(self._on_skipped)
        self.bridge.decision_recorded.connect(lambda _item: self._update_counts())
        self.bridge.queue_changed.connect(self.set_queue_length)
        self.bridge.model_changed.connect(lambda _id: self._update_model())
        self.deciding: StationItem | None = None  # a decision on its way to the store
        self.index = -1
        self.live = False  # camera: always show the newest frame
        self.reason_dialog: ReasonDialog | None = None
        self.messages: list[str] = []  # everything said this session, newest last
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QVBoxLayout(self)
        self.sources = SourceBarWidget(self.session.default_source)
        self.sources.start_requested.connect(self.start_stream)
        self.sources.pause_toggled.connect(self.set_paused)
        self.sources.stop_requested.connect(self.stop_stream)
        root.addWidget(self.sources)
        self.banner = QLabel("")
        self.banner.setWordWrap(True)
        self.banner.hide()
        root.addWidget(self.banner)
        self.queue_banner = QLabel("")
        self.queue_banner.setStyleSheet("background:#fbe7bf; color:#202124; padding:6px; border-radius:4px;")
        self.queue_banner.hide()
        root.addWidget(self.queue_banner)
        body = QHBoxLayout()
        root.addLayout(body, 1)
        left = QVBoxLayout()
        body.addLayout(left, 1)
        self.frame = FrameWidget("choose a source and press Start")
        left.addWidget(self.frame, 1)
        toggles = QHBoxLayout()
        self.show_map = QCheckBox("1  anomaly map")
        self.show_map.setChecked(True)
        self.show_gradcam = QCheckBox("2  Grad-CAM")
        self.show_outline = QCheckBox("3  defect outline")
        self.show_outline.setChecked(True)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setMaximumWidth(160)
        for w in (self.show_map, self.show_gradcam, self.show_outline, self.opacity):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            toggles.addWidget(w)
            (w.toggled if isinstance(w, QCheckBox) else w.valueChanged).connect(self._redraw)
        toggles.insertStretch(3)
        toggles.insertWidget(4, QLabel("opacity"))
        self.show_map.toggled.connect(lambda on: on and self.show_gradcam.setChecked(False))
        self.show_gradcam.toggled.connect(lambda on: on and self.show_map.setChecked(False))
        self.legend = ColourLegendWidget()
        self.frame_caption = QLabel("")
        left.addWidget(self.legend)
        left.addLayout(toggles)
        left.addWidget(self.frame_caption)
        body.addWidget(self._side_panel())

    def _side_panel(self) -> QWidget:
        panel = DecisionPanelWidget()
        for name in (
            "model_label",
            "verdict",
            "score_label",
            "score_bar",
            "explain_label",
            "accept_button",
            "reject_button",
            "prev_button",
            "next_button",
            "decision_label",
            "count_labels",
        ):
            setattr(self, name, getattr(panel, name))  # the view draws into them by these names
        self.accept_button.clicked.connect(lambda: self.decide("accept"))
        self.reject_button.clicked.connect(lambda: self.decide("reject"))
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        self._update_controls()
        self._update_model()
        return panel

    # ------------------------------------------------------------------ stream
    @property
    def items(self) -> Any:
        """The shift's items by index (``Station.history``; older ones reload from the store)."""
        return self.station.history if self.station is not None else []

    def start_stream(self, spec: str, live: bool | None = None) -> None:
        """Starts inspecting ``spec`` (folder, video file or camera:N) on a worker thread.

        ``live`` shows every new frame at once (the default for cameras); otherwise the view
        stays on the frame awaiting a decision and later frames wait their turn. Either way the
        stream runs at most ``IN_FLIGHT`` frames ahead of what the screen has drawn.
        """
        if self.worker is not None:
            self.stop_stream()
        if not spec:
            self.show_message("choose an image folder, a video file or a camera first", error=True)
            return
        self.live = (spec.startswith("camera:") or spec.isdigit()) if live is None else live
        self.show_message(f"loading the model and opening {spec}…")
        worker = Worker(app_logic.run_station, self.session, spec, credits=self._credits())
        # Signals queued from an older, stopped worker must not reach the new stream's state.
        worker.yielded.connect(lambda item, w=worker: self._on_yielded(item, w))
        worker.errored.connect(lambda exc, w=worker: self._on_error(exc) if w is self.worker else None)
        worker.finished.connect(lambda w=worker: self._on_finished(w))
        self.worker = worker
        self.sources.set_running(True)
        worker.start()
        self.setFocus()

    def _credits(self) -> int:
        """Frames the stream may run ahead of the screen: ``IN_FLIGHT``, and fewer than the station
        keeps in memory, so a frame recorded ahead of the screen is still held when it is drawn."""
        return max(1, min(IN_FLIGHT, self.session.keep - 1))

    def stop_stream(self) -> None:
        """Stops and joins the worker: the camera is released before this returns."""
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop_and_wait()
            self.sources.set_running(False)
            self.show_message(f"stopped after {len(self.items)} frames")

    def set_paused(self, paused: bool) -> None:
        if self.worker is None:
            return
        (self.worker.pause if paused else self.worker.resume)()
        self.show_message("paused" if paused else "running")

    def _on_yielded(self, item: Any, worker: Worker) -> None:
        """Flow control and the hand-over of the station; frames arrive through its events.

        A frame handed to the audit writer is acknowledged when its ``frame_ready`` is drawn, so
        the stream, the writer and the screen together stay within ``IN_FLIGHT`` frames.
        """
        if isinstance(item, Submitted):
            if worker is not self.worker:
                worker.ack()
            return
        if worker is self.worker:
            if isinstance(item, Station):
                if self.station is not None:
                    self.bridge.detach(self.station)
                self.station, self.index = item, -1
                self.bridge.attach(item)
                self._update_model()
                self._update_counts()
            elif isinstance(item, str) and not item.startswith("skipped"):
                self.show_message(item)
        worker.ack()

    def _on_frame(self, item: StationItem) -> None:
        if self.station is None or item.shift != self.station.history.token:
            return  # from a stream already replaced
        current = self.current()
        if self.live or current is None or (self.index == item.index - 1 and current.decision is not None):
            self.show_item(item.index)  # in order; never evicted yet: see ``_credits``
        self._throttle()
        self._update_counts()
        self._update_controls()
        if self.worker is not None and self.station.writer is not None:
            self.worker.ack()  # the frame's credit, held since it was handed to the writer

    def _on_skipped(self, text: str) -> None:
        self.show_message(text, error=True)
        self._update_counts()

    def _throttle(self) -> None:
        """A folder or video waits for the operator rather than racing ahead of them."""
        if self.worker is None or self.live:
            return
        waiting = len(self.items) - 1 - max(self.index, 0)
        if waiting >= BACKLOG and not self.worker.paused:
            self.worker.pause()
        elif waiting < BACKLOG and self.worker.paused and not self.sources.pause.isChecked():
            self.worker.resume()

    def _on_error(self, exc: BaseException) -> None:
        text = str(exc) if isinstance(exc, InspectorError) else f"{type(exc).__name__}: {exc}"
        self.show_message(text, error=True)

    def _on_finished(self, worker: Worker) -> None:
        worker.deleteLater()
        if worker is not self.worker:
            return
        self.worker = None
        self.sources.set_running(False)
        if len(self.items) and not self.banner.property("error"):
            self.show_message(f"source finished: {len(self.items)} frames inspected")
        self.stream_ended.emit()

    # ------------------------------------------------------------------ drawing
    def current(self) -> StationItem | None:
        if self.station is None or not 0 <= self.index < len(self.items):
            return None
        return self.station.history.get(self.index)

    def show_item(self, index: int) -> None:
        if index != self.index and self.banner.property("frame_bound"):
            self.banner.hide()  # a "reason required" note belongs to the frame it was about
            self.banner.setProperty("frame_bound", False)
        self.index = max(0, min(index, len(self.items) - 1))
        self._redraw()
        self._update_controls()
        self._throttle()
        self.frame_shown.emit(self.index)

    def step(self, delta: int) -> None:
        if len(self.items):
            self.show_item(self.index + delta)

    def _redraw(self) -> None:
        item = self.current()
        if self.station is None:
            return
        th = self.station.inspector.thresholds
        gradcam_on = self.show_gradcam.isChecked() and item is not None and item.gradcam is not None
        if gradcam_on or self.show_map.isChecked():
            self.legend.set_scale(*operator_logic.legend(th, gradcam=gradcam_on))
        else:
            self.legend.set_scale(None, 0, 0, 0, "")
        if item is None:
            if self.index >= 0:
                self.frame.set_frame(None, "this frame could not be reloaded from the audit store")
            return
        self.show_gradcam.setEnabled(item.gradcam is not None)
        r = item.result
        self.frame.set_frame(
            app_logic.compose_overlay(
                r.image,
                r.anomaly_map,
                item.gradcam,
                th,
                show_map=self.show_map.isChecked(),
                show_gradcam=self.show_gradcam.isChecked(),
                show_outline=self.show_outline.isChecked(),
                opacity=self.opacity.value() / 100,
            )
        )
        self.verdict.set_verdict(r.verdict)
        self.score_label.setText(f"score <b>{r.score:.3f}</b> · threshold {r.threshold:.3f}")
        if r.out_of_domain is not None:  # unlike the training images: the score is not trusted
            self.score_label.setText(f"<b>out of domain:</b> {r.out_of_domain} · score {r.score:.3f}")
        self.score_bar.set_values(r.score, r.review_threshold, r.threshold)
        defect, agreement = app_logic.explain_fields(item.extras)
        flagged = r.verdict != "OK"
        reloaded = item.extras.get("reloaded")
        self.explain_label.setText(
            f"Defect type: <b>{defect or ('not available' if flagged and not reloaded else '—')}</b><br>"
            f"Anomaly map and Grad-CAM: <b>{operator_logic.agreement_words(agreement)}</b>"
            + ("" if item.gradcam is not None else "<br>Grad-CAM: not available")
            + ("<br><i>reloaded from the audit store</i>" if reloaded else "")
        )

    def _update_model(self) -> None:
        self.model_label.setText(
            operator_logic.model_caption(self.station, self.session.store, self.session.current_model_dir())
        )

    def _update_controls(self) -> None:
        item = self.current()
        n = len(self.items)
        if item is not None:
            self.frame_caption.setText(f"frame {self.index + 1} of {n} · {item.result.source}")
        for b in (self.accept_button, self.reject_button):
            b.setEnabled(item is not None and self.deciding is None)
        self.prev_button.setEnabled(self.index > 0)
        self.next_button.setEnabled(0 <= self.index < n - 1)
        if item is None:
            self.decision_label.setText("")
        elif self.deciding is item:
            self.decision_label.setText("recording your decision…")
        elif item.decision is None:
            ahead = n - 1 - self.index
            self.decision_label.setText("waiting for your decision" + (f" · {ahead} more ready" if ahead else ""))
        else:
            queued = " (waiting in the retry queue)" if item.decision_id is None else ""
            self.decision_label.setText(f"<b>{item.decision}ed</b>{queued}")

    def _update_counts(self) -> None:
        if self.station is None:
            return
        c = self.station.counts
        for key, _ in COUNT_FIELDS:
            self.count_labels[key].setText(str(getattr(c, key)))
        for v in ("OK", "REVIEW", "DEFECT"):
            self.count_labels[v].setText(str(c.verdicts[v]))

    def show_message(self, text: str, *, error: bool = False, frame_bound: bool = False) -> None:
        self.messages.append(text)
        del self.messages[:-200]  # a long shift of skipped frames must not grow the list forever
        colour = "#f6d0cd" if error else "#e8f0fe"
        self.banner.setStyleSheet(f"background:{colour}; color:#202124; padding:6px; border-radius:4px;")
        self.banner.setProperty("error", error)
        self.banner.setProperty("frame_bound", frame_bound)
        self.banner.setText(text)
        self.banner.show()

    def message_text(self) -> str:
        return "" if self.banner.isHidden() else self.banner.text()

    def set_queue_length(self, n: int) -> None:
        """Shown while records wait for the database; they are kept on disk, not lost."""
        self.queue_banner.setVisible(n > 0)
        self.queue_banner.setText(
            f"⚠ {n} record(s) waiting in the retry queue: the audit database is unreachable. "
            "Keep working: they are kept and sent when it is back."
        )

    # ------------------------------------------------------------------ decisions
    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        key = event.key()
        actions = {
            Qt.Key.Key_A: lambda: self.decide("accept"),
            Qt.Key.Key_R: lambda: self.decide("reject"),
            Qt.Key.Key_1: self.show_map.toggle,
            Qt.Key.Key_2: lambda: self.show_gradcam.toggle() if self.show_gradcam.isEnabled() else None,
            Qt.Key.Key_3: self.show_outline.toggle,
            Qt.Key.Key_Left: lambda: self.step(-1),
            Qt.Key.Key_Right: lambda: self.step(1),
            Qt.Key.Key_Space: lambda: self.sources.pause.toggle() if self.worker else None,
        }
        action = actions.get(Qt.Key(key))
        if action is None:
            super().keyPressEvent(event)
            return
        action()

    def decide(self, decision: str, reason_code: str | None = None, reason_text: str | None = None) -> None:
        """Records a decision on a worker; asks for a reason first when the station requires one."""
        item = self.current()
        if item is None or self.station is None:
            return
        if self.deciding is not None:
            self.show_message("still recording the previous decision…")
            return
        try:
            Station.check_decision(item, decision, reason_code, reason_text)
        except ReasonRequired as exc:
            self._ask_reason(item, decision, str(exc))
            return
        except InspectorError as exc:
            self.show_message(f"decision not recorded: {exc}", error=True, frame_bound=True)
            return
        self.deciding = item
        self._update_controls()
        start_job(
            self,
            self.station.decide,
            self.session.user,
            item,
            decision,
            reason_code,
            reason_text,
            done=lambda _id: self._after_decision(item),
            failed=lambda exc: self._decision_failed(item, exc),
        )

    def _decision_failed(self, item: StationItem, exc: BaseException) -> None:
        self.deciding = None
        text = str(exc) if isinstance(exc, InspectorError) else f"{type(exc).__name__}: {exc}"
        self.show_message(f"decision not recorded: {text}", error=True, frame_bound=True)
        self._update_controls()

    def _ask_reason(self, item: StationItem, decision: str, why: str) -> None:
        dlg = ReasonDialog(f"Reason to {decision}", why, REASON_CODES, self)
        self.reason_dialog = dlg

        def done(result: int) -> None:
            self.reason_dialog = None
            if result and dlg.code:
                self.decide(decision, dlg.code, dlg.text or None)
            else:
                self.show_message(
                    f"{decision} not recorded: a reason is required to overrule the model", error=True, frame_bound=True
                )
            self.setFocus()
            dlg.deleteLater()

        dlg.finished.connect(done)
        dlg.open()

    def _after_decision(self, item: StationItem) -> None:
        self.deciding = None
        self._update_counts()
        if item is self.current() and self.index < len(self.items) - 1:
            self.show_item(self.index + 1)
        else:
            self._update_controls()
        self.decided.emit(item)

    def shutdown(self) -> None:
        """Stops the stream and any decision in flight, and waits for their threads."""
        self.stop_stream()
        stop_jobs(self)
