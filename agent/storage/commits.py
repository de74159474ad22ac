"""The state store's COMMIT, off the event loop: one thread waits for the disk.

With ``synchronous=FULL`` a commit returns once the write-ahead log is on disk (an fsync):
milliseconds, up to hundreds on a busy disk. On the loop thread that time is the loop's:
no scrape, check or request is served meanwhile. So the store (agent.storage.state) does a
batch's inserts on the loop (CPU only, nothing waits for the disk), hands the open
transaction to :class:`Committer`, whose thread runs the ``COMMIT``, and takes the next batch
only once that commit ended: at most one batch is under way, so batches reach the disk in
the order they were written and a later write of a row always wins.

Only the ``COMMIT`` runs in the thread, not the inserts: the sqlite3 module lets go of the
GIL around every step of a statement, so 1,000 rows inserted by a thread while the loop
thread is busy would wait for the GIL up to 1,000 times (5 ms each, the switch interval).
The ``COMMIT`` is one step: the thread takes the GIL back once.

:class:`Durable` is what a request awaits to answer only once its data is on disk. The
thread hands the commit's outcome to the loop with one ``call_soon_threadsafe``, whose
callback resumes the waiting tasks itself (an ``asyncio.Future`` would take one more pass of
the loop: its ``set_result`` only schedules the task's wake-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Generator
from contextvars import Context
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class StateWriteError(Exception):
    """The commit that was to store a write failed; the write is kept and retried."""


class Durable:
    """Awaitable: the commit of the writes made before it ended. Awaiting it returns once
    they are on disk, or raises :class:`StateWriteError` when that commit failed.

    A minimal future (the protocol ``asyncio.Task`` accepts from any object with
    ``_asyncio_future_blocking``) whose completion, on the loop thread, runs the waiting
    tasks' wake-ups at once instead of scheduling them."""

    _asyncio_future_blocking = False

    def __init__(self, loop: asyncio.AbstractEventLoop | None, done: bool = False) -> None:
        self._loop = loop
        self._done = done
        self._cancelled = False
        self._error: BaseException | None = None
        self._callbacks: list[tuple[Callable[[Durable], Any], Context | None]] = []

    def get_loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled

    def result(self) -> None:
        if self._cancelled:
            raise asyncio.CancelledError
        if not self._done:
            raise asyncio.InvalidStateError("the commit has not ended yet")
        if self._error is not None:
            raise self._error

    def exception(self) -> BaseException | None:
        if self._cancelled:
            raise asyncio.CancelledError
        return self._error

    def add_done_callback(self, fn: Callable[[Durable], Any], *,
                          context: Context | None = None) -> None:
        if self._done:
            assert self._loop is not None
            self._loop.call_soon(fn, self, context=context)
        else:
            self._callbacks.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Durable], Any]) -> int:
        before = len(self._callbacks)
        self._callbacks = [(f, c) for f, c in self._callbacks if f != fn]
        return before - len(self._callbacks)

    def cancel(self, msg: Any = None) -> bool:
        """The waiter goes (its task was cancelled); the write itself stays pending."""
        if self._done:
            return False
        self._cancelled = True
        self._settle(None, at_once=False)
        return True

    def __await__(self) -> Generator[Any, None, None]:
        if not self._done:
            self._asyncio_future_blocking = True
            yield self
        return self.result()

    def _settle(self, error: BaseException | None, at_once: bool) -> None:
        """On the loop thread: the commit ended. ``at_once``: run the waiting tasks' wake-ups
        now (from a plain loop callback); else schedule them (from inside a task)."""
        if self._done:
            return
        self._done, self._error = True, error
        callbacks, self._callbacks = self._callbacks, []
        for fn, context in callbacks:
            if not at_once:
                assert self._loop is not None
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    self._loop.call_soon(fn, self, context=context)
                continue
            try:
                if context is None:
                    fn(self)
                else:
                    context.run(fn, self)
            except Exception as exc:  # a task's wake-up does not raise; never lose the others
                assert self._loop is not None
                self._loop.call_exception_handler(
                    {"message": "a wake-up after a state commit failed", "exception": exc})


DONE = Durable(None, done=True)  # nothing was waiting to be written


@dataclass(eq=False)
class Batch:
    """Writes committed together (one transaction): rows by key, transitions oldest first,
    and the requests waiting for them."""

    accounts: dict[tuple[str, str], list] = field(default_factory=dict)
    clients: dict[str, bool | None] = field(default_factory=dict)
    transitions: dict[tuple[str, Any], list] = field(default_factory=dict)
    freshness: dict[tuple[str, str, str], tuple] = field(default_factory=dict)
    waiters: list[Durable] = field(default_factory=list)
    error: BaseException | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    settled: bool = False  # its outcome was taken in (on the loop thread), once

    def __bool__(self) -> bool:
        return bool(self.accounts or self.clients or self.transitions or self.freshness)

    def keep(self, later: Batch) -> None:
        """Take ``later``'s writes in (a failed batch kept for the next commit): a row
        written since wins, transitions stay in order; ``later`` is emptied."""
        self.accounts.update(later.accounts)
        self.clients.update(later.clients)
        self.freshness.update(later.freshness)
        for key, waiting in later.transitions.items():
            self.transitions[key] = self.transitions.get(key, []) + waiting
        self.waiters += later.waiters
        later.accounts, later.clients, later.transitions = {}, {}, {}
        later.freshness, later.waiters = {}, []


class Committer:
    """One thread that runs the ``COMMIT`` of each batch handed to it, one at a time, then
    calls ``ended(batch)`` on the loop (``call_soon_threadsafe``)."""

    def __init__(self, db: sqlite3.Connection, loop: asyncio.AbstractEventLoop,
                 ended: Callable[[Batch], None]) -> None:
        self._db = db
        self.loop = loop
        self._ended = ended
        self._wake = threading.Condition()
        self._job: Batch | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="state-commit", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        with self._wake:
            assert self._job is None
            self._job = batch
            self._wake.notify()

    def stop(self, timeout: float | None = None) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._job is None and not self._stopping:
                    self._wake.wait()
                batch, self._job = self._job, None
            if batch is None:
                return
            try:
                # commit(), not execute("COMMIT"): it lets go of the GIL once for the whole
                # statement (prepare, step, finalize), and takes it back once
                self._db.commit()
            except sqlite3.Error as exc:
                batch.error = exc
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
            batch.ended.set()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self.loop.call_soon_threadsafe(self._ended, batch)
