"""Users of AuditStore: accounts, login sessions, lockout; their state only from chained events.

Every write checks the actor's role *inside* its transaction, from the state the chained user
events give at that moment (``history.apply_user_event``), never from the mutable ``users``
row, so a role change or deactivation takes effect at once and an edited row grants nothing.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inspector.audit import limits, queries
from inspector.audit.errors import AuthenticationError, NotFound, PermissionDenied, ValidationError
from inspector.audit.history import UserState
from inspector.audit.internals import StoreInternals
from inspector.audit.passwords import hash_password, id_hash, verify_password
from inspector.audit.records import User, UserInfo, mint_session
from inspector.audit.roles import Action, Role, parse_role, require
from inspector.audit.schema import UserRow

USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_FAILED_LOGINS = 5  # wrong passwords in a row before a user is locked out
REASON_MAX = 4000  # characters in a reason text: about a page; longer belongs in a document
NAME_MAX = 200
CHAINED_STATE = ("name", "role", "active", "password_digest")


@functools.cache
def _dummy_hash() -> str:
    """A real hash to check unknown ids against, so their refusal takes as long as a bad password."""
    return hash_password("no such user: dummy password")


def finite(name: str, value: Any) -> float:
    """A finite float or a ValidationError naming the argument."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise ValidationError(f"{name} must be finite, got {f}")
    return f


def required_text(name: str, value: str | None) -> str:
    """Stripped non-blank text or a ValidationError: reasons are never empty."""
    if value is None or not str(value).strip():
        raise ValidationError(f"{name} is required")
    return str(limits.check_text(name, str(value).strip()))


def reason_text(name: str, value: str | None, limit: int = REASON_MAX) -> str:
    """A required reason within the stated cap, or a one-line ValidationError."""
    text = required_text(name, value)
    if len(text) > limit:
        raise ValidationError(f"{name} has {len(text):,} characters; the limit is {limit:,}")
    return text


def _digest(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()


class UsersMixin(StoreInternals):
    """Users, passwords and sessions; mixed into ``AuditStore`` through ``GovernanceMixin``."""

    def _require(self, s: Session, actor: User, action: Action) -> UserState:
        """The actor is a session this store issued, and the chain says they may ``action`` now."""
        self._check_session(actor)
        return self._require_state(s, actor.id, action)

    def _check_session(self, actor: object) -> None:
        if not isinstance(actor, User) or self._sessions.get(actor.session_id) != actor.id:
            who = getattr(actor, "id", actor)
            raise PermissionDenied(f"{who!r} is not a login session of this store: log in with authenticate()")

    def _require_state(self, s: Session, user_id: str, action: Action) -> UserState:
        st = queries.user_states(s).get(user_id)
        if st is None:
            raise PermissionDenied(f"unknown user {user_id!r} cannot {action.value}")
        if st.locked:
            raise PermissionDenied(f"user {user_id!r} is locked out after failed logins; an admin must unlock it")
        require(user_id, st.role, st.active, action)
        return st

    def add_user(self, actor: User | None, user_id: str, name: str, role: str, password: str) -> UserInfo:
        """Creates a user (admins only). With ``actor=None`` it bootstraps the first admin of an
        empty store; once any user exists that door is closed."""
        if not USER_ID.match(user_id or ""):
            raise ValidationError(f"user id {user_id!r}: use 1-64 letters, digits, '_.@-'")
        r = parse_role(role)
        full_name = reason_text("name", name or user_id, NAME_MAX)
        pw_hash = hash_password(password)  # slow on purpose: outside the write lock
        if actor is not None:
            self._check_session(actor)

        def fn(s: Session) -> UserInfo:
            states = queries.user_states(s)
            extra: dict[str, Any] = {}
            if actor is None:
                if states or s.scalar(select(func.count()).select_from(UserRow)):
                    raise PermissionDenied("users exist: only an admin may add users")
                if r is not Role.ADMIN:
                    raise ValidationError("the first user of a new store must be an admin")
                by = user_id
            else:
                self._require(s, actor, Action.MANAGE_USERS)
                by = actor.id
                extra["session"] = actor.session_id
            if user_id in states or s.get(UserRow, user_id) is not None:
                raise ValidationError(f"user id {user_id!r} exists; ids are never reused")
            row = UserRow(
                id=user_id,
                name=full_name,
                role=r.value,
                password_hash=pw_hash,
                active=True,
                created_at=datetime.now(UTC),
            )
            limits.check_row(row)
            s.add(row)
            s.flush()
            state = {"name": full_name, "role": r.value, "active": True, "password_digest": _digest(pw_hash)}
            self._event(s, "user_created", by, user_id=user_id, state=state, bootstrap=actor is None, **extra)
            return UserInfo(user_id, full_name, r.value, True, row.created_at)

        return self._write(fn)

    def set_user(
        self,
        actor: User,
        user_id: str,
        *,
        name: str | None = None,
        role: str | None = None,
        active: bool | None = None,
        password: str | None = None,
    ) -> UserInfo:
        """Changes a user (admins; anyone may change their own password). Logged as user_changed."""
        self._check_session(actor)
        pw_hash = hash_password(password) if password is not None else None
        new_name = None if name is None else reason_text("name", name, NAME_MAX)

        def fn(s: Session) -> UserInfo:
            only_own_password = actor.id == user_id and name is None and role is None and active is None
            if only_own_password:
                me = queries.user_states(s).get(actor.id)
                if me is None or not me.active or me.locked:
                    raise PermissionDenied(f"user {actor.id!r} is deactivated or locked and cannot change a password")
            else:
                self._require(s, actor, Action.MANAGE_USERS)
            states = queries.user_states(s)
            if user_id not in states:
                raise NotFound(f"no user {user_id!r}")
            row = queries.user_row(s, user_id)
            before = states[user_id]
            after = UserState(before.name, before.role, before.active, before.password_digest, before.locked)
            if new_name is not None:
                after.name = row.name = new_name
            if role is not None:
                after.role = row.role = parse_role(role).value
            if active is not None:
                after.active = row.active = bool(active)
            if pw_hash is not None:
                row.password_hash = pw_hash
                after.password_digest = _digest(pw_hash)
            states[user_id] = after
            limits.check_row(row)
            if not any(u.role == Role.ADMIN.value and u.active for u in states.values()):
                raise ValidationError("this would leave the store without an active admin")
            s.flush()
            changes = {k: getattr(after, k) for k in CHAINED_STATE if getattr(before, k) != getattr(after, k)}
            self._event(s, "user_changed", actor.id, user_id=user_id, changes=changes, session=actor.session_id)
            return queries.to_user_info(user_id, after, row.created_at)

        return self._write(fn)

    def unlock_user(self, actor: User, user_id: str, reason: str) -> None:
        """Lifts a lockout after failed logins (admins, with a reason); logged as user_unlocked."""
        why = reason_text("reason", reason)

        def fn(s: Session) -> None:
            self._require(s, actor, Action.MANAGE_USERS)
            st = queries.user_states(s).get(user_id)
            if st is None:
                raise NotFound(f"no user {user_id!r}")
            if not st.locked:
                raise ValidationError(f"user {user_id!r} is not locked")
            self._event(s, "user_unlocked", actor.id, user_id=user_id, reason=why, session=actor.session_id)

        self._write(fn)

    def authenticate(self, user_id: str, password: str) -> User:
        """Checks a password and opens a login session; records ``login`` or ``login_failed``.

        The user's state comes from the chain; the stored hash must match the chained digest (a
        hash swapped in the ``users`` table is refused). After ``MAX_FAILED_LOGINS`` wrong
        passwords the user is locked until an admin unlocks them. An unknown id is logged only as
        a salted hash: it may be a password typed into the wrong field.
        """
        with self._read() as s:
            st = queries.user_states(s).get(user_id)
            row = s.get(UserRow, user_id) if st is not None else None
            stored = row.password_hash if row is not None else _dummy_hash()
        ok = verify_password(stored, password)  # runs for unknown ids too: same timing
        if st is None:
            reason: str | None = "unknown user"
        elif row is None or _digest(row.password_hash) != st.password_digest:
            reason = "password record altered outside the store"
        elif st.locked:
            reason = "locked out"
        elif not st.active:
            reason = "inactive user"
        else:
            reason = None if ok else "wrong password"
        session = secrets.token_hex(16)

        def fn(s: Session) -> bool:
            if reason is None:
                self._event(s, "login", user_id, user_id=user_id, session=session)
                return False
            if st is None:
                self._event(s, "login_failed", None, user_id_hash=id_hash(user_id, self.store_id), reason=reason)
                return False
            self._event(s, "login_failed", user_id, user_id=user_id, reason=reason)
            if reason == "wrong password":
                failures = queries.failed_logins(s, user_id)
                if failures >= MAX_FAILED_LOGINS:
                    self._event(s, "user_locked", None, user_id=user_id, failures=failures)
                    return True
            return False

        locked_now = self._write(fn)
        if reason is not None or st is None:
            extra = f" (locked after {MAX_FAILED_LOGINS} wrong passwords)" if locked_now else ""
            raise AuthenticationError(
                f"login refused: unknown user, inactive or locked account, or wrong password{extra}"
            )
        self._sessions[session] = user_id
        info = queries.to_user_info(user_id, st, row.created_at if row is not None else None)
        return mint_session(info, session)

    def list_users(self) -> list[UserInfo]:
        """Read-only: all users as the chain says they are, deactivated and locked ones included."""
        with self._read() as s:
            created = {r.id: r.created_at for r in s.scalars(select(UserRow))}
            states = queries.user_states(s)
            return [queries.to_user_info(uid, states[uid], created.get(uid)) for uid in sorted(states)]
