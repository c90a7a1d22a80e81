"""Who is logged in, which store and model, and which views a role opens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.audit import AuditStore, User

Progress = Callable[[str, int, int], None]
ExplainFn = Callable[[Any], tuple[np.ndarray | None, dict[str, Any]]]

# Which views each role sees. The store enforces the rights; this only keeps screens uncluttered.
ROLE_VIEWS: dict[str, tuple[str, ...]] = {
    "operator": ("operator",),
    "engineer": ("engineer",),
    "auditor": ("auditor",),
    "admin": ("auditor", "users"),
}


def views_for(role: str) -> tuple[str, ...]:
    """The views a role may open; an unknown role sees nothing rather than everything."""
    return ROLE_VIEWS.get(role, ())


@dataclass
class AppSession:
    """The logged-in state every view shares: who, which store, which model, which station."""

    store: AuditStore
    user: User
    model_dir: Path | None = None
    station: str = "station-1"
    device: str = "auto"
    manifest_path: Path | None = None
    data_root: Path | None = None
    default_source: str = ""  # what the operator's source bar starts with
    train_config: Any = None  # a PatchCoreConfig; None means the default (tests pass a tiny one)
    explain_factory: Callable[[Any], ExplainFn | None] | None = None
    keep: int = 64  # frames the operator's station keeps in memory; older ones reload from the store
    record_writer: bool = True  # audit records written on their own thread (False: on the frame's path)

    def current_model_dir(self) -> Path | None:
        """The store's active model wins: an engineer's activation reaches the next stream."""
        try:
            active = self.store.active_model()
        except Exception:  # a store that cannot be read must not stop the operator's view
            active = None
        if active is not None and Path(active.model_dir).is_dir():
            return Path(active.model_dir)
        return self.model_dir
