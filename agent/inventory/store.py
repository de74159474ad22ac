"""Each inventory source's last good list, kept in the state file (tables
``inventory_sources`` and ``inventory_rows``).

So an agent restarted while a source is down still watches every account it knew. Each
account's row is kept as the diff compares it (:func:`agent.inventory.rows.normalise`):
names, regions, settings, labels and file references, with a fingerprint in place of any
token. A refresh writes only the rows that changed, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.storage.state import StateStore

Key = tuple[str, str]


@dataclass
class SavedList:
    rows: list[str]  # canonical row texts
    saved: float
    last_success: float | None


def save_changes(store: StateStore, source: str, write: Mapping[Key, str],
                 forget: Iterable[Key], now: float) -> None:
    """Apply one refresh's changes to the kept list: all of them, or none."""
    db = store.connection
    with db:
        db.execute("BEGIN")
        db.executemany("DELETE FROM inventory_rows WHERE source = ? AND channel = ? AND "
                       "account = ?", [(source, *key) for key in forget])
        db.executemany("INSERT OR REPLACE INTO inventory_rows (source, channel, account, row) "
                       "VALUES (?, ?, ?, ?)",
                       [(source, *key, text) for key, text in write.items()])
        db.execute("INSERT OR REPLACE INTO inventory_sources (source, saved, last_success) "
                   "VALUES (?, ?, ?)", (source, now, now))


def record_success(store: StateStore, source: str, now: float) -> None:
    store.connection.execute("UPDATE inventory_sources SET last_success = ? WHERE source = ?",
                             (now, source))


def load_list(store: StateStore, source: str) -> SavedList | None:
    db = store.connection
    head = db.execute("SELECT saved, last_success FROM inventory_sources WHERE source = ?",
                      (source,)).fetchone()
    if head is None:
        return None
    rows = [text for (text,) in db.execute(
        "SELECT row FROM inventory_rows WHERE source = ? ORDER BY channel, account", (source,))]
    return SavedList(rows, head[0], head[1])


def forget(store: StateStore, source: str) -> None:
    """A source removed from the configuration: its list goes too."""
    db = store.connection
    with db:
        db.execute("BEGIN")
        db.execute("DELETE FROM inventory_rows WHERE source = ?", (source,))
        db.execute("DELETE FROM inventory_sources WHERE source = ?", (source,))
