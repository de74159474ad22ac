"""Each inventory source's last good list, kept in the state file (tables
``inventory_sources`` and ``inventory_rows``).

So an agent restarted while a source is down still watches every account it knew. Each
account's row is kept as the diff compares it (:func:`agent.inventory.rows.normalise`):
names, regions, settings, labels and file references, with a fingerprint in place of any
token. A refresh writes only the rows that changed, in one transaction. Beside each row, its
validated form and the digest of the rules it was made under (:mod:`agent.inventory.validated`),
so a restart need not validate the rows again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.storage.state import StateStore

Key = tuple[str, str]


# a validated form and the digest of its rules; (None, None) for a row that has none
Form = tuple[str | None, str | None]
NO_FORM: Form = (None, None)


@dataclass
class SavedList:
    rows: list[str]  # canonical row texts
    saved: float
    last_success: float | None
    forms: list[Form] = field(default_factory=list)  # one per row, in the same order
    keys: list[Key] = field(default_factory=list)  # each row's (channel, account), too


def save_changes(store: StateStore, source: str, write: Mapping[Key, str],
                 forget: Iterable[Key], now: float,
                 forms: Mapping[Key, Form] | None = None) -> None:
    """Apply one refresh's changes to the kept list: all of them, or none. ``forms``: the
    validated form of each row written (a row without one is validated at restore)."""
    forms = forms or {}
    db = store.connection
    with db:
        db.execute("BEGIN")
        db.executemany("DELETE FROM inventory_rows WHERE source = ? AND channel = ? AND "
                       "account = ?", [(source, *key) for key in forget])
        db.executemany("INSERT OR REPLACE INTO inventory_rows (source, channel, account, row, "
                       "validated, rules) VALUES (?, ?, ?, ?, ?, ?)",
                       [(source, *key, text, *forms.get(key, NO_FORM))
                        for key, text in write.items()])
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
    found = db.execute("SELECT row, validated, rules, channel, account FROM inventory_rows "
                       "WHERE source = ? ORDER BY channel, account", (source,)).fetchall()
    return SavedList([row[0] for row in found], head[0], head[1],
                     [row[1:3] for row in found], [row[3:] for row in found])


def save_forms(store: StateStore, source: str, forms: Mapping[Key, Form]) -> None:
    """Record the validated forms of rows kept already (validated at a restart because
    theirs was missing or made under other rules), so the next restart can use them."""
    db = store.connection
    with db:
        db.execute("BEGIN")
        db.executemany("UPDATE inventory_rows SET validated = ?, rules = ? WHERE source = ? "
                       "AND channel = ? AND account = ?",
                       [(*form, source, *key) for key, form in forms.items()])


def forget(store: StateStore, source: str) -> None:
    """A source removed from the configuration: its list goes too."""
    db = store.connection
    with db:
        db.execute("BEGIN")
        db.execute("DELETE FROM inventory_rows WHERE source = ?", (source,))
        db.execute("DELETE FROM inventory_sources WHERE source = ?", (source,))
