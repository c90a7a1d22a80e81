"""Fixtures for the audit store tests: a fresh store per test, seeded with one user per role.

``seeded`` runs each test on SQLite and on PostgreSQL (a throwaway server started once per
session by ``pg_server``, a fresh database per test). A SQLite-only test says so with
``@pytest.mark.parametrize("dialect", ["sqlite"])``.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
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
    path: Path | str  # the database file, or the owner's URL of a PostgreSQL database
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


def seed(path: Path | str) -> Seeded:
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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    """One throwaway PostgreSQL server for the whole session (initdb + pg_ctl on loopback).

    Skips only where the binaries are absent and this is not CI; in CI (CI=true) a missing or
    failing server fails the PostgreSQL tests loudly instead.
    """
    import importlib.util

    from inspector.audit.pg_local import LocalPostgres, find_bindir

    missing = [
        msg
        for absent, msg in (
            (importlib.util.find_spec("psycopg") is None, "psycopg missing (pip install 'inspector[postgres]')"),
            (find_bindir() is None, "no PostgreSQL binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)"),
        )
        if absent
    ]
    if missing:
        if os.environ.get("CI"):
            pytest.fail("; ".join(missing))
        pytest.skip("; ".join(missing))
    server = LocalPostgres(fsync=False).start()  # raises with the server's own words: a failed test
    yield server
    server.stop("immediate")


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def new_pg_database(pg: object) -> str:
    """A fresh database on the session's server; returns the owner's URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg.create_database(name)  # type: ignore[attr-defined]
    return pg.url(name)  # type: ignore[attr-defined]


@pytest.fixture
def store_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path | str]:
    """Where a test's store lives: a file for SQLite, an owner URL for PostgreSQL (dropped after)."""
    if dialect == "sqlite":
        yield tmp_path / "audit.db"
        return
    pg = request.getfixturevalue("pg_server")
    url = new_pg_database(pg)
    yield url
    pg.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def seeded(store_url: Path | str) -> Iterator[Seeded]:
    s = seed(store_url)
    yield s
    s.store.close()


def _pg_shell(url: str, sql: tuple[str, ...], drop_triggers: bool) -> None:
    """The PostgreSQL owner at psql: drop the (non-internal) triggers, then run ``sql``."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as con:
            if drop_triggers:
                rows = con.exec_driver_sql(
                    "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "WHERE NOT t.tgisinternal"
                ).fetchall()
                for name, table in rows:
                    con.exec_driver_sql(f'DROP TRIGGER "{name}" ON "{table}"')
            for stmt in sql:
                con.exec_driver_sql(stmt)
    finally:
        engine.dispose()


def shell(path: Path | str, *sql: str, drop_triggers: bool = True) -> None:
    """Acts like an attacker in the sqlite3 shell (or psql as the owner): drop the triggers, then run ``sql``."""
    if str(path).startswith("postgresql"):
        _pg_shell(str(path), sql, drop_triggers)
        return
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
