"""Replays the chain into the state at each moment: users, login sessions, models, decisions.

Pure functions over plain data. The store uses ``apply_user_event`` to know a user's role, state
and password digest *now* (never from the mutable ``users`` row); ``verify`` walks every record
with ``History`` and checks it against the state at that moment: the actor's role, whether they
were active, unlocked and logged in, the model and threshold in force, one current decision per
inspection, and store time that never runs backwards.

Records written before the store was upgraded to schema 0002 (a chained ``schema_upgraded``
event marks the moment) carry no session, no signer and a caller's clock, so only the role
checks apply to them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from inspector.audit.chain import Problem
from inspector.audit.roles import ALLOWED, Action

USER_EVENTS = ("user_created", "user_changed", "user_locked", "user_unlocked")
# Which action each kind of event needs from its actor (the role table of roles.py).
EVENT_ACTIONS: dict[str, Action] = {
    "user_created": Action.MANAGE_USERS,
    "user_changed": Action.MANAGE_USERS,
    "user_unlocked": Action.MANAGE_USERS,
    "model_trained": Action.REGISTER_MODEL,
    "model_activated": Action.ACTIVATE_MODEL,
    "model_rolled_back": Action.ACTIVATE_MODEL,
    "threshold_changed": Action.SET_THRESHOLD,
    "export_made": Action.EXPORT,
}
STRICT_FROM_REVISION = "0002"


def verdict_follows(verdict: str, score: float, threshold: float) -> bool:
    """Whether a recorded verdict follows from its score and threshold. An out-of-domain frame
    ("OOD") goes to review whatever its score, so any score is consistent with it."""
    if verdict == "OOD":
        return True
    return (verdict == "DEFECT") == (score >= threshold)


@dataclass
class UserState:
    """A user as the chained events say they are at one moment."""

    name: str
    role: str
    active: bool
    password_digest: str
    locked: bool = False


def apply_user_event(users: dict[str, UserState], kind: str, details: Mapping[str, Any]) -> None:
    """Moves ``users`` on by one user event (created, changed, locked, unlocked)."""
    uid = details.get("user_id")
    if not isinstance(uid, str):
        return
    if kind == "user_created":
        st = details.get("state") or {}
        users[uid] = UserState(
            name=str(st.get("name", uid)),
            role=str(st.get("role", "")),
            active=bool(st.get("active", True)),
            password_digest=str(st.get("password_digest", "")),
        )
    elif uid in users:
        u = users[uid]
        if kind == "user_changed":
            for k, v in (details.get("changes") or {}).items():
                if k in ("name", "role", "password_digest"):
                    setattr(u, k, str(v))
                elif k == "active":
                    u.active = bool(v)
        elif kind == "user_locked":
            u.locked = True
        elif kind == "user_unlocked":
            u.locked = False


def close(a: float, b: float | None) -> bool:
    return b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@dataclass
class Record:
    """One chained row as verify reads it (blobs left out)."""

    seq: int
    table: str
    row_id: int
    created_at: datetime | None
    fields: dict[str, Any]


@dataclass
class History:
    """The state at one point of the chain; ``check`` moves it on by one record."""

    users: dict[str, UserState] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)  # session id -> user id
    thresholds: dict[int, float | None] = field(default_factory=dict)  # model id -> in force
    current: dict[int, int] = field(default_factory=dict)  # inspection id -> current decision id
    decisions: dict[int, int] = field(default_factory=dict)  # decision id -> inspection id
    strict: bool = True  # False while replaying records written before schema 0002
    last_at: datetime | None = None

    def where(self, r: Record) -> str:
        return f"record #{r.seq} ({r.table} {r.row_id})"

    def check(self, r: Record) -> list[Problem]:
        """The problems of one record at its moment, then the state after it."""
        out: list[Problem] = []
        if self.strict and r.created_at is not None:
            if self.last_at is not None and r.created_at < self.last_at:
                out.append(
                    self._p(
                        "time",
                        r,
                        f"{self.where(r)} is stamped {r.created_at:%Y-%m-%d %H:%M:%S} UTC, earlier than the "
                        f"record before it ({self.last_at:%Y-%m-%d %H:%M:%S} UTC)",
                    )
                )
        if r.created_at is not None and (self.last_at is None or r.created_at > self.last_at):
            self.last_at = r.created_at
        handler = getattr(self, f"_{r.table}", None)
        if handler is not None:
            out += handler(r)
        return out

    @staticmethod
    def _p(kind: Any, r: Record, message: str) -> Problem:
        return Problem(kind, r.table, r.row_id, r.seq, message)

    def _actor(
        self, r: Record, actor: str | None, action: Action, session: str | None, need_session: bool = True
    ) -> list[Problem]:
        """The actor had the role for ``action``, was active and unlocked, and was logged in."""
        what = f"{self.where(r)} by {actor!r}"
        u = self.users.get(actor or "")
        if u is None:
            return [self._p("unauthorised", r, f"{what}: no such user at that moment")]
        if not u.active:
            return [self._p("unauthorised", r, f"{what}: the user was deactivated at that moment")]
        if u.locked and self.strict:
            return [self._p("unauthorised", r, f"{what}: the user was locked out at that moment")]
        allowed = ALLOWED[action]
        if u.role not in allowed:
            need = " or ".join(sorted(x.value for x in allowed))
            return [
                self._p(
                    "unauthorised", r, f"{what}: {actor} was {u.role} at that moment; to {action.value} needs {need}"
                )
            ]
        if self.strict and need_session and (session is None or self.sessions.get(session) != actor):
            return [self._p("unauthorised", r, f"{what}: not made in a login session of {actor!r}")]
        return []

    # ------------------------------------------------------------------ per table
    def _events(self, r: Record) -> list[Problem]:
        kind, actor, d = r.fields["kind"], r.fields["actor"], r.fields["details"]
        out: list[Problem] = []
        if kind == "schema_upgraded":
            if str(d.get("from_revision") or "") < STRICT_FROM_REVISION <= str(d.get("to_revision") or ""):
                self.strict = True
            return out
        if kind == "login":
            u = self.users.get(actor or "")
            if u is None or not u.active or (u.locked and self.strict):
                out.append(self._p("unauthorised", r, f"{self.where(r)}: login of {actor!r}, not an active user"))
            if isinstance(d.get("session"), str):
                self.sessions[d["session"]] = str(actor)
            return out
        action = EVENT_ACTIONS.get(kind)
        bootstrap = kind == "user_created" and d.get("bootstrap") and not self.users and actor == d.get("user_id")
        own_password = (
            kind == "user_changed" and actor == d.get("user_id") and set(d.get("changes") or {}) <= {"password_digest"}
        )
        if action is not None and not bootstrap and not own_password:
            out += self._actor(r, actor, action, d.get("session"))
        if kind in USER_EVENTS:
            apply_user_event(self.users, kind, d)
        elif kind == "threshold_changed":
            self.thresholds[int(d.get("model_id", -1))] = float(d.get("new", math.nan))
        return out

    def _model_versions(self, r: Record) -> list[Problem]:
        """The trainer was an engineer then (their session is on the model_trained event)."""
        self.thresholds[r.row_id] = r.fields["threshold"]
        return self._actor(r, r.fields["trained_by"], Action.REGISTER_MODEL, None, need_session=False)

    def _inspections(self, r: Record) -> list[Problem]:
        f = r.fields
        mid = f["model_version_id"]
        if mid not in self.thresholds:
            return [self._p("conflict", r, f"{self.where(r)} names model v{mid}, not registered before it")]
        if not self.strict:
            return []
        in_force = self.thresholds[mid]
        if not close(f["threshold"], in_force):
            return [
                self._p(
                    "conflict",
                    r,
                    f"{self.where(r)} was judged at threshold {f['threshold']:.6g}, but model v{mid}'s "
                    f"threshold in force was {in_force if in_force is None else format(in_force, '.6g')}",
                )
            ]
        if not verdict_follows(f["verdict"], f["score"], f["threshold"]):
            return [
                self._p(
                    "conflict",
                    r,
                    f"{self.where(r)}: verdict {f['verdict']} does not follow from score {f['score']:.6g} "
                    f"and threshold {f['threshold']:.6g}",
                )
            ]
        return []

    def _decisions(self, r: Record) -> list[Problem]:
        f = r.fields
        out = self._actor(r, f["user_id"], Action.DECIDE, f.get("session_id"))
        u = self.users.get(f["user_id"])
        if self.strict and u is not None and (f.get("user_name"), f.get("user_role")) != (u.name, u.role):
            out.append(
                self._p(
                    "edited",
                    r,
                    f"{self.where(r)}: signer shown as {f.get('user_name')!r} ({f.get('user_role')}), but "
                    f"{f['user_id']!r} was {u.name!r} ({u.role}) at signing",
                )
            )
        iid, sup = f["inspection_id"], f["supersedes_id"]
        cur = self.current.get(iid)
        if self.strict and sup is None and cur is not None:
            out.append(
                self._p(
                    "conflict",
                    r,
                    f"{self.where(r)} by {f['user_id']!r} is a second current decision on inspection {iid} "
                    f"(decision {cur} stands) without superseding it",
                )
            )
        elif self.strict and sup is not None and sup != cur:
            out.append(
                self._p(
                    "conflict",
                    r,
                    f"{self.where(r)} by {f['user_id']!r} supersedes decision {sup}, not the current one "
                    f"({cur}) of inspection {iid}",
                )
            )
        self.current[iid] = r.row_id
        self.decisions[r.row_id] = iid
        return out
