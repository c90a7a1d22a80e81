"""Least privilege on PostgreSQL: the owner migrates, stations may only add and read records.

The application role gets SELECT and INSERT on the chained tables, plus the two column-level
UPDATEs the store needs: the head's (seq, hash, last_at), which a trigger lets move forward only, and a
user's name/role/active/password (never the id, never a delete; each change is a chained event).
No DELETE, no TRUNCATE, no DDL: what a station's credentials can do to the trail is append.
Creating the roles needs a superuser (or CREATEROLE), so those statements are printed for one.
"""

from __future__ import annotations

import re

from inspector.audit.errors import ValidationError

APPEND_TABLES = ("model_versions", "inspections", "decisions", "events", "ledger")
IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def ident(name: str, what: str) -> str:
    """A plain lower-case SQL identifier, or a one-line error (grants are built as text)."""
    if not IDENT.match(name or ""):
        raise ValidationError(f"{what} {name!r}: use 1-63 lower-case letters, digits and '_' (no leading digit)")
    return name


def role_statements(owner: str, app: str, database: str) -> list[str]:
    """For a superuser, once per server: the two roles and the database (passwords to be set)."""
    owner, app, database = ident(owner, "owner role"), ident(app, "application role"), ident(database, "database")
    return [
        f"CREATE ROLE {owner} LOGIN PASSWORD '...'",
        f"CREATE ROLE {app} LOGIN PASSWORD '...'",
        f"CREATE DATABASE {database} OWNER {owner}",
        f"REVOKE ALL ON DATABASE {database} FROM PUBLIC",
    ]


def grant_statements(app: str, database: str) -> list[str]:
    """For the owner, after the migrations: what the application role may do, and nothing else."""
    app, database = ident(app, "application role"), ident(database, "database")
    tables = ", ".join(APPEND_TABLES)
    return [
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {app}",
        f"GRANT CONNECT ON DATABASE {database} TO {app}",
        f"GRANT USAGE ON SCHEMA public TO {app}",
        f"GRANT SELECT, INSERT ON {tables} TO {app}",
        f"GRANT SELECT, INSERT, UPDATE (name, role, active, password_hash) ON users TO {app}",
        f"GRANT SELECT, UPDATE (seq, hash, last_at) ON head TO {app}",
        f"GRANT SELECT ON alembic_version TO {app}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {app}",
    ]
