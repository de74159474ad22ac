"""The newest data time of each data set, as the state database's ``freshness`` table keeps
it (written by :class:`agent.storage.state.StateStore`, read back here)."""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path


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


def load_freshness(db: sqlite3.Connection) -> dict[tuple[str, str, str], DataFreshness]:
    rows = db.execute(f"SELECT {', '.join(FRESHNESS_COLUMNS)} FROM freshness")
    # names interned: 50,000 accounts x data sets would repeat each channel, data set and
    # source name once per row
    values = [DataFreshness(sys.intern(channel), sys.intern(account), sys.intern(dataset),
                            last_updated, sys.intern(source), recorded)
              for channel, account, dataset, last_updated, source, recorded in rows]
    return {value.key: value for value in values}


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
