"""The station's audit writer: records off the frame's path, in order, grouped, none lost."""

from __future__ import annotations

import gc
import threading
import weakref
from pathlib import Path

import pytest

from inspector.analysis import FrameAnalyser
from inspector.audit import AuditStore
from inspector.pipeline import Inspector
from inspector.record_writer import RecordWriter
from inspector.sources import FolderSource
from inspector.station import SUBMITTED, Station


def test_writer_keeps_order_groups_and_drains() -> None:
    gate = threading.Event()
    groups: list[list[int]] = []

    def write(group) -> None:
        gate.wait(5)
        groups.append(list(group))

    w: RecordWriter[int] = RecordWriter(write, depth=4)
    for i in range(4):
        w.submit(i)  # the first group is held at the gate; the rest wait behind it
    assert w.pending == 4
    gate.set()
    for i in range(4, 10):
        w.submit(i)
    w.close()
    assert [i for g in groups for i in g] == list(range(10))
    assert len(groups) < 10  # what waited together was written together
    assert w.pending == 0


def test_writer_error_reaches_the_stream_and_nothing_after_it_is_written() -> None:
    written: list[int] = []
    failed = threading.Event()

    def write(group) -> None:
        for i in group:
            if i == 2:
                failed.set()
                raise OSError("disk gone")
            written.append(i)

    w: RecordWriter[int] = RecordWriter(write, depth=1)
    for i in range(3):
        w.submit(i)
    assert failed.wait(5)
    with pytest.raises(OSError, match="disk gone"):
        for i in range(3, 6):
            w.submit(i)
    w.close()
    assert written == [0, 1]


def station(store: AuditStore, model_dir: Path) -> Station:
    inspector = Inspector.load(model_dir, "cpu")
    st = Station(store, inspector, "line-1", analyse=FrameAnalyser.load(inspector).analyse, keep=3)
    st.register_model(store.authenticate("eng", "eng-pass"))
    return st


def test_station_with_writer_records_every_frame_in_order_before_announcing_it(
    store, trained_tiny: Path, frames: Path
) -> None:
    st = station(store, trained_tiny)
    announced: list[tuple[int, int | None]] = []
    st.events.frame_ready.connect(lambda it: announced.append((it.index, it.inspection_id)))
    gate, commits = threading.Event(), []
    real = store._write_sidecar

    def slow_commit(*args) -> None:  # the first commit waits until the stream has handed over every frame
        commits.append(args)
        gate.wait(30)
        real(*args)

    store._write_sidecar = slow_commit  # type: ignore[method-assign]
    st.start_writer()
    out = list(st.run(FolderSource(frames)))
    gate.set()
    st.close_writer()
    assert out == [SUBMITTED] * 6  # the stream went on without waiting for the records
    assert len(commits) == 2  # the first frame alone, then the five that waited behind it together
    assert [i for i, _ in announced] == list(range(6))
    ids = [iid for _, iid in announced]
    assert None not in ids and ids == sorted(ids)  # announced only once recorded, in frame order
    recs = [store.inspection(iid, images=False) for iid in ids]
    assert [r.frame_index for r in recs] == list(range(6))
    assert sorted(Path(r.source).name for r in recs) == sorted(p.name for p in frames.iterdir())
    assert store.verify().ok
    assert st.counts.inspected == 6 and len(st.history) == 6
    decided = st.decide(store.authenticate("ana", "ana-pass"), st.history[5], "accept", "other", "checked")
    assert store.decisions()[0].inspection_id == ids[5] and decided is not None


def test_a_replaced_station_is_freed_without_the_cycle_collector(store, trained_tiny: Path) -> None:
    """The app freezes the heap (runtime.settle_heap): a station in a reference cycle would never be freed."""
    st = station(store, trained_tiny)
    st.start_writer()
    st.close_writer()
    ref, model = weakref.ref(st), weakref.ref(st.inspector.model)
    gc.collect()
    gc.disable()
    try:
        del st
        assert ref() is None and model() is None
    finally:
        gc.enable()


def test_with_the_store_down_the_writer_queues_every_record_in_order(store, trained_tiny: Path, frames: Path) -> None:
    from sqlalchemy import event

    st = station(store, trained_tiny)
    announced = []
    st.events.frame_ready.connect(announced.append)

    def read_only(dbapi_conn, _rec) -> None:
        dbapi_conn.execute("PRAGMA query_only = ON")

    store.engine.dispose()
    event.listen(store.engine, "connect", read_only)
    try:
        st.start_writer()
        list(st.run(FolderSource(frames)))
        st.close_writer()
    finally:
        event.remove(store.engine, "connect", read_only)
        store.engine.dispose()
    assert [it.index for it in announced] == list(range(6))
    assert all(it.inspection_id is None and it.queued_uid for it in announced)  # queued, not lost
    assert st.counts.queued == 6 and store.queue_length == 6
    assert st.flush_queue() == 0
    ids = [store.inspection_id_for(it.queued_uid) for it in announced]
    assert None not in ids and ids == sorted(ids)  # replayed in the order they were taken
    assert store.verify().ok
