"""The station's audit writer: inspection records written on their own thread, in order.

Writing a record costs a frame encoding and one or more fsyncs (the frame file, the database
commit, the head file), so that a returned id survives a power loss. On the frame's path that
wait is added to every frame. Here the model goes on with the next frame while one thread
writes, and the writer commits whatever is waiting as one group (``write`` receives a batch):
one commit and one head-file fsync per group instead of per frame.

Nothing is dropped: ``submit`` blocks once ``depth`` records wait (bounded memory), ``drain``
returns only when everything submitted is written (or queued by the store for retry), and an
error on the writer's thread is raised again on the next ``submit`` or ``drain``, so the stream
ends with it as before. Only records never acknowledged can be lost by a crash: a frame is
shown, and can be decided on, only once its record is written.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

J = TypeVar("J")

DEFAULT_DEPTH = 8
MAX_GROUP = 16  # records per commit: one group stays a short hold of the database's write lock


class RecordWriter(Generic[J]):
    """One thread that hands queued jobs, oldest first and in groups, to ``write``."""

    def __init__(self, write: Callable[[Sequence[J]], None], depth: int = DEFAULT_DEPTH, name: str = "audit-writer"):
        if depth < 1:
            raise ValueError(f"the writer must hold at least one record, got depth {depth}")
        self._write = write
        self.depth = depth
        self._jobs: deque[J] = deque()
        self._busy = 0  # jobs taken by the thread and not yet written
        self._error: BaseException | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Records submitted and not yet written."""
        with self._cond:
            return len(self._jobs) + self._busy

    def submit(self, job: J) -> None:
        """Queues one record; waits while ``depth`` are pending. Raises the writer's error, if any."""
        with self._cond:
            while True:
                self._raise_error()
                if self._closed:
                    raise RuntimeError("the audit writer is closed")
                if len(self._jobs) + self._busy < self.depth:
                    break
                self._cond.wait(0.5)
            self._jobs.append(job)
            self._cond.notify_all()

    def drain(self) -> None:
        """Waits until every submitted record is written; raises the writer's error, if any."""
        with self._cond:
            while (self._jobs or self._busy) and self._error is None:
                self._cond.wait(0.5)
            self._raise_error()

    def close(self) -> None:
        """Writes what is pending, then stops the thread (idempotent)."""
        try:
            self.drain()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._jobs.clear()  # the stream ends here; what follows a failed record is not written
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                while (not self._jobs or self._error is not None) and not self._closed:
                    self._cond.wait()  # after an error nothing more is written until the stream has seen it
                if not self._jobs or self._error is not None:
                    return
                group = [self._jobs.popleft() for _ in range(min(MAX_GROUP, len(self._jobs)))]
                self._busy = len(group)
            try:
                self._write(group)
            except BaseException as exc:  # handed to the stream's thread, which ends the stream with it
                with self._cond:
                    self._error = exc
            finally:
                with self._cond:
                    self._busy = 0
                    self._cond.notify_all()
