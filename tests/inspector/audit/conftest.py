"""Fixtures for the audit store tests: a fresh store per test, seeded with one user per role."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from inspector.audit import AuditStore, User

PASSWORDS = {"root": "root-pass-1", "eng": "eng-pass-1", "ana": "ana-pass-1", "aud": "aud-pass-1"}


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTOR_ARGON2_FAST", "1")


@dataclass
class Seeded:
    store: AuditStore
    path: Path
    admin: User
    eng: User
    op: User
    aud: User
    model_id: int


def frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def amap(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((48, 64), dtype=np.float32)


def inspect_one(s: Seeded, i: int, verdict: str = "OK") -> int:
    return s.store.record_inspection(
        station="line-1",
        source="cam0",
        frame_index=i,
        frame=frame(i),
        model_version_id=s.model_id,
        score=0.9 if verdict == "DEFECT" else 0.1,
        threshold=0.5,
        verdict=verdict,
        anomaly_map=amap(i),
        gradcam=amap(i + 100),
        latency_ms=12.5,
    )


def seed(path: Path) -> Seeded:
    store = AuditStore.open(path)
    store.add_user(None, "root", "Root Admin", "admin", PASSWORDS["root"])
    admin = store.authenticate("root", PASSWORDS["root"])
    for uid, name, role in (
        ("eng", "Eve Eng", "engineer"),
        ("ana", "Ana Op", "operator"),
        ("aud", "Al Auditor", "auditor"),
    ):
        store.add_user(admin, uid, name, role, PASSWORDS[uid])
    eng = store.authenticate("eng", PASSWORDS["eng"])
    mid = store.register_model(
        eng,
        weights_hash="w" * 64,
        backbone="resnet18",
        manifest_hash="m" * 64,
        thresholds={"image": 0.5},
        metrics={"auroc": 0.98},
        model_dir="/models/v1",
    )
    store.activate_model(eng, mid, "first model")
    return Seeded(
        store,
        path,
        admin,
        eng,
        store.authenticate("ana", PASSWORDS["ana"]),
        store.authenticate("aud", PASSWORDS["aud"]),
        mid,
    )


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    s = seed(tmp_path / "audit.db")
    yield s
    s.store.close()


def shell(path: Path, *sql: str, drop_triggers: bool = True) -> None:
    """Acts like an attacker in the sqlite3 shell: drop the triggers, then run ``sql``."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        if drop_triggers:
            names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
            for n in names:
                con.execute(f"DROP TRIGGER {n}")
        for stmt in sql:
            con.execute(stmt)
    finally:
        con.close()
