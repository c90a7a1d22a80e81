"""Initial audit schema: users, model versions, inspections, decisions, events, ledger, head.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen: later schema changes go in new revisions, never here. Triggers are written per dialect
(SQLite now, PostgreSQL for multi-station later); they are the database's own refusal to update or
delete an appended record, so the store's code is not the only guard.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("model_versions", "inspections", "decisions", "events", "ledger")
GENESIS = "0" * 64


def _sqlite_triggers() -> list[str]:
    out = []
    for t in APPEND_ONLY:
        for op_name, verb in (("UPDATE", "changed"), ("DELETE", "deleted")):
            out.append(
                f"CREATE TRIGGER {t}_no_{op_name.lower()} BEFORE {op_name} ON {t} BEGIN "
                f"SELECT RAISE(ABORT, '{t} is append-only: records are never {verb}'); END"
            )
    out += [
        "CREATE TRIGGER users_no_delete BEFORE DELETE ON users BEGIN "
        "SELECT RAISE(ABORT, 'users are never deleted (ids are not reused)'); END",
        "CREATE TRIGGER users_no_rename BEFORE UPDATE OF id ON users BEGIN "
        "SELECT RAISE(ABORT, 'a user id never changes'); END",
        "CREATE TRIGGER head_no_delete BEFORE DELETE ON head BEGIN "
        "SELECT RAISE(ABORT, 'the chain head is never deleted'); END",
        "CREATE TRIGGER head_forward_only BEFORE UPDATE ON head "
        "WHEN NEW.seq < OLD.seq OR NEW.id != OLD.id OR NEW.store_id != OLD.store_id BEGIN "
        "SELECT RAISE(ABORT, 'the chain head only moves forward'); END",
        "CREATE TRIGGER head_single_row BEFORE INSERT ON head "
        "WHEN (SELECT COUNT(*) FROM head) > 0 BEGIN "
        "SELECT RAISE(ABORT, 'the chain head has exactly one row'); END",
    ]
    return out


def _postgresql_triggers() -> list[str]:
    out = [
        "CREATE FUNCTION inspector_refuse() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql",
        "CREATE FUNCTION inspector_head_forward() RETURNS trigger AS $$ BEGIN "
        "IF NEW.seq < OLD.seq OR NEW.id <> OLD.id OR NEW.store_id <> OLD.store_id THEN "
        "RAISE EXCEPTION 'the chain head only moves forward'; END IF; RETURN NEW; END; "
        "$$ LANGUAGE plpgsql",
    ]
    for t in APPEND_ONLY:
        out.append(
            f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
            "FOR EACH ROW EXECUTE FUNCTION inspector_refuse()"
        )
    out += [
        "CREATE TRIGGER users_no_delete BEFORE DELETE ON users FOR EACH ROW EXECUTE FUNCTION inspector_refuse()",
        "CREATE TRIGGER head_no_delete BEFORE DELETE ON head FOR EACH ROW EXECUTE FUNCTION inspector_refuse()",
        "CREATE TRIGGER head_forward_only BEFORE UPDATE ON head FOR EACH ROW EXECUTE FUNCTION inspector_head_forward()",
    ]
    return out


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("weights_hash", sa.String(64), nullable=False),
        sa.Column("backbone", sa.String(100), nullable=False),
        sa.Column("manifest_hash", sa.String(64), nullable=False),
        sa.Column("thresholds_json", sa.Text, nullable=False),
        sa.Column("metrics_json", sa.Text, nullable=False),
        sa.Column("model_dir", sa.Text, nullable=False),
        sa.Column("trained_by", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(32), nullable=False, unique=True),
        sa.Column("station", sa.String(100), nullable=False, index=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("frame_index", sa.Integer, nullable=False),
        sa.Column("frame_sha256", sa.String(64), nullable=False),
        sa.Column("frame_path", sa.Text, nullable=False),
        sa.Column(
            "model_version_id",
            sa.Integer,
            sa.ForeignKey("model_versions.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("anomaly_map", sa.LargeBinary, nullable=False),
        sa.Column("anomaly_map_sha256", sa.String(64), nullable=False),
        sa.Column("gradcam", sa.LargeBinary, nullable=True),
        sa.Column("gradcam_sha256", sa.String(64), nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False, index=True),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(32), nullable=False, unique=True),
        sa.Column("inspection_id", sa.Integer, sa.ForeignKey("inspections.id"), nullable=False, index=True),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=True),
        sa.Column("reason_text", sa.Text, nullable=True),
        sa.Column("meaning", sa.String(200), nullable=False),
        sa.Column("supersedes_id", sa.Integer, sa.ForeignKey("decisions.id"), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False, index=True),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False, index=True),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("details_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "ledger",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("table_name", sa.String(32), nullable=False),
        sa.Column("row_id", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("table_name", "row_id", name="uq_ledger_row"),
    )
    head = op.create_table(
        "head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("store_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "store_id": uuid.uuid4().hex, "seq": 0, "hash": GENESIS}])
    dialect = op.get_bind().dialect.name
    statements = {"sqlite": _sqlite_triggers, "postgresql": _postgresql_triggers}.get(dialect)
    if statements is None:
        raise RuntimeError(f"the audit schema has no append-only triggers for {dialect}")
    for sql in statements():
        op.execute(sql)


def downgrade() -> None:
    raise RuntimeError("the audit trail is never downgraded: it would drop records")
