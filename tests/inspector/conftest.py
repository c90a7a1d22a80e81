"""Fixtures shared by the core's station tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.audit import AuditStore


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuditStore]:
    """A fresh SQLite store with an admin (root), an engineer (eng) and an operator (ana)."""
    monkeypatch.setenv("INSPECTOR_ARGON2_FAST", "1")
    s = AuditStore.open(tmp_path / "audit.db")
    s.add_user(None, "root", "Root", "admin", "root-pass")
    admin = s.authenticate("root", "root-pass")
    s.add_user(admin, "eng", "Eng", "engineer", "eng-pass")
    s.add_user(admin, "ana", "Ana", "operator", "ana-pass")
    yield s
    s.close()


def copy_test_frames(synthetic_pills, dest: Path, last: int = 3) -> Path:
    """The first three and the last ``last`` test frames of the synthetic pills (good, then defective) in ``dest``."""
    root, manifest, _ = synthetic_pills
    dest.mkdir()
    for it in manifest.split("test")[:3] + manifest.split("test")[-last:]:
        (dest / Path(it.path).name).write_bytes((root / it.path).read_bytes())
    return dest


@pytest.fixture()
def frames(tmp_path: Path, synthetic_pills) -> Path:
    return copy_test_frames(synthetic_pills, tmp_path / "frames")
