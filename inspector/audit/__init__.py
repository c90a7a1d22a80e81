"""Tamper-evident audit store (Qt-free): users and roles, model versions, inspections,
operator decisions and events, in an append-only, hash-chained database.

    store = AuditStore.open("audit.db")          # or a URL, or None for the user data folder
    store.add_user(None, "root", "Root", "admin", pw)   # first admin of an empty store
    admin = store.authenticate("root", pw)       # a login session: the only way to act
    op = store.authenticate("ana", pw)
    did = store.record_decision(op, inspection_id, "reject", reason_text="scratch")
    assert store.verify().ok
"""

from inspector.audit.chain import Problem, VerifyResult
from inspector.audit.errors import (
    AuditError,
    AuthenticationError,
    ChainBroken,
    CheckpointError,
    NotFound,
    PermissionDenied,
    RecordQueued,
    SchemaVersionError,
    StoreOpenError,
    StoreUnavailable,
    ValidationError,
)
from inspector.audit.records import DecisionView, FlushResult, Head, Inspection, ModelInfo, User, UserInfo
from inspector.audit.roles import Role
from inspector.audit.store import AuditStore

__all__ = [
    "AuditError",
    "AuditStore",
    "AuthenticationError",
    "ChainBroken",
    "CheckpointError",
    "DecisionView",
    "FlushResult",
    "Head",
    "Inspection",
    "ModelInfo",
    "NotFound",
    "PermissionDenied",
    "Problem",
    "RecordQueued",
    "Role",
    "SchemaVersionError",
    "StoreOpenError",
    "StoreUnavailable",
    "User",
    "UserInfo",
    "ValidationError",
    "VerifyResult",
]
