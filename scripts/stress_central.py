"""Many stations, one central PostgreSQL: throughput, restarts, and the owner's attacks.

    python scripts/stress_central.py                      # 8 stations x 1,000 decisions, 3 restarts
    python scripts/stress_central.py --decisions 100      # quicker

Starts its own throwaway server on loopback (Debian's postgresql binaries), creates the central
store and a neighbouring one as the owner role, grants the application role, then runs station
processes that connect as the application role. Each station records an inspection and a
decision per step; a "neighbour" process on station 1's machine (same home folder, so the same
retry-queue root) writes to the other store. The server is restarted with ``pg_ctl restart -m
fast`` at 25/50/75 %. Afterwards: every acknowledged decision present exactly once, in its own
store; both chains intact; then the TRUNCATE attack as the application role (refused) and, on
copies of the central database, as the owner (TRUNCATE + regenesis, and a consistent rewrite of
the whole chain), each checked with plain verify and with the stations' witnessed heads.
Prints figures and writes them as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PASSWORD = "stress-pass-1"


def _station(name: str, url: str, home: str, n: int, q: Any) -> None:
    """One station process: n x (inspection + decision); reports acks, queued counts and errors."""
    os.environ.update(INSPECTOR_HOME=home, INSPECTOR_WITNESS_DIR=str(Path(home) / "witness"), INSPECTOR_STATION=name)
    import numpy as np

    from inspector.audit import AuditStore, RecordQueued

    rng = np.random.default_rng(zlib.crc32(name.encode()))
    errors: list[str] = []
    queued = 0
    acked: list[str] = []
    t0 = time.monotonic()
    store = AuditStore.open(url)
    op = store.authenticate("ana", PASSWORD)
    model = store.active_model()
    assert model is not None

    def wait_for(uid: str) -> int:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                store.flush_queue()
                found = store.inspection_id_for(uid)
                if found is not None:
                    return found
            except Exception:  # the server may still be restarting: keep trying until the deadline
                pass
            time.sleep(0.2)
        raise TimeoutError(f"inspection {uid} not written within 120 s")

    for i in range(n):
        source = f"{name}/{i}"
        try:
            try:
                iid = store.record_inspection(
                    station=name, source=source, frame_index=i,
                    frame=rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), model_version_id=model.id,
                    score=0.1, threshold=0.5, verdict="OK", anomaly_map=rng.random((4, 4), dtype=np.float32),
                )  # fmt: skip
            except RecordQueued as exc:
                queued += 1
                iid = wait_for(str(exc.uid))
            try:
                store.record_decision(op, iid, "accept")
            except RecordQueued:
                queued += 1  # acknowledged as waiting on disk; flushed below
            acked.append(source)
            if store.queue_length:
                store.flush_queue()
        except Exception as exc:  # counted, never hidden: the figures report every one
            errors.append(f"{source}: {type(exc).__name__}: {exc}")
    deadline = time.monotonic() + 120
    while store.queue_length and time.monotonic() < deadline:
        try:
            store.flush_queue()
        except Exception as exc:
            errors.append(f"final flush: {type(exc).__name__}: {exc}")
        time.sleep(0.2)
    left = store.queue_length
    store.close()
    q.put({"name": name, "acked": acked, "queued": queued, "errors": errors, "left": left,
           "seconds": time.monotonic() - t0})  # fmt: skip


def _seed(url: str) -> str:
    from inspector.audit import AuditStore

    with AuditStore.open(url) as store:
        admin = store.add_user(None, "root", "Root", "admin", PASSWORD)
        store.add_user(admin, "eng", "Eng", "engineer", PASSWORD)
        store.add_user(admin, "ana", "Ana", "operator", PASSWORD)
        eng = store.authenticate("eng", PASSWORD)
        mid = store.register_model(
            eng, weights_hash="w" * 64, backbone="stress", manifest_hash="m" * 64,
            thresholds={"decision": 0.5}, metrics={}, model_dir="/models/stress",
        )  # fmt: skip
        store.activate_model(eng, mid, "stress run")
        return store.store_id


def _decided_sources(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as con:
        rows = con.exec_driver_sql(
            "SELECT i.source, count(*) FROM decisions d JOIN inspections i ON i.id = d.inspection_id GROUP BY i.source"
        ).fetchall()
    engine.dispose()
    return {s: int(c) for s, c in rows}


def _autocommit(url: str, statements: list[str]) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as con:
            for sql in statements:
                con.exec_driver_sql(sql)
    finally:
        engine.dispose()  # no idle connection left: CREATE DATABASE ... TEMPLATE needs none


def _count(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            return int(con.exec_driver_sql("SELECT count(*) FROM decisions").scalar_one())
    except sa.exc.DBAPIError:
        return -1  # restarting
    finally:
        engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stations", type=int, default=8)
    ap.add_argument("--decisions", type=int, default=1000, help="per station")
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work folder (stations' homes, frames, witnesses)")
    args = ap.parse_args()
    os.environ.setdefault("INSPECTOR_ARGON2_FAST", "1")  # logins are not what is measured

    import sqlalchemy as sa

    from inspector.audit import AuditStore
    from inspector.audit.pg_local import APP_ROLE, LocalPostgres
    from inspector.audit.pg_roles import grant_statements
    from inspector.audit.tamper import rewrite_consistently, truncate_and_regenesis
    from inspector.audit.witness import Witness

    work = Path(tempfile.mkdtemp(prefix="stress-central-"))
    os.environ["INSPECTOR_HOME"] = str(work / "auditor")
    os.environ["INSPECTOR_FRAMES"] = str(work / "shared-frames")  # the mount every station shares
    pg = LocalPostgres(fsync=True).start()
    figures: dict[str, Any] = {"stations": args.stations, "decisions_per_station": args.decisions}
    try:
        for db in ("central", "neighbour"):
            pg.create_database(db)
            _seed(pg.url(db))
            _autocommit(pg.url(db), grant_statements(APP_ROLE, db))
        central, neighbour = pg.url("central", APP_ROLE), pg.url("neighbour", APP_ROLE)
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        homes = [str(work / f"station-{k + 1}") for k in range(args.stations)]
        procs = [
            ctx.Process(target=_station, args=(f"station-{k + 1}", central, homes[k], args.decisions, q))
            for k in range(args.stations)
        ]
        n_neigh = max(10, args.decisions // 10)
        procs.append(ctx.Process(target=_station, args=("neighbour", neighbour, homes[0], n_neigh, q)))
        total = args.stations * args.decisions
        marks = [total * (j + 1) // (args.restarts + 1) for j in range(args.restarts)]
        restarts: list[dict[str, Any]] = []
        t0 = time.monotonic()
        for p in procs:
            p.start()
        results: list[dict[str, Any]] = []
        while len(results) < len(procs):
            while not q.empty():
                results.append(q.get())
            if marks and _count(pg.url("central")) >= marks[0]:
                at = marks.pop(0)
                r0 = time.monotonic()
                pg.restart()
                restarts.append({"after_decisions": at, "seconds": round(time.monotonic() - r0, 2)})
                print(f"[stress] server restarted (-m fast) after ~{at} decisions", flush=True)
            if all(not p.is_alive() for p in procs) and q.empty() and len(results) < len(procs):
                break
            time.sleep(0.3)
        wall = time.monotonic() - t0
        for p in procs:
            p.join(timeout=30)
        stations = [r for r in results if r["name"] != "neighbour"]
        neigh = [r for r in results if r["name"] == "neighbour"]
        acked = [s for r in stations for s in r["acked"]]
        in_central, in_neigh = _decided_sources(pg.url("central")), _decided_sources(pg.url("neighbour"))
        figures.update(
            wall_s=round(wall, 1),
            decisions_per_s=round(len(acked) / wall, 1),
            records_per_s=round(2 * len(acked) / wall, 1),
            acknowledged=len(acked),
            present=sum(1 for s in acked if in_central.get(s, 0) >= 1),
            lost=sum(1 for s in acked if s not in in_central),
            duplicated=sum(1 for c in in_central.values() if c > 1) + sum(1 for c in in_neigh.values() if c > 1),
            wrong_store=sum(1 for s in in_central if s.startswith("neighbour/"))
            + sum(1 for s in in_neigh if not s.startswith("neighbour/")),
            neighbour_present=sum(1 for s in (neigh[0]["acked"] if neigh else []) if s in in_neigh),
            neighbour_acknowledged=len(neigh[0]["acked"]) if neigh else 0,
            decisions_in_central=sum(in_central.values()),
            caller_errors=sum(len(r["errors"]) for r in results),
            queued_then_flushed=sum(r["queued"] for r in results),
            left_in_queues=sum(r["left"] for r in results),
            processes_reporting=len(results),
            restarts=restarts,
            error_samples=[e for r in results for e in r["errors"]][:5],
        )
        with AuditStore.open(pg.url("central")) as store:
            figures["central_verify"] = store.verify().summary()
        with AuditStore.open(pg.url("neighbour")) as store:
            figures["neighbour_verify"] = store.verify().summary()

        # --- the owner's and the application role's attacks ---------------------------------
        witness_dir = work / "witness-export"
        for home in homes:
            Witness(Path(home) / "witness", Path(home).name).export(witness_dir)
        try:
            everything = "users, model_versions, inspections, decisions, events, ledger, head"
            _autocommit(central, [f"TRUNCATE {everything} CASCADE"])
            figures["app_truncate"] = "NOT refused"
        except sa.exc.DBAPIError as exc:
            figures["app_truncate"] = "refused: " + str(exc.orig).strip().splitlines()[0]
        pg.psql("CREATE DATABASE attack_rewrite TEMPLATE central OWNER inspector_owner",
                "CREATE DATABASE attack_truncate TEMPLATE central OWNER inspector_owner")  # fmt: skip
        rewrite_consistently(pg.url("attack_rewrite"), "decisions", 1, decision="reject", reason_text="forged")
        truncate_and_regenesis(pg.url("attack_truncate"))
        for name in ("central", "attack_rewrite", "attack_truncate"):
            with AuditStore.open(pg.url(name), witness_dir="off") as store:
                plain = store.verify()
                witnessed = store.verify(witness=witness_dir)
                figures[f"{name}_plain_verify"] = plain.summary()
                figures[f"{name}_witness_verify"] = witnessed.summary()
                figures[f"{name}_witnesses"] = witnessed.witnessed
    finally:
        pg.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    ok = (
        figures.get("lost") == 0
        and figures.get("duplicated") == 0
        and figures.get("wrong_store") == 0
        and figures.get("caller_errors") == 0
        and figures.get("present") == args.stations * args.decisions
        and str(figures.get("central_witness_verify", "")).startswith("chain intact")
        and "BROKEN" in str(figures.get("attack_rewrite_witness_verify"))
        and "BROKEN" in str(figures.get("attack_truncate_witness_verify"))
        and str(figures.get("app_truncate", "")).startswith("refused")
    )
    print("[stress] all checks passed" if ok else "[stress] SOME CHECKS FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
