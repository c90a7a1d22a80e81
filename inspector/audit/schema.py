"""ORM models of the audit database (SQLAlchemy 2.0 declarative).

The tables themselves are created by the Alembic migrations in ``migrations/versions``, which are
frozen copies of what these classes say; a test checks that the two agree.
Append-only tables (model_versions, inspections, decisions, events, ledger) are refused UPDATE and
DELETE by triggers created in the migration; ``users`` may change (role, active, password) but
never loses a row, so an id is never reused, and every change is a chained ``user_changed`` event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

CHAINED_TABLES = ("model_versions", "inspections", "decisions", "events")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite keeps no zone, PostgreSQL would convert."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the audit store; use UTC-aware times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    weights_hash: Mapped[str] = mapped_column(String(64))
    backbone: Mapped[str] = mapped_column(String(100))
    manifest_hash: Mapped[str] = mapped_column(String(64))
    thresholds_json: Mapped[str] = mapped_column(Text)
    metrics_json: Mapped[str] = mapped_column(Text)
    model_dir: Mapped[str] = mapped_column(Text)
    trained_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Since revision 0002: every file of the model directory by relative path -> sha256, and the
    # backbone fingerprint, so a station can refuse a directory that changed after registration.
    files_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    backbone_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class InspectionRow(Base):
    __tablename__ = "inspections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    station: Mapped[str] = mapped_column(String(100), index=True)
    source: Mapped[str] = mapped_column(Text)
    frame_index: Mapped[int] = mapped_column(Integer)
    frame_sha256: Mapped[str] = mapped_column(String(64))
    frame_path: Mapped[str] = mapped_column(Text)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(8))
    anomaly_map: Mapped[bytes] = mapped_column(LargeBinary)
    anomaly_map_sha256: Mapped[str] = mapped_column(String(64))
    gradcam: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    gradcam_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class DecisionRow(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    decision: Mapped[str] = mapped_column(String(8))
    reason_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    meaning: Mapped[str] = mapped_column(String(200))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Since revision 0002: the signer as they were at signing (Part 11 §11.50), and the login
    # session that signed, inside the hashed row.
    user_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    user_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    session_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class EventRow(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerRow(Base):
    __tablename__ = "ledger"
    __table_args__ = (UniqueConstraint("table_name", "row_id", name="uq_ledger_row"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    table_name: Mapped[str] = mapped_column(String(32))
    row_id: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64))


class HeadRow(Base):
    """Exactly one row (id 1): count and hash of the newest record, and the store's identity."""

    __tablename__ = "head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    store_id: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    # Since revision 0002: the newest record's time; the store never stamps an earlier one.
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


ROW_CLASSES: dict[str, type[Base]] = {
    "model_versions": ModelVersionRow,
    "inspections": InspectionRow,
    "decisions": DecisionRow,
    "events": EventRow,
}


def row_columns(row: Base) -> dict[str, Any]:
    """All mapped column values of a row, by column name (what the chain hashes)."""
    return {c.key: getattr(row, c.key) for c in row.__mapper__.column_attrs}
