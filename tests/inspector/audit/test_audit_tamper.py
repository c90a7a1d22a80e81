"""The tamper matrix: an attacker with the sqlite3 shell drops the triggers and edits the file.

Each kind of tampering must be reported as that kind, naming the first broken record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Seeded, inspect_one, shell

from inspector.audit import CheckpointError


@pytest.fixture
def trail(seeded: Seeded) -> Seeded:
    """Five inspections, each with one accept decision (decision ids 1..5)."""
    for i in range(5):
        seeded.store.record_decision(seeded.op, inspect_one(seeded, i), "accept")
    assert seeded.store.verify().ok
    return seeded


def first(s: Seeded, **kw: object) -> tuple[str, str | None, object]:
    result = s.store.verify(**kw)  # type: ignore[arg-type]
    assert not result.ok, "tampering went unnoticed"
    p = result.first
    assert p is not None
    return p.kind, p.table, p.row_id


def test_clean_chain_verifies(trail: Seeded) -> None:
    r = trail.store.verify(frames=True)
    assert r.ok and r.records == trail.store.head().count and r.warnings == []


def test_edited_row(trail: Seeded) -> None:
    shell(trail.path, "UPDATE decisions SET decision = 'reject' WHERE id = 3")
    assert first(trail) == ("edited", "decisions", 3)


def test_edited_ledger_entry(trail: Seeded) -> None:
    shell(
        trail.path,
        "UPDATE ledger SET content_hash = (CASE WHEN substr(content_hash, 1, 1) = 'f' THEN 'e' ELSE 'f' END)"
        " || substr(content_hash, 2) WHERE table_name = 'decisions' AND row_id = 2",  # always a real change
    )
    assert first(trail) == ("edited", "decisions", 2)


def test_deleted_middle_row(trail: Seeded) -> None:
    shell(trail.path, "DELETE FROM decisions WHERE id = 2")
    assert first(trail) == ("deleted", "decisions", 2)


def test_deleted_row_and_its_ledger_entry(trail: Seeded) -> None:
    shell(
        trail.path,
        "DELETE FROM decisions WHERE id = 2",
        "DELETE FROM ledger WHERE table_name = 'decisions' AND row_id = 2",
    )
    kind, table, row = first(trail)
    assert kind == "deleted" and (table, row) == ("inspections", 3)  # the record after the gap


def test_inserted_forged_row(trail: Seeded) -> None:
    shell(
        trail.path,
        "INSERT INTO decisions (uid, inspection_id, user_id, decision, meaning, "
        "created_at) VALUES ('forged', 1, 'ana', 'reject', 'reviewed: rejected', "
        "'2024-01-01 00:00:00.000000')",
    )
    assert first(trail) == ("inserted", "decisions", 6)


def test_reordered_rows(trail: Seeded) -> None:
    shell(
        trail.path,
        "UPDATE decisions SET id = -1 WHERE id = 2",
        "UPDATE decisions SET id = 2 WHERE id = 4",
        "UPDATE decisions SET id = 4 WHERE id = -1",
    )
    assert first(trail) == ("reordered", "decisions", 2)


def test_reordered_ledger(trail: Seeded) -> None:
    shell(
        trail.path,
        "UPDATE ledger SET seq = -1 WHERE seq = 10",
        "UPDATE ledger SET seq = 10 WHERE seq = 11",
        "UPDATE ledger SET seq = 11 WHERE seq = -1",
    )
    kind, _, _ = first(trail)
    assert kind == "reordered"


def test_users_edited_outside_store(trail: Seeded) -> None:
    shell(trail.path, "UPDATE users SET role = 'admin' WHERE id = 'ana'")
    assert first(trail) == ("edited", "users", "ana")


def _truncate(s: Seeded) -> list[str]:
    """Removes the two newest records (inspection 5 and its decision) and their ledger entries."""
    count = s.store.head().count
    return [
        "DELETE FROM decisions WHERE id = 5",
        "DELETE FROM inspections WHERE id = 5",
        f"DELETE FROM ledger WHERE seq > {count - 2}",
    ]


def test_truncated_newest(trail: Seeded) -> None:
    shell(trail.path, *_truncate(trail))
    assert first(trail)[0] == "truncated"


@pytest.mark.parametrize("dialect", ["sqlite"])  # the head file exists for a file database only
def test_truncated_with_db_head_rewritten_caught_by_sidecar(trail: Seeded) -> None:
    count = trail.store.head().count
    shell(
        trail.path,
        *_truncate(trail),
        f"UPDATE head SET seq = {count - 2}, hash = (SELECT record_hash FROM ledger WHERE seq = {count - 2})",
    )
    kind, _, _ = first(trail)
    assert kind == "truncated" and "head file" in str(trail.store.verify().first)


@pytest.mark.parametrize("dialect", ["sqlite"])  # the head file exists for a file database only
def test_checkpoint_catches_truncation_when_all_heads_rewritten(trail: Seeded, tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    trail.store.checkpoint(cp)
    count = trail.store.head().count
    shell(
        trail.path,
        *_truncate(trail),
        f"UPDATE head SET seq = {count - 2}, hash = (SELECT record_hash FROM ledger WHERE seq = {count - 2})",
    )
    side = Path(f"{trail.path}.head.json")
    doc = json.loads(side.read_text())
    con_hash = trail.store.verify().head_hash  # what the attacker sees after truncating
    side.write_text(json.dumps({**doc, "count": count - 2, "hash": con_hash}))
    assert trail.store.verify().ok  # nothing local is left to contradict the attacker...
    kind, _, _ = first(trail, checkpoint=cp)  # ...but the auditor's checkpoint does
    assert kind == "truncated"


def test_checkpoint_of_other_store_refused(trail: Seeded, tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    trail.store.checkpoint(cp)
    cp.write_text(cp.read_text().replace(trail.store.store_id, "0" * 32))
    with pytest.raises(CheckpointError, match="another audit database"):
        trail.store.verify(checkpoint=cp)


def test_frame_file_swapped(trail: Seeded) -> None:
    a, b = trail.store.inspection(1, images=False), trail.store.inspection(2, images=False)
    a.frame_path.write_bytes(b.frame_path.read_bytes())
    assert trail.store.verify().ok  # not re-hashed by default
    assert first(trail, frames=True) == ("edited", "frames", 1)
