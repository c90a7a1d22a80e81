"""Store behaviour: recording, roles, reasons, passwords, append-only triggers, opening errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import PASSWORDS, Seeded, amap, frame, inspect_one, shell

from inspector.audit import (
    AuditStore,
    AuthenticationError,
    NotFound,
    PermissionDenied,
    SchemaVersionError,
    StoreOpenError,
    ValidationError,
)


def test_record_and_read_back(seeded: Seeded) -> None:
    iid = inspect_one(seeded, 3, "DEFECT")
    did = seeded.store.record_decision(seeded.op, iid, "reject")
    ins = seeded.store.inspection(iid)
    assert ins.frame is not None and np.array_equal(ins.frame, frame(3))
    assert ins.anomaly_map is not None
    np.testing.assert_allclose(ins.anomaly_map, amap(3), atol=1e-3)  # float16 storage
    assert ins.frame_path.is_file() and ins.frame_path.parent.parent == seeded.store.frames_dir
    [row] = seeded.store.decisions()
    assert (row.id, row.user_name, row.meaning, row.verdict) == (did, "Ana Op", "reviewed: rejected", "DEFECT")
    assert seeded.store.verify().ok


def test_correction_supersedes_and_filters(seeded: Seeded) -> None:
    st = seeded.store
    iid = inspect_one(seeded, 1, "OK")
    first = st.record_decision(seeded.op, iid, "accept")
    second = st.record_decision(seeded.op, iid, "reject", "SCRATCH", "scratch seen", supersedes=first)
    with pytest.raises(ValidationError, match="already superseded"):
        st.record_decision(seeded.op, iid, "accept", supersedes=first)
    rows = {r.id: r for r in st.decisions()}
    assert rows[first].superseded_by == second and "supersedes decision" in rows[second].meaning
    assert [r.id for r in st.decisions(disagreements_only=True)] == [second]
    assert [r.id for r in st.decisions(current_only=True)] == [second]
    assert st.decisions(operator="eng") == [] and len(st.decisions(station="line-1")) == 2


def test_disagreeing_decision_needs_reason(seeded: Seeded) -> None:
    ok, bad = inspect_one(seeded, 1, "OK"), inspect_one(seeded, 2, "DEFECT")
    with pytest.raises(ValidationError, match="reason text is required"):
        seeded.store.record_decision(seeded.op, ok, "reject")
    with pytest.raises(ValidationError, match="reason text is required"):
        seeded.store.record_decision(seeded.op, bad, "accept", reason_text="  ")
    assert seeded.store.decisions() == []
    seeded.store.record_decision(seeded.op, bad, "accept", reason_text="dust, not a defect")


def test_roles_enforced_in_core(seeded: Seeded, tmp_path: Path) -> None:
    st, iid = seeded.store, inspect_one(seeded, 1)
    with pytest.raises(PermissionDenied, match="only engineer"):
        st.register_model(
            seeded.op, weights_hash="x", backbone="b", manifest_hash="m", thresholds={}, metrics={}, model_dir="/x"
        )
    with pytest.raises(PermissionDenied, match="only operator"):
        st.record_decision(seeded.aud, iid, "accept")
    with pytest.raises(PermissionDenied):
        st.set_threshold(seeded.op, seeded.model_id, 0.7, "tighter")
    with pytest.raises(PermissionDenied):
        st.export_csv(seeded.op, tmp_path / "x.csv")
    with pytest.raises(PermissionDenied):
        st.add_user(seeded.eng, "mallory", "M", "admin", "password-123")
    with pytest.raises(PermissionDenied, match="users exist"):
        st.add_user(None, "mallory", "M", "admin", "password-123")
    st.set_user(seeded.admin, "ana", active=False)
    with pytest.raises(PermissionDenied, match="deactivated"):
        st.record_decision(seeded.op, iid, "accept")  # the old User object does not help


def test_models_thresholds_rollback(seeded: Seeded) -> None:
    st, eng = seeded.store, seeded.eng
    m2 = st.register_model(
        eng,
        weights_hash="v" * 64,
        backbone="resnet18",
        manifest_hash="m",
        thresholds={"decision": 0.6, "review": 0.5, "pixel": 0.7},  # what training stores
        metrics={},
        model_dir="/models/v2",
    )
    assert st.model(m2).threshold == 0.6  # the trained threshold is in force until changed
    st.activate_model(eng, m2, "better recall")
    st.set_threshold(eng, m2, 0.65, "too many false alarms")
    active = st.active_model()
    assert active is not None and (active.id, active.threshold, active.activated_by) == (m2, 0.65, "eng")
    assert st.rollback_model(eng, "v2 misses scratches") == seeded.model_id
    assert st.active_model().id == seeded.model_id  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="no earlier model"):
        st.rollback_model(eng, "again")
    with pytest.raises(NotFound):
        st.activate_model(eng, 999, "nope")


@pytest.mark.parametrize("dialect", ["sqlite"])  # reads the SQLite file itself
def test_passwords_hashed_and_failed_login_recorded(seeded: Seeded) -> None:
    with pytest.raises(AuthenticationError):
        seeded.store.authenticate("ana", "wrong-password")
    with pytest.raises(AuthenticationError):
        seeded.store.authenticate("nobody", "whatever-1")
    raw = seeded.path.read_bytes() + Path(f"{seeded.path}-wal").read_bytes()
    for pw in PASSWORDS.values():
        assert pw.encode() not in raw
    con = sqlite3.connect(seeded.path)
    kinds = [r[0] for r in con.execute("SELECT kind FROM events ORDER BY id")]
    hashes = [r[0] for r in con.execute("SELECT password_hash FROM users")]
    con.close()
    assert kinds.count("login_failed") == 2 and "login" in kinds
    assert all(h.startswith("$argon2id$") for h in hashes)
    with pytest.raises(ValidationError, match="at least"):
        seeded.store.add_user(seeded.admin, "bob", "Bob", "operator", "short")


@pytest.mark.parametrize("dialect", ["sqlite"])  # PostgreSQL: test_audit_postgres.py
@pytest.mark.parametrize("table", ["inspections", "decisions", "events", "model_versions", "ledger"])
def test_append_only_triggers(seeded: Seeded, table: str) -> None:
    iid = inspect_one(seeded, 1)
    seeded.store.record_decision(seeded.op, iid, "accept")
    con = sqlite3.connect(seeded.path, isolation_level=None)
    key = "seq" if table == "ledger" else "id"
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute(f"UPDATE {table} SET {key} = {key} + 1000")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute(f"DELETE FROM {table}")
    with pytest.raises(sqlite3.DatabaseError, match="never deleted"):
        con.execute("DELETE FROM head")
    with pytest.raises(sqlite3.DatabaseError, match="only moves forward"):
        con.execute("UPDATE head SET seq = 0")
    con.close()
    assert seeded.store.verify().ok


def test_newer_schema_refused(seeded: Seeded) -> None:
    seeded.store.close()
    shell(seeded.path, "UPDATE alembic_version SET version_num = '0099_future'", drop_triggers=False)
    with pytest.raises(SchemaVersionError, match="newer than this inspector"):
        AuditStore.open(seeded.path)


def test_corrupt_or_foreign_file_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(np.random.default_rng(1).bytes(8192))
    with pytest.raises(StoreOpenError, match="cannot be opened as an audit database"):
        AuditStore.open(junk)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE stuff (x)")
    con.close()
    with pytest.raises(StoreOpenError, match="not an audit database"):
        AuditStore.open(other)
    with pytest.raises(StoreOpenError, match="is a folder"):
        AuditStore.open(tmp_path)


def test_migration_matches_orm(seeded: Seeded) -> None:
    from sqlalchemy import inspect

    from inspector.audit.schema import Base

    insp = inspect(seeded.store.engine)
    for table in Base.metadata.sorted_tables:
        in_db = {c["name"] for c in insp.get_columns(table.name)}
        assert in_db == {c.name for c in table.columns}, table.name


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector.audit.store import resolve_url

    url, path = resolve_url(tmp_path / "a.db")
    assert url == f"sqlite:///{tmp_path / 'a.db'}" and path == tmp_path / "a.db"
    assert resolve_url("postgresql://u@h/db") == ("postgresql://u@h/db", None)
    monkeypatch.setattr("platformdirs.user_data_dir", lambda app: str(tmp_path / "ud" / app))
    assert resolve_url(None)[1] == tmp_path / "ud" / "inspector" / "audit.db"
