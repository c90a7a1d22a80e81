"""Copy a station's store into a fresh central one: rows, ledger and head verbatim, then the frames.

The copy keeps every id and hash, so the central chain verifies to the very head the station
had; a ``store_migrated`` event then records where it came from. Merging two chains into one is
not a copy (every hash would change), so the destination must be empty. Run it as the owner:
on PostgreSQL the id sequences are moved past the copied ids.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import sqlalchemy as sa

from inspector.audit import codec
from inspector.audit.errors import ValidationError
from inspector.audit.schema import HeadRow, InspectionRow, LedgerRow, UserRow
from inspector.audit.store import AuditStore

ORDER = ("users", "model_versions", "inspections", "decisions", "events", "ledger")  # foreign keys first
SERIAL = ("model_versions", "inspections", "decisions", "events")
BATCH = 200


@dataclass
class MigrateReport:
    records: int
    head_hash: str
    rows: dict[str, int]
    frames_copied: int
    frames_missing: int
    source_ok: bool
    target_ok: bool
    target_summary: str


def migrate(src: AuditStore, dst: AuditStore) -> MigrateReport:
    """Copies ``src`` into the empty ``dst`` in one transaction; verifies both afterwards.

    Raises:
        ValidationError: the source chain is broken, or the destination is not empty.
    """
    before = src.verify()
    if not before.ok:
        raise ValidationError(f"the source store does not verify ({before.summary()}); nothing copied")
    with dst._read() as s:
        n_dst = s.get(HeadRow, 1).seq  # type: ignore[union-attr]
        n_users = s.scalar(sa.select(sa.func.count()).select_from(UserRow))
    if n_dst or n_users:
        raise ValidationError(
            f"the destination already holds {n_dst} records and {n_users} users: "
            "migrate into a fresh store (two chains cannot be merged without rewriting one)"
        )
    meta = UserRow.metadata
    rows: dict[str, int] = {}
    head = src.head()

    def copy(s: sa.orm.Session) -> None:
        with src._read() as r:
            for name in ORDER:
                table = meta.tables[name]
                key = table.c.seq if name == "ledger" else table.c.id
                result = r.execute(sa.select(table).order_by(key).execution_options(yield_per=BATCH))
                rows[name] = 0
                for part in result.partitions(BATCH):
                    s.execute(sa.insert(table), [dict(row._mapping) for row in part])
                    rows[name] += len(part)
        s.execute(sa.update(HeadRow).where(HeadRow.id == 1).values(seq=head.count, hash=head.hash))
        if dst.engine.dialect.name == "postgresql":
            for name in SERIAL:
                s.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {name}), false)"
                    )
                )
        dst._event(s, "store_migrated", None, from_store=src.store_id, records=head.count, head=head.hash)

    copied = missing = 0
    with src._read() as r:  # frames first: a verified copy never points at a frame not yet there
        t = InspectionRow.__table__
        for path, digest in r.execute(sa.select(t.c.frame_path, t.c.frame_sha256)):
            found = codec.locate_frame(src.frames_dir, src.db_path, path, digest)
            target = dst.frames_dir / codec.frame_relpath(digest)
            if target.is_file():
                continue
            if not found.is_file():
                missing += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, target)
            copied += 1
    dst._write(copy)
    after_src, after_dst = src.verify(), dst.verify(frames=True)
    with dst._read() as s:
        same = s.scalar(sa.select(LedgerRow.record_hash).where(LedgerRow.seq == head.count)) if head.count else None
    target_ok = after_dst.ok and (head.count == 0 or same == head.hash)
    return MigrateReport(
        records=head.count,
        head_hash=head.hash,
        rows=rows,
        frames_copied=copied,
        frames_missing=missing,
        source_ok=after_src.ok,
        target_ok=target_ok,
        target_summary=after_dst.summary(),
    )
