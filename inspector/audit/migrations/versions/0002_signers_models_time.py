"""Signer at signing, login session, model directory hashes, store time (issue 12).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

Only nullable columns are added (plain ``ALTER TABLE ADD COLUMN``, no table rebuild, so the
append-only triggers of 0001 stay in place). Rows written before this revision keep NULL in them,
and the chain hashes a column added here only when it is set (``chain.LATER_COLUMNS``), so every
existing record still verifies. ``head.last_at`` is filled with the newest recorded time, so the
store's clock never stamps a record earlier than one already in the chain.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHAINED = ("model_versions", "inspections", "decisions", "events")


def upgrade() -> None:
    op.add_column("decisions", sa.Column("user_name", sa.String(200), nullable=True))
    op.add_column("decisions", sa.Column("user_role", sa.String(16), nullable=True))
    op.add_column("decisions", sa.Column("session_id", sa.String(32), nullable=True))
    op.add_column("model_versions", sa.Column("files_json", sa.Text, nullable=True))
    op.add_column("model_versions", sa.Column("backbone_sha256", sa.String(64), nullable=True))
    op.add_column("head", sa.Column("last_at", sa.DateTime, nullable=True))
    newest = " UNION ALL ".join(f"SELECT MAX(created_at) AS t FROM {t}" for t in CHAINED)
    op.execute(f"UPDATE head SET last_at = (SELECT MAX(t) FROM ({newest}) AS chained)")


def downgrade() -> None:
    raise RuntimeError("the audit trail is never downgraded: it would drop records")
