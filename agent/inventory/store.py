"""Each inventory source's last good list, kept in the state file (table ``inventory``).

So an agent restarted while a source is down still watches every account it knew. The rows
are kept as the diff compares them (:func:`agent.inventory.rows.normalise`): names, regions,
settings, labels and file references, with a fingerprint in place of any token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from agent.storage.state import StateStore


@dataclass
class SavedList:
    rows: list[str]  # canonical row texts
    saved: float
    last_success: float | None


def save_list(store: StateStore, source: str, rows: Iterable[str], now: float) -> None:
    """Replace the source's list (one transaction: the old list or the new one, never half)."""
    text = "[" + ",".join(rows) + "]"
    store.connection.execute(
        "INSERT OR REPLACE INTO inventory (source, rows, saved, last_success) "
        "VALUES (?, ?, ?, ?)", (source, text, now, now))


def record_success(store: StateStore, source: str, now: float) -> None:
    store.connection.execute("UPDATE inventory SET last_success = ? WHERE source = ?",
                             (now, source))


def load_list(store: StateStore, source: str) -> SavedList | None:
    row = store.connection.execute(
        "SELECT rows, saved, last_success FROM inventory WHERE source = ?",
        (source,)).fetchone()
    if row is None:
        return None
    try:
        rows = json.loads(row[0])
    except ValueError:
        return None
    texts = [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in rows]
    return SavedList(texts, row[1], row[2])


def forget(store: StateStore, source: str) -> None:
    store.connection.execute("DELETE FROM inventory WHERE source = ?", (source,))
