"""Canonical JSON, the sha256 hash chain, and its verification, as pure functions over plain data.

Design (documented here because auditors read it):

* Every appended record (model version, inspection, decision, event) gets one row in ``ledger``:
  ``seq`` (1, 2, 3... one global sequence over all tables), ``table_name``, ``row_id``,
  ``content_hash`` = sha256 of the canonical JSON of the row's columns except its id, and
  ``record_hash`` = sha256(prev_hash + canonical JSON of {table, row_id, content_hash}).
  ``prev_hash`` of the first record is 64 zeros. Hashing the content digest instead of the content
  is equivalent (sha256 is collision resistant) and lets verify tell *edited* from *reordered*.
* The head (count, hash of the newest record) is kept three times: a ``head`` row in the database
  updated in the same transaction (triggers forbid deleting it or moving it backwards), a sidecar
  file ``<db>.head.json`` replaced atomically after each commit (a plain row deletion cannot reach
  it), and any checkpoint an auditor exported. Truncating the newest records shows as a head that
  claims more records than the chain holds. An attacker who rewrites all three is still caught by
  a checkpoint kept off the machine; without a secret key nothing local can do better.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal

GENESIS = "0" * 64
Kind = Literal[
    "edited",
    "deleted",
    "inserted",
    "reordered",
    "truncated",
    "unauthorised",  # an actor without the role, activity or login the record needs at that moment
    "conflict",  # a second current decision, or a threshold or model not the one in force
    "time",  # a record stamped earlier than the one before it
    "anchor",  # a head file missing or from another store (fails closed)
]
# Columns added by later schema revisions: hashed only when set, so rows written before the
# column existed keep their content hash. New rows always set them, so clearing one is an edit.
LATER_COLUMNS = frozenset({"user_name", "user_role", "session_id", "files_json", "backbone_sha256"})


def canonical_value(value: Any) -> Any:
    """Maps a column value to a JSON value that reads back identically from any database."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "sha256:" + hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN/inf; the store refuses them, this keeps verify total
    return value


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: one byte string per value, on every machine."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_hash(columns: Mapping[str, Any]) -> str:
    """Digest of a row's columns (the id excluded, so a row moved to another id is recognised)."""
    return sha256_text(
        canonical_json(
            {k: canonical_value(v) for k, v in columns.items() if k != "id" and not (v is None and k in LATER_COLUMNS)}
        )
    )


def record_hash(prev_hash: str, table: str, row_id: int, content: str) -> str:
    """Links one record to the previous one; the sequence number is implied by the links."""
    return sha256_text(prev_hash + canonical_json({"content_hash": content, "row_id": row_id, "table": table}))


@dataclass(frozen=True)
class Entry:
    """One ledger row as read back from the database."""

    seq: int
    table: str
    row_id: int
    content_hash: str
    prev_hash: str
    record_hash: str


@dataclass(frozen=True)
class HeadClaim:
    """A (count, hash) the chain must still reach: the db head row, the sidecar or a checkpoint.

    ``exact`` heads are updated with the chain itself, so records beyond them are forged;
    the sidecar may lag after a crash between commit and file write, so it is a lower bound.
    """

    source: str
    count: int
    hash: str
    exact: bool = False


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with one record, in words an auditor can act on."""

    kind: Kind
    table: str | None
    row_id: int | str | None
    seq: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass
class VerifyResult:
    """Outcome of a walk over the chain; ``first`` is the earliest broken record."""

    records: int
    head_hash: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    witnessed: str = ""  # what ``verify --witness`` checked, for the report

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def summary(self) -> str:
        """One line for the CLI and the PDF."""
        if self.ok:
            return f"chain intact: {self.records} records, head {self.head_hash[:16]}"
        extra = f" (+{len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
        return f"chain BROKEN at {self.first}{extra}"


def _where(e: Entry) -> str:
    return f"record #{e.seq} ({e.table} {e.row_id})"


def walk(entries: Sequence[Entry], rows: Mapping[tuple[str, int], str]) -> list[Problem]:
    """Checks links, hashes and the rows they name; one problem per broken ledger entry."""
    known = {e.record_hash for e in entries}
    by_content = {(e.table, e.content_hash): e for e in entries}
    problems: list[Problem] = []
    prev = GENESIS
    for i, e in enumerate(entries):
        expected = i + 1
        p: Problem | None = None
        if record_hash(e.prev_hash, e.table, e.row_id, e.content_hash) != e.record_hash:
            p = Problem("edited", e.table, e.row_id, e.seq, f"{_where(e)}: its ledger entry was altered")
        elif e.prev_hash != prev:
            if e.prev_hash in known:
                p = Problem(
                    "reordered",
                    e.table,
                    e.row_id,
                    e.seq,
                    f"{_where(e)} follows a different record than when it was written",
                )
            else:
                p = Problem(
                    "deleted",
                    e.table,
                    e.row_id,
                    e.seq,
                    f"the record before {_where(e)} is missing from the chain",
                )
        elif e.seq != expected:
            p = Problem(
                "deleted",
                e.table,
                e.row_id,
                expected,
                f"ledger numbers jump from #{expected - 1} to #{e.seq}",
            )
        if p is None:
            actual = rows.get((e.table, e.row_id))
            if actual is None:
                p = Problem("deleted", e.table, e.row_id, e.seq, f"{_where(e)}: the row was deleted")
            elif actual != e.content_hash:
                other = by_content.get((e.table, actual))
                if other is not None and other is not e:
                    p = Problem(
                        "reordered",
                        e.table,
                        e.row_id,
                        e.seq,
                        f"{_where(e)} now holds the content of {_where(other)}",
                    )
                else:
                    p = Problem(
                        "edited",
                        e.table,
                        e.row_id,
                        e.seq,
                        f"{_where(e)}: the row's content was changed",
                    )
        if p is not None:
            problems.append(p)
        prev = e.record_hash
    referenced = {(e.table, e.row_id) for e in entries}
    for table, row_id in sorted(set(rows) - referenced):
        problems.append(
            Problem(
                "inserted",
                table,
                row_id,
                None,
                f"{table} {row_id} is not in the chain: it was added outside the store",
            )
        )
    return problems


def check_heads(entries: Sequence[Entry], heads: Iterable[HeadClaim]) -> list[Problem]:
    """Compares the chain's end with each head: fewer records than a head knew is truncation."""
    n = len(entries)
    problems: list[Problem] = []
    for h in heads:
        if h.count > n:
            problems.append(
                Problem(
                    "truncated",
                    None,
                    None,
                    n + 1,
                    f"the {h.source} counts {h.count} records but the chain ends at #{n}: "
                    f"the newest {h.count - n} were removed",
                )
            )
        elif h.count > 0 and entries[h.count - 1].record_hash != h.hash:
            e = entries[h.count - 1]
            problems.append(
                Problem(
                    "edited",
                    e.table,
                    e.row_id,
                    e.seq,
                    f"{_where(e)} does not match the {h.source}: history up to it rewritten",
                )
            )
        elif h.count == 0 and h.hash != GENESIS:
            problems.append(Problem("edited", None, None, 0, f"the {h.source} is malformed"))
        elif h.exact and n > h.count:
            e = entries[h.count]
            problems.append(
                Problem(
                    "inserted",
                    e.table,
                    e.row_id,
                    e.seq,
                    f"{_where(e)} lies beyond the {h.source} (#{h.count}): added outside the store",
                )
            )
    return problems


def verify_chain(
    entries: Sequence[Entry],
    rows: Mapping[tuple[str, int], str],
    heads: Iterable[HeadClaim] = (),
    extra: Iterable[Problem] = (),
) -> VerifyResult:
    """Walk, heads and extra problems, sorted so that the earliest comes first."""
    problems = walk(entries, rows) + check_heads(entries, heads) + list(extra)
    problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    head = entries[-1].record_hash if entries else GENESIS
    return VerifyResult(records=len(entries), head_hash=head, problems=problems)


def replay_users(
    users: Mapping[str, Mapping[str, Any]], events: Iterable[tuple[str, Mapping[str, Any]]]
) -> list[Problem]:
    """Users are mutable rows, so they are checked against the chained user events instead.

    Args:
        users: current user rows by id: name, role, active, password_digest.
        events: (kind, details) of user_created / user_changed events in chain order.
    """
    expected: dict[str, dict[str, Any]] = {}
    for kind, details in events:
        uid = details.get("user_id")
        if kind == "user_created" and isinstance(uid, str):
            expected[uid] = dict(details.get("state", {}))
        elif kind == "user_changed" and isinstance(uid, str) and uid in expected:
            expected[uid].update(details.get("changes", {}))
    problems: list[Problem] = []
    for uid in sorted(set(users) | set(expected)):
        if uid not in expected:
            problems.append(Problem("inserted", "users", uid, None, f"user {uid!r} has no user_created event"))
        elif uid not in users:
            problems.append(Problem("deleted", "users", uid, None, f"user {uid!r} was deleted"))
        else:
            diff = sorted(k for k, v in expected[uid].items() if users[uid].get(k) != v)
            if diff:
                problems.append(
                    Problem(
                        "edited",
                        "users",
                        uid,
                        None,
                        f"user {uid!r}: {', '.join(diff)} changed outside the store",
                    )
                )
    return problems
