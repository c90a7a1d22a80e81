"""A station's events, fired on the stream's thread, re-emitted as Qt signals for the UI thread."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from inspector.station import Station


class StationBridge(QObject):
    """Re-emits a station's events (fired on the stream's thread) as queued Qt signals."""

    frame_ready = Signal(object)
    frame_skipped = Signal(str)
    decision_recorded = Signal(object)
    queue_changed = Signal(int)
    model_changed = Signal(object)

    def attach(self, station: Station) -> None:
        ev = station.events
        ev.frame_ready.connect(self._frame_ready)
        ev.frame_skipped.connect(self._frame_skipped)
        ev.decision_recorded.connect(self._decision_recorded)
        ev.queue_changed.connect(self._queue_changed)
        ev.model_changed.connect(self._model_changed)

    def detach(self, station: Station) -> None:
        ev = station.events
        for sig in (ev.frame_ready, ev.frame_skipped, ev.decision_recorded, ev.queue_changed, ev.model_changed):
            sig.disconnect()

    # Plain methods (psygnal holds them weakly, with the bridge); Qt queues each emit to the UI thread.
    def _frame_ready(self, item: Any) -> None:
        self.frame_ready.emit(item)

    def _frame_skipped(self, text: str) -> None:
        self.frame_skipped.emit(text)

    def _decision_recorded(self, item: Any) -> None:
        self.decision_recorded.emit(item)

    def _queue_changed(self, n: int) -> None:
        self.queue_changed.emit(n)

    def _model_changed(self, model_id: Any) -> None:
        self.model_changed.emit(model_id)
