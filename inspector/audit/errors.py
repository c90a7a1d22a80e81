"""Named audit errors, one per failure, so the CLI and the app can show each as one clear line.

They live in their own module (re-exported by ``store`` and the package) so that ``chain``,
``roles`` and ``retry_queue`` can raise them without importing the store.
"""

from __future__ import annotations

from inspector.errors import InspectorError


class AuditError(InspectorError):
    """Base of every error raised by the audit store."""


class StoreOpenError(AuditError):
    """The database cannot be opened: missing folder, corrupt file, not an audit database."""


class SchemaVersionError(AuditError):
    """The database was written by a newer (or unknown) schema; refusing beats guessing."""


class StoreUnavailable(AuditError):
    """A write failed because the database is read-only, full, or unreachable."""


class RecordQueued(StoreUnavailable):
    """The write failed, but the record waits in the retry queue; ``flush_queue()`` sends it later.

    Attributes:
        queue_length: records now waiting, this one included.
        uid: the record's unique id, by which it can be found once the queue has flushed.
    """

    def __init__(self, message: str, queue_length: int, uid: str | None = None) -> None:
        super().__init__(message)
        self.queue_length = queue_length
        self.uid = uid


class PermissionDenied(AuditError):
    """The acting user's role does not allow the action (checked in the core, not only the UI)."""


class AuthenticationError(AuditError):
    """Unknown user, inactive user or wrong password (the message does not say which)."""


class NotFound(AuditError):
    """A user, model version, inspection or decision id does not exist."""


class ValidationError(AuditError):
    """An argument cannot be recorded as given (missing reason, unknown role, bad verdict...)."""


class CheckpointError(AuditError):
    """A checkpoint file is unreadable or belongs to another database."""


class ChainBroken(AuditError):
    """An export was asked of a chain that verify finds broken (and breaks were not allowed)."""
