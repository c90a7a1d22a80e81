"""Fixtures shared by the core's station tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.audit import AuditStore


@pytest.fixture()
def station_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuditStore]:
    """A fresh SQLite store with an admin (root), an engineer (eng) and an operator (ana)."""
    monkeypatch.setenv("INSPECTOR_ARGON2_FAST", "1")
    s = AuditStore.open(tmp_path / "audit.db")
    s.add_user(None, "root", "Root", "admin", "root-pass")
    admin = s.authenticate("root", "root-pass")
    s.add_user(admin, "eng", "Eng", "engineer", "eng-pass")
    s.add_user(admin, "ana", "Ana", "operator", "ana-pass")
    yield s
    s.close()
