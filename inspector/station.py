"""A station shift, Qt-free: frames -> model -> result -> operator decision -> audit record.

The app and the headless ``inspector inspect`` both drive this object, so the order of work and
the rules (a disagreeing decision needs a reason; a store that is down queues, never drops) live
in one place. It holds plain state and reports through events (napari-style, psygnal): ``frame_ready``,
``frame_skipped``, ``decision_recorded``, ``queue_changed`` and ``model_changed``. The UI
subscribes, draws, and forwards keystrokes. Events fire on the thread that did the work (the
stream's worker for frames), so a Qt subscriber re-emits them as a queued Qt signal.

A shift is bounded: ``history`` keeps the newest ``keep`` frames in memory and reloads older
ones from the audit store when the operator steps back (``inspector.shift_history``).

With ``start_writer`` (the app does it) records are written on their own thread, in order and
in groups (``inspector.record_writer``), while the model goes on with the next frame; a frame's
``frame_ready`` still fires only once its record is written or queued.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psygnal import Signal

from inspector.audit import AuditStore, RecordQueued, User, ValidationError
from inspector.audit.model_files import ModelMismatch, differences, hash_model_dir
from inspector.calibration import Thresholds
from inspector.errors import InspectorError
from inspector.pipeline import InspectionResult, Inspector
from inspector.record_writer import DEFAULT_DEPTH, RecordWriter
from inspector.shift_history import DEFAULT_KEEP, ShiftHistory
from inspector.sources import Frame, FrameSource

Analyse = Callable[..., list[Any]]  # (images, *, sources, start_index) -> [FrameAnalysis]

DECISIONS = ("accept", "reject")
REASON_CODES = (
    "visible-defect",
    "no-visible-defect",
    "lighting-or-glare",
    "debris-not-part",
    "wrong-part",
    "image-quality",
    "other",
)


class Submitted:
    """What ``inspect`` yields for a frame handed to the writer; ``frame_ready`` follows once written."""

    def __repr__(self) -> str:
        return "SUBMITTED"


SUBMITTED = Submitted()


class ModelNotRegistered(InspectorError):
    """The station's model is not in the audit store, so decisions could not name it."""


class ReasonRequired(InspectorError):
    """A decision that disagrees with the model needs a reason (21 CFR 11 record of intent)."""


def _weakly(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` without a strong reference to its object (None once the object is gone)."""
    ref = weakref.WeakMethod(method)  # type: ignore[arg-type]

    def call(*args: Any) -> Any:
        bound = ref()
        return None if bound is None else bound(*args)

    return call


def disagrees(verdict: str, decision: str) -> bool:
    """Accepting a DEFECT or rejecting an OK disagrees with the model; REVIEW and OOD never do."""
    return (verdict == "DEFECT" and decision == "accept") or (verdict == "OK" and decision == "reject")


@dataclass
class StationItem:
    """One frame on the station: its result, its audit id, and the decision taken on it."""

    result: InspectionResult
    inspection_id: int | None  # None while the record waits in the retry queue
    gradcam: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    decision: str | None = None
    decision_id: int | None = None
    queued_uid: str | None = None  # how to find the record's id once the queue has flushed
    index: int = -1  # position in the shift, set when the station takes the item
    shift: int = 0  # the token of the shift (``ShiftHistory``) that took it


@dataclass
class ShiftCounts:
    inspected: int = 0
    accepted: int = 0
    rejected: int = 0
    disagreements: int = 0
    queued: int = 0
    unreadable: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)


class StationEvents:
    """What a station tells its subscribers; each signal carries one plain value."""

    frame_ready = Signal(object)  # StationItem, once recorded (or queued)
    frame_skipped = Signal(str)  # why a frame could not be read
    decision_recorded = Signal(object)  # StationItem, with its decision
    queue_changed = Signal(int)  # records waiting in the retry queue
    model_changed = Signal(object)  # the station's model version id (None: not registered)


class Station:
    """One operator station: inspects frames, records them, takes decisions.

    ``analyse`` (``FrameAnalyser.analyse``) gives score, map, Grad-CAM and defect type in one
    model pass; ``explain`` is the older per-result hook, run after the pipeline's own pass.
    """

    def __init__(
        self,
        store: AuditStore,
        inspector: Inspector,
        name: str,
        *,
        explain: Callable[[InspectionResult], tuple[np.ndarray | None, dict[str, Any]]] | None = None,
        analyse: Analyse | None = None,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        self.store = store
        self.inspector = inspector
        self.name = name
        self.explain = explain
        self.analyse = analyse
        self.events = StationEvents()
        self.counts = ShiftCounts()
        # Weakly: no station <-> history cycle, so a replaced station is freed by reference counting
        # even when the app has frozen the heap out of the garbage collector's sight (runtime.settle_heap).
        self.history = ShiftHistory(keep, _weakly(self._reload))
        self.trained_thresholds = inspector.thresholds
        self.unregistered_why = ""
        self.model_version_id = self.find_model_version()
        self.messages: list[str] = []
        self._lock = threading.Lock()  # counts change on the stream's thread and on decisions'
        self.writer: RecordWriter[Any] | None = None  # see start_writer
        self._next_index = 0  # with a writer: the index the next submitted frame will get
        self.refresh_threshold()

    @property
    def items(self) -> ShiftHistory:
        """The shift's items by index (older ones reloaded from the store)."""
        return self.history

    def find_model_version(self) -> int | None:
        """The audit store's id for this model: a registration with the same memory bank whose
        every file (``model.json`` included) still matches.

        Raises:
            ModelMismatch: the model is registered but its directory changed since; names the file.
        """
        same = [m for m in reversed(self.store.models()) if m.weights_hash == self.inspector.info.weights_sha256]
        first_diff: tuple[int, list[str]] | None = None
        for m in same:
            if not m.files:
                continue
            diff = differences(self.inspector.info.model_dir, m.files)
            if not diff:
                return m.id
            first_diff = first_diff or (m.id, diff)
        if first_diff is not None:
            mid, diff = first_diff
            raise ModelMismatch(f"model refused: {diff[0]} (model v{mid}); the station uses only registered files")
        if same:
            self.unregistered_why = (
                f" (model v{same[0].id} was registered without its file hashes, before schema 0002: register it again)"
            )
        return None

    def refresh_threshold(self) -> Thresholds:
        """Puts in force the registered threshold plus its logged changes: the GUI and the
        headless station judge alike, and the store refuses a record made at another one."""
        if self.model_version_id is None:
            return self.inspector.thresholds
        value = self.store.model(self.model_version_id).threshold
        trained = self.trained_thresholds
        if value is not None and abs(value - self.inspector.thresholds.decision) > 1e-12 * max(1.0, abs(value)):
            self.inspector.thresholds = (
                trained if abs(value - trained.decision) < 1e-12 else trained.with_decision(value)
            )
        return self.inspector.thresholds

    def _rejudge(self, result: InspectionResult) -> InspectionResult:
        t = self.inspector.thresholds
        result.threshold, result.review_threshold = t.decision, t.review
        if result.out_of_domain is None:  # an out-of-domain frame goes to review whatever its score
            result.verdict = t.verdict(result.score)
        return result

    def register_model(self, engineer: User) -> int:
        """Records the loaded model as a version (engineers only; the store enforces it), with
        the hash of every file of its directory and its backbone fingerprint."""
        from models.patchcore.serialization import read_model_json

        info = self.inspector.info
        self.model_version_id = self.store.register_model(
            engineer,
            weights_hash=info.weights_sha256,
            backbone=info.backbone,
            manifest_hash=info.manifest_sha256 or "",
            thresholds=self.trained_thresholds.to_json(),
            metrics=info.metrics,
            model_dir=info.model_dir,
            files=hash_model_dir(info.model_dir),
            backbone_sha256=str(read_model_json(info.model_dir).get("backbone_sha256", "")),
        )
        self.unregistered_why = ""
        self.refresh_threshold()
        self.events.model_changed.emit(self.model_version_id)
        return self.model_version_id

    def set_thresholds(self, thresholds: Any) -> None:
        """New thresholds for the next frames (an engineer's logged override)."""
        self.inspector.thresholds = thresholds
        self.events.model_changed.emit(self.model_version_id)

    def _require_model(self) -> int:
        if self.model_version_id is None:
            raise ModelNotRegistered(
                f"model {self.inspector.info.model_dir} is not registered in the audit store{self.unregistered_why}; "
                "an engineer must register it first (inspector models register --model DIR --as ENGINEER)"
            )
        return self.model_version_id

    def process(
        self, result: InspectionResult, gradcam: np.ndarray | None = None, extras: dict[str, Any] | None = None
    ) -> StationItem:
        """Records one result (explained by ``explain`` unless a Grad-CAM comes with it); a down store queues it."""
        model_id = self._require_model()
        if result.threshold != self.inspector.thresholds.decision:
            result = self._rejudge(result)
        if gradcam is None and extras is None:
            gradcam, extras = self.explain(result) if self.explain else (None, {})
        inspection_id: int | None
        queued_uid: str | None = None
        try:
            try:
                inspection_id = self._record(model_id, result, gradcam)
            except ValidationError as exc:
                if "threshold in force" not in str(exc):
                    raise
                self.refresh_threshold()  # an engineer changed it mid-shift: judge again, once
                result = self._rejudge(result)
                self.messages.append(f"threshold now {result.threshold:.6g} (changed in the audit store)")
                inspection_id = self._record(model_id, result, gradcam)
        except RecordQueued as exc:
            inspection_id, queued_uid = None, exc.uid
            with self._lock:
                self.counts.queued += 1
            self._say(str(exc))
        return self._take(result, inspection_id, gradcam, extras or {}, queued_uid)

    def _record(self, model_id: int, result: InspectionResult, gradcam: np.ndarray | None) -> int:
        return self.store.record_inspection(
            station=self.name,
            source=result.source,
            frame_index=result.frame_index,
            frame=result.image,
            model_version_id=model_id,
            score=result.score,
            threshold=result.threshold,
            verdict=result.verdict,
            anomaly_map=result.anomaly_map,
            gradcam=gradcam,
            latency_ms=result.latency_ms,
            note=result.out_of_domain,
        )

    def _take(
        self,
        result: InspectionResult,
        inspection_id: int | None,
        gradcam: np.ndarray | None,
        extras: dict[str, Any],
        queued_uid: str | None = None,
    ) -> StationItem:
        """The recorded (or queued) frame joins the shift; subscribers hear of it only now, so
        a frame on screen always has its record and a decision on it always finds it."""
        item = StationItem(result, inspection_id, gradcam, extras, queued_uid=queued_uid)
        self.history.append(item)
        with self._lock:
            self.counts.inspected += 1
            self.counts.verdicts[result.verdict] += 1
        self.events.frame_ready.emit(item)
        if queued_uid is not None:
            self.events.queue_changed.emit(self.store.queue_length)
        return item

    # ------------------------------------------------------------------ the audit writer
    def start_writer(self, depth: int = DEFAULT_DEPTH) -> None:
        """From now on ``inspect`` hands records to a writer thread (``inspector.record_writer``)
        and goes on with the next frame; ``close_writer`` writes what is pending."""
        if self.writer is None:
            self._next_index = len(self.history)
            self.writer = RecordWriter(self._write_group, depth, name=f"audit-writer-{self.name}")

    def close_writer(self) -> None:
        """Writes every pending record, then stops the writer (the stream's end, or its stop)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()

    def _write_group(self, jobs: Sequence[tuple[InspectionResult, np.ndarray | None, dict[str, Any]]]) -> None:
        """On the writer's thread: records a group in one transaction (one commit, one head-file
        write); if the group fails as a whole, one by one, so each is re-judged or queued alone."""
        if len(jobs) > 1:
            model_id = self._require_model()
            t = self.inspector.thresholds.decision
            judged = [r if r.threshold == t else self._rejudge(r) for r, _, _ in jobs]
            try:
                with self.store.transaction():
                    ids: list[int] | None = [
                        self._record(model_id, r, g) for r, (_, g, _) in zip(judged, jobs, strict=True)
                    ]
            except Exception:  # nothing of the group was committed: the transaction is atomic
                ids = None
            if ids is not None:
                for r, iid, (_, g, extras) in zip(judged, ids, jobs, strict=True):
                    self._take(r, iid, g, extras)
                return
        for result, gradcam, extras in jobs:
            self.process(result, gradcam, extras)

    def _say(self, text: str) -> None:
        self.messages.append(text)
        del self.messages[:-100]  # a long outage must not grow the list all shift

    def _reload(self, index: int, inspection_id: int | None, queued_uid: str | None) -> StationItem | None:
        """An older frame back from the audit store, for the operator stepping back."""
        from inspector.images import frame_sha256

        try:
            if inspection_id is None and queued_uid is not None:
                inspection_id = self.store.inspection_id_for(queued_uid)
            if inspection_id is None:
                return None  # still waiting in the retry queue
            rec = self.store.inspection(inspection_id)
        except InspectorError:
            return None
        if rec.frame is None or rec.anomaly_map is None:
            return None
        th = self.inspector.thresholds
        result = InspectionResult(
            rec.frame_index,
            rec.source,
            rec.frame,
            rec.score,
            rec.threshold,
            th.review,
            rec.verdict,
            rec.anomaly_map.astype(np.float16),
            rec.latency_ms,
            frame_sha256(rec.frame),
        )
        gradcam = None if rec.gradcam is None else rec.gradcam.astype(np.float16)
        return StationItem(result, inspection_id, gradcam, {"reloaded": True}, index=index)

    def inspect(
        self, images: Sequence[np.ndarray], names: Sequence[str], formats: Sequence[Any] | None = None
    ) -> Iterator[StationItem | Submitted | str]:
        """Inspects (and explains) a batch, then records each frame in order.

        A batch the model fails on is retried frame by frame, and a frame that still fails is
        counted as unreadable with its reason: one odd frame never ends a shift.
        """
        start = self._next_index if self.writer is not None else len(self.history)
        try:
            if self.analyse is not None:
                analysed = self.analyse(images, sources=names, start_index=start, formats=formats)
                done = [(a.result, a.gradcam, a.extras) for a in analysed]
            else:
                results = self.inspector.inspect_images(images, sources=names, start_index=start, formats=formats)
                done = [(r, None, None) for r in results]
        except (InspectorError, RuntimeError, ValueError, MemoryError) as exc:
            if len(images) > 1:
                for i, (image, name) in enumerate(zip(images, names, strict=True)):
                    yield from self.inspect([image], [name], None if formats is None else [formats[i]])
                return
            yield self.skip(names[0], f"the model could not process it ({type(exc).__name__}: {exc})")
            return
        for result, gradcam, extras in done:
            if self.writer is None:
                yield self.process(result, gradcam, extras)
                continue
            if gradcam is None and extras is None:  # the model runs here, never on the writer's thread
                gradcam, extras = self.explain(result) if self.explain else (None, {})
            self.writer.submit((result, gradcam, extras or {}))
            self._next_index += 1
            yield SUBMITTED

    def skip(self, name: str, reason: str) -> str:
        """Counts a frame as unreadable and says why."""
        with self._lock:
            self.counts.unreadable += 1
        text = f"skipped {name}: {reason}"
        self.events.frame_skipped.emit(text)
        return text

    def run(self, source: FrameSource, batch_size: int = 1) -> Iterator[StationItem | Submitted | str]:
        """Inspects a whole source; yields items, and messages for frames that could not be read."""
        pending: list[Frame] = []

        def flush() -> Iterator[StationItem | Submitted | str]:
            self.refresh_threshold()
            yield from self.inspect(
                [f.image for f in pending if f.image is not None],
                [f.name for f in pending],
                [f.source_format for f in pending],
            )
            pending.clear()

        for frame in source:
            if frame.image is None:
                yield self.skip(frame.name, frame.error or "unreadable")
                continue
            pending.append(frame)
            if len(pending) >= batch_size:
                yield from flush()
        if pending:
            yield from flush()

    def decide(
        self,
        operator: User,
        item: StationItem,
        decision: str,
        reason_code: str | None = None,
        reason_text: str | None = None,
    ) -> int | None:
        """Records the operator's decision; returns its id, or None if it waits in the queue.

        A decision that disagrees with the model without a reason is refused here, before it
        reaches the store, so the operator is asked at once.
        """
        disagreeing = self.check_decision(item, decision, reason_code, reason_text)
        if item.inspection_id is None:
            self.flush_queue()
            if item.queued_uid is not None:
                item.inspection_id = self.store.inspection_id_for(item.queued_uid)
            if item.inspection_id is None:
                raise InspectorError("this frame's inspection record is still waiting in the retry queue")
        supersedes = item.decision_id
        try:
            decision_id: int | None = self.store.record_decision(
                operator,
                item.inspection_id,
                decision,
                reason_code=reason_code,
                reason_text=reason_text or (reason_code if disagreeing else None),
                supersedes=supersedes,
            )
        except RecordQueued as exc:
            decision_id = None
            with self._lock:
                self.counts.queued += 1
            self._say(str(exc))
            self.events.queue_changed.emit(self.store.queue_length)
        with self._lock:
            if item.decision is None:
                self.counts.accepted += decision == "accept"
                self.counts.rejected += decision == "reject"
                self.counts.disagreements += disagreeing
            item.decision, item.decision_id = decision, decision_id
        self.history.note(item)
        self.events.decision_recorded.emit(item)
        return decision_id

    @staticmethod
    def check_decision(
        item: StationItem, decision: str, reason_code: str | None = None, reason_text: str | None = None
    ) -> bool:
        """Refuses an unknown decision or an unexplained overrule at once; True if it disagrees."""
        if decision not in DECISIONS:
            raise InspectorError(f"decision must be accept or reject, got '{decision}'")
        disagreeing = disagrees(item.result.verdict, decision)
        if disagreeing and not (reason_code or (reason_text and reason_text.strip())):
            raise ReasonRequired(f"the model said {item.result.verdict}; to {decision} this part give a reason")
        return disagreeing

    def flush_queue(self) -> int:
        """Retries queued records; returns how many are still waiting (slow when the store is down)."""
        self.store.flush_queue()
        n = self.store.queue_length
        self.events.queue_changed.emit(n)
        return n
