"""What the ``AuditStore`` mixins may call on the store, declared once for type checkers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy.orm import Session

    from inspector.audit import chain
    from inspector.audit.errors import RecordQueued, StoreUnavailable
    from inspector.audit.history import UserState
    from inspector.audit.records import User
    from inspector.audit.roles import Action
    from inspector.audit.schema import Base

T = TypeVar("T")


class StoreInternals:
    """The store's private helpers, implemented by ``AuditStore`` (and ``_require`` by governance)."""

    frames_dir: Path
    db_path: Path | None
    store_id: str
    _sessions: dict[str, str]

    if TYPE_CHECKING:
        _nested: bool

        def _write(self, fn: Callable[[Session], T]) -> T: ...
        def _read(self) -> AbstractContextManager[Session]: ...
        def _append(self, s: Session, row: Base) -> int: ...
        def _event(self, s: Session, kind: str, actor: str | None, **details: Any) -> int: ...
        def _enqueue(self, record: dict[str, Any], exc: StoreUnavailable) -> RecordQueued: ...
        def _require(self, s: Session, actor: User, action: Action) -> UserState: ...
        def _require_state(self, s: Session, user_id: str, action: Action) -> UserState: ...
        def _check_session(self, actor: object) -> None: ...
        def verify(
            self, checkpoint: Any = None, *, frames: bool = False, allow_missing_head: bool = False
        ) -> chain.VerifyResult: ...
