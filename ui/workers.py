"""One worker thread that turns a Qt-free function or generator into signals (superqt's idea).

Inference, training and evaluation run here so the event loop never waits on them; the model
is created inside the job, so it lives and dies on this one thread. Cancelling is cooperative:
a generator is asked between items, a long function through the ``should_stop`` it is given.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QThread, Signal


class Worker(QThread):
    """Runs ``fn(*args, **kwargs)`` on its own thread.

    Signals: ``yielded(item)`` per item of a generator (or per ``report`` call),
    ``returned(value)``, ``errored(exception)``; ``finished`` is QThread's own, always last.
    With ``progress_arg``/``stop_arg`` the function receives a reporting callback and a
    should-stop callable under those keyword names.
    """

    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        progress_arg: str | None = None,
        stop_arg: str | None = None,
        credits: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        # Flow control: with ``credits`` the generator waits once that many items are yielded and
        # not yet ``ack``ed, so a fast source never floods the event loop with frames it cannot show.
        self._credits = threading.Semaphore(credits) if credits else None
        self._fn, self._args, self._kwargs = fn, args, dict(kwargs)
        if progress_arg:
            self._kwargs[progress_arg] = lambda *values: self.report(values if len(values) > 1 else values[0])
        if stop_arg:
            self._kwargs[stop_arg] = self.abort_requested
        self._abort = threading.Event()
        self._resume = threading.Event()
        self._resume.set()

    # -------------------------------------------------------------- control, from any thread
    def abort(self) -> None:
        """Asks the job to stop at its next check; a paused job is woken to see it."""
        self._abort.set()
        self._resume.set()

    def abort_requested(self) -> bool:
        return self._abort.is_set()

    def ack(self) -> None:
        """The UI has handled one yielded item: the generator may produce another."""
        if self._credits is not None:
            self._credits.release()

    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def report(self, value: Any) -> None:
        """Emits ``yielded`` from inside a plain function (progress callbacks)."""
        self.yielded.emit(value)

    # -------------------------------------------------------------- the thread
    def run(self) -> None:  # noqa: D401 - Qt's name
        try:
            result = self._fn(*self._args, **self._kwargs)
            if inspect.isgenerator(result):
                result = self._drain(result)
            if not self._abort.is_set():
                self.returned.emit(result)
        except BaseException as exc:  # handed to the UI thread, which shows it
            self.errored.emit(exc)

    def _drain(self, gen: Any) -> Any:
        try:
            while True:
                self._resume.wait()
                if self._credits is not None:
                    while not self._credits.acquire(timeout=0.05):
                        if self._abort.is_set():
                            break
                if self._abort.is_set():
                    gen.close()
                    return None
                self.yielded.emit(next(gen))
        except StopIteration as stop:
            return stop.value

    def stop_and_wait(self, timeout_ms: int = 30000) -> bool:
        """Aborts and joins; used when a view closes so no thread outlives its widgets."""
        self.abort()
        return self.wait(timeout_ms)


def start_job(
    owner: Any,
    fn: Callable[..., Any],
    *args: Any,
    done: Callable[[Any], None] | None = None,
    failed: Callable[[BaseException], None] | None = None,
    **kwargs: Any,
) -> Worker:
    """Runs a one-off slow call (flush, verify, export, login, a decision) off the UI thread.

    The worker is kept in ``owner.jobs`` until it finishes, so it is neither collected early nor
    left running: ``stop_jobs(owner)`` joins whatever is still going when a view closes.
    """
    jobs: set[Worker] = owner.__dict__.setdefault("jobs", set())
    worker = Worker(fn, *args, **kwargs)
    if done is not None:
        worker.returned.connect(done)
    if failed is not None:
        worker.errored.connect(failed)

    def finished() -> None:
        jobs.discard(worker)
        worker.deleteLater()

    worker.finished.connect(finished)
    jobs.add(worker)
    worker.start()
    return worker


def stop_jobs(owner: Any, timeout_ms: int = 30000) -> None:
    """Joins the owner's one-off jobs (they are short; a store retry is at most its backoff)."""
    for worker in list(owner.__dict__.get("jobs", ())):
        worker.stop_and_wait(timeout_ms)
