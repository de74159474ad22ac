"""The ``sql`` source type: a query against the data warehouse returns the newest timestamp.

Any database SQLAlchemy can reach (``postgresql://`` uses psycopg 3, ``sqlite:///``). The
query's bind parameters ``:channel``, ``:account``, ``:region`` and ``:dataset`` are always
bound by the driver, never formatted into the SQL. Each source has its own connection pool;
queries run in a worker thread and are cancelled on the server when they outlive the
source's ``timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pydantic import Field

from agent.config.types import SecretValue
from agent.freshness.source import Dataset, FreshnessSource, PolledSourceSettings, SourceError
from agent.freshness.timestamps import to_unix, zone
from agent.hookspecs import hookimpl
from agent.sqldb import cancellable, connected, database_engine

PARAMETERS = ("channel", "account", "region", "dataset")


class SqlSettings(PolledSourceSettings):
    url: SecretValue = Field(description="SQLAlchemy database URL, e.g. "
                                         "postgresql://user:password@host/db")
    query: str = Field(description="returns one row with one column: the newest data time")
    timezone: str | None = Field(None, description="IANA zone of times read without a UTC "
                                                   "offset; default UTC")


class SqlSource(FreshnessSource):
    type = "sql"
    title = "SQL query for the newest data time"
    default_interval = 600.0
    Settings = SqlSettings

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        super().__init__(name, settings)
        import sqlalchemy

        self._naive_zone = zone(settings.get("timezone"))
        self._statement = sqlalchemy.text(settings["query"])
        self._parameters = set(self._statement.compile().params)
        unknown = sorted(self._parameters - set(PARAMETERS))
        if unknown:
            raise ValueError(
                f"query uses unknown bind parameter(s) {', '.join(':' + p for p in unknown)}; "
                f"available: {', '.join(':' + p for p in PARAMETERS)}")
        self._engine = database_engine(settings["url"], self.timeout)

    async def latest(self, dataset: Dataset) -> float | None:
        values = {"channel": dataset.channel, "account": dataset.account,
                  "region": dataset.region, "dataset": dataset.name}
        params = {name: values[name] for name in self._parameters}
        try:
            value = await cancellable(lambda cancel: self._query(params, cancel), self.timeout)
        except TimeoutError:
            raise SourceError("timeout", f"no answer within {self.timeout:g}s") from None
        if value is None:
            return None
        try:
            return to_unix(value, naive=self._naive_zone)
        except ValueError:
            raise SourceError("bad_value", f"the query returned a {type(value).__name__}, "
                                           f"not a datetime, date or epoch seconds") from None

    def _query(self, params: dict[str, str], cancel: list[Callable[[], None]]) -> Any:
        with connected(self._engine, cancel, SourceError, "bad_value") as connection:
            result = connection.execute(self._statement, params)
            columns = len(result.keys())
            rows = result.fetchmany(2)
        if columns != 1 or len(rows) > 1:
            raise SourceError("bad_value", f"the query must return one row with one column "
                                           f"(got {columns} column(s), "
                                           f"{'several rows' if len(rows) > 1 else '1 row'})")
        return rows[0][0] if rows else None

    async def close(self) -> None:
        await asyncio.to_thread(self._engine.dispose)


@hookimpl
def register_freshness_sources(register: Callable[[type], None]) -> None:
    register(SqlSource)
