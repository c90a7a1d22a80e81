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

from inspector.audit import codec, limits, queries
from inspector.audit.errors import (
    NotFound,
    PermissionDenied,
    StoreUnavailable,
    ValidationError,
)
from inspector.audit.history import UserState, close, verdict_follows
from inspector.audit.internals import StoreInternals
from inspector.audit.records import DecisionView, Inspection, User, disagrees
from inspector.audit.roles import Action
from inspector.audit.schema import (
    DecisionRow,
    EventRow,
    InspectionRow,
    ModelVersionRow,
)
from inspector.audit.users import REASON_MAX, finite, required_text
from inspector.images import frame_sha256

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
        if created_at is not None:
            raise ValidationError("created_at is set by the store (its own clock, never earlier than the last record)")
        when = datetime.now(UTC)
        fields = {
            "uid": uuid.uuid4().hex,
            "station": required_text("station name", station),
            "source": str(source),
            "frame_index": int(frame_index),
            "model_version_id": int(model_version_id),
            "score": finite("score", score),
            "threshold": finite("threshold", threshold),
            "verdict": verdict,
            "latency_ms": finite("latency", latency_ms),
            "created_at": when.isoformat(),
        }
        _check_inspection(fields)
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
        path = Path(rel)  # relative to the frame store, so every machine that mounts it finds the frame

        def fn(s: Session) -> int:
            done = s.scalar(select(InspectionRow.id).where(InspectionRow.uid == fields["uid"]))
            if done is not None:
                return int(done)  # a replay of a record that reached the database already
            mid = fields["model_version_id"]
            if s.get(ModelVersionRow, mid) is None:
                raise NotFound(f"no model version {mid}")
            in_force = queries.models(s, mid)[0].threshold
            if not close(fields["threshold"], in_force):
                raise ValidationError(
                    f"threshold {fields['threshold']:.6g} is not model v{mid}'s threshold in force ({in_force}); "
                    "the station must judge with the registered threshold and its logged changes"
                )
            if not verdict_follows(fields["verdict"], fields["score"], fields["threshold"]):
                raise ValidationError(
                    f"verdict {fields['verdict']} does not follow from score {fields['score']:.6g} "
                    f"and threshold {fields['threshold']:.6g}"
                )
            iid = self._append(
                s,
                InspectionRow(
                    **{k: v for k, v in fields.items() if k != "created_at"},
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
            path = codec.locate_frame(self.frames_dir, self.db_path, r.frame_path, r.frame_sha256)
            frame = codec.load_frame(path) if images and path.is_file() else None
            # Re-hashed before anyone sees it: a replaced file must not pass for the recorded frame.
            matches = None if frame is None else frame_sha256(frame) == r.frame_sha256
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
                frame_matches=matches,
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
        self._check_session(actor)
        text = (reason_text or "").strip() or None
        if text is not None and len(text) > REASON_MAX:
            raise ValidationError(f"reason text has {len(text):,} characters; the limit is {REASON_MAX:,}")
        if reason_code is not None and len(reason_code.strip()) > 64:
            raise ValidationError("reason code has more than 64 characters")
        record = {
            "kind": "decision",
            "uid": uuid.uuid4().hex,
            "actor": actor.id,
            "session": actor.session_id,
            "inspection_id": int(inspection_id),
            "decision": decision,
            "reason_code": (reason_code or "").strip() or None,
            "reason_text": text,
            "supersedes": None if supersedes is None else int(supersedes),
            "created_at": datetime.now(UTC).isoformat(),
        }
        _check_decision_fields(record)
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

    def _check_decision(self, s: Session, r: dict[str, Any]) -> tuple[str, UserState]:
        """Refuses what verify would flag; returns the signature's meaning and the signer."""
        signer = self._require_state(s, r["actor"], Action.DECIDE)
        if not queries.session_in_chain(s, r["actor"], r.get("session")):
            raise PermissionDenied(f"decision by {r['actor']!r} names no login session of theirs")
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
        else:
            current = s.scalar(
                select(DecisionRow.id)
                .where(DecisionRow.inspection_id == r["inspection_id"])
                .order_by(DecisionRow.id.desc())
                .limit(1)
            )
            if current is not None:
                raise ValidationError(
                    f"inspection {r['inspection_id']} already has decision {current}; a new one must supersede it"
                )
        return meaning, signer

    def _insert_decision(self, r: dict[str, Any], queued: bool = False) -> int:
        def fn(s: Session) -> int:
            done = s.scalar(select(DecisionRow.id).where(DecisionRow.uid == r["uid"]))
            if done is not None:
                return int(done)
            meaning, signer = self._check_decision(s, r)
            if queued:  # the store's clock stamps the row; the station's time of signing is kept here
                meaning += f"; signed {r['created_at'][:19]} UTC, recorded after the store came back"
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
                    created_at=datetime.now(UTC),
                    user_name=signer.name,
                    user_role=signer.role,
                    session_id=r.get("session"),
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


def _check_inspection(f: dict[str, Any]) -> None:
    """Length, character and range rules before queueing, so a queued record is a valid one."""
    limits.check_text("station name", f["station"], limits.max_length(InspectionRow.station))
    limits.check_text("source", f["source"])
    limits.check_int("frame index", f["frame_index"])
    limits.check_int("model version id", f["model_version_id"])


def _check_decision_fields(r: dict[str, Any]) -> None:
    limits.check_text("reason code", r["reason_code"], limits.max_length(DecisionRow.reason_code))
    limits.check_text("reason text", r["reason_text"])
    limits.check_int("inspection id", r["inspection_id"])
    if r["supersedes"] is not None:
        limits.check_int("superseded decision id", r["supersedes"])


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
        return "decisions", store._insert_decision(record, queued=True)
    raise ValidationError(f"unknown queued record kind {record.get('kind')!r}")
