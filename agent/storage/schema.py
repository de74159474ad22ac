"""The state database's schema: one script per version, applied in order by
:class:`agent.storage.state.StateStore` to bring an older file up to ``SCHEMA_VERSION``."""

import sqlite3
from collections.abc import Iterator

SCHEMA_VERSION = 9

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

# Version 2: reconnects. The code verifier of an open link is stored so the agent can finish
# the exchange; it is useless without the one-time code, which only the redirect carries.
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS grants (
    channel TEXT NOT NULL,
    account TEXT NOT NULL,
    refresh_fingerprint TEXT NOT NULL,
    granted REAL NOT NULL,
    reconnected REAL NOT NULL,
    PRIMARY KEY (channel, account)
);
CREATE TABLE IF NOT EXISTS reconnect_links (
    state TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    consent_url TEXT NOT NULL,
    accept_missing_profiles INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    finished REAL,
    detail TEXT NOT NULL DEFAULT ''
);
"""

# Version 3: the newest data time of each data set (heartbeats and polled sources).
_SCHEMA_V3 = """
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

# What a consent reaches is channel-neutral: Ads profiles, SP-API marketplaces, Shopify scopes.
_SCHEMA_V4 = """
ALTER TABLE accounts RENAME COLUMN profiles TO targets;
ALTER TABLE accounts ADD COLUMN targets_reached INTEGER;
"""

# Version 5: each inventory source's last good list (agent.inventory.store): one row per
# account as canonical JSON, tokens withheld.
_SCHEMA_V5 = """
CREATE TABLE IF NOT EXISTS inventory_sources (
    source TEXT PRIMARY KEY,
    saved REAL NOT NULL,
    last_success REAL
);
CREATE TABLE IF NOT EXISTS inventory_rows (
    source TEXT NOT NULL,
    channel TEXT NOT NULL,
    account TEXT NOT NULL,
    row TEXT NOT NULL,
    PRIMARY KEY (source, channel, account)
);
"""

# Version 6: state history. Each account row says since when its state holds and since when
# it is broken (invalid or unverified after having been valid or never checked), so the
# "longest broken first" order survives a restart; the transitions themselves are kept for
# the account page, the newest ``agent.storage.state.HISTORY_LIMIT`` per account.
_SCHEMA_V6 = """
ALTER TABLE accounts ADD COLUMN state_since REAL;
ALTER TABLE accounts ADD COLUMN broken_since REAL;
CREATE TABLE IF NOT EXISTS transitions (
    channel TEXT NOT NULL,
    account TEXT NOT NULL,
    time REAL NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    reason TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS transitions_by_account ON transitions (channel, account, time);
"""

# Version 7: the reason of the last conclusive rejection, kept while later checks end
# transiently, so alerts can tell a dead credential from a lost permission. A row whose last
# check was conclusive carries it in ``reason`` already. And a link's flag in target terms.
_SCHEMA_V7 = """
ALTER TABLE accounts ADD COLUMN rejection TEXT;
UPDATE accounts SET rejection = reason WHERE valid = 0 AND check_success = 1;
ALTER TABLE reconnect_links RENAME COLUMN accept_missing_profiles TO accept_missing_targets;
"""

# Version 8: each kept inventory row's validated form (agent.inventory.validated) and the
# digest of the rules it was made under, so a restart rebuilds the accounts without the
# account model. NULL (every row of an older file): the row is validated, as before.
_SCHEMA_V8 = """
ALTER TABLE inventory_rows ADD COLUMN validated TEXT;
ALTER TABLE inventory_rows ADD COLUMN rules TEXT;
"""

# Version 9: the restore snapshot (agent.storage.snapshot): what a start rebuilds from the
# accounts, freshness and inventory tables, in one blob written at a clean stop. A trigger per
# table and statement kind deletes it on any change of the rows it was made from, so a stale
# snapshot is never used: a start without one reads the rows, as before. (An ALTER TABLE fires
# no trigger: a later migration that changes what these tables hold starts with
# "DELETE FROM restore_snapshot".)
_SNAPSHOT_SOURCES = ("accounts", "freshness", "inventory_rows", "inventory_sources")
_SCHEMA_V9 = """
CREATE TABLE IF NOT EXISTS restore_snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    format TEXT NOT NULL,
    digest BLOB NOT NULL,
    written REAL NOT NULL,
    blob BLOB NOT NULL
);
""" + "".join(
    f"CREATE TRIGGER IF NOT EXISTS restore_snapshot_stale_{table}_{event.lower()} "
    f"AFTER {event} ON {table} BEGIN DELETE FROM restore_snapshot; END;\n"
    for table in _SNAPSHOT_SOURCES for event in ("INSERT", "UPDATE", "DELETE"))

# user_version -> the script that brings a file from the previous version to it
MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3, 4: _SCHEMA_V4,
                              5: _SCHEMA_V5, 6: _SCHEMA_V6, 7: _SCHEMA_V7,
                              8: _SCHEMA_V8, 9: _SCHEMA_V9}


def statements(script: str) -> Iterator[str]:
    """The statements of a migration script, one at a time (a trigger's body has semicolons
    of its own: split where SQLite says a statement is complete)."""
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending
