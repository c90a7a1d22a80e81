"""Records that could not be written wait here, on disk where possible, until the store flushes.

One file per record in ``<db>.queue/`` (written to a temp name, fsynced, renamed), named by time
so replay keeps the order. When even that folder cannot be written (the disk is full), the record
stays in memory and ``len()`` still counts it: nothing is dropped silently. Each record carries a
uid that the store writes with it, so a replay after a crash between commit and unlink is skipped
instead of duplicated. A flusher claims a file by renaming it; a claim whose process died returns
to the queue.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SUFFIX = ".json"
CLAIM = ".claimed-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class RetryQueue:
    """A FIFO of JSON-able records; the store decides what a record means."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._memory: list[dict[str, Any]] = []
        self.rejected_in_memory: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self._memory) + len(self._files())

    @property
    def in_memory(self) -> int:
        """Records that could not reach the disk: lost if the process dies before a flush."""
        return len(self._memory)

    def put(self, record: dict[str, Any]) -> None:
        """Adds a record; falls back to memory when the folder cannot be written."""
        if self.folder is not None:
            try:
                self._write(record)
                return
            except OSError:
                pass
        self._memory.append(record)

    def _write(self, record: dict[str, Any]) -> None:
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        tmp = self.folder / f".{name}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.folder / name)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def _files(self) -> list[Path]:
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.name.endswith(SUFFIX) or CLAIM in p.name)

    def _release_dead_claims(self) -> None:
        for p in self._files():
            if CLAIM in p.name:
                base, pid = p.name.rsplit(CLAIM, 1)
                if pid.isdigit() and not _alive(int(pid)) and int(pid) != os.getpid():
                    try:
                        os.replace(p, p.with_name(base))
                    except OSError:
                        pass

    def spill(self) -> None:
        """Moves in-memory records to disk once the disk takes writes again."""
        while self._memory and self.folder is not None:
            try:
                self._write(self._memory[0])
            except OSError:
                return
            self._memory.pop(0)

    def items(self) -> Iterator[tuple[Any, dict[str, Any]]]:
        """Yields (handle, record) oldest first, memory first (it is older than anything on disk).

        Pass the handle to ``done`` once the record is in the database.
        """
        for record in list(self._memory):
            yield ("mem", id(record)), record
        self._release_dead_claims()
        for p in self._files():
            if CLAIM in p.name:
                continue
            claimed = p.with_name(p.name + CLAIM + str(os.getpid()))
            try:
                os.replace(p, claimed)
            except FileNotFoundError:
                continue  # another process took it
            try:
                record = json.loads(claimed.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                os.replace(claimed, claimed.with_name(claimed.name + ".unreadable"))
                continue
            yield ("file", claimed), record

    def done(self, handle: Any) -> None:
        """Forgets a record that reached the database."""
        where, ref = handle
        if where == "mem":
            self._memory = [r for r in self._memory if id(r) != ref]
        else:
            Path(ref).unlink(missing_ok=True)

    def release(self, handle: Any) -> None:
        """Puts a claimed record back (the database is still unavailable)."""
        where, ref = handle
        if where == "file":
            p = Path(ref)
            try:
                os.replace(p, p.with_name(p.name.rsplit(CLAIM, 1)[0]))
            except OSError:
                pass

    def reject(self, handle: Any, reason: str) -> None:
        """Parks a record the database refused for good (kept beside the queue, never deleted)."""
        where, ref = handle
        if where == "mem":
            record = next((r for r in self._memory if id(r) == ref), None)
            self.done(handle)
            if record is not None and self.folder is not None:
                record = {**record, "rejected": reason}
                try:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    (self.folder / f"rejected-{uuid.uuid4().hex}.jsonl").write_text(json.dumps(record))
                except OSError:
                    self.rejected_in_memory.append(record)  # kept, never replayed
        else:
            p = Path(ref)
            os.replace(p, p.with_name("rejected-" + p.name.rsplit(CLAIM, 1)[0] + "l"))
