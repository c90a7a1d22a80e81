"""Stations witness the central chain: each keeps, signs and exports the heads it saw.

Whoever owns a central database can rewrite it, triggers and head row included, consistently
enough that ``verify`` finds nothing. What they cannot rewrite is what the stations saw: after
each commit a station appends (store id, seq, record hash, time) to its own log, signed with the
station's Ed25519 key. ``audit verify --witness DIR`` replays every exported log against the
chain: a head the chain no longer reaches, or reaches with another hash, names the first record
that a witness contradicts. Certificate-transparency logs are kept honest the same way.

Log: ``<witness dir>/<store id>.jsonl``, one signed JSON line per head; the key in
``<witness dir>/station.key`` (0600). The key's fingerprint identifies the station.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inspector.audit import chain

FORMAT = "inspector-witness/1"
KEY_FILE = "station.key"


def _canonical(doc: dict[str, Any]) -> bytes:
    return chain.canonical_json({k: v for k, v in doc.items() if k != "sig"}).encode()


def _load_key(folder: Path) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = folder / KEY_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{KEY_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Ed25519PrivateKey.generate().private_bytes_raw())
        try:
            os.link(tmp, path)  # first writer wins; a concurrent one reads the winner's key
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return Ed25519PrivateKey.from_private_bytes(path.read_bytes())


def fingerprint(public_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]


class Witness:
    """A station's log of the heads it saw, one file per store, signed line by line."""

    def __init__(self, folder: Path, name: str | None = None) -> None:
        self.folder = Path(folder)
        self.name = name or os.environ.get("INSPECTOR_STATION") or socket.gethostname()
        self._key: Any = None
        self._public = ""

    def _ensure_key(self) -> None:
        if self._key is None:
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

            self._key = _load_key(self.folder)
            self._public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def saw(self, store_id: str, seq: int, digest: str) -> None:
        """Appends one signed head (one write, O_APPEND: lines from several processes never mix)."""
        if not store_id:
            return
        self._ensure_key()
        doc = {
            "format": FORMAT,
            "store_id": store_id,
            "seq": int(seq),
            "hash": digest,
            "seen_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "witness": self.name,
            "key": self._public,
        }
        doc["sig"] = self._key.sign(_canonical(doc)).hex()
        fd = os.open(self.folder / f"{store_id}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (json.dumps(doc, separators=(",", ":")) + "\n").encode())
        finally:
            os.close(fd)

    def export(self, to: Path) -> list[Path]:
        """Copies every log to ``to`` as ``<station>-<store id>.jsonl`` for the auditor."""
        to.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)
        out = []
        for log in sorted(self.folder.glob("*.jsonl")):
            dest = to / f"{safe}-{log.name}"
            dest.write_bytes(log.read_bytes())
            out.append(dest)
        return out


@dataclass(frozen=True)
class Seen:
    """One witnessed head, as read back from an exported log."""

    store_id: str
    seq: int
    hash: str
    seen_at: str
    witness: str
    key: str
    where: str


def load(folder: Path) -> tuple[list[Seen], list[str]]:
    """Every correctly signed head under ``folder``; unsigned or forged lines become warnings."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    seen: list[Seen] = []
    warnings: list[str] = []
    files = sorted(folder.rglob("*.jsonl")) if folder.is_dir() else []
    if not files:
        warnings.append(f"{folder}: no witness logs (*.jsonl) found")
    keys: dict[str, Any] = {}
    for path in files:
        bad = 0
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            try:
                doc = json.loads(line)
                if doc.get("format") != FORMAT:
                    raise ValueError("format")
                pub = keys.get(doc["key"]) or keys.setdefault(
                    doc["key"], Ed25519PublicKey.from_public_bytes(bytes.fromhex(doc["key"]))
                )
                pub.verify(bytes.fromhex(doc["sig"]), _canonical(doc))
                seen.append(
                    Seen(doc["store_id"], int(doc["seq"]), str(doc["hash"]), doc["seen_at"], doc["witness"],
                         doc["key"], f"{path.name}:{n}")
                )  # fmt: skip
            except (ValueError, KeyError, TypeError, InvalidSignature):
                bad += 1
        if bad:
            warnings.append(f"{path.name}: {bad} line(s) unreadable or wrongly signed; ignored")
    return seen, warnings


def check(entries: Sequence[chain.Entry], store_id: str, seen: Iterable[Seen]) -> list[chain.Problem]:
    """The first witnessed head the chain contradicts, named by record, or no problem."""
    seen = list(seen)
    mine = sorted((s for s in seen if s.store_id == store_id), key=lambda s: s.seq)
    if not mine:
        others = sorted({s.store_id[:8] for s in seen})
        if not others:
            return []
        return [
            chain.Problem(
                "truncated",
                None,
                None,
                1,
                f"no witness saw this store ({store_id[:8]}), they saw store(s) {', '.join(others)}: "
                "the store was re-created (or these are another store's witnesses)",
            )
        ]
    n = len(entries)
    agreed = 0
    for s in mine:
        by = f"the head witnessed by {s.witness} (key {fingerprint(s.key)}) at {s.seen_at}"
        if s.seq > n:
            return [
                chain.Problem(
                    "truncated",
                    None,
                    None,
                    n + 1,
                    f"{by} is record #{s.seq}, but the chain ends at #{n}: records were removed "
                    f"(witnesses agree up to #{agreed})",
                )
            ]
        if s.seq > 0 and entries[s.seq - 1].record_hash != s.hash:
            e = entries[s.seq - 1]
            return [
                chain.Problem(
                    "edited",
                    e.table,
                    e.row_id,
                    e.seq,
                    f"record #{e.seq} ({e.table} {e.row_id}) contradicts {by}: the chain was rewritten "
                    f"after record #{agreed} (the last witnessed head that still agrees)",
                )
            ]
        agreed = max(agreed, s.seq)
    return []
