"""The state store: what must survive a restart, per account, in one SQLite file.

Only non-secret facts are stored: check times, validity, reason, the refresh token's
fingerprint (a short hash) and when it was issued; the newest data time of each data set.
Every write is one transaction, so a crash leaves either the old or the new row, never half
of one.

The agent's own writes of ``accounts``, ``channels``, ``transitions`` and ``freshness`` rows
made while an event loop runs are batched: they are committed together, in one transaction
(one fsync), ``FLUSH_DELAY`` after the first of them, at once when a request awaits
:meth:`StateStore.durable` (a heartbeat is answered only once on disk), and before anything
reads those tables back and at :meth:`StateStore.close`. At 10,000 accounts a commit per
check would block the loop on an fsync hundreds of times a second; and the commit itself
runs in a thread (agent.storage.commits), so the loop never waits for the disk. A failed
commit keeps its writes for the next one (``RETRY_DELAY`` later) and is counted
(``write_failures``). A crash keeps every committed row whole and loses at most the check
results of the last ``FLUSH_DELAY`` (and a commit's time), which the next scheduled check
gets again; no acknowledged heartbeat. Without a running loop (CLI commands, scripts) every
write is committed at once.

Two processes share the file: the running agent and ``channel-agent reconnect``. Each table
has one writer per row, so neither clobbers the other: ``accounts`` and ``channels`` are
written by the agent only; ``grants`` by whoever completed a reconnect (the CLI, or the
agent for a link), and the agent folds a grant into the account's row at its next check;
``reconnect_links`` rows are created and cancelled by the CLI and claimed by the agent with
a conditional update, so a link is used once. ``freshness`` is written by the agent only
(``channel-agent check`` reads it without writing). ``transitions`` (each change of an
account's state, the last ``HISTORY_LIMIT`` kept) is written by the agent only, batched with
its ``accounts`` row.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
from pathlib import Path
from typing import Any

from agent import steps
from agent.channel import CheckResult
from agent.steps import Steps, drain
from agent.storage import freshness
from agent.storage.commits import DONE, Batch, Committer, Durable, StateWriteError
from agent.storage.freshness import FRESHNESS_COLUMNS, DataFreshness
from agent.storage.links import LinkStore
from agent.storage.links import ReconnectLink as ReconnectLink  # for existing importers
from agent.storage.schema import MIGRATIONS, SCHEMA_VERSION, statements

FLUSH_DELAY = 0.2  # seconds
RETRY_DELAY = 1.0  # seconds after a failed commit before the next try
HISTORY_LIMIT = 50  # transitions kept per account

log = logging.getLogger(__name__)
BROKEN = frozenset({"invalid", "unverified"})


@dataclass(slots=True)
class AccountState:
    """The latest known state of one account's credential."""

    channel: str
    account: str
    region: str
    valid: bool | None = None  # None until the first conclusive check
    check_success: bool | None = None  # None until the first check
    reason: str | None = None
    # the reason of the last conclusive rejection; None while valid (or not known)
    rejection: str | None = None
    detail: str = ""
    last_check: float | None = None
    last_valid: float | None = None
    refresh_fingerprint: str | None = None
    refresh_issued: float | None = None
    access_issued: float | None = None
    access_expires: float | None = None
    # what the consent must reach (CheckResult.targets) and how much it reaches in all
    targets: dict[str, bool] = field(default_factory=dict)
    targets_reached: int | None = None
    reconnected: float | None = None
    state_since: float | None = None  # when the current state (state_word) began
    broken_since: float | None = None  # when it last became invalid/unverified from valid/pending
    failures_total: int = 0  # a counter: starts at 0 with the process, like every counter

    @property
    def key(self) -> tuple[str, str]:
        return (self.channel, self.account)

    @property
    def rejected(self) -> bool:
        """The last conclusive check found the credential invalid. Its refresh token's
        expected expiry then means nothing to act on: the token is revoked or absent, or the
        consent lacks access, and the fix either way is a reconnect, which brings a new token
        with a new expiry. So no expiry is shown (metrics, status, page) until then."""
        return self.valid is False

    def apply(self, result: CheckResult, now: float,
              grant: Grant | None = None) -> Transition | None:
        """Fold one check result in. A transient result never changes ``valid``.

        ``grant`` is the account's last recorded reconnect, if any. Returns the transition
        when the state (:func:`state_word`) or its reason changed."""
        before = (state_word(self), self.reason)
        self.last_check = now
        self.check_success = result.conclusive
        self.reason = result.reason
        self.detail = result.detail
        if result.valid is not True:
            self.failures_total += 1
        if result.conclusive:
            self.valid = result.valid
            self.rejection = None if result.valid else result.reason
            if result.valid:
                self.last_valid = now
        if result.targets:
            self.targets = dict(result.targets)
        if result.targets_reached is not None:
            self.targets_reached = result.targets_reached
        if result.access_token_issued_at is not None:
            self.access_issued = result.access_token_issued_at
            self.access_expires = result.access_token_expires_at
        fp = result.refresh_token_fingerprint
        if fp is not None and fp != self.refresh_fingerprint:
            # A token we have not seen before: its grant time is unknown, so count from now.
            self.refresh_fingerprint = fp
            self.refresh_issued = now
        if grant is not None:
            self.apply_grant(grant)
        return self._transition(before, now)

    def _transition(self, before: tuple[str, str | None], now: float) -> Transition | None:
        word = state_word(self)
        if (word, self.reason) == before:
            return None
        if word != before[0]:
            self.state_since = now
            if word not in BROKEN:
                self.broken_since = None
            elif before[0] not in BROKEN:
                self.broken_since = now
        return Transition(time=now, from_state=before[0], to_state=word, reason=self.reason,
                          detail=self.detail)

    def apply_grant(self, grant: Grant) -> None:
        """A reconnect happened: when its token is the one in use, its age starts at the grant.

        Idempotent and independent of order: the grant may be recorded before or after the
        first check that sees its token."""
        self.reconnected = grant.reconnected
        if self.refresh_fingerprint in (None, grant.fingerprint):
            self.refresh_fingerprint = grant.fingerprint
            self.refresh_issued = grant.granted


def state_word(state: AccountState) -> str:
    """valid / invalid / unverified (last check inconclusive) / pending (never checked)."""
    if state.check_success is None:
        return "pending"
    if not state.check_success:
        return "unverified"
    return "valid" if state.valid else "invalid"


@dataclass(frozen=True)
class Transition:
    """One change of an account's state (or of its reason), as the account page lists it."""

    time: float
    from_state: str
    to_state: str
    reason: str | None
    detail: str


@dataclass(frozen=True)
class Grant:
    """A completed reconnect: the new refresh token's fingerprint, when Amazon (or another
    channel's provider) issued it and when it was stored."""

    fingerprint: str
    granted: float
    reconnected: float


_COLUMNS = [
    "channel",
    "account",
    "region",
    "valid",
    "check_success",
    "reason",
    "detail",
    "last_check",
    "last_valid",
    "refresh_fingerprint",
    "refresh_issued",
    "access_issued",
    "access_expires",
    "targets",
    "reconnected",
    "targets_reached",
    "state_since",
    "broken_since",
    "rejection",
]
_TARGETS = _COLUMNS.index("targets")
_ROW = attrgetter(*_COLUMNS)
_FRESHNESS_ROW = attrgetter(*FRESHNESS_COLUMNS)  # a value's row, in C (1,000 per heartbeat batch)
# the stored columns in AccountState's field order (failures_total is not stored)
_RESTORED = [f.name for f in fields(AccountState) if f.name in _COLUMNS]
assert len(_RESTORED) == len(_COLUMNS)
_INSERT_FRESHNESS = (f"INSERT OR REPLACE INTO freshness ({', '.join(FRESHNESS_COLUMNS)}) "
                     f"VALUES ({', '.join('?' for _ in FRESHNESS_COLUMNS)})")
RESTORE_ACCOUNTS = f"SELECT {', '.join(_RESTORED)} FROM accounts"
_RESTORE_PART = (f"SELECT rowid, {', '.join(_RESTORED)} FROM accounts WHERE rowid > ? "
                 f"ORDER BY rowid LIMIT ?")
_INSERT_ACCOUNT = (f"INSERT OR REPLACE INTO accounts ({', '.join(_COLUMNS)}) "
                   f"VALUES ({', '.join('?' for _ in _COLUMNS)})")


class StateStore(LinkStore):
    """SQLite-backed persistence of :class:`AccountState` rows and per-channel facts."""

    def __init__(self, path: Path | str, flush_delay: float = FLUSH_DELAY) -> None:
        self.path = Path(path)
        self.flush_delay = flush_delay
        self._pending = Batch()  # writes waiting for the next commit
        self._under_way: Batch | None = None  # the batch whose COMMIT the thread runs
        self._due = False  # commit the pending writes as soon as the one under way ended
        self._flush_scheduled: asyncio.TimerHandle | None = None
        self._committer: Committer | None = None
        self.write_failures = 0  # commits that failed (their writes kept for the next)
        self._failing = False  # the last commit failed (logged once until one succeeds)
        self._closed = False
        self.on_write_failure: Callable[[], None] | None = None  # e.g. a counter's inc
        # what a start restores, read from the restore snapshot (agent.storage.snapshot) by
        # the service while it is built; None: every load reads the rows
        self.snapshot: dict[str, Any] | None = None
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Open reconnect links keep their PKCE verifier here: readable by the agent only.
            # SQLite gives the -wal and -shm files the database file's mode.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()
        # The batched writes go through a connection of their own, whose COMMIT a thread
        # runs (agent.storage.commits); reads and the other tables' writes use self._db.
        # An in-memory database is one connection's: its commits wait for no disk anyway.
        self._wdb = self._db
        if str(path) != ":memory:":
            self._wdb = sqlite3.connect(str(path), isolation_level=None,
                                        check_same_thread=False)
            self._wdb.execute("PRAGMA synchronous=FULL")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"state file {self.path} was written by a newer agent (schema {version})"
            )
        if version == SCHEMA_VERSION:
            return
        # One transaction: a crash leaves the old version, and a second process waits.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in statements(MIGRATIONS[target]):
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @property
    def connection(self) -> sqlite3.Connection:
        """The database, for the modules that keep tables of their own in it
        (agent.inventory.store); every statement commits at once."""
        return self._db

    def load_accounts(self) -> dict[tuple[str, str], AccountState]:
        return drain(self.load_accounts_steps())

    def load_accounts_steps(self) -> Steps[dict[tuple[str, str], AccountState]]:
        """Every saved account state, in steps (:mod:`agent.steps`): the rows are read at
        once, the states (50,000 with their targets' JSON) made a step at a time."""
        self.flush()
        # positionally, in the dataclass's field order: a start restores every account, and
        # building keyword dictionaries was most of its time
        restored: dict[tuple[str, str], AccountState] = {}
        step = steps.STEP
        args = self.from_snapshot("accounts")
        if args is not None:
            for n, a in enumerate(args, 1):
                restored[a[0], a[1]] = AccountState(*a)
                if n % step == 0:
                    yield
            return restored
        # a step's rows at a time, each read whole (no statement left open across steps,
        # while the loop writes): a row written meanwhile moves to the end and is read again
        last = -1
        while True:
            rows = self._db.execute(_RESTORE_PART, (last, step)).fetchall()
            for a in state_args(row[1:] for row in rows):
                restored[a[0], a[1]] = AccountState(*a)
            if len(rows) < step:
                return restored
            last = rows[-1][0]
            yield

    def from_snapshot(self, part: str) -> Any:
        """The restore snapshot's ``part`` (:mod:`agent.storage.snapshot`), once: None when
        there is no snapshot in use (or that part was taken already)."""
        return None if self.snapshot is None else self.snapshot.pop(part, None)

    def save_account(self, state: AccountState) -> None:
        values = list(_ROW(state))
        values[_TARGETS] = json.dumps(state.targets, sort_keys=True) if state.targets else "{}"
        self._pending.accounts[state.key] = values
        self._written()

    def save_transition(self, key: tuple[str, str], transition: Transition) -> None:
        self._pending.transitions.setdefault(key, []).append(transition)
        self._written()

    def load_transitions(self, key: tuple[str, str],
                         limit: int = HISTORY_LIMIT) -> list[Transition]:
        """The account's newest transitions, newest first (those not yet committed too)."""
        under_way = self._under_way.transitions.get(key, []) if self._under_way else []
        pending = (under_way + self._pending.transitions.get(key, []))[::-1]
        rows = self._db.execute(
            f"SELECT {', '.join(_TRANSITION_COLUMNS)} FROM transitions WHERE channel = ? AND "
            f"account = ? ORDER BY time DESC, rowid DESC LIMIT ?", (*key, limit))
        # the batch under way may be committed by now: its rows are read back, once
        stored = [t for t in (Transition(*row) for row in rows) if t not in under_way]
        return (pending + stored)[:limit]

    def load_client_validity(self) -> dict[str, bool | None]:
        self.flush()
        rows = self._db.execute("SELECT channel, client_valid FROM channels")
        return {channel: _to_bool(valid) for channel, valid in rows}

    def save_client_validity(self, channel: str, valid: bool | None) -> None:
        self._pending.clients[channel] = valid
        self._written()

    def _written(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self.flush_delay <= 0:
            self.flush()
        elif self._flush_scheduled is None and self._under_way is None:
            # (one under way: its end starts the next)
            self._flush_scheduled = loop.call_later(self.flush_delay, self._commit)

    def durable(self) -> Durable:
        """Awaitable: every write made so far is on disk (:class:`StateWriteError` if the
        commit that was to store them failed: they are kept and retried, but a request must
        not be told they are stored). The pending writes are committed now, not after
        ``FLUSH_DELAY``: a request waits for them."""
        if not self._pending and self._under_way is None:
            return DONE
        if self._closed:
            raise StateWriteError(f"the state file {self.path} is closed")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: writes are committed at once (raises if that fails)
            self.flush()
            return DONE
        waiter = Durable(loop)
        self._pending.waiters.append(waiter)
        if self._under_way is None:
            self._commit()
        else:
            self._due = True
        return waiter

    def _commit(self) -> None:
        """On the loop thread: start committing the pending writes, unless a commit is under
        way (then they go as soon as it ended). The inserts run here; the thread runs the
        COMMIT (agent.storage.commits)."""
        if self._flush_scheduled is not None:
            self._flush_scheduled.cancel()
            self._flush_scheduled = None
        if self._closed:  # a write after close() (as without a loop, it cannot be stored)
            return
        if self._under_way is not None:
            self._due = True
            return
        self._due = False
        batch, self._pending = self._pending, Batch()
        if not batch:  # only waiters: what they wait for is on disk already
            for waiter in batch.waiters:
                waiter._settle(None, at_once=True)
            return
        loop = asyncio.get_running_loop()
        try:
            self._insert(batch)
        except sqlite3.Error as exc:  # e.g. another process holds the file's write lock
            batch.error = exc
            self._take(batch, at_once=False)
            self._flush_scheduled = loop.call_later(max(self.flush_delay, RETRY_DELAY),
                                                    self._commit)
            return
        if self._committer is None or self._committer.loop is not loop:
            if self._committer is not None:
                self._committer.stop()
            self._committer = Committer(self._wdb, loop, self._ended)
        self._under_way = batch
        self._committer.submit(batch)

    def _ended(self, batch: Batch) -> None:
        """On the loop thread: the thread's COMMIT of ``batch`` ended."""
        if batch.settled or self._closed:  # taken in already, by flush() (or close())
            return
        self._take(batch)
        if self._under_way is not None:
            return
        if self._due and batch.error is None:
            self._commit()
        elif (self._pending or self._pending.waiters) and self._flush_scheduled is None:
            # after a failure, the retry waits RETRY_DELAY, not the next write
            delay = self.flush_delay if batch.error is None else max(self.flush_delay,
                                                                     RETRY_DELAY)
            self._flush_scheduled = asyncio.get_running_loop().call_later(delay, self._commit)

    def _take(self, batch: Batch, at_once: bool = True) -> None:
        """Take a batch's outcome in, once, and answer its waiters. A failed batch is counted
        and its writes go back to the pending ones, under those written since (a later
        write of a row wins): the next commit stores them."""
        if batch.settled:
            return
        batch.settled = True
        if self._under_way is batch:
            self._under_way = None
        waiters, batch.waiters = batch.waiters, []
        error = None
        if batch.error is not None:
            error = StateWriteError(f"the state file could not be written: {batch.error}")
            self.write_failures += 1
            if self.on_write_failure is not None:
                self.on_write_failure()
            if not self._failing:
                log.warning("the state file %s could not be written (%s); the writes are kept "
                            "and retried", self.path, batch.error)
            self._failing = True
            kept = Batch()
            kept.keep(batch)
            kept.keep(self._pending)
            self._pending = kept
        elif self._failing:
            self._failing = False
            log.info("the state file %s is written again", self.path)
        for waiter in waiters:
            waiter._settle(error, at_once)

    def _insert(self, batch: Batch) -> None:
        """BEGIN and the batch's inserts on the writer connection (ROLLBACK if one fails)."""
        db = self._wdb
        db.execute("BEGIN")
        try:
            db.executemany(_INSERT_ACCOUNT, batch.accounts.values())
            db.executemany(
                "INSERT OR REPLACE INTO channels (channel, client_valid) VALUES (?, ?)",
                batch.clients.items())
            self._insert_transitions(batch.transitions)
            db.executemany(_INSERT_FRESHNESS, batch.freshness.values())
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def flush(self) -> None:
        """Commit every pending write now, in this thread (waiting for the commit under way
        first): before reading the tables back, and at :meth:`close`. Raises
        ``sqlite3.Error`` when it fails (the writes are kept for the next try)."""
        if self._flush_scheduled is not None:
            self._flush_scheduled.cancel()
            self._flush_scheduled = None
        if self._under_way is not None:
            under_way = self._under_way
            under_way.ended.wait()
            self._take(under_way, at_once=False)
        self._due = False
        batch, self._pending = self._pending, Batch()
        if not batch:
            self._pending = batch
            for waiter in batch.waiters:
                waiter._settle(None, at_once=False)
            batch.waiters = []
            return
        try:
            self._insert(batch)
            self._wdb.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._wdb.in_transaction:
                self._wdb.execute("ROLLBACK")
            batch.error = exc
            self._take(batch, at_once=False)
            raise
        self._take(batch, at_once=False)

    def _insert_transitions(self, transitions: dict[tuple[str, str], list[Transition]]) -> None:
        """Add them, then keep the newest HISTORY_LIMIT of each account they concern."""
        self._wdb.executemany(
            f"INSERT INTO transitions (channel, account, {', '.join(_TRANSITION_COLUMNS)}) "
            f"VALUES (?, ?, {', '.join('?' for _ in _TRANSITION_COLUMNS)})",
            [(*key, *(getattr(t, name) for name in _TRANSITION_COLUMNS))
             for key, waiting in transitions.items() for t in waiting])
        self._wdb.executemany(
            "DELETE FROM transitions WHERE channel = ?1 AND account = ?2 AND rowid NOT IN ("
            "SELECT rowid FROM transitions WHERE channel = ?1 AND account = ?2 "
            "ORDER BY time DESC, rowid DESC LIMIT ?3)",
            [(*key, HISTORY_LIMIT) for key in transitions])

    # --- data freshness ----------------------------------------------------------------

    def load_freshness(self) -> dict[tuple[str, str, str], DataFreshness]:
        self.flush()
        return freshness.load_freshness(self._db, self.from_snapshot("freshness"))

    def save_freshness(self, value: DataFreshness) -> None:
        self.save_freshness_many([value])

    def save_freshness_many(self, values: list[DataFreshness]) -> None:
        """Store data times, batched like the accounts' rows (a batch of heartbeats: one
        fsync). A request that must answer only once they are on disk awaits
        :meth:`durable`, which commits them at once."""
        pending = self._pending.freshness
        for value in values:
            pending[(value.channel, value.account, value.dataset)] = _FRESHNESS_ROW(value)
        self._written()

    # --- reconnects --------------------------------------------------------------------

    def record_grant(self, channel: str, account: str, grant: Grant) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO grants (channel, account, refresh_fingerprint, granted, "
            "reconnected) VALUES (?, ?, ?, ?, ?)",
            (channel, account, grant.fingerprint, grant.granted, grant.reconnected),
        )

    def load_grant(self, channel: str, account: str) -> Grant | None:
        row = self._db.execute(
            "SELECT refresh_fingerprint, granted, reconnected FROM grants "
            "WHERE channel = ? AND account = ?",
            (channel, account),
        ).fetchone()
        return Grant(*row) if row else None

    def load_grants(self) -> dict[tuple[str, str], Grant]:
        rows = self._db.execute(
            "SELECT channel, account, refresh_fingerprint, granted, reconnected FROM grants"
        )
        return {(channel, account): Grant(*rest) for channel, account, *rest in rows}

    def close(self) -> None:
        """Commit what is pending (after the commit under way) and close the file."""
        try:
            self.flush()
        finally:
            self._closed = True
            if self._committer is not None:
                self._committer.stop()
                self._committer = None
            if self._wdb is not self._db:
                self._wdb.close()
            self._db.close()


_TRANSITION_COLUMNS = ["time", "from_state", "to_state", "reason", "detail"]


def state_args(rows: Iterable[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    """Each ``accounts`` row (:data:`RESTORE_ACCOUNTS`) as :class:`AccountState`'s positional
    arguments: booleans, the targets' JSON read, the repeated strings interned."""
    intern, to_bool, loads = sys.intern, _to_bool, json.loads
    for (channel, account, region, valid, success, reason, rejection, *rest,
         targets, reached, reconnected, since, broken) in rows:
        yield (intern(channel), account, intern(region), to_bool(valid), to_bool(success),
               reason and intern(reason), rejection and intern(rejection), *rest,
               loads(targets) if targets and targets != "{}" else {},
               reached, reconnected, since, broken)


def _to_bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)
