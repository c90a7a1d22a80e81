"""What an owner with every right can do to a store, for the tests and the stress script to prove
that ``verify --witness`` catches it: nothing here is used by the product itself.

Both attacks leave a chain that plain ``verify`` calls intact, because every hash is recomputed.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from inspector.audit import chain
from inspector.audit.schema import ROW_CLASSES

ATTACKED = ("users", "model_versions", "inspections", "decisions", "events", "ledger", "head")


def _drop_triggers(con: sa.Connection) -> None:
    if con.dialect.name == "postgresql":
        rows = con.exec_driver_sql(
            "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal"
        ).fetchall()
        for name, table in rows:
            con.exec_driver_sql(f'DROP TRIGGER "{name}" ON "{table}"')
    else:
        for (name,) in con.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
            con.exec_driver_sql(f'DROP TRIGGER "{name}"')


def rewrite_consistently(url: str, table: str, row_id: int, **changes: Any) -> None:
    """Edits one record, then recomputes every ledger hash after it and the head: a clean forgery."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as con:
            _drop_triggers(con)
            t = ROW_CLASSES[table].__table__
            con.execute(sa.update(t).where(t.c.id == row_id).values(**changes))
            cols = ("seq", "table_name", "row_id", "content_hash", "prev_hash", "record_hash")
            ledger = sa.table("ledger", *(sa.column(c) for c in cols))
            prev = chain.GENESIS
            entries = con.execute(sa.select(ledger).order_by(ledger.c.seq)).fetchall()
            for e in entries:
                tt = ROW_CLASSES[e.table_name].__table__
                row = con.execute(sa.select(tt).where(tt.c.id == e.row_id)).one()
                content = chain.content_hash(dict(row._mapping))
                digest = chain.record_hash(prev, e.table_name, e.row_id, content)
                con.execute(
                    sa.update(ledger)
                    .where(ledger.c.seq == e.seq)
                    .values(content_hash=content, prev_hash=prev, record_hash=digest)
                )
                prev = digest
            con.exec_driver_sql(f"UPDATE head SET seq = {len(entries)}, hash = '{prev}'")
    finally:
        engine.dispose()


def truncate_and_regenesis(url: str) -> None:
    """PostgreSQL: TRUNCATE every table (triggers dropped first), then a genesis head with the old id."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as con:
            store_id = con.exec_driver_sql("SELECT store_id FROM head").scalar_one()
            _drop_triggers(con)
            con.exec_driver_sql(f"TRUNCATE {', '.join(ATTACKED)} CASCADE")
            con.exec_driver_sql(
                f"INSERT INTO head (id, store_id, seq, hash) VALUES (1, '{store_id}', 0, '{chain.GENESIS}')"
            )
    finally:
        engine.dispose()
