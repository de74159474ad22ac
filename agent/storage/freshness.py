"""The newest data time of each data set, as the state database's ``freshness`` table keeps
it (written by :class:`agent.storage.state.StateStore`, read back here)."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(slots=True)
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


FRESHNESS_COLUMNS = ["channel", "account", "dataset", "last_updated", "source", "recorded"]


RESTORE_FRESHNESS = f"SELECT {', '.join(FRESHNESS_COLUMNS)} FROM freshness"


def load_freshness(db: sqlite3.Connection, args: Iterable[Sequence[Any]] | None = None,
                   ) -> dict[tuple[str, str, str], DataFreshness]:
    """Every saved data time; from ``args`` (:func:`freshness_args`, e.g. the restore
    snapshot's) when given, else from the table."""
    if args is None:
        args = freshness_args(db.execute(RESTORE_FRESHNESS))
    return {(a[0], a[1], a[2]): DataFreshness(*a) for a in args}


def freshness_args(rows: Iterable[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    """Each ``freshness`` row (:data:`RESTORE_FRESHNESS`) as :class:`DataFreshness`'s
    positional arguments."""
    # names interned: 50,000 accounts x data sets would repeat each channel, data set and
    # source name once per row
    intern = sys.intern
    for channel, account, dataset, last_updated, source, recorded in rows:
        yield (intern(channel), intern(account), intern(dataset), last_updated,
               intern(source), recorded)


def read_freshness(path: Path | str) -> dict[tuple[str, str, str], DataFreshness]:
    """The data times saved in a state file, read without writing to it (for one-shot
    commands beside a running agent); empty when the file or the table does not exist."""
    if str(path) == ":memory:" or not Path(path).is_file():
        return {}
    db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return load_freshness(db)
    except sqlite3.DatabaseError:  # older than schema version 3, or not a state file
        return {}
    finally:
        db.close()
