"""Read-only queries over an open session: the auditor's table, model state, user rows.

Kept apart from ``store`` so the store holds only writes, transactions and the chain; nothing
here is specific to one database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, aliased

from inspector.audit.errors import NotFound
from inspector.audit.history import USER_EVENTS, UserState, apply_user_event
from inspector.audit.records import DecisionView, ModelInfo, UserInfo
from inspector.audit.schema import DecisionRow, EventRow, InspectionRow, ModelVersionRow, UserRow

MODEL_EVENTS = ("model_activated", "model_rolled_back", "threshold_changed")
LOGIN_EVENTS = ("login", "login_failed", "user_unlocked")


def user_states(s: Session) -> dict[str, UserState]:
    """Every user as the chained events say they are now (the ``users`` row is only a cache)."""
    users: dict[str, UserState] = {}
    q = select(EventRow.kind, EventRow.details_json).where(EventRow.kind.in_(USER_EVENTS)).order_by(EventRow.id)
    for kind, details in s.execute(q):
        try:
            apply_user_event(users, kind, json.loads(details))
        except ValueError:
            continue  # an edited event: verify names it
    return users


def to_user_info(uid: str, st: UserState, created_at: datetime | None) -> UserInfo:
    return UserInfo(uid, st.name, st.role, st.active, created_at, st.locked)  # type: ignore[arg-type]


def user_row(s: Session, user_id: str) -> UserRow:
    row = s.get(UserRow, user_id)
    if row is None:
        raise NotFound(f"no user {user_id!r}")
    return row


def failed_logins(s: Session, user_id: str) -> int:
    """Wrong passwords for ``user_id`` since their last login or unlock."""
    n = 0
    q = (
        select(EventRow.kind, EventRow.actor, EventRow.details_json)
        .where(EventRow.kind.in_(LOGIN_EVENTS))
        .order_by(EventRow.id.desc())
    )
    for kind, actor, details in s.execute(q):
        if kind == "login" and actor == user_id:
            break
        if kind == "user_unlocked" and json.loads(details).get("user_id") == user_id:
            break
        if kind == "login_failed" and actor == user_id and json.loads(details).get("reason") == "wrong password":
            n += 1
    return n


def session_in_chain(s: Session, user_id: str, session_id: str | None) -> bool:
    """True when a chained ``login`` of ``user_id`` opened ``session_id``."""
    if not session_id:
        return False
    q = select(EventRow.details_json).where(
        EventRow.kind == "login", EventRow.actor == user_id, EventRow.details_json.contains(session_id)
    )
    return any(json.loads(d).get("session") == session_id for d in s.scalars(q))


def activation_stack(
    s: Session,
) -> tuple[list[int], dict[int, tuple[str | None, datetime]], dict[int, float]]:
    """Replays model events: the stack of active models, who activated each, threshold overrides.

    Activation is derived from append-only events rather than an ``active`` flag, so the
    history of which model judged which frame cannot be rewritten by an update.
    """
    stack: list[int] = []
    activated: dict[int, tuple[str | None, datetime]] = {}
    thresholds: dict[int, float] = {}
    for ev in s.scalars(select(EventRow).where(EventRow.kind.in_(MODEL_EVENTS)).order_by(EventRow.id)):
        d = json.loads(ev.details_json)
        if ev.kind == "model_activated":
            stack.append(int(d["model_id"]))
            activated[int(d["model_id"])] = (ev.actor, ev.created_at)
        elif ev.kind == "model_rolled_back":
            if stack:
                stack.pop()
            if not stack or stack[-1] != int(d["model_id"]):
                stack.append(int(d["model_id"]))
            activated[int(d["model_id"])] = (ev.actor, ev.created_at)
        else:
            thresholds[int(d["model_id"])] = float(d["new"])
    return stack, activated, thresholds


def default_threshold(thresholds: dict[str, Any]) -> float | None:
    """The decision threshold a model was trained with: key ``decision`` (what training stores),
    else ``image`` or ``threshold`` (hand-registered models)."""
    for key in ("decision", "image", "threshold"):
        value = thresholds.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return None


def models(s: Session, model_id: int | None = None) -> list[ModelInfo]:
    stack, activated, overrides = activation_stack(s)
    active = stack[-1] if stack else None
    q = select(ModelVersionRow).order_by(ModelVersionRow.id)
    if model_id is not None:
        q = q.where(ModelVersionRow.id == model_id)
    out = []
    for r in s.scalars(q):
        th = json.loads(r.thresholds_json)
        by, at = activated.get(r.id, (None, None))
        out.append(
            ModelInfo(
                id=r.id,
                weights_hash=r.weights_hash,
                backbone=r.backbone,
                manifest_hash=r.manifest_hash,
                thresholds=th,
                metrics=json.loads(r.metrics_json),
                model_dir=r.model_dir,
                trained_by=r.trained_by,
                created_at=r.created_at,
                active=r.id == active,
                activated_by=by,
                activated_at=at,
                threshold=overrides.get(r.id, default_threshold(th)),
                files=json.loads(r.files_json) if r.files_json else None,
                backbone_sha256=r.backbone_sha256,
            )
        )
    if model_id is not None and not out:
        raise NotFound(f"no model version {model_id}")
    return out


def decision_views(
    s: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    operator: str | None = None,
    station: str | None = None,
    model_version: int | None = None,
    verdict: str | None = None,
    disagreements_only: bool = False,
    current_only: bool = False,
    ids: Sequence[int] | None = None,
) -> list[DecisionView]:
    """Decisions joined with user, inspection and model, oldest first; blobs are not loaded."""
    later = aliased(DecisionRow)
    q = (
        select(
            DecisionRow,
            UserRow.name,
            UserRow.role,
            InspectionRow.station,
            InspectionRow.source,
            InspectionRow.frame_index,
            InspectionRow.frame_sha256,
            InspectionRow.model_version_id,
            ModelVersionRow.weights_hash,
            ModelVersionRow.backbone,
            InspectionRow.score,
            InspectionRow.threshold,
            InspectionRow.verdict,
            later.id,
        )
        .join(UserRow, UserRow.id == DecisionRow.user_id)
        .join(InspectionRow, InspectionRow.id == DecisionRow.inspection_id)
        .join(ModelVersionRow, ModelVersionRow.id == InspectionRow.model_version_id)
        .outerjoin(later, later.supersedes_id == DecisionRow.id)
        .order_by(DecisionRow.id)
    )
    if since is not None:
        q = q.where(DecisionRow.created_at >= since)
    if until is not None:
        q = q.where(DecisionRow.created_at < until)
    if operator is not None:
        q = q.where(DecisionRow.user_id == operator)
    if station is not None:
        q = q.where(InspectionRow.station == station)
    if model_version is not None:
        q = q.where(InspectionRow.model_version_id == model_version)
    if verdict is not None:
        q = q.where(InspectionRow.verdict == verdict)
    if disagreements_only:
        q = q.where(
            or_(
                and_(InspectionRow.verdict == "OK", DecisionRow.decision == "reject"),
                and_(InspectionRow.verdict == "DEFECT", DecisionRow.decision == "accept"),
            )
        )
    if current_only:
        q = q.where(later.id.is_(None))
    if ids is not None:
        q = q.where(DecisionRow.id.in_(list(ids)))
    out = []
    for d, name, role, st, src, fi, fsha, mv, wh, bb, score, thr, verd, later_id in s.execute(q):
        out.append(
            DecisionView(
                id=d.id,
                created_at=d.created_at,
                user_id=d.user_id,
                user_name=d.user_name if d.user_name is not None else name,
                user_role=d.user_role if d.user_role is not None else role,
                signer_recorded=d.user_name is not None,
                decision=d.decision,
                meaning=d.meaning,
                reason_code=d.reason_code,
                reason_text=d.reason_text,
                supersedes_id=d.supersedes_id,
                superseded_by=later_id,
                inspection_id=d.inspection_id,
                station=st,
                source=src,
                frame_index=fi,
                frame_sha256=fsha,
                model_version_id=mv,
                weights_hash=wh,
                backbone=bb,
                score=score,
                threshold=thr,
                verdict=verd,
            )
        )
    return out
