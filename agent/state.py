"""The state store: what must survive a restart, per account, in one SQLite file.

Only non-secret facts are stored: check times, validity, reason, the refresh token's
fingerprint (a short hash) and when it was issued.

Writes made while an event loop runs are batched: they are committed together, in one
transaction (one fsync), ``FLUSH_DELAY`` after the first of them, and at :meth:`close`. At
10,000 accounts a commit per check would block the loop on an fsync hundreds of times a
second. A crash keeps every committed row whole (old or new, never half of one) and loses
at most the results of the last ``FLUSH_DELAY``, which the next scheduled check gets again.
Without a running loop (CLI commands, scripts) every write is committed at once.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from agent.channel import CheckResult

SCHEMA_VERSION = 1
FLUSH_DELAY = 0.2  # seconds

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    channel TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    valid INTEGER,
    check_success INTEGER,
    reason TEXT,
    detail TEXT NOT NULL DEFAULT '',
    last_check REAL,
    last_valid REAL,
    refresh_fingerprint TEXT,
    refresh_issued REAL,
    access_issued REAL,
    access_expires REAL,
    profiles TEXT NOT NULL DEFAULT '{}',
    reconnected REAL,
    PRIMARY KEY (channel, account)
);
CREATE TABLE IF NOT EXISTS channels (
    channel TEXT PRIMARY KEY,
    client_valid INTEGER
);
"""


@dataclass(slots=True)
class AccountState:
    """The latest known state of one account's credential."""

    channel: str
    account: str
    region: str
    valid: bool | None = None  # None until the first conclusive check
    check_success: bool | None = None  # None until the first check
    reason: str | None = None
    detail: str = ""
    last_check: float | None = None
    last_valid: float | None = None
    refresh_fingerprint: str | None = None
    refresh_issued: float | None = None
    access_issued: float | None = None
    access_expires: float | None = None
    profiles: dict[str, bool] = field(default_factory=dict)
    reconnected: float | None = None
    failures_total: int = 0  # a counter: starts at 0 with the process, like every counter

    @property
    def key(self) -> tuple[str, str]:
        return (self.channel, self.account)

    def apply(self, result: CheckResult, now: float) -> None:
        """Fold one check result in. A transient result never changes ``valid``."""
        self.last_check = now
        self.check_success = result.conclusive
        self.reason = result.reason
        self.detail = result.detail
        if result.valid is not True:
            self.failures_total += 1
        if result.conclusive:
            self.valid = result.valid
            if result.valid:
                self.last_valid = now
        if result.profiles:
            self.profiles = dict(result.profiles)
        if result.access_token_issued_at is not None:
            self.access_issued = result.access_token_issued_at
            self.access_expires = result.access_token_expires_at
        fp = result.refresh_token_fingerprint
        if fp is not None and fp != self.refresh_fingerprint:
            # A token we have not seen before: its grant time is unknown, so count from now.
            self.refresh_fingerprint = fp
            self.refresh_issued = now

    def record_grant(self, fingerprint: str, granted_at: float) -> None:
        """A reconnect stored a new refresh token: its age starts at the grant."""
        self.refresh_fingerprint = fingerprint
        self.refresh_issued = granted_at
        self.reconnected = granted_at


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
    "profiles",
    "reconnected",
]
_PROFILES = _COLUMNS.index("profiles")
_INSERT_ACCOUNT = (f"INSERT OR REPLACE INTO accounts ({', '.join(_COLUMNS)}) "
                   f"VALUES ({', '.join('?' for _ in _COLUMNS)})")


class StateStore:
    """SQLite-backed persistence of :class:`AccountState` rows and per-channel facts."""

    def __init__(self, path: Path | str, flush_delay: float = FLUSH_DELAY) -> None:
        self.path = Path(path)
        self.flush_delay = flush_delay
        self._accounts: dict[tuple[str, str], list] = {}  # rows waiting for the next commit
        self._clients: dict[str, bool | None] = {}
        self._flush_scheduled: asyncio.TimerHandle | None = None
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"state file {self.path} was written by a newer agent (schema {version})"
            )
        with self._db:
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def load_accounts(self) -> dict[tuple[str, str], AccountState]:
        cur = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM accounts")
        states = {}
        for row in cur:
            values = dict(zip(_COLUMNS, row, strict=True))
            values["valid"] = _to_bool(values["valid"])
            values["check_success"] = _to_bool(values["check_success"])
            values["profiles"] = json.loads(values["profiles"] or "{}")
            state = AccountState(**values)
            states[state.key] = state
        return states

    def save_account(self, state: AccountState) -> None:
        values = [getattr(state, name) for name in _COLUMNS]
        values[_PROFILES] = json.dumps(state.profiles, sort_keys=True)
        self._accounts[state.key] = values
        self._written()

    def load_client_validity(self) -> dict[str, bool | None]:
        rows = self._db.execute("SELECT channel, client_valid FROM channels")
        return {channel: _to_bool(valid) for channel, valid in rows}

    def save_client_validity(self, channel: str, valid: bool | None) -> None:
        self._clients[channel] = valid
        self._written()

    def _written(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self.flush_delay <= 0:
            self.flush()
        elif self._flush_scheduled is None:
            self._flush_scheduled = loop.call_later(self.flush_delay, self.flush)

    def flush(self) -> None:
        """Commit every pending write in one transaction."""
        if self._flush_scheduled is not None:
            self._flush_scheduled.cancel()
            self._flush_scheduled = None
        if not self._accounts and not self._clients:
            return
        accounts, clients = self._accounts, self._clients
        self._accounts, self._clients = {}, {}
        try:
            with self._db:  # BEGIN ... COMMIT, or ROLLBACK when it fails
                self._db.execute("BEGIN")
                self._db.executemany(_INSERT_ACCOUNT, accounts.values())
                self._db.executemany(
                    "INSERT OR REPLACE INTO channels (channel, client_valid) VALUES (?, ?)",
                    clients.items())
        except sqlite3.Error:  # keep them for the next try, unless newer ones came meanwhile
            self._accounts = accounts | self._accounts
            self._clients = clients | self._clients
            raise

    def close(self) -> None:
        self.flush()
        self._db.close()


def _to_bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)
