"""Governance operations of AuditStore: users and passwords, model versions, exports.

Every write checks the actor's role *inside* its transaction, from the database's current row,
so a role change or deactivation takes effect at once and the UI cannot bypass it.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inspector.audit import chain, limits, queries
from inspector.audit.errors import (
    AuthenticationError,
    PermissionDenied,
    ValidationError,
)
from inspector.audit.internals import StoreInternals
from inspector.audit.passwords import hash_password, verify_password
from inspector.audit.records import DecisionView, ModelInfo, User
from inspector.audit.roles import Action, Role, parse_role, require
from inspector.audit.schema import (
    ModelVersionRow,
    UserRow,
)

if TYPE_CHECKING:
    pass

T = TypeVar("T")
USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


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


def _user_state(row: UserRow) -> dict[str, Any]:
    digest = hashlib.sha256(row.password_hash.encode()).hexdigest()
    return {"name": row.name, "role": row.role, "active": row.active, "password_digest": digest}


class GovernanceMixin(StoreInternals):
    """Users, models and exports; mixed into ``AuditStore``."""

    # ------------------------------------------------------------------ users
    def _require(self, s: Session, actor: User | str, action: Action) -> UserRow:
        uid = actor if isinstance(actor, str) else actor.id
        row = s.get(UserRow, uid)
        if row is None:
            raise PermissionDenied(f"unknown user {uid!r} cannot {action.value}")
        require(row.id, row.role, row.active, action)
        return row

    def add_user(self, actor: User | None, user_id: str, name: str, role: str, password: str) -> User:
        """Creates a user (admins only). With ``actor=None`` it bootstraps the first admin of an
        empty store; once any user exists that door is closed."""
        if not USER_ID.match(user_id or ""):
            raise ValidationError(f"user id {user_id!r}: use 1-64 letters, digits, '_.@-'")
        r = parse_role(role)
        pw_hash = hash_password(password)  # slow on purpose: outside the write lock

        def fn(s: Session) -> User:
            if actor is None:
                if s.scalar(select(func.count()).select_from(UserRow)):
                    raise PermissionDenied("users exist: only an admin may add users")
                if r is not Role.ADMIN:
                    raise ValidationError("the first user of a new store must be an admin")
                by = user_id
            else:
                by = self._require(s, actor, Action.MANAGE_USERS).id
            if s.get(UserRow, user_id) is not None:
                raise ValidationError(f"user id {user_id!r} exists; ids are never reused")
            row = UserRow(
                id=user_id,
                name=(name or user_id).strip(),
                role=r.value,
                password_hash=pw_hash,
                active=True,
                created_at=datetime.now(UTC),
            )
            limits.check_row(row)
            s.add(row)
            s.flush()
            self._event(
                s,
                "user_created",
                by,
                user_id=user_id,
                state=_user_state(row),
                bootstrap=actor is None,
            )
            return queries.to_user(row)

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
    ) -> User:
        """Changes a user (admins; anyone may change their own password). Logged as user_changed."""
        pw_hash = hash_password(password) if password is not None else None

        def fn(s: Session) -> User:
            only_own_password = actor.id == user_id and name is None and role is None and active is None
            if not only_own_password:
                self._require(s, actor, Action.MANAGE_USERS)
            row = queries.user_row(s, user_id)
            before = _user_state(row)
            if name is not None:
                row.name = required_text("name", name)
            if role is not None:
                row.role = parse_role(role).value
            if active is not None:
                row.active = bool(active)
            if pw_hash is not None:
                row.password_hash = pw_hash
            limits.check_row(row)
            s.flush()
            admins = s.scalar(
                select(func.count())
                .select_from(UserRow)
                .where(UserRow.role == Role.ADMIN.value, UserRow.active.is_(True))
            )
            if not admins:
                raise ValidationError("this would leave the store without an active admin")
            after = _user_state(row)
            changes = {k: v for k, v in after.items() if before[k] != v}
            self._event(s, "user_changed", actor.id, user_id=user_id, changes=changes)
            return queries.to_user(row)

        return self._write(fn)

    def authenticate(self, user_id: str, password: str) -> User:
        """Checks a password; records ``login`` or ``login_failed`` (never the password)."""
        with self._read() as s:
            row = s.get(UserRow, user_id)
            stored, active = (row.password_hash, row.active) if row else (_dummy_hash(), False)
            user = queries.to_user(row) if row else None
        ok = verify_password(stored, password)  # runs for unknown ids too: same timing
        reason = (
            None
            if (ok and active)
            else ("unknown user" if user is None else "inactive user" if not active else "wrong password")
        )
        self._write(
            lambda s: self._event(
                s,
                "login" if reason is None else "login_failed",
                user.id if user else None,
                user_id=user_id,
                **({"reason": reason} if reason else {}),
            )
        )
        if reason is not None or user is None:
            raise AuthenticationError(f"login refused for {user_id!r}: unknown user, inactive user or wrong password")
        return user

    def list_users(self) -> list[User]:
        """Read-only: all users, deactivated ones included (ids are never reused)."""
        with self._read() as s:
            return [queries.to_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.id))]

    # ------------------------------------------------------------------ models
    def register_model(
        self,
        actor: User,
        *,
        weights_hash: str,
        backbone: str,
        manifest_hash: str,
        thresholds: Mapping[str, Any],
        metrics: Mapping[str, Any],
        model_dir: str | os.PathLike[str],
    ) -> int:
        """Records a trained model version (engineers); it becomes active only when activated."""
        try:
            th, me = chain.canonical_json(dict(thresholds)), chain.canonical_json(dict(metrics))
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"thresholds and metrics must be plain JSON ({exc})") from None

        def fn(s: Session) -> int:
            by = self._require(s, actor, Action.REGISTER_MODEL).id
            mid = self._append(
                s,
                ModelVersionRow(
                    weights_hash=required_text("weights hash", weights_hash),
                    backbone=required_text("backbone", backbone),
                    manifest_hash=manifest_hash or "",
                    thresholds_json=th,
                    metrics_json=me,
                    model_dir=str(model_dir),
                    trained_by=by,
                    created_at=datetime.now(UTC),
                ),
            )
            self._event(s, "model_trained", by, model_id=mid, weights_hash=weights_hash, backbone=backbone)
            return mid

        return self._write(fn)

    def activate_model(self, actor: User, model_id: int, reason: str) -> None:
        """Makes a model version the one that judges new frames (engineers, with a reason)."""
        why = required_text("reason", reason)

        def fn(s: Session) -> None:
            by = self._require(s, actor, Action.ACTIVATE_MODEL).id
            queries.models(s, model_id)
            stack, _, _ = queries.activation_stack(s)
            self._event(
                s,
                "model_activated",
                by,
                model_id=model_id,
                previous_model_id=stack[-1] if stack else None,
                reason=why,
            )

        self._write(fn)

    def rollback_model(self, actor: User, reason: str) -> int:
        """Re-activates the model that was active before the current one; returns its id."""
        why = required_text("reason", reason)

        def fn(s: Session) -> int:
            by = self._require(s, actor, Action.ACTIVATE_MODEL).id
            stack, _, _ = queries.activation_stack(s)
            if len(stack) < 2:
                raise ValidationError("no earlier model to roll back to")
            self._event(s, "model_rolled_back", by, from_model_id=stack[-1], model_id=stack[-2], reason=why)
            return stack[-2]

        return self._write(fn)

    def set_threshold(self, actor: User, model_id: int, value: float, reason: str) -> None:
        """Changes a model's decision threshold (engineers, with a reason); old value is logged."""
        new, why = finite("threshold", value), required_text("reason", reason)

        def fn(s: Session) -> None:
            by = self._require(s, actor, Action.SET_THRESHOLD).id
            old = queries.models(s, model_id)[0].threshold
            self._event(s, "threshold_changed", by, model_id=model_id, old=old, new=new, reason=why)

        self._write(fn)

    def models(self) -> list[ModelInfo]:
        """Read-only: every registered model version with its activation state."""
        with self._read() as s:
            return queries.models(s)

    def model(self, model_id: int) -> ModelInfo:
        """Read-only: one model version (NotFound if unknown)."""
        with self._read() as s:
            return queries.models(s, model_id)[0]

    def active_model(self) -> ModelInfo | None:
        """Read-only: the model version judging new frames, or None before any activation."""
        return next((m for m in self.models() if m.active), None)

    # ------------------------------------------------------------------ exports
    def _export(
        self,
        actor: User,
        path: str | os.PathLike[str],
        fmt: str,
        writer: Callable[[list[DecisionView], chain.VerifyResult, Path], None],
    ) -> int:
        with self._read() as s:
            by = self._require(s, actor, Action.EXPORT).id
        rows = self.decisions()
        result = self.verify()
        out = Path(path)
        writer(rows, result, out)
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        try:
            self._write(
                lambda s: self._event(
                    s,
                    "export_made",
                    by,
                    format=fmt,
                    path=str(out.resolve()),
                    sha256=digest,
                    decisions=len(rows),
                    chain_ok=result.ok,
                )
            )
        except BaseException:
            out.unlink(missing_ok=True)  # an export exists only if its event does
            raise
        return len(rows)

    def export_csv(self, actor: User, path: str | os.PathLike[str]) -> int:
        """Writes every decision with its context as CSV (auditors); returns the row count."""
        from inspector.audit.export import write_csv

        return self._export(actor, path, "csv", lambda rows, _r, out: write_csv(rows, out))

    def export_pdf(self, actor: User, path: str | os.PathLike[str]) -> int:
        """Writes a human-readable PDF: each signature (name, UTC time, meaning), verify result."""
        from inspector.audit.export import write_pdf

        return self._export(
            actor,
            path,
            "pdf",
            lambda rows, res, out: write_pdf(rows, res, out, store=str(self.db_path or ""), exported_by=actor.name),
        )
