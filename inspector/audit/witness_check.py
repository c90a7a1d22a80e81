"""``verify --witness DIR``: the stations' witnessed heads held against the central chain."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from inspector.audit import chain, witness
from inspector.audit.schema import LedgerRow

if TYPE_CHECKING:
    from inspector.audit.store import AuditStore


def apply_witnesses(store: AuditStore, result: chain.VerifyResult, folder: Path) -> None:
    """Adds the first contradiction (if any) to ``result``, and what was checked to its warnings."""
    seen, warnings = witness.load(folder)
    with store._read() as s:
        entries = [
            chain.Entry(r.seq, r.table_name, r.row_id, r.content_hash, r.prev_hash, r.record_hash)
            for r in s.execute(select(LedgerRow.__table__).order_by(LedgerRow.seq))
        ]
    result.problems += witness.check(entries, store.store_id, seen)
    result.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    mine = [x for x in seen if x.store_id == store.store_id]
    stations = sorted({f"{x.witness} ({witness.fingerprint(x.key)})" for x in mine})
    result.warnings += warnings
    result.witnessed = f"{len(mine)} witnessed heads from {len(stations)} station(s): {', '.join(stations)}"
