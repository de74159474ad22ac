"""The ``sql`` inventory source: a query returning one row per account.

Any database SQLAlchemy can reach (``postgresql://`` uses psycopg 3, ``sqlite:///``), as the
freshness ``sql`` source: its own connection pool, the query in a worker thread, cancelled on
the server when it outlives the source's ``timeout``. The query's columns are the row's
fields: ``channel``, ``account`` (required), ``region``, account settings by name,
``label_<name>``, and the credential (``refresh_token`` or ``refresh_token_file``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import Field

from agent.config.types import SecretValue
from agent.hookspecs import hookimpl
from agent.inventory.source import (
    Answer,
    InventoryError,
    InventorySource,
    InventorySourceSettings,
)
from agent.sqldb import cancellable, connected, database_engine

REQUIRED_COLUMNS = ("channel", "account")


class SqlSettings(InventorySourceSettings):
    url: SecretValue = Field(description="SQLAlchemy database URL, e.g. "
                                         "postgresql://user:password@host/db (or url_file)")
    query: str = Field(description="Returns one row per account: channel, account, region, "
                                   "settings, label_<name>, the credential")


class SqlInventory(InventorySource):
    type = "sql"
    title = "SQL query, one row per account"
    Settings = SqlSettings

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        super().__init__(name, settings)
        import sqlalchemy

        self._statement = sqlalchemy.text(settings["query"])
        if self._statement.compile().params:
            raise ValueError("query must not use bind parameters (:name)")
        self._engine = database_engine(settings["url"], self.timeout)
        self._where = self._engine.url.render_as_string(hide_password=True)

    def describe(self) -> str:
        return f"sql {self._where}"

    async def fetch(self) -> Answer:
        try:
            return await cancellable(self._query, self.timeout)
        except TimeoutError:
            raise InventoryError("timeout", f"no answer within {self.timeout:g}s") from None

    def _query(self, cancel: list[Callable[[], None]]) -> Answer:
        with connected(self._engine, cancel, InventoryError, "bad_response") as connection:
            result = connection.execute(self._statement)
            columns = list(result.keys())
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise InventoryError(
                    "bad_response", f"the query returns no column {', '.join(missing)} "
                                    f"(its columns: {', '.join(columns) or 'none'})")
            if len(set(columns)) != len(columns):
                raise InventoryError("bad_response", "the query returns two columns of "
                                                     "the same name")
            rows = [_Row(columns, tuple(row)) for row in result]
            return Answer(rows, repr((columns, [row._values for row in rows])).encode())

    async def close(self) -> None:
        await asyncio.to_thread(self._engine.dispose)


class _Row(Mapping[str, Any]):
    """A result row as a mapping: the column names shared by every row, a tuple of values
    (a third of a dict's memory: 50,000 rows are held at once)."""

    __slots__ = ("_columns", "_values")

    def __init__(self, columns: list[str], values: tuple[Any, ...]) -> None:
        self._columns, self._values = columns, values

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[self._columns.index(key)]
        except ValueError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        return zip(self._columns, self._values, strict=True)


@hookimpl
def register_inventory_sources(register: Callable[[type], None]) -> None:
    register(SqlInventory)
