"""A SQLite "connections" table and agents reading it, for the inventory tests."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from agent.config.loader import Config, build_config
from tests.fakes import FakeChannel

COLUMNS = ("channel", "account", "region", "note", "label_merchant", "refresh_token_file",
           "refresh_token")


class Connections:
    """The platform's table of merchant connections, in a SQLite file."""

    def __init__(self, path: Path, extra_columns: tuple[str, ...] = ()) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        columns = (*COLUMNS, *extra_columns)
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("DROP TABLE IF EXISTS connections")
            db.execute(f"CREATE TABLE connections ({', '.join(c + ' TEXT' for c in columns)})")

    def put(self, *rows: dict[str, Any]) -> None:
        with closing(sqlite3.connect(self.path)) as db, db:
            for row in rows:
                values = {"channel": "fake", "region": "na", **row}
                db.execute("DELETE FROM connections WHERE account = ?", (values["account"],))
                db.execute(f"INSERT INTO connections ({', '.join(values)}) VALUES "
                           f"({', '.join('?' for _ in values)})", list(values.values()))

    def delete(self, *accounts: str) -> None:
        with closing(sqlite3.connect(self.path)) as db, db:
            db.executemany("DELETE FROM connections WHERE account = ?",
                           [(a,) for a in accounts])

    def drop(self) -> None:
        with closing(sqlite3.connect(self.path)) as db, db:
            db.execute("DROP TABLE connections")


QUERY = "SELECT * FROM connections"


def inventory_config(tmp_path: Path, url: str, static: tuple[str, ...] = (),
                     query: str = QUERY, freshness_sources: dict | None = None,
                     datasets: dict | None = None, **source: Any) -> Config:
    """The fake channel fed by a ``sql`` source over ``url``; ``static`` accounts in the file,
    channel-level ``datasets`` from ``freshness_sources``."""
    channel: dict[str, Any] = {"datasets": datasets or {}}
    if static:
        channel["accounts"] = [{"name": n, "region": "na"} for n in static]
    data = {
        "agent": {"state_path": str(tmp_path / "agent.db"), "check_interval": "1h",
                  "check_timeout": "1s"},
        "inventory_sources": {"crm": {"type": "sql", "url": url, "query": query,
                                      "channels": ["fake"], "interval": "1m",
                                      "timeout": "5s", **source}},
        "freshness_sources": freshness_sources or {},
        "channels": {"fake": channel},
    }
    return build_config(data, {"fake": FakeChannel}, base_dir=tmp_path)
