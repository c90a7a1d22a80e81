"""The central PostgreSQL deployment: guards, least privilege, outages, per-store queues, witnesses.

Runs against the session's throwaway server (``pg_server``); the rules shared by both dialects
(lengths, NUL, witnesses) run on SQLite too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import PASSWORDS, Seeded, amap, frame, inspect_one, new_pg_database, seed
from sqlalchemy import event

from inspector.audit import AuditStore, RecordQueued, ValidationError
from inspector.audit.pg_local import APP_ROLE
from inspector.audit.pg_roles import grant_statements
from inspector.audit.tamper import rewrite_consistently, truncate_and_regenesis

pg_only = pytest.mark.parametrize("dialect", ["postgresql"])


def _owner(seeded: Seeded) -> sa.Engine:
    return sa.create_engine(str(seeded.path), isolation_level="AUTOCOMMIT")


@pg_only
@pytest.mark.parametrize(
    "sql, refusal",
    [
        ("UPDATE decisions SET decision = 'reject'", "append-only"),
        ("DELETE FROM ledger", "append-only"),
        ("TRUNCATE decisions CASCADE", "TRUNCATE is refused"),
        ("TRUNCATE users, model_versions, inspections, decisions, events, ledger, head CASCADE", "TRUNCATE"),
        ("INSERT INTO head (id, store_id, seq, hash) VALUES (2, 'x', 0, 'y')", "exactly one row"),
        ("UPDATE users SET id = 'ana2' WHERE id = 'ana'", "never changes"),
        ("UPDATE head SET seq = 0", "only moves forward"),
    ],
)
def test_triggers_bind_the_owner(seeded: Seeded, sql: str, refusal: str) -> None:
    seeded.store.record_decision(seeded.op, inspect_one(seeded, 1), "accept")
    engine = _owner(seeded)
    with engine.connect() as con, pytest.raises(sa.exc.DBAPIError, match=refusal):
        con.exec_driver_sql(sql)
    engine.dispose()
    assert seeded.store.verify().ok


@pytest.fixture
def station(seeded: Seeded, pg_server: Any) -> Iterator[AuditStore]:
    """The seeded store's database opened as the application role, after the owner's grants."""
    url = sa.engine.make_url(str(seeded.path))
    engine = _owner(seeded)
    with engine.connect() as con:
        for sql in grant_statements(APP_ROLE, url.database or ""):
            con.exec_driver_sql(sql)
    engine.dispose()
    app_url = pg_server.url(url.database, APP_ROLE)
    store = AuditStore.open(app_url)
    yield store
    store.close()


@pg_only
def test_application_role_only_adds_and_reads(seeded: Seeded, station: AuditStore) -> None:
    op = station.authenticate("ana", PASSWORDS["ana"])
    iid = station.record_inspection(
        station="line-2", source="cam", frame_index=0, frame=frame(0), model_version_id=seeded.model_id,
        score=0.1, threshold=0.5, verdict="OK", anomaly_map=amap(0),
    )  # fmt: skip
    station.record_decision(op, iid, "accept")
    station.set_user(station.authenticate("root", PASSWORDS["root"]), "ana", name="Ana Ops")  # allowed columns
    with station.engine.connect() as con:
        for sql in (
            "TRUNCATE decisions CASCADE",
            "DELETE FROM decisions",
            "UPDATE decisions SET decision = 'reject'",
            "UPDATE users SET id = 'x' WHERE id = 'ana'",
            "DROP TRIGGER decisions_no_truncate ON decisions",
            "CREATE TABLE junk (x int)",
        ):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"):
                con.exec_driver_sql(sql)
            con.rollback()
    assert station.verify().ok and len(station.decisions()) == 1


@pg_only
def test_admin_shutdown_mid_write_is_queued_then_flushed(seeded: Seeded, pg_server: Any) -> None:
    """The server ends the connection inside the decision's transaction (AdminShutdown, 57P01)."""
    st, iid = seeded.store, inspect_one(seeded, 1)
    fired: list[int] = []

    def kill_own_backend(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO decisions") and not fired:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            fired.append(pid)
            pg_server.psql(f"SELECT pg_terminate_backend({pid})")

    event.listen(st.engine, "before_cursor_execute", kill_own_backend)
    try:
        with pytest.raises(RecordQueued, match="terminating connection|administrator|closed"):
            st.record_decision(seeded.op, iid, "accept")
    finally:
        event.remove(st.engine, "before_cursor_execute", kill_own_backend)
    assert fired and st.queue_length == 1 and st.decisions() == []
    assert st.flush_queue().remaining == 0 and len(st.decisions()) == 1 and st.verify().ok


def _dead_engine(store: AuditStore, pg_server: Any) -> sa.Engine:
    """Points the store at a port nobody listens on: every connection is refused."""
    from inspector.audit.pg_local import free_port

    live = store.engine
    url = sa.engine.make_url(store.url).set(port=free_port())
    store.engine = store._reader = sa.create_engine(url, connect_args={"connect_timeout": 2})
    return live


@pg_only
def test_queue_is_per_store_and_checked_on_replay(seeded: Seeded, pg_server: Any) -> None:
    a = seeded.store
    iid = inspect_one(seeded, 1)
    live = _dead_engine(a, pg_server)
    with pytest.raises(RecordQueued, match="refused|connect"):
        a.record_decision(seeded.op, iid, "accept")
    a.engine = a._reader = live
    other = seed(new_pg_database(pg_server))  # another central store, same machine and home folder
    try:
        assert other.store.queue_length == 0 and other.store.queue.folder != a.queue.folder
        other.store.queue.folder = a.queue.folder  # even a misplaced queue file is not replayed there
        result = other.store.flush_queue()
        assert result.recorded == [] and len(result.skipped) == 1 and other.store.decisions() == []
    finally:
        other.store.close()
    assert a.queue_length == 1 and a.flush_queue().remaining == 0
    assert len(a.decisions()) == 1 and a.verify().ok


def _inspect(s: Seeded, **kw: Any) -> int:
    args: dict[str, Any] = dict(
        station="line-1", source="cam0", frame_index=0, frame=frame(0), model_version_id=s.model_id,
        score=0.1, threshold=0.5, verdict="OK", anomaly_map=amap(0),
    )  # fmt: skip
    return s.store.record_inspection(**{**args, **kw})


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: _inspect(s, station="x" * 101), "station name is 101 characters long; at most 100"),
        (lambda s: _inspect(s, station="line\x001"), "station name contains a NUL"),
        (lambda s: _inspect(s, source="cam\x00"), "source contains a NUL"),
        (lambda s: _inspect(s, frame_index=2**31), "frame index 2147483648 is out of range"),
        (
            lambda s: s.store.record_decision(s.op, 1, "accept", reason_code="C" * 65),
            "reason code has more than 64 characters",
        ),
        (lambda s: s.store.record_decision(s.op, 1, "reject", reason_text="scr\x00atch"), "reason text contains"),
        (
            lambda s: s.store.add_user(s.admin, "bob", "B" * 201, "operator", "password-123"),
            "name has 201 characters; the limit is 200",
        ),
        (lambda s: s.store.activate_model(s.eng, s.model_id, "why\x00"), "contains a NUL"),
    ],
)
def test_same_rules_on_both_dialects(seeded: Seeded, call: Any, message: str) -> None:
    inspect_one(seeded, 0)
    before = seeded.store.head().count
    with pytest.raises(ValidationError, match=message) as err:
        call(seeded)
    assert "\n" not in str(err.value) and seeded.store.head().count == before and seeded.store.queue_length == 0


def _witnessed(seeded: Seeded, tmp_path: Path) -> Path:
    """Five decisions written while the station witnesses every head it commits."""
    from inspector.audit.witness import Witness

    seeded.store.witness = Witness(tmp_path / "station-witness", "line-1")
    for i in range(5):
        seeded.store.record_decision(seeded.op, inspect_one(seeded, i), "accept")
    out = tmp_path / "export"
    assert len(seeded.store.witness.export(out)) == 1
    return out


def test_witness_catches_a_consistent_rewrite(seeded: Seeded, tmp_path: Path) -> None:
    exported = _witnessed(seeded, tmp_path)
    assert seeded.store.verify(witness=exported).ok
    url = str(seeded.path) if str(seeded.path).startswith("postgresql") else f"sqlite:///{seeded.path}"
    seeded.store.engine.dispose()
    rewrite_consistently(url, "decisions", 3, decision="reject", reason_text="forged")
    plain = seeded.store.verify()
    if str(seeded.path).startswith("postgresql"):
        assert plain.ok  # nothing in the database contradicts the forger...
    result = seeded.store.verify(witness=exported)  # ...but the station's signed heads do
    assert not result.ok and result.first is not None
    assert result.first.kind == "edited" and "witnessed by line-1" in result.first.message
    dec3 = next(p for p in result.problems if "contradicts" in p.message)
    assert dec3.seq is not None and dec3.seq >= 1


@pg_only
def test_witness_catches_truncate_and_regenesis(seeded: Seeded, tmp_path: Path) -> None:
    exported = _witnessed(seeded, tmp_path)
    seeded.store.engine.dispose()
    truncate_and_regenesis(str(seeded.path))
    assert seeded.store.verify().summary().startswith("chain intact: 0 records")  # the finding
    result = seeded.store.verify(witness=exported)
    assert not result.ok and result.first is not None and result.first.kind == "truncated"
    assert "chain ends at #0" in result.first.message


def test_forged_witness_line_is_ignored(seeded: Seeded, tmp_path: Path) -> None:
    exported = _witnessed(seeded, tmp_path)
    [log] = list(exported.glob("*.jsonl"))
    lines = log.read_text().splitlines()
    lines[-1] = lines[-1].replace('"seq":', '"seq":9').replace(',"seq":9', ',"seq":99', 1)
    log.write_text("\n".join(lines) + "\n")
    result = seeded.store.verify(witness=exported)
    assert result.ok and any("wrongly signed" in w for w in result.warnings)


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_migrate_station_store_into_central(seeded: Seeded, pg_server: Any, tmp_path: Path) -> None:
    from inspector.audit.migrate import migrate

    for i in range(3):
        seeded.store.record_decision(seeded.op, inspect_one(seeded, i), "accept")
    central_url = new_pg_database(pg_server)
    with AuditStore.open(central_url, frames_dir=tmp_path / "shared-frames") as central:
        report = migrate(seeded.store, central)
        assert report.source_ok and report.target_ok and report.frames_copied == 3
        assert central.head().count == report.records + 1  # plus the store_migrated event
        assert [d.id for d in central.decisions()] == [d.id for d in seeded.store.decisions()]
        ins = central.inspection(1)
        assert ins.frame is not None and ins.frame_path.is_relative_to(tmp_path / "shared-frames")
        with pytest.raises(ValidationError, match="fresh store"):
            migrate(seeded.store, central)
        fresh = central.record_inspection(
            station="line-1", source="cam0", frame_index=9, frame=frame(9), model_version_id=seeded.model_id,
            score=0.1, threshold=0.5, verdict="OK", anomaly_map=amap(9),
        )  # fmt: skip
        new = central.record_decision(central.authenticate("ana", PASSWORDS["ana"]), fresh, "accept")
        assert fresh == 4 and new == 4 and central.verify().ok  # sequences moved past the copied ids


@pg_only
def test_auditor_sees_frames_recorded_at_any_station(seeded: Seeded, tmp_path: Path, monkeypatch: Any) -> None:
    shared = tmp_path / "mnt-frames"
    url = str(seeded.path)
    with AuditStore.open(url, frames_dir=shared) as line2:
        iid = line2.record_inspection(
            station="line-2", source="cam", frame_index=0, frame=frame(7), model_version_id=seeded.model_id,
            score=0.1, threshold=0.5, verdict="OK", anomaly_map=amap(0),
        )  # fmt: skip
    monkeypatch.setenv("INSPECTOR_HOME", str(tmp_path / "auditor-home"))  # another machine...
    monkeypatch.setenv("INSPECTOR_FRAMES", str(shared))  # ...that mounts the shared frame store
    with AuditStore.open(url) as auditor:
        ins = auditor.inspection(iid)
        assert ins.frame is not None and ins.frame_path.is_relative_to(shared)
        assert auditor.verify(frames=True).ok
    with sa.create_engine(url).connect() as con:
        stored = con.exec_driver_sql(f"SELECT frame_path FROM inspections WHERE id = {iid}").scalar_one()
    assert not Path(stored).is_absolute()  # relative to the frame store, valid on every machine


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_file_store_keeps_frames_out_of_an_input_folder_named_frames(seeded: Seeded) -> None:
    inputs = Path(seeded.path).parent / "frames"  # the README's layout: --input frames/ --db audit.db
    inputs.mkdir()
    inspect_one(seeded, 1)
    assert seeded.store.frames_dir == Path(f"{seeded.path}.frames") and list(inputs.iterdir()) == []


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_inspect_stops_when_a_record_cannot_be_queued_anywhere(seeded: Seeded) -> None:
    from test_audit_queue import sqlite_pragma

    from inspector.cli.inspect_cmds import flush_or_stop
    from inspector.errors import InspectorError

    st = seeded.store
    iid = inspect_one(seeded, 0)
    st.queue.folder = Path(seeded.path) / "not-a-dir"  # the disk refuses the queue file too
    with sqlite_pragma(st, "PRAGMA query_only = 1"):
        with pytest.raises(RecordQueued, match="memory"):
            st.record_decision(seeded.op, iid, "accept")
        with pytest.raises(InspectorError, match="could not be written to the store nor queued"):
            flush_or_stop(st)
    flush_or_stop(st)  # once the database takes writes again the record goes in
    assert len(st.decisions()) == 1
