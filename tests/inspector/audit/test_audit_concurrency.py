"""Several processes deciding at once: every decision present, no "database is locked" seen."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
from conftest import PASSWORDS, Seeded, inspect_one

from inspector.audit import AuditStore

# file locking; PostgreSQL under 8 stations: scripts/stress_central.py
pytestmark = pytest.mark.parametrize("dialect", ["sqlite"])

PER_PROCESS = 200


def _worker(path: str, inspection_id: int, n: int) -> tuple[int, list[str]]:
    errors: list[str] = []
    store = AuditStore.open(path)
    try:
        op = store.authenticate("ana", PASSWORDS["ana"])
        done, current = 0, None
        for _ in range(n):  # one inspection per process; each decision corrects the one before
            try:
                current = store.record_decision(op, inspection_id, "accept", supersedes=current)
                done += 1
            except Exception as exc:  # counted, not hidden: the test asserts there are none
                errors.append(f"{type(exc).__name__}: {exc}")
        return done, errors
    finally:
        store.close()


def test_four_processes_all_decisions_present(seeded: Seeded, monkeypatch: object) -> None:
    iids = [inspect_one(seeded, i, "REVIEW") for i in range(4)]
    seeded.store.close()
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_worker, [(str(seeded.path), iid, PER_PROCESS) for iid in iids])
    errors = [e for _, errs in results for e in errs]
    assert errors == []
    assert sum(n for n, _ in results) == 4 * PER_PROCESS
    store = AuditStore.open(Path(seeded.path))
    try:
        assert len(store.decisions()) == 4 * PER_PROCESS
        assert store.verify().ok
    finally:
        store.close()
