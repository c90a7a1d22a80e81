"""Recording operations of AuditStore: inspections and decisions, and replay of queued ones.

A record that cannot be written (read-only or full disk, unreachable database) is queued, with
the time of the original call, and ``RecordQueued`` tells the caller; nothing is dropped.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from inspector.audit import codec, queries
from inspector.audit.errors import (
    NotFound,
    StoreUnavailable,
    ValidationError,
)
from inspector.audit.governance import finite, required_text
from inspector.audit.internals import StoreInternals
from inspector.audit.records import DecisionView, Inspection, User, disagrees
from inspector.audit.roles import Action
from inspector.audit.schema import (
    DecisionRow,
    EventRow,
    InspectionRow,
    ModelVersionRow,
)

if TYPE_CHECKING:
    pass

T = TypeVar("T")
VERDICTS = ("OK", "DEFECT", "REVIEW", "OOD")  # OOD: out of domain, routed to review (inspector.domain)
DECISIONS = ("accept", "reject")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


class RecordingMixin(StoreInternals):
    """Inspections and decisions; mixed into ``AuditStore``."""

    # ------------------------------------------------------------------ inspections
    def record_inspection(
        self,
        *,
        station: str,
        source: str,
        frame_index: int,
        frame: np.ndarray,
        model_version_id: int,
        score: float,
        threshold: float,
        verdict: str,
        anomaly_map: np.ndarray,
        gradcam: np.ndarray | None = None,
        latency_ms: float = 0.0,
        created_at: datetime | None = None,
        note: str | None = None,
    ) -> int:
        """Records one inspected frame; returns its id once durably committed.

        Args:
            frame: RGB uint8 H x W x 3, copied to ``frames/ab/<sha256>.png`` (content-addressed).
            anomaly_map, gradcam: float arrays, stored compressed with their sha256.
            note: why the frame was out of domain (verdict OOD); recorded as an ``out_of_domain``
                event in the same transaction, so the chain holds the reason with the record.

        Raises:
            RecordQueued: the database or disk refused the write; the inspection waits in the
                retry queue (see ``flush_queue``), nothing is lost.
        """
        if verdict not in VERDICTS:
            raise ValidationError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
        when = created_at or datetime.now(UTC)
        if when.tzinfo is None:
            raise ValidationError("created_at must be timezone-aware (UTC)")
        fields = {
            "uid": uuid.uuid4().hex,
            "station": required_text("station", station),
            "source": str(source),
            "frame_index": int(frame_index),
            "model_version_id": int(model_version_id),
            "score": finite("score", score),
            "threshold": finite("threshold", threshold),
            "verdict": verdict,
            "latency_ms": finite("latency", latency_ms),
            "created_at": when.isoformat(),
        }
        rgb = codec.check_frame(frame)
        amap = codec.encode_map(anomaly_map, "anomaly map")
        gc = None if gradcam is None else codec.encode_map(gradcam, "Grad-CAM")
        note = (note or "").strip() or None
        try:
            return self._insert_inspection(fields, rgb, amap, gc, note)
        except StoreUnavailable as exc:
            if self._nested:
                raise
            raise self._enqueue(
                {
                    "kind": "inspection",
                    "uid": fields["uid"],
                    "fields": fields,
                    "frame_png": _b64(codec.encode_png(rgb)),
                    "anomaly_map": _b64(amap),
                    "gradcam": _b64(gc),
                    "note": note,
                },
                exc,
            ) from None

    def _insert_inspection(
        self, fields: dict[str, Any], rgb: np.ndarray, amap: bytes, gc: bytes | None, note: str | None = None
    ) -> int:
        try:
            digest, rel = codec.store_frame(rgb, self.frames_dir)
        except OSError as exc:
            raise StoreUnavailable(f"{self.frames_dir}: cannot write the frame ({exc.strerror or exc})") from None
        path = self.frames_dir / rel
        if self.db_path is not None and path.is_relative_to(self.db_path.parent):
            path = path.relative_to(self.db_path.parent)  # the store folder moves as one

        def fn(s: Session) -> int:
            done = s.scalar(select(InspectionRow.id).where(InspectionRow.uid == fields["uid"]))
            if done is not None:
                return int(done)  # a replay of a record that reached the database already
            if s.get(ModelVersionRow, fields["model_version_id"]) is None:
                raise NotFound(f"no model version {fields['model_version_id']}")
            iid = self._append(
                s,
                InspectionRow(
                    **{**fields, "created_at": datetime.fromisoformat(fields["created_at"])},
                    frame_sha256=digest,
                    frame_path=path.as_posix(),
                    anomaly_map=amap,
                    anomaly_map_sha256=codec.sha256_bytes(amap),
                    gradcam=gc,
                    gradcam_sha256=None if gc is None else codec.sha256_bytes(gc),
                ),
            )
            if note is not None:
                self._event(s, "out_of_domain", None, inspection_id=iid, uid=fields["uid"], reason=note)
            return iid

        return self._write(fn)

    def inspection_id_for(self, uid: str) -> int | None:
        """Read-only: the id a record got, by the uid it was queued with (None while it waits)."""
        with self._read() as s:
            found = s.scalar(select(InspectionRow.id).where(InspectionRow.uid == uid))
            return None if found is None else int(found)

    def out_of_domain_reason(self, inspection_id: int) -> str | None:
        """Read-only: why an OOD inspection was out of domain (None if it was not)."""
        with self._read() as s:
            for details in s.scalars(
                select(EventRow.details_json).where(EventRow.kind == "out_of_domain").order_by(EventRow.id.desc())
            ):
                d = json.loads(details)
                if d.get("inspection_id") == inspection_id:
                    return str(d.get("reason"))
        return None

    def inspection(self, inspection_id: int, *, images: bool = True) -> Inspection:
        """Read-only: one inspection, with frame and maps decoded when ``images``."""
        with self._read() as s:
            r = s.get(InspectionRow, inspection_id)
            if r is None:
                raise NotFound(f"no inspection {inspection_id}")
            path = Path(r.frame_path)
            if not path.is_absolute() and self.db_path is not None:
                path = self.db_path.parent / path
            frame = codec.load_frame(path) if images and path.is_file() else None
            return Inspection(
                id=r.id,
                uid=r.uid,
                station=r.station,
                source=r.source,
                frame_index=r.frame_index,
                frame_sha256=r.frame_sha256,
                frame_path=path,
                model_version_id=r.model_version_id,
                score=r.score,
                threshold=r.threshold,
                verdict=r.verdict,
                latency_ms=r.latency_ms,
                created_at=r.created_at,
                anomaly_map_sha256=r.anomaly_map_sha256,
                gradcam_sha256=r.gradcam_sha256,
                frame=frame,
                anomaly_map=codec.decode_map(r.anomaly_map) if images else None,
                gradcam=codec.decode_map(r.gradcam) if images and r.gradcam else None,
            )

    # ------------------------------------------------------------------ decisions
    def record_decision(
        self,
        actor: User,
        inspection_id: int,
        decision: str,
        reason_code: str | None = None,
        reason_text: str | None = None,
        supersedes: int | None = None,
    ) -> int:
        """Signs an operator's accept/reject of an inspection; returns the id once committed.

        A decision that overrules the model (reject of OK, accept of DEFECT) needs a reason
        text. A correction is a new decision with ``supersedes`` = the id it replaces.

        Raises:
            PermissionDenied, ValidationError, NotFound: refused, nothing recorded.
            RecordQueued: the database refused the write; the decision waits in the retry queue.
        """
        record = {
            "kind": "decision",
            "uid": uuid.uuid4().hex,
            "actor": actor.id,
            "inspection_id": int(inspection_id),
            "decision": decision,
            "reason_code": (reason_code or "").strip() or None,
            "reason_text": (reason_text or "").strip() or None,
            "supersedes": None if supersedes is None else int(supersedes),
            "created_at": datetime.now(UTC).isoformat(),
        }
        try:
            with self._read() as s:
                self._check_decision(s, record)  # refuse early even when writes are impossible
        except StoreUnavailable:
            pass
        try:
            return self._insert_decision(record)
        except StoreUnavailable as exc:
            if self._nested:
                raise
            raise self._enqueue(record, exc) from None

    def _check_decision(self, s: Session, r: dict[str, Any]) -> str:
        self._require(s, r["actor"], Action.DECIDE)
        if r["decision"] not in DECISIONS:
            raise ValidationError(f"decision must be accept or reject, got {r['decision']!r}")
        verdict = s.scalar(select(InspectionRow.verdict).where(InspectionRow.id == r["inspection_id"]))
        if verdict is None:
            raise NotFound(f"no inspection {r['inspection_id']}")
        if disagrees(verdict, r["decision"]) and not r["reason_text"]:
            raise ValidationError(
                f"{r['decision']} overrules the model's {verdict} verdict on "
                f"inspection {r['inspection_id']}: a reason text is required"
            )
        meaning = f"reviewed: {r['decision']}ed"
        if r["supersedes"] is not None:
            old = s.get(DecisionRow, r["supersedes"])
            if old is None or old.inspection_id != r["inspection_id"]:
                raise ValidationError(
                    f"decision {r['supersedes']} is not a decision on inspection {r['inspection_id']}"
                )
            later = s.scalar(select(DecisionRow.id).where(DecisionRow.supersedes_id == old.id))
            if later is not None:
                raise ValidationError(f"decision {old.id} was already superseded by {later}")
            meaning = f"corrected: {r['decision']}ed (supersedes decision {old.id})"
        return meaning

    def _insert_decision(self, r: dict[str, Any]) -> int:
        def fn(s: Session) -> int:
            done = s.scalar(select(DecisionRow.id).where(DecisionRow.uid == r["uid"]))
            if done is not None:
                return int(done)
            meaning = self._check_decision(s, r)
            return self._append(
                s,
                DecisionRow(
                    uid=r["uid"],
                    inspection_id=r["inspection_id"],
                    user_id=r["actor"],
                    decision=r["decision"],
                    reason_code=r["reason_code"],
                    reason_text=r["reason_text"],
                    meaning=meaning,
                    supersedes_id=r["supersedes"],
                    created_at=datetime.fromisoformat(r["created_at"]),
                ),
            )

        return self._write(fn)

    def decisions(self, **filters: Any) -> list[DecisionView]:
        """Read-only: decisions joined with user, inspection and model for the auditor's table.

        Filters: since, until (UTC datetimes), operator (user id), station, model_version,
        verdict, disagreements_only, current_only (hide superseded decisions).
        """
        with self._read() as s:
            return queries.decision_views(s, **filters)


def replay(store: RecordingMixin, record: dict[str, Any]) -> tuple[str, int]:
    """Writes one queued record; the uid makes a second replay a no-op."""
    if record.get("kind") == "inspection":
        rgb = codec.decode_png(_unb64(record["frame_png"]) or b"")
        iid = store._insert_inspection(
            record["fields"],
            rgb,
            _unb64(record["anomaly_map"]) or b"",
            _unb64(record.get("gradcam")),
            record.get("note"),
        )
        return "inspections", iid
    if record.get("kind") == "decision":
        return "decisions", store._insert_decision(record)
    raise ValidationError(f"unknown queued record kind {record.get('kind')!r}")
