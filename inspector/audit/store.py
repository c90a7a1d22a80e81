"""The audit store: the one module that owns the audit database.

Everything SQLite-specific is in this file (pragmas, ``BEGIN IMMEDIATE``, error texts), so a
PostgreSQL URL only needs its driver. Writes go through ``_write``: one transaction that appends
the row, its ledger entry and the new head, retried while another process holds the write lock,
and on a read-only / full / unreachable database handed to the retry queue instead of lost.
Reads use deferred transactions, so a read-only copy of the database can still be verified.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import platformdirs
import sqlalchemy as sa
from sqlalchemy import event, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from inspector.audit import chain, limits
from inspector.audit.errors import (
    AuditError,
    AuthenticationError,
    CheckpointError,
    NotFound,
    PermissionDenied,
    RecordQueued,
    SchemaVersionError,
    StoreOpenError,
    StoreUnavailable,
    ValidationError,
)
from inspector.audit.governance import GovernanceMixin
from inspector.audit.recording import RecordingMixin, replay
from inspector.audit.records import FlushResult, Head
from inspector.audit.retry_queue import RetryQueue
from inspector.audit.schema import Base, EventRow, HeadRow, LedgerRow, row_columns
from inspector.audit.witness import Witness
from inspector.settings import data_dir

__all__ = [
    "AuditError",
    "AuditStore",
    "AuthenticationError",
    "CheckpointError",
    "NotFound",
    "PermissionDenied",
    "RecordQueued",
    "SchemaVersionError",
    "StoreOpenError",
    "StoreUnavailable",
    "ValidationError",
    "resolve_url",
]

T = TypeVar("T")
BUSY_TIMEOUT_S = 10.0
LOCK_PATIENCE_S = 60.0
MIGRATIONS = Path(__file__).with_name("migrations")
HEAD_REVISION = "0003"  # the newest of migrations/versions; a test holds it equal to alembic's head
UNAVAILABLE = (
    "readonly",
    "read-only",
    "disk is full",
    "disk i/o",
    "unable to open",
    "no space",
    "locked",
    "busy",
    "could not connect",
    "connection refused",
    "server closed",
)
FRAMES_ENV = "INSPECTOR_FRAMES"  # the shared frame store every station mounts (content-addressed)
WITNESS_ENV = "INSPECTOR_WITNESS_DIR"  # where this station keeps the heads it saw ("off": none)
PG_RETRY = ("40001", "40P01", "55P03")  # serialization failure, deadlock, lock not available


def default_url() -> str:
    return "sqlite:///" + str(Path(platformdirs.user_data_dir("inspector")) / "audit.db")


def resolve_url(url: str | os.PathLike[str] | None) -> tuple[str, Path | None]:
    """A URL, a plain file path, or None (the user data folder) -> (SQLAlchemy URL, db file)."""
    text = default_url() if url is None else os.fspath(url)
    if "://" not in text:
        text = "sqlite:///" + str(Path(text).expanduser().resolve())
    try:
        parsed = make_url(text)
    except sa_exc.ArgumentError as exc:
        raise StoreOpenError(f"{text}: not a database URL ({exc})") from None
    if parsed.get_backend_name() != "sqlite":
        return text, None
    if not parsed.database or parsed.database == ":memory:":
        raise StoreOpenError("the audit store needs a database file, not an in-memory SQLite")
    return text, Path(parsed.database)


def _sqlite_engine(url: str) -> Engine:
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")  # no-op (returns the old mode) on read-only files
        cur.execute("PRAGMA synchronous=FULL")  # a returned id survives kill -9 and power loss
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front: the head read and the append cannot interleave
        # with another process, and a waiting writer uses the busy timeout instead of failing.
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('inspector_begin', 'IMMEDIATE')}")

    return engine


def _server_args(url: str) -> dict[str, Any]:
    """A server that does not answer fails in seconds (then the record is queued), not minutes."""
    return {"connect_timeout": 5} if make_url(url).get_backend_name() == "postgresql" else {}


def _message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(getattr(orig, "strerror", None) or orig).strip()


def is_unavailable(exc: BaseException) -> bool:
    """True for failures a retry later can cure (read-only, full, unreachable, locked).

    On a server every OperationalError / InterfaceError is one (PostgreSQL's AdminShutdown,
    a dropped connection, a refused login during a restart): the record is queued, never raised raw.
    """
    if isinstance(exc, OSError | sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and not _sqlite_error(exc):
        if exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
    if isinstance(exc, sa_exc.OperationalError) or getattr(exc, "connection_invalidated", False):
        return any(k in _message(exc).lower() for k in UNAVAILABLE)
    return False


def _sqlite_error(exc: sa_exc.DBAPIError) -> bool:
    return type(exc.orig).__module__.startswith("sqlite3")


def _is_locked(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and getattr(exc.orig, "sqlstate", None) in PG_RETRY:
        return True
    return isinstance(exc, sa_exc.OperationalError) and any(k in _message(exc).lower() for k in ("locked", "busy"))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class AuditStore(GovernanceMixin, RecordingMixin):
    """Tamper-evident, append-only record of inspections, decisions and events.

    Open with ``AuditStore.open(url)``; every mutating method takes the acting ``User`` (from
    ``authenticate``) and checks its role in the database. Methods documented as read-only never
    write. Usable from several threads and processes at once.
    """

    def __init__(
        self,
        engine: Engine,
        url: str,
        db_path: Path | None,
        frames_dir: Path,
        queue_dir: Path | None,
        witness: Witness | None = None,
    ) -> None:
        self.engine = engine
        self.url = url
        self.db_path = db_path
        self.frames_dir = frames_dir
        self.queue = RetryQueue(queue_dir)
        self.witness = witness
        self._sqlite = engine.dialect.name == "sqlite"
        self._reader = engine.execution_options(inspector_begin="DEFERRED") if self._sqlite else engine
        self._local = threading.local()
        self.store_id = ""
        self._sessions: dict[str, str] = {}  # login sessions this store issued: session id -> user id

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        url: str | os.PathLike[str] | None = None,
        frames_dir: str | os.PathLike[str] | None = None,
        witness_dir: str | os.PathLike[str] | None = None,
    ) -> AuditStore:
        """Opens (creating and migrating if needed) the store at ``url`` or a plain file path.

        Frames go to ``frames_dir``, else $INSPECTOR_FRAMES (a shared mount), else beside the
        database file (``<db>.frames/``) or in the user data folder for a server. A server store's
        heads are witnessed in ``witness_dir``, else $INSPECTOR_WITNESS_DIR, else the user data folder.

        Raises:
            StoreOpenError: corrupt file, not an audit database, folder not creatable.
            SchemaVersionError: the database was written by a newer inspector.
        """
        sa_url, db_path = resolve_url(url)
        if db_path is not None:
            if db_path.is_dir():
                raise StoreOpenError(f"{db_path}: is a folder, not a database file")
            try:
                db_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreOpenError(f"{db_path.parent}: cannot create ({exc.strerror})") from None
        frames_dir = frames_dir or os.environ.get(FRAMES_ENV) or None
        frames = Path(frames_dir) if frames_dir else Path(f"{db_path}.frames") if db_path else data_dir() / "frames"
        try:
            engine = (
                _sqlite_engine(sa_url)
                if db_path is not None
                else sa.create_engine(sa_url, pool_pre_ping=True, connect_args=_server_args(sa_url))
            )
        except (sa_exc.ArgumentError, ImportError) as exc:
            hint = " (pip install 'inspector[postgres]')" if "psycopg" in str(exc) else ""
            raise StoreOpenError(f"{make_url(sa_url).render_as_string()}: cannot open ({exc}){hint}") from None
        store = cls(engine, sa_url, db_path, frames, Path(f"{db_path}.queue") if db_path else None)
        try:
            store._migrate()
            with store._read() as s:
                head = s.get(HeadRow, 1)
                store.store_id = head.store_id if head else ""
        except (sa_exc.DatabaseError, StoreUnavailable) as exc:
            engine.dispose()
            hint = " (the owner runs 'inspector audit init-postgres' first)" if "permission denied" in str(exc) else ""
            raise StoreOpenError(
                f"{store._where()}: cannot be opened as an audit database ({_message(exc)}){hint}"
            ) from None
        except BaseException:
            engine.dispose()
            raise
        if db_path is None:  # a server's queue is kept per store: a flush can only reach its own store
            store.queue = RetryQueue(data_dir() / "queue" / store.store_id)
            wdir = witness_dir or os.environ.get(WITNESS_ENV) or data_dir() / "witness"
            store.witness = None if str(wdir) == "off" else Witness(Path(wdir))
        elif witness_dir:
            store.witness = Witness(Path(witness_dir))
        return store

    def _at_head(self) -> bool:
        """The schema is current, read without alembic: its import is 0.2 s of every command's start-up."""
        try:
            with self._reader.connect() as conn:
                rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        except sa_exc.DBAPIError:
            return False  # a new store, or one that cannot be read: the full check below says why
        return [r[0] for r in rows] == [HEAD_REVISION]

    def _migrate(self) -> None:
        if self._at_head():
            return
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        script = ScriptDirectory.from_config(cfg)
        known = {rev.revision for rev in script.walk_revisions()}
        head = script.get_current_head()

        def current(conn: sa.Connection) -> str | None:
            rev = MigrationContext.configure(conn).get_current_revision()
            tables = set(sa.inspect(conn).get_table_names())
            if rev is None and tables - {"alembic_version"}:
                raise StoreOpenError(
                    f"{self.db_path or self.url}: holds tables "
                    f"({', '.join(sorted(tables)[:4])}) but is not an audit database"
                )
            if rev is not None and rev not in known:
                raise SchemaVersionError(
                    f"{self.db_path or self.url}: schema revision {rev!r} is newer than this "
                    f"inspector knows (up to {head!r}); upgrade inspector to open it"
                )
            return rev

        with self._reader.connect() as conn, conn.begin():
            if current(conn) == head:
                return
        with self.engine.connect() as conn, conn.begin():  # write lock: one migrator at a time
            before = current(conn)
            if before != head:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                if before is not None:
                    self._mark_upgrade(conn, before, str(head))

    def _mark_upgrade(self, conn: sa.Connection, before: str, after: str) -> None:
        """Chains a ``schema_upgraded`` event in the migration's transaction: verify holds the
        records before it to the rules of their own schema (no sessions, caller clocks)."""
        with Session(bind=conn) as s:
            h = s.get(HeadRow, 1)
            if h is None or h.seq == 0:
                return  # nothing written under the old schema
            self._event(s, "schema_upgraded", None, from_revision=before, to_revision=after)
            s.flush()
        self._local.head = None  # the head file catches up with the next write

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One atomic unit: store calls made inside commit together or not at all.

        Nests with savepoints. On SQLite it holds the write lock, so keep it short.
        """
        outer: Session | None = getattr(self._local, "session", None)
        if outer is not None:
            with outer.begin_nested():
                yield outer
            return
        session = Session(self.engine, expire_on_commit=False)
        self._local.session = session
        self._local.head = None
        try:
            with session.begin():
                yield session
        finally:
            self._local.session = None
            session.close()
        pending, self._local.head = self._local.head, None
        if pending is not None:
            self._write_sidecar(*pending)
            self._witness(*pending)

    @contextmanager
    def _read(self) -> Iterator[Session]:
        outer: Session | None = getattr(self._local, "session", None)
        if outer is not None:
            yield outer
            return
        try:
            with Session(self._reader, expire_on_commit=False) as s, s.begin():
                yield s
        except sa_exc.DBAPIError as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"{self._where()}: cannot read ({_message(exc)})") from exc
            raise

    @property
    def _nested(self) -> bool:
        return getattr(self._local, "session", None) is not None

    def _write(self, fn: Callable[[Session], T]) -> T:
        """Runs ``fn`` in a write transaction, waiting out other writers; names failures."""
        deadline = time.monotonic() + LOCK_PATIENCE_S
        delay = 0.02
        while True:
            try:
                with self.transaction() as s:
                    return fn(s)
            except (sa_exc.IntegrityError, sa_exc.DataError) as exc:
                raise ValidationError(f"refused by the database: {_message(exc).splitlines()[0]}") from None
            except sa_exc.DBAPIError as exc:
                if _is_locked(exc) and not self._nested and time.monotonic() < deadline:
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.5)
                    continue
                if is_unavailable(exc):
                    raise StoreUnavailable(f"{self._where()}: cannot write ({_message(exc)})") from exc
                if getattr(exc.orig, "sqlstate", None) == "42501":  # insufficient privilege
                    raise PermissionDenied(
                        f"{self._where()}: {_message(exc).splitlines()[0]} (the owner grants with "
                        "'inspector audit init-postgres')"
                    ) from None
                raise

    def _where(self) -> str:
        return str(self.db_path) if self.db_path else make_url(self.url).render_as_string()  # password hidden

    def _witness(self, count: int, digest: str) -> None:
        if self.witness is not None:
            try:
                self.witness.saw(self.store_id, count, digest)
            except Exception as exc:  # the record is committed: nothing after that may fail the call
                warnings.warn(f"witness log {self.witness.folder} stopped: {exc}", stacklevel=2)
                self.witness = None  # the central head stays authoritative; a gap only weakens the witness

    # ------------------------------------------------------------------ chain
    def _append(self, s: Session, row: Base) -> int:
        """Inserts an append-only row and links it into the chain, in the open transaction.

        The row's ``created_at`` is the store's time, never the caller's, and never earlier than
        the newest record's (a clock stepped back by NTP repeats the last time instead).
        """
        limits.check_row(row)  # the same rules on every dialect, before the database sees the row
        head = s.execute(select(HeadRow).where(HeadRow.id == 1).with_for_update()).scalar_one()
        now = datetime.now(UTC)
        if head.last_at is not None and now < head.last_at:
            now = head.last_at
        row.created_at = now  # type: ignore[attr-defined]
        s.add(row)
        s.flush()
        table = row.__tablename__
        content = chain.content_hash(row_columns(row))
        new_hash = chain.record_hash(head.hash, table, row.id, content)  # type: ignore[attr-defined]
        s.add(
            LedgerRow(
                seq=head.seq + 1,
                table_name=table,
                row_id=row.id,  # type: ignore[attr-defined]
                content_hash=content,
                prev_hash=head.hash,
                record_hash=new_hash,
            )
        )
        head.seq += 1
        head.hash = new_hash
        head.last_at = now
        s.flush()
        self._local.head = (head.seq, new_hash)
        return int(row.id)  # type: ignore[attr-defined]

    def _event(self, s: Session, kind: str, actor: str | None, **details: Any) -> int:
        row = EventRow(
            kind=kind,
            actor=actor,
            details_json=chain.canonical_json(details),
            created_at=datetime.now(UTC),
        )
        return self._append(s, row)

    @property
    def sidecar_path(self) -> Path | None:
        """``<db>.head.json``: the head outside the database, out of reach of a row deletion."""
        return Path(f"{self.db_path}.head.json") if self.db_path else None

    def _write_sidecar(self, count: int, digest: str) -> None:
        path = self.sidecar_path
        if path is None:
            return
        try:
            with _file_lock(Path(f"{self.db_path}.head.lock")):
                try:
                    old = json.loads(path.read_text(encoding="utf-8"))
                    if old.get("store_id") == self.store_id and int(old.get("count", -1)) >= count:
                        return  # another process already wrote a newer head
                except (OSError, ValueError):
                    pass
                _atomic_write(
                    path,
                    json.dumps({"store_id": self.store_id, "count": count, "hash": digest}) + "\n",
                )
        except OSError:
            pass  # the database head stays authoritative; verify warns about a lagging file

    def head(self) -> Head:
        """Read-only: the newest record's count and hash, as a checkpoint would hold them."""
        with self._read() as s:
            h = s.get(HeadRow, 1)
            if h is None:
                raise StoreOpenError(f"{self._where()}: the chain head row is missing")
            return Head(
                store_id=h.store_id,
                count=h.seq,
                hash=h.hash,
                taken_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )

    def checkpoint(self, path: str | os.PathLike[str]) -> Head:
        """Writes the head to ``path`` for an auditor to keep elsewhere; verify compares later."""
        h = self.head()
        doc = {
            "format": "inspector-audit-checkpoint/1",
            "store_id": h.store_id,
            "count": h.count,
            "hash": h.hash,
            "taken_at": h.taken_at,
        }
        try:
            _atomic_write(Path(path), json.dumps(doc, indent=2) + "\n")
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot write checkpoint ({exc.strerror})") from None
        return h

    def verify(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        *,
        frames: bool = False,
        allow_missing_head: bool = False,
        witness: str | os.PathLike[str] | None = None,
    ) -> chain.VerifyResult:
        """Walks the chain and replays it; names the first broken record and what happened to it.

        Read-only, except that ``allow_missing_head`` chains a ``head_file_waived`` event when
        the head file is in fact missing or foreign (the choice is part of the record).

        Args:
            checkpoint: a file from ``checkpoint()``; records it counted must still be there.
            frames: also re-hash every stored frame file (slow on large stores).
            allow_missing_head: a missing or foreign head file is a warning instead of a problem.
            witness: a folder of stations' exported witness logs; every head in it must still hold.
        """
        from inspector.audit.verify_io import collect

        result = collect(self, checkpoint, frames, allow_missing_head)
        waived = [w for w in result.warnings if w.startswith("head file waived")]
        if waived:
            try:
                self._write(lambda s: self._event(s, "head_file_waived", None, warning=waived[0]))
            except AuditError as exc:
                result.warnings.append(f"the waiver could not be logged ({exc})")
        if witness is not None:
            from inspector.audit.witness_check import apply_witnesses

            apply_witnesses(self, result, Path(witness))
        return result

    # ------------------------------------------------------------------ retry queue
    @property
    def queue_length(self) -> int:
        """Records waiting for the database (on disk, or in memory when the disk is full)."""
        return len(self.queue)

    def _enqueue(self, record: dict[str, Any], exc: StoreUnavailable) -> RecordQueued:
        record = {**record, "store_id": self.store_id}  # replay refuses it anywhere else
        self.queue.put(record)
        n = len(self.queue)
        where = " (in memory only: the disk refused it too)" if self.queue.in_memory else ""
        uid = record.get("uid") or record.get("fields", {}).get("uid")
        return RecordQueued(f"{exc}; the {record['kind']} waits in the retry queue{where}, {n} waiting", n, uid)

    def flush_queue(self) -> FlushResult:
        """Retries queued records oldest first; stops at the first that still cannot be written."""
        result = FlushResult()
        self.queue.spill()
        for handle, record in self.queue.items():
            if record.get("store_id", self.store_id) != self.store_id:
                self.queue.release(handle)  # another store's record: left for that store, never replayed here
                result.skipped.append(f"{record.get('kind')} {record.get('uid')}: for store {record['store_id']}")
                continue
            try:
                table, row_id = replay(self, record)
            except StoreUnavailable:
                self.queue.release(handle)
                break
            except AuditError as exc:
                self.queue.reject(handle, str(exc))
                result.rejected.append(f"{record.get('kind')} {record.get('uid')}: {exc}")
                continue
            self.queue.done(handle)
            result.recorded.append((table, row_id))
        result.remaining = len(self.queue)
        return result

    def close(self) -> None:
        """Releases connections; in-memory queued records are spilled to disk if it allows."""
        self.queue.spill()
        self.engine.dispose()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock across processes (POSIX); a no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
