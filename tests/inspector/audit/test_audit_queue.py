"""Read-only and full databases: a clear error, records wait in the retry queue, then flush."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import Seeded, amap, frame, inspect_one
from sqlalchemy import event

from inspector.audit import AuditStore, RecordQueued, ValidationError

# SQLite pragmas make the database read-only or full; PostgreSQL outages: test_audit_postgres.py
pytestmark = pytest.mark.parametrize("dialect", ["sqlite"])


@contextmanager
def sqlite_pragma(store: AuditStore, pragma: str) -> Iterator[None]:
    """Makes every new connection read-only (query_only) or full (max_page_count) for a while."""

    def hook(dbapi_conn: Any, _rec: Any) -> None:
        if "max_page_count" in pragma:
            pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")
        else:
            dbapi_conn.execute(pragma)

    store.engine.dispose()
    event.listen(store.engine, "connect", hook)
    try:
        yield
    finally:
        event.remove(store.engine, "connect", hook)
        store.engine.dispose()


def _inspect(s: Seeded, i: int) -> int:
    return s.store.record_inspection(
        station="line-1",
        source="cam0",
        frame_index=i,
        frame=frame(i),
        model_version_id=s.model_id,
        score=0.1,
        threshold=0.5,
        verdict="OK",
        anomaly_map=amap(i),
    )


def test_read_only_database_queues_and_flushes(seeded: Seeded) -> None:
    st = seeded.store
    done = inspect_one(seeded, 0, "DEFECT")
    with sqlite_pragma(st, "PRAGMA query_only = 1"):
        with pytest.raises(RecordQueued, match="readonly") as err:
            st.record_decision(seeded.op, done, "reject")
        assert err.value.queue_length == 1
        for i in range(1, 4):
            with pytest.raises(RecordQueued):
                _inspect(seeded, i)
        with pytest.raises(ValidationError):  # refused records are not queued: fix, not retry
            st.record_decision(seeded.op, done, "accept")
        assert st.queue_length == 4 and st.queue.in_memory == 0
        assert st.flush_queue().remaining == 4  # still refused: nothing lost, nothing doubled
    assert st.decisions() == []
    result = st.flush_queue()
    assert result.remaining == 0 and result.rejected == []
    assert [t for t, _ in result.recorded] == ["decisions"] + ["inspections"] * 3
    assert st.queue_length == 0 and len(st.decisions()) == 1
    assert [st.inspection(i).frame_index for _, i in result.recorded[1:]] == [1, 2, 3]
    assert st.verify().ok


def test_full_disk_queues_and_flushes(seeded: Seeded) -> None:
    st = seeded.store
    with sqlite_pragma(st, "max_page_count"):  # no new page can be allocated: SQLITE_FULL
        for i in range(3):
            with pytest.raises(RecordQueued, match="full"):
                _inspect(seeded, i)
    assert st.queue_length == 3
    result = st.flush_queue()
    assert len(result.recorded) == 3 and st.queue_length == 0 and st.verify().ok


def test_queue_survives_reopen_and_replay_is_idempotent(seeded: Seeded) -> None:
    st = seeded.store
    iid = inspect_one(seeded, 0)
    with sqlite_pragma(st, "PRAGMA query_only = 1"), pytest.raises(RecordQueued):
        st.record_decision(seeded.op, iid, "accept")
    [record] = [r for _, r in st.queue.items()]  # a flusher claims it, then dies:
    [claimed] = [p for p in st.queue.folder.iterdir() if ".claimed-" in p.name]  # type: ignore[union-attr]
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    claimed.rename(claimed.with_name(claimed.name.rsplit(".claimed-", 1)[0] + f".claimed-{dead}"))
    st.close()
    reopened = AuditStore.open(seeded.path)
    try:
        assert reopened.queue_length == 1
        reopened._insert_decision(record)  # it reached the database before the crash...
        result = reopened.flush_queue()  # ...so the replay must not record it twice
        assert result.remaining == 0 and len(reopened.decisions()) == 1
    finally:
        reopened.close()


def test_memory_fallback_when_queue_folder_unwritable(seeded: Seeded) -> None:
    st = seeded.store
    iid = inspect_one(seeded, 0)
    st.queue.folder = seeded.path / "not-a-dir"  # a file's child: every write fails
    with sqlite_pragma(st, "PRAGMA query_only = 1"), pytest.raises(RecordQueued, match="memory"):
        st.record_decision(seeded.op, iid, "accept")
    assert st.queue.in_memory == 1 and st.queue_length == 1
    assert st.flush_queue().remaining == 0 and len(st.decisions()) == 1


def test_station_decides_once_a_queued_inspection_has_flushed(seeded: Seeded, trained_tiny, synthetic_pills) -> None:
    from inspector.pipeline import Inspector
    from inspector.station import Station
    from inspector.training import load_items

    root, manifest, _ = synthetic_pills
    inspector = Inspector.load(trained_tiny, "cpu")
    station = Station(seeded.store, inspector, "line-1")
    station.register_model(seeded.eng)
    [result] = inspector.inspect_images(load_items(manifest.split("test")[:1], root))
    with sqlite_pragma(seeded.store, "PRAGMA query_only = 1"):
        item = station.process(result)
    assert item.inspection_id is None and item.queued_uid and station.counts.queued == 1
    decision_id = station.decide(seeded.op, item, "reject" if result.verdict == "DEFECT" else "accept")
    assert decision_id is not None and item.inspection_id is not None
    assert seeded.store.inspection(item.inspection_id, images=False).frame_sha256 == result.frame_sha256
