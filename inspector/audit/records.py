"""Plain, read-only results of the store: what the UI, CLI and exports see (no ORM objects)."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from inspector.audit.errors import PermissionDenied

_MINT = object()  # only ``mint_session`` holds it, so ``User(...)`` by hand is refused at once


@dataclass(frozen=True)
class User:
    """A login session: made only by ``AuditStore.authenticate``; every write names one.

    The store also keeps the sessions it issued, so a ``User`` minted by other code, or by
    another store, is refused there too; verify checks each record's session against the
    chained ``login`` events.
    """

    id: str
    name: str
    role: str
    active: bool
    created_at: datetime
    session_id: str = field(default="", repr=False)
    _mint: InitVar[object] = None

    def __post_init__(self, _mint: object) -> None:
        if _mint is not _MINT:
            raise PermissionDenied("a User is a login session: only AuditStore.authenticate() makes one")


def mint_session(info: UserInfo, session_id: str) -> User:
    """The store's way to turn a successful login into a session object."""
    return User(info.id, info.name, info.role, info.active, info.created_at, session_id, _MINT)


@dataclass(frozen=True)
class UserInfo:
    """A user as the chained events say they are now (listings); never the password hash."""

    id: str
    name: str
    role: str
    active: bool
    created_at: datetime
    locked: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """A registered model version with its activation state derived from the event log."""

    id: int
    weights_hash: str
    backbone: str
    manifest_hash: str
    thresholds: dict[str, Any]
    metrics: dict[str, Any]
    model_dir: str
    trained_by: str
    created_at: datetime
    active: bool = False
    activated_by: str | None = None
    activated_at: datetime | None = None
    threshold: float | None = None
    files: dict[str, str] | None = None  # relative path -> sha256 (None: registered before 0002)
    backbone_sha256: str | None = None


@dataclass(frozen=True)
class Inspection:
    """One recorded inspection; ``frame`` and the maps are decoded on request."""

    id: int
    uid: str
    station: str
    source: str
    frame_index: int
    frame_sha256: str
    frame_path: Path
    model_version_id: int
    score: float
    threshold: float
    verdict: str
    latency_ms: float
    created_at: datetime
    anomaly_map_sha256: str
    gradcam_sha256: str | None
    frame_matches: bool | None = None  # the loaded frame re-hashed against the record (None: not loaded)
    frame: np.ndarray | None = field(default=None, repr=False)
    anomaly_map: np.ndarray | None = field(default=None, repr=False)
    gradcam: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DecisionView:
    """One decision joined with its inspection, user and model: a row of the auditor's table."""

    id: int
    created_at: datetime
    user_id: str
    user_name: str
    user_role: str
    decision: str
    meaning: str
    reason_code: str | None
    reason_text: str | None
    supersedes_id: int | None
    superseded_by: int | None
    inspection_id: int
    station: str
    source: str
    frame_index: int
    frame_sha256: str
    model_version_id: int
    weights_hash: str
    backbone: str
    score: float
    threshold: float
    verdict: str
    signer_recorded: bool = True  # False: a decision from before 0002 shows the current name and role

    @property
    def disagrees(self) -> bool:
        """True when the operator overruled the model (reject of OK, accept of DEFECT)."""
        return disagrees(self.verdict, self.decision)


@dataclass(frozen=True)
class Head:
    """The chain's head as exported to a checkpoint file."""

    store_id: str
    count: int
    hash: str
    taken_at: str


@dataclass
class FlushResult:
    """What ``flush_queue()`` did: ids recorded, records still waiting, records refused for good."""

    recorded: list[tuple[str, int]] = field(default_factory=list)
    remaining: int = 0
    rejected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # another store's records, left in its queue


def disagrees(verdict: str, decision: str) -> bool:
    return (verdict == "OK" and decision == "reject") or (verdict == "DEFECT" and decision == "accept")
