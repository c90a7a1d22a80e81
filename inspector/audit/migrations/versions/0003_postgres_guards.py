"""PostgreSQL guards the initial schema lacked: one head row, fixed user ids, no TRUNCATE.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

SQLite already has the first two (0001) and has no TRUNCATE, so this revision only acts on
PostgreSQL. The triggers bind every role, the owner included, until the owner drops them; what
catches an owner who does is the stations' witnessed heads (``audit verify --witness``).
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GUARDED = ("users", "model_versions", "inspections", "decisions", "events", "ledger", "head")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION inspector_head_single() RETURNS trigger AS $$ BEGIN "
        "IF EXISTS (SELECT 1 FROM head) THEN RAISE EXCEPTION 'the chain head has exactly one row'; END IF; "
        "RETURN NEW; END; $$ LANGUAGE plpgsql"
    )
    op.execute(
        "CREATE FUNCTION inspector_no_rename() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'a user id never changes'; END; $$ LANGUAGE plpgsql"
    )
    op.execute(
        "CREATE FUNCTION inspector_no_truncate() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION '% is append-only: TRUNCATE is refused', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql"
    )
    op.execute(
        "CREATE TRIGGER head_single_row BEFORE INSERT ON head FOR EACH ROW EXECUTE FUNCTION inspector_head_single()"
    )
    op.execute(
        "CREATE TRIGGER users_no_rename BEFORE UPDATE OF id ON users FOR EACH ROW "
        "WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION inspector_no_rename()"
    )
    for t in GUARDED:
        op.execute(
            f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} FOR EACH STATEMENT "
            "EXECUTE FUNCTION inspector_no_truncate()"
        )


def downgrade() -> None:
    raise RuntimeError("the audit trail is never downgraded")
