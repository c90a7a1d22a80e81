"""Who may do what: one table, checked by the store on every call (the UI only mirrors it)."""

from __future__ import annotations

from enum import StrEnum

from inspector.audit.errors import PermissionDenied, ValidationError


class Role(StrEnum):
    """The four roles of the issue; one role per user keeps separation of duties simple."""

    OPERATOR = "operator"
    ENGINEER = "engineer"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Action(StrEnum):
    """Actions that need a role; reads of the decision table need none (the UI gates them)."""

    DECIDE = "decide"
    REGISTER_MODEL = "register a model"
    ACTIVATE_MODEL = "activate or roll back a model"
    SET_THRESHOLD = "change a threshold"
    EXPORT = "export the audit trail"
    MANAGE_USERS = "manage users"


ALLOWED: dict[Action, frozenset[Role]] = {
    Action.DECIDE: frozenset({Role.OPERATOR}),
    Action.REGISTER_MODEL: frozenset({Role.ENGINEER}),
    Action.ACTIVATE_MODEL: frozenset({Role.ENGINEER}),
    Action.SET_THRESHOLD: frozenset({Role.ENGINEER}),
    Action.EXPORT: frozenset({Role.AUDITOR}),
    Action.MANAGE_USERS: frozenset({Role.ADMIN}),
}


def parse_role(value: str) -> Role:
    """Turns user input into a Role, naming the valid ones when it is not."""
    try:
        return Role(value.strip().lower())
    except ValueError:
        valid = ", ".join(r.value for r in Role)
        raise ValidationError(f"unknown role {value!r}; use one of {valid}") from None


def require(user_id: str, role: str, active: bool, action: Action) -> None:
    """Raises PermissionDenied unless an active user with ``role`` may do ``action``."""
    if not active:
        raise PermissionDenied(f"user {user_id!r} is deactivated and cannot {action.value}")
    allowed = ALLOWED[action]
    if role not in allowed:
        who = " or ".join(sorted(r.value for r in allowed))
        raise PermissionDenied(f"user {user_id!r} is {role}; only {who} may {action.value}")
