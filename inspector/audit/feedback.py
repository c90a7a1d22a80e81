"""The feedback queue: operator decisions that should teach the model, and the engineer's ruling.

Nothing here adds a table: a candidate is derived from the decision log (an overrule, or a
reject with a reason code), and the engineer's ruling is an append-only, hash-chained event
(``feedback_confirmed`` / ``feedback_dismissed``), so the queue's history cannot be rewritten
and ``audit verify`` covers it. Golden-set and promotion events use the same ``_event`` path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inspector.audit import queries
from inspector.audit.errors import NotFound, ValidationError
from inspector.audit.records import DecisionView, User
from inspector.audit.roles import Action
from inspector.audit.schema import EventRow
from inspector.audit.users import required_text

if TYPE_CHECKING:
    from inspector.audit.store import AuditStore

CONFIRMED, DISMISSED = "feedback_confirmed", "feedback_dismissed"
LABELS = ("good", "defect", "noise")  # good: into the bank; defect: an example of a type; noise: neither


@dataclass(frozen=True)
class Candidate:
    """One decision in the queue, with what the engineer ruled on it (``status`` open until then)."""

    decision: DecisionView
    why: str  # "overrule" or "reject with reason"
    status: str = "open"  # open | confirmed | dismissed
    label: str | None = None
    defect_type: str | None = None
    ruled_by: str | None = None

    @property
    def id(self) -> int:
        return self.decision.id


def is_candidate(d: DecisionView) -> str | None:
    """Why a decision should reach the engineer: an overrule of the model, or a reject with a code."""
    if (d.decision == "accept" and d.verdict in ("DEFECT", "REVIEW")) or (d.decision == "reject" and d.verdict == "OK"):
        return "overrule"
    if d.decision == "reject" and d.reason_code:
        return "reject with reason"
    return None


def _rulings(s: Session) -> dict[int, tuple[str, dict[str, Any], str | None]]:
    out: dict[int, tuple[str, dict[str, Any], str | None]] = {}
    for ev in s.scalars(select(EventRow).where(EventRow.kind.in_((CONFIRMED, DISMISSED))).order_by(EventRow.id)):
        d = json.loads(ev.details_json)
        out[int(d["decision_id"])] = (ev.kind, d, ev.actor)
    return out


def candidates(store: AuditStore, *, status: str | None = "open") -> list[Candidate]:
    """Read-only: the queue (``status`` None: every candidate, ruled ones included), oldest first."""
    with store._read() as s:
        views = queries.decision_views(s, current_only=True)
        rulings = _rulings(s)
    out = []
    for v in sorted(views, key=lambda v: v.id):
        why = is_candidate(v)
        if why is None:
            continue
        kind, d, actor = rulings.get(v.id, ("", {}, None))
        st = "confirmed" if kind == CONFIRMED else "dismissed" if kind == DISMISSED else "open"
        if status is None or st == status:
            out.append(Candidate(v, why, st, d.get("label"), d.get("defect_type"), actor))
    return out


def _open_candidate(store: AuditStore, s: Session, decision_id: int) -> DecisionView:
    views = queries.decision_views(s, current_only=True, ids=[decision_id])
    if not views or is_candidate(views[0]) is None:
        raise NotFound(f"decision {decision_id} is not in the feedback queue")
    if decision_id in _rulings(s):
        raise ValidationError(f"decision {decision_id} was already ruled on; rulings are final")
    return views[0]


def confirm(
    store: AuditStore, actor: User, decision_id: int, label: str, defect_type: str | None = None, note: str = ""
) -> int:
    """The engineer confirms a candidate as a good image, a defect example of a type, or noise."""
    if label not in LABELS:
        raise ValidationError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    if label == "defect":
        defect_type = required_text("defect type", defect_type)
    elif defect_type:
        raise ValidationError("only a defect example has a defect type")

    def fn(s: Session) -> int:
        store._require(s, actor, Action.REGISTER_MODEL)
        by = actor.id
        v = _open_candidate(store, s, decision_id)
        return store._event(
            s,
            CONFIRMED,
            by,
            decision_id=decision_id,
            inspection_id=v.inspection_id,
            frame_sha256=v.frame_sha256,
            label=label,
            defect_type=defect_type,
            note=note.strip() or None,
        )

    return store._write(fn)


def dismiss(store: AuditStore, actor: User, decision_id: int, reason: str) -> int:
    """The engineer dismisses a candidate (it teaches the model nothing), with a reason."""
    why = required_text("reason", reason)

    def fn(s: Session) -> int:
        store._require(s, actor, Action.REGISTER_MODEL)
        by = actor.id
        v = _open_candidate(store, s, decision_id)
        return store._event(s, DISMISSED, by, decision_id=decision_id, inspection_id=v.inspection_id, reason=why)

    return store._write(fn)


def record_event(store: AuditStore, actor: User, action: Action, kind: str, **details: Any) -> int:
    """Appends one governance event (golden set, evaluation, signature) after a role check."""

    def fn(s: Session) -> int:
        store._require(s, actor, action)
        by = actor.id
        return store._event(s, kind, by, **details)

    return store._write(fn)


def events(store: AuditStore, kind: str) -> list[tuple[int, str | None, dict[str, Any]]]:
    """Read-only: (id, actor, details) of every event of ``kind``, oldest first."""
    with store._read() as s:
        rows = s.scalars(select(EventRow).where(EventRow.kind == kind).order_by(EventRow.id))
        return [(int(r.id), r.actor, json.loads(r.details_json)) for r in rows]
