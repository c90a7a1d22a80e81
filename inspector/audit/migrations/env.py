"""Alembic environment: run only programmatically, on the connection the store hands over.

The store builds the ``Config`` in code (no alembic.ini) and puts its open connection, already
inside a write transaction, in ``config.attributes["connection"]``, so that two processes opening
a new database at once migrate it one after the other.
"""

from __future__ import annotations

from alembic import context

from inspector.audit.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guard against `alembic upgrade` from a shell
    raise RuntimeError("inspector's audit migrations run through AuditStore.open(), not the CLI")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
