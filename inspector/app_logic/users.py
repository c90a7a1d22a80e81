"""The admin's user management: thin calls into the audit store, which checks the rights and logs.

Lockout and unlock come from the store where it has them (``unlock_user``); a store without
lockouts says so rather than pretending.
"""

from __future__ import annotations

import secrets

from inspector.app_logic.session import AppSession
from inspector.audit import User
from inspector.errors import InspectorError

ROLES = ("operator", "engineer", "auditor", "admin")


def users(session: AppSession) -> list[User]:
    """Every user, deactivated ones included (ids are never reused)."""
    return session.store.list_users()


def add_user(session: AppSession, user_id: str, name: str, role: str, password: str) -> User:
    return session.store.add_user(session.user, user_id.strip(), name.strip(), role, password)


def set_active(session: AppSession, user_id: str, active: bool) -> User:
    return session.store.set_user(session.user, user_id, active=active)


def reset_password(session: AppSession, user_id: str, password: str | None = None) -> tuple[User, str]:
    """Sets a new password (a random one when none is given) and returns it to hand over once."""
    new = password or secrets.token_urlsafe(9)
    return session.store.set_user(session.user, user_id, password=new), new


def can_unlock(session: AppSession) -> bool:
    return callable(getattr(session.store, "unlock_user", None))


def unlock(session: AppSession, user_id: str) -> None:
    """Lifts a lockout after failed logins, where the store keeps lockouts."""
    fn = getattr(session.store, "unlock_user", None)
    if not callable(fn):
        raise InspectorError("this audit store has no lockouts to lift")
    fn(session.user, user_id)
