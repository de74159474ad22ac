"""The state store: what must survive a restart, per account, in one SQLite file.

Only non-secret facts are stored: check times, validity, reason, the refresh token's
fingerprint (a short hash) and when it was issued; the newest data time of each data set.
Every write is one transaction, so a crash leaves either the old or the new row, never half
of one.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from agent.channel import CheckResult

_SCHEMA_V1 = """
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

# Version 2: the newest data time of each data set (heartbeats and polled sources).
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS freshness (
    channel TEXT NOT NULL,
    account TEXT NOT NULL,
    dataset TEXT NOT NULL,
    last_updated REAL NOT NULL,
    source TEXT NOT NULL,
    recorded REAL NOT NULL,
    PRIMARY KEY (channel, account, dataset)
);
"""

# Step i upgrades a file from version i to i + 1; a new file runs them all.
_MIGRATIONS = (_SCHEMA_V1, _SCHEMA_V2)
SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass
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


class StateStore:
    """SQLite-backed persistence of :class:`AccountState` rows and per-channel facts."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
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
            for step in _MIGRATIONS[version:]:
                self._db.executescript(step)
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
        values[_COLUMNS.index("profiles")] = json.dumps(state.profiles, sort_keys=True)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        self._db.execute(
            f"INSERT OR REPLACE INTO accounts ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
            values,
        )

    def load_client_validity(self) -> dict[str, bool | None]:
        rows = self._db.execute("SELECT channel, client_valid FROM channels")
        return {channel: _to_bool(valid) for channel, valid in rows}

    def save_client_validity(self, channel: str, valid: bool | None) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO channels (channel, client_valid) VALUES (?, ?)",
            (channel, valid),
        )

    def load_freshness(self) -> dict[tuple[str, str, str], DataFreshness]:
        return _load_freshness(self._db)

    def save_freshness(self, value: DataFreshness) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO freshness ({', '.join(_FRESHNESS_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _FRESHNESS_COLUMNS)})",
            [getattr(value, name) for name in _FRESHNESS_COLUMNS],
        )

    def close(self) -> None:
        self._db.close()


@dataclass
class DataFreshness:
    """The newest data time known for one data set, from which source, learnt when."""

    channel: str
    account: str
    dataset: str
    last_updated: float
    source: str
    recorded: float

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.channel, self.account, self.dataset)


_FRESHNESS_COLUMNS = ["channel", "account", "dataset", "last_updated", "source", "recorded"]


def _load_freshness(db: sqlite3.Connection) -> dict[tuple[str, str, str], DataFreshness]:
    rows = db.execute(f"SELECT {', '.join(_FRESHNESS_COLUMNS)} FROM freshness")
    values = [DataFreshness(*row) for row in rows]
    return {value.key: value for value in values}


def read_freshness(path: Path | str) -> dict[tuple[str, str, str], DataFreshness]:
    """The data times saved in a state file, read without writing to it (for one-shot
    commands beside a running agent); empty when the file or the table does not exist."""
    if str(path) == ":memory:" or not Path(path).is_file():
        return {}
    db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return _load_freshness(db)
    except sqlite3.DatabaseError:  # older than schema version 2, or not a state file
        return {}
    finally:
        db.close()


def _to_bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)
