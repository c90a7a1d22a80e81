"""Stress figures for the audit store (issue 5): kill -9, concurrency, retry queue, tampering.

Run: .venv/bin/python scripts/stress_audit.py [--trials 10] [--per-process 1000]
Prints each figure; exits 1 if any decision is lost, any lock error reaches a caller, any queued
record is dropped, or any tampering goes undetected.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import event

from inspector.audit import AuditStore, RecordQueued

PW = "stress-pass-1"


def seed(path: Path) -> tuple[AuditStore, int]:
    """A store with one user per role and one OK inspection to decide on."""
    st = AuditStore.open(path)
    st.add_user(None, "root", "Root", "admin", PW)
    admin = st.authenticate("root", PW)
    for uid, role in (("eng", "engineer"), ("ana", "operator"), ("aud", "auditor")):
        st.add_user(admin, uid, uid.title(), role, PW)
    eng = st.authenticate("eng", PW)
    mid = st.register_model(
        eng,
        weights_hash="w" * 64,
        backbone="resnet18",
        manifest_hash="m",
        thresholds={"image": 0.5},
        metrics={},
        model_dir="/m",
    )
    st.activate_model(eng, mid, "stress")
    iid = inspection(st, mid, 0)
    return st, iid


def inspection(st: AuditStore, mid: int, i: int) -> int:
    rng = np.random.default_rng(i)
    return st.record_inspection(
        station="stress",
        source="synthetic",
        frame_index=i,
        frame=rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        model_version_id=mid,
        score=0.1,
        threshold=0.5,
        verdict="OK",
        anomaly_map=rng.random((64, 64), dtype=np.float32),
    )


# ---------------------------------------------------------------- (a) kill -9
def child_decide(db: str, iid: int) -> None:
    st = AuditStore.open(db)
    op = st.authenticate("ana", PW)
    # One current decision per inspection: each new one corrects (supersedes) the one before,
    # starting from whatever the killed child before this one committed last.
    current = max((d.id for d in st.decisions() if d.inspection_id == iid and d.superseded_by is None), default=None)
    print("ready", flush=True)
    while True:
        current = st.record_decision(op, iid, "accept", supersedes=current)
        print(current, flush=True)  # printed only once committed


def kill_trials(work: Path, trials: int) -> bool:
    db = work / "kill.db"
    st, iid = seed(db)
    st.close()
    total_returned = total_lost = 0
    for t in range(trials):
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child-decide", str(db), str(iid)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(random.uniform(0.05, 0.6))  # a random moment in the stream (not sync)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        lines = proc.stdout.read().split("\n")[:-1]  # the part after the last newline may be cut
        ids = [int(line) for line in lines if line.strip().isdigit()]
        con = sqlite3.connect(db)
        present = {r[0] for r in con.execute("SELECT id FROM decisions")}
        con.close()
        lost = [i for i in ids if i not in present]
        total_returned += len(ids)
        total_lost += len(lost)
        print(f"  trial {t + 1:2d}: {len(ids):4d} ids returned before SIGKILL, lost {len(lost)}")
    with AuditStore.open(db) as st:
        ok = st.verify().ok
    print(
        f"(a) kill -9: {trials} trials, {total_returned} decisions returned, {total_lost} lost; "
        f"chain after all kills: {'intact' if ok else 'BROKEN'}"
    )
    return total_lost == 0 and ok


# ---------------------------------------------------------------- (b) concurrency
def worker(db: str, iid: int, n: int) -> tuple[int, int, int]:
    st = AuditStore.open(db)
    op = st.authenticate("ana", PW)
    ok = locked = other = 0
    current = None
    for _ in range(n):
        try:
            current = st.record_decision(op, iid, "accept", supersedes=current)  # one inspection per process
            ok += 1
        except Exception as exc:  # counted and reported, never hidden
            if "locked" in str(exc) or "busy" in str(exc):
                locked += 1
            else:
                other += 1
    st.close()
    return ok, locked, other


def concurrency(work: Path, per_process: int) -> bool:
    db = work / "conc.db"
    st, iid = seed(db)
    iids = [iid] + [inspection(st, st.models()[0].id, 100 + i) for i in range(3)]
    st.close()
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(4) as pool:
        res = pool.starmap(worker, [(str(db), i, per_process) for i in iids])
    elapsed = time.perf_counter() - t0
    with AuditStore.open(db) as st:
        present, ok = len(st.decisions()), st.verify().ok
    locked, other = sum(r[1] for r in res), sum(r[2] for r in res)
    print(
        f"(b) 4 processes x {per_process} decisions: {present}/{4 * per_process} present, "
        f"'locked' errors seen by callers: {locked}, other errors: {other}, "
        f"elapsed {elapsed:.1f} s ({4 * per_process / elapsed:.0f} decisions/s), "
        f"chain {'intact' if ok else 'BROKEN'}"
    )
    return present == 4 * per_process and locked == 0 and other == 0 and ok


# ---------------------------------------------------------------- (c) retry queue
def queue_sim(work: Path, n: int = 50) -> bool:
    good = True
    for label, pragma in (
        ("read-only (query_only)", "PRAGMA query_only = 1"),
        ("full disk (max_page_count)", "max_page_count"),
    ):
        db = work / f"queue-{pragma.split()[0]}.db"
        st, iid = seed(db)
        mid = st.models()[0].id
        op = st.authenticate("ana", PW)
        # one current decision per inspection: each queued decision gets its own inspection
        targets = [iid] + [inspection(st, mid, 2000 + i) for i in range(n // 2)] if "query_only" in pragma else []

        def hook(con: Any, _rec: Any, pragma: str = pragma) -> None:
            if pragma == "max_page_count":
                pages = con.execute("PRAGMA page_count").fetchone()[0]
                con.execute(f"PRAGMA max_page_count = {pages}")
            else:
                con.execute(pragma)

        st.engine.dispose()
        event.listen(st.engine, "connect", hook)
        queued = written = 0
        first_error = ""
        for i in range(n):
            try:
                if i % 2 or pragma == "max_page_count":
                    inspection(st, mid, 1000 + i)
                else:
                    st.record_decision(op, targets[i // 2], "accept")
                written += 1
            except RecordQueued as exc:
                queued += 1
                first_error = first_error or str(exc)
        waiting = st.queue_length
        event.remove(st.engine, "connect", hook)
        st.engine.dispose()
        res = st.flush_queue()
        ok = st.verify().ok
        st.close()
        print(
            f"(c) {label}: {n} records, {written} written, {queued} queued "
            f"(queue length {waiting}); after the fault clears: {len(res.recorded)} flushed, "
            f"{res.remaining} left, {len(res.rejected)} rejected; chain {'intact' if ok else 'BROKEN'}"
        )
        print(f"    error shown: {first_error[:150]}")
        good &= queued == waiting and len(res.recorded) == queued and res.remaining == 0 and ok
    return good


# ---------------------------------------------------------------- (d) tamper matrix
def tamper_matrix(work: Path) -> bool:
    cases: dict[str, list[str]] = {
        "edited": ["UPDATE decisions SET decision = 'reject' WHERE id = 3"],
        "deleted": ["DELETE FROM decisions WHERE id = 2"],
        "deleted (row + ledger)": [
            "DELETE FROM decisions WHERE id = 2",
            "DELETE FROM ledger WHERE table_name='decisions' AND row_id=2",
        ],
        "inserted": [
            "INSERT INTO decisions (uid, inspection_id, user_id, decision, meaning, "
            "created_at) VALUES ('x', 1, 'ana', 'reject', 'reviewed: rejected', "
            "'2024-01-01 00:00:00.000000')"
        ],
        "reordered": [
            "UPDATE decisions SET id = -1 WHERE id = 2",
            "UPDATE decisions SET id = 2 WHERE id = 4",
            "UPDATE decisions SET id = 4 WHERE id = -1",
        ],
        "truncated": [
            "DELETE FROM decisions WHERE id = 5",
            "DELETE FROM ledger WHERE seq = (SELECT MAX(seq) FROM ledger)",
        ],
        "truncated + head rewritten": [
            "DELETE FROM decisions WHERE id = 5",
            "DELETE FROM ledger WHERE seq = (SELECT MAX(seq) FROM ledger)",
            "UPDATE head SET seq = seq - 1, hash = (SELECT record_hash FROM ledger "
            "WHERE seq = (SELECT MAX(seq) FROM ledger))",
        ],
        "truncated + head + sidecar rewritten (checkpoint)": "ALL",  # type: ignore[dict-item]
    }
    print("(d) tamper matrix (sqlite3, triggers dropped first):")
    print(f"    {'tampering':52s} {'detected':8s} first problem reported")
    all_ok = True
    for n, (name, sql) in enumerate(cases.items()):
        db = work / f"tamper-{n}.db"
        st, _ = seed(db)
        op = st.authenticate("ana", PW)
        mid = st.models()[0].id
        for i in range(5):
            st.record_decision(op, inspection(st, mid, 10 + i) if i else 1, "accept")
        cp = work / f"tamper-{n}.cp.json"
        st.checkpoint(cp)
        if sql == "ALL":
            sql = cases["truncated + head rewritten"]
        con = sqlite3.connect(db, isolation_level=None)
        for (trig,) in con.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
            con.execute(f"DROP TRIGGER {trig}")
        for stmt in sql:
            con.execute(stmt)
        con.close()
        use_cp = "checkpoint" in name
        if use_cp:
            Path(f"{db}.head.json").unlink()
        result = st.verify(checkpoint=cp if use_cp else None)
        expected = name.split()[0]
        hit = not result.ok and result.first is not None and result.first.kind == expected
        all_ok &= hit
        print(f"    {name:52s} {'yes' if hit else 'NO':8s} {result.first}")
        st.close()
    return all_ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--per-process", type=int, default=1000)
    ap.add_argument("--child-decide", nargs=2, metavar=("DB", "INSPECTION"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_decide:
        child_decide(args.child_decide[0], int(args.child_decide[1]))
        return 0
    random.seed(5)
    with tempfile.TemporaryDirectory(prefix="stress_audit_") as tmp:
        work = Path(tmp)
        results = [
            kill_trials(work, args.trials),
            concurrency(work, args.per_process),
            queue_sim(work),
            tamper_matrix(work),
        ]
    print("ALL FIGURES OK" if all(results) else "SOME FIGURES FAILED")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
