"""The restore snapshot: what a start rebuilds from the state file, kept as one blob.

A start restores every account's state (``accounts``), every data set's newest data time
(``freshness``) and each inventory source's kept list (``inventory_sources``,
``inventory_rows``: for each row its validated form, parsed, and its digest). Read row by
row, that is a third of a 10,000-account start's CPU; read from one blob, a few hundredths
of it. So at a clean stop (:meth:`agent.service.AgentService.stop`) the agent writes what it
would compute from those rows, as plain tuples, lists and dicts (``marshal``), into the
``restore_snapshot`` table, with a digest of the blob and the format it was made in; the
next start takes it instead of the rows (:func:`load`).

A stale snapshot is never used: SQLite triggers (schema version 9) delete it on any
``INSERT``, ``UPDATE`` or ``DELETE`` of the four tables it is made from, by this agent or any
other process. A start without a snapshot (the first one, after a crash, after any change of
those rows), or with one that is damaged (its digest) or of another format (another version of
the agent, of its columns or of Python), restores from the rows, as before, and logs a
warning saying why.

The snapshot holds only what those tables hold: no token, no secret (the kept inventory rows
have a fingerprint in place of a token, and a setting from a file or a secret store is kept
as where it is). ``marshal`` is not safe against data made to attack it, nor is ``pickle``
(which was also slower): the blob is read from the agent's own state file, which only the
agent may read and write (mode 0600, :class:`agent.storage.state.StateStore`); whoever can
write that file can change every account's state anyway.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import Any

from agent.storage.freshness import FRESHNESS_COLUMNS, RESTORE_FRESHNESS, freshness_args
from agent.storage.state import RESTORE_ACCOUNTS, StateStore, state_args

log = logging.getLogger(__name__)

VERSION = 1  # of the snapshot's content; bump when what a part means changes
_LAYOUT = repr((VERSION, RESTORE_ACCOUNTS, FRESHNESS_COLUMNS, "inventory: SnapshotRow 7"))
# a snapshot is read only by the agent that made the same layout, under the same marshal
# and Python versions (marshal's format may change between them)
FORMAT = (f"{VERSION}/{hashlib.blake2b(_LAYOUT.encode(), digest_size=4).hexdigest()}/"
          f"marshal{marshal.version}/py{sys.version_info[0]}.{sys.version_info[1]}")
PARTS = ("accounts", "freshness", "inventory")


def digest(blob: bytes) -> bytes:
    return hashlib.blake2b(blob, digest_size=16).digest()


def build(store: StateStore) -> dict[str, Any]:
    """The snapshot's content, from the rows as they are now. ``inventory``: each kept list,
    source name -> (saved, last success, rows), or None for a list the snapshot cannot stand
    in for (a row without a validated form)."""
    from agent.inventory import store as saved
    from agent.inventory.diff import snapshot_rows

    db = store.connection
    inventory: dict[str, Any] = {}
    for (name,) in db.execute("SELECT source FROM inventory_sources").fetchall():
        kept = saved.load_list(store, name)
        if kept is None:
            continue
        rows = snapshot_rows(kept.rows, kept.forms, kept.keys)
        inventory[name] = None if rows is None else (kept.saved, kept.last_success, rows)
    return {"accounts": list(state_args(db.execute(RESTORE_ACCOUNTS))),
            "freshness": list(freshness_args(db.execute(RESTORE_FRESHNESS))),
            "inventory": inventory}


def write(store: StateStore, clock: Callable[[], float] = time.time) -> int:
    """Write the snapshot of the state file's rows as they are now (pending writes committed
    first); returns its size in bytes. One transaction, so no other process's write can come
    between what is read and the snapshot: a later one deletes it."""
    store.flush()
    db = store.connection
    with db:
        db.execute("BEGIN IMMEDIATE")
        blob = marshal.dumps(build(store), marshal.version)
        db.execute("INSERT OR REPLACE INTO restore_snapshot (id, format, digest, written, blob) "
                   "VALUES (1, ?, ?, ?, ?)", (FORMAT, digest(blob), clock(), blob))
    return len(blob)


def load(store: StateStore) -> dict[str, Any] | None:
    """The snapshot's content, if the state file has a usable one; else None, with a warning
    that says why (nothing to say for a file with nothing to restore)."""
    row = store.connection.execute(
        "SELECT format, digest, written, blob FROM restore_snapshot WHERE id = 1").fetchone()
    if row is None:
        if _has_state(store.connection):
            _fall_back(store, "it has no restore snapshot (the agent did not stop cleanly, or "
                              "the state changed since it stopped)")
        return None
    made_in, expected, written, blob = row
    if made_in != FORMAT:
        _fall_back(store, f"its restore snapshot is of another format ({made_in}; this agent "
                          f"reads {FORMAT})")
        return None
    if not isinstance(blob, bytes) or digest(blob) != expected:
        _fall_back(store, "its restore snapshot is damaged (its digest does not match)")
        return None
    try:
        content = marshal.loads(blob)
    except (EOFError, ValueError, TypeError):
        content = None
    if not isinstance(content, dict) or not all(part in content for part in PARTS):
        _fall_back(store, "its restore snapshot cannot be read")
        return None
    log.info("state file %s: restoring from its snapshot of %s", store.path, time.ctime(written))
    return content


def _fall_back(store: StateStore, why: str) -> None:
    log.warning("state file %s: %s; restoring from its rows", store.path, why)


def _has_state(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM "
                      "freshness) OR EXISTS (SELECT 1 FROM inventory_sources)").fetchone()[0] == 1
