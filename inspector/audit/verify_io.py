"""Reads what ``chain.verify_chain`` needs out of a store: ledger, row digests, heads, files.

Rows are streamed through Core selects (no ORM identity map), so verifying a large store does
not hold every anomaly map in memory at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import UnidentifiedImageError
from sqlalchemy import select

from inspector.audit import chain, codec, history, queries
from inspector.audit.errors import CheckpointError
from inspector.audit.schema import (
    ROW_CLASSES,
    EventRow,
    HeadRow,
    InspectionRow,
    LedgerRow,
    UserRow,
)
from inspector.images import frame_sha256

if TYPE_CHECKING:
    from inspector.audit.store import AuditStore

USER_EVENTS = ("user_created", "user_changed")


def _json(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError:
        return {}  # an edited event; the chain walk reports it
    return doc if isinstance(doc, dict) else {}


def load_checkpoint(path: str | os.PathLike[str], store_id: str) -> chain.HeadClaim:
    """Reads a checkpoint file; refuses one taken from another database."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        count, digest, sid = int(doc["count"]), str(doc["hash"]), str(doc["store_id"])
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read checkpoint ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{p}: not an inspector audit checkpoint") from None
    if sid != store_id:
        raise CheckpointError(
            f"{p}: checkpoint of another audit database (store {sid[:8]}, this one is {store_id[:8]})"
        )
    return chain.HeadClaim(f"checkpoint {p.name}", count, digest)


def _sidecar(
    store: AuditStore, allow_missing: bool, warnings: list[str], extra: list[chain.Problem]
) -> chain.HeadClaim | None:
    """The head file, failing closed: missing, unreadable or foreign is a problem unless waived."""
    path = store.sidecar_path
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("store_id") != store.store_id:
            other = str(doc.get("store_id"))[:8]
            why = f"{path.name} belongs to another store ({other}, this one is {store.store_id[:8]})"
        else:
            return chain.HeadClaim(f"head file {path.name}", int(doc["count"]), str(doc["hash"]))
    except FileNotFoundError:
        why = f"{path.name} is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        why = f"{path.name} is unreadable"
    if allow_missing:
        warnings.append(
            f"head file waived: {why}; truncation is only checked against the database head and checkpoints"
        )
    else:
        extra.append(
            chain.Problem(
                "anchor",
                "head",
                None,
                None,
                f"{why}: the newest records could have been removed without trace "
                "(check against a checkpoint; --allow-missing-head accepts this, and logs it)",
            )
        )
    return None


def _model_problems(store: AuditStore, models: dict[int, dict[str, Any]], active: int | None) -> list[chain.Problem]:
    """The active model's directory, where it exists here, must still match its registration.

    Only the active one: it is what stations load, and re-hashing every old model's memory bank
    on each verify would cost more than it tells (an old folder may legitimately be reused).
    """
    from inspector.audit.model_files import differences

    m = models.get(active) if active is not None else None
    if m is None or not m["files_json"] or not Path(m["model_dir"]).is_dir():
        return []  # none active, registered without files (before 0002, by hand), or on another machine
    diff = differences(m["model_dir"], json.loads(m["files_json"]))
    if not diff:
        return []
    more = f" (+{len(diff) - 1} more)" if len(diff) > 1 else ""
    return [
        chain.Problem(
            "edited",
            "model_files",
            active,
            None,
            f"model v{active}'s directory no longer matches its registration: {diff[0]}{more}; stations refuse it",
        )
    ]


def _frame_problems(store: AuditStore, rows: list[Any], full: bool) -> list[chain.Problem]:
    problems = []
    for iid, rel, digest in rows:
        path = codec.locate_frame(store.frames_dir, store.db_path, rel, digest)
        if not path.is_file():
            problems.append(
                chain.Problem(
                    "deleted",
                    "frames",
                    iid,
                    None,
                    f"frame file of inspection {iid} is missing: {path}",
                )
            )
            continue
        if full:
            try:
                ok = frame_sha256(codec.load_frame(path)) == digest
            except (OSError, UnidentifiedImageError):
                ok = False
            if not ok:
                problems.append(
                    chain.Problem(
                        "edited",
                        "frames",
                        iid,
                        None,
                        f"frame file of inspection {iid} was altered: {path}",
                    )
                )
    return problems


FIELDS = {
    "events": ("kind", "actor", "details_json"),
    "decisions": (
        "user_id",
        "inspection_id",
        "decision",
        "supersedes_id",
        "session_id",
        "user_name",
        "user_role",
    ),
    "inspections": ("model_version_id", "threshold", "score", "verdict"),
    "model_versions": ("thresholds_json", "files_json", "model_dir", "trained_by"),
}


def _fields(table: str, row: Any) -> dict[str, Any]:
    f = {k: getattr(row, k) for k in FIELDS[table]}
    if table == "events":
        f["details"] = _json(f.pop("details_json"))
    elif table == "model_versions":
        f["threshold"] = queries.default_threshold(_json(f["thresholds_json"]))
    return f


def _replay(
    entries: list[chain.Entry], fields: dict[tuple[str, int], tuple[Any, dict[str, Any]]]
) -> list[chain.Problem]:
    """Walks the chain in order and checks every record against the state at its moment."""
    legacy = any(
        f["kind"] == "schema_upgraded" and str(f["details"].get("from_revision") or "") < history.STRICT_FROM_REVISION
        for (table, _), (_, f) in fields.items()
        if table == "events"
    )
    h = history.History(strict=not legacy)
    problems: list[chain.Problem] = []
    for e in entries:
        got = fields.get((e.table, e.row_id))
        if got is not None:
            problems += h.check(history.Record(e.seq, e.table, e.row_id, got[0], got[1]))
    return problems


def collect(
    store: AuditStore, checkpoint: str | os.PathLike[str] | None, frames: bool, allow_missing_head: bool = False
) -> chain.VerifyResult:
    """Loads everything verify needs in one read transaction and runs the pure checks."""
    warnings: list[str] = []
    heads: list[chain.HeadClaim] = []
    extra: list[chain.Problem] = []
    if checkpoint is not None:
        heads.append(load_checkpoint(checkpoint, store.store_id))
    with store._read() as s:
        entries = [
            chain.Entry(r.seq, r.table_name, r.row_id, r.content_hash, r.prev_hash, r.record_hash)
            for r in s.execute(select(LedgerRow.__table__).order_by(LedgerRow.seq))
        ]
        digests: dict[tuple[str, int], str] = {}
        fields: dict[tuple[str, int], tuple[Any, dict[str, Any]]] = {}
        for table, cls in ROW_CLASSES.items():
            q = select(cls.__table__).execution_options(yield_per=256)
            for row in s.execute(q):
                digests[(table, row.id)] = chain.content_hash(dict(row._mapping))
                fields[(table, row.id)] = (row.created_at, _fields(table, row))
        head = s.get(HeadRow, 1)
        if head is None:
            extra.append(chain.Problem("deleted", "head", 1, None, "the chain head row was deleted"))
        else:
            heads.append(chain.HeadClaim("database head", head.seq, head.hash, exact=True))
        users = {
            u.id: {
                "name": u.name,
                "role": u.role,
                "active": u.active,
                "password_digest": chain.sha256_text(u.password_hash),
            }
            for u in s.scalars(select(UserRow))
        }
        events = [
            (e.kind, _json(e.details_json))
            for e in s.execute(
                select(EventRow.kind, EventRow.details_json).where(EventRow.kind.in_(USER_EVENTS)).order_by(EventRow.id)
            )
        ]
        t = InspectionRow.__table__
        frame_rows = list(s.execute(select(t.c.id, t.c.frame_path, t.c.frame_sha256)))
        stack, _, _ = queries.activation_stack(s)
    side = _sidecar(store, allow_missing_head, warnings, extra) if entries or (head and head.seq) else None
    if side is not None:
        heads.append(side)
    extra += chain.replay_users(users, events)
    extra += _replay(entries, fields)
    models = {rid: f for (table, rid), (_, f) in fields.items() if table == "model_versions"}
    extra += _model_problems(store, models, stack[-1] if stack else None)
    extra += _frame_problems(store, frame_rows, frames)
    result = chain.verify_chain(entries, digests, heads, extra)
    result.warnings = warnings
    return result
