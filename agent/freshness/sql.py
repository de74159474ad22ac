"""The ``sql`` source type: a query against the data warehouse returns the newest timestamp.

Any database SQLAlchemy can reach (``postgresql://`` uses psycopg 3, ``sqlite:///``). The
query's bind parameters ``:channel``, ``:account``, ``:region`` and ``:dataset`` are always
bound by the driver, never formatted into the SQL. Each source has its own connection pool;
queries run in a worker thread and are cancelled on the server when they outlive the
source's ``timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field

from agent.config.types import SecretValue
from agent.freshness.source import Dataset, FreshnessSource, PolledSourceSettings, SourceError
from agent.freshness.timestamps import to_unix, zone
from agent.hookspecs import hookimpl
from agent.redact import redact

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from agent.channel import Secret

log = logging.getLogger(__name__)
T = TypeVar("T")

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
        from sqlalchemy.exc import DBAPIError, ResourceClosedError, SQLAlchemyError

        try:
            connection = self._engine.connect()
        except SQLAlchemyError as exc:
            raise SourceError("unavailable", f"cannot connect: {describe_error(exc)}") from None
        with connection:
            interrupt = interrupter(connection.connection.driver_connection)
            if interrupt is not None:
                cancel.append(interrupt)
            try:
                result = connection.execute(self._statement, params)
                columns = len(result.keys())
                rows = result.fetchmany(2)
            except ResourceClosedError:
                raise SourceError("bad_value", "the query returns no rows (is it a SELECT?)") \
                    from None
            except DBAPIError as exc:
                reason = "unavailable" if exc.connection_invalidated else "query_error"
                raise SourceError(reason, describe_error(exc)) from None
            except SQLAlchemyError as exc:
                raise SourceError("query_error", describe_error(exc)) from None
        if columns != 1 or len(rows) > 1:
            raise SourceError("bad_value", f"the query must return one row with one column "
                                           f"(got {columns} column(s), "
                                           f"{'several rows' if len(rows) > 1 else '1 row'})")
        return rows[0][0] if rows else None

    async def close(self) -> None:
        await asyncio.to_thread(self._engine.dispose)


async def cancellable(query: Callable[[list[Callable[[], None]]], T], timeout: float) -> T:
    """``query(cancel)`` in a worker thread; past ``timeout`` the interrupters it appended to
    ``cancel`` are called (the server stops the statement, the thread then ends) and
    TimeoutError is raised."""
    cancel: list[Callable[[], None]] = []
    try:
        return await asyncio.wait_for(asyncio.to_thread(query, cancel), timeout)
    except TimeoutError:
        for interrupt in cancel:
            interrupt()
        raise


def database_engine(url: Secret, timeout: float) -> Engine:
    """An engine (its own pool) for a SQLAlchemy URL given as a secret; ValueError, saying
    what is wrong without the URL, when it is not a usable one. ``timeout`` bounds connecting
    and, for SQLite, waiting for a lock."""
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = sqlalchemy.make_url(url.reveal())
    except ArgumentError:
        raise ValueError("url is not a database URL like "
                         "postgresql://user:password@host:5432/db or sqlite:///path") from None
    try:
        return sqlalchemy.create_engine(
            parsed, pool_pre_ping=True, pool_timeout=timeout,
            connect_args=_connect_args(parsed.get_backend_name(), parsed.get_driver_name(),
                                       timeout))
    except NoSuchModuleError:
        raise ValueError(f"url: SQLAlchemy has no database type "
                         f"'{parsed.drivername}' installed") from None
    except ImportError as exc:
        raise ValueError(f"url: the driver for '{parsed.drivername}' is not installed "
                         f"({exc.name or exc})") from None


def _connect_args(backend: str, driver: str, timeout: float) -> dict[str, Any]:
    if backend == "postgresql" and driver in ("psycopg", "psycopg2"):
        return {"connect_timeout": max(1, round(timeout))}
    if backend == "sqlite":
        return {"timeout": timeout}  # how long to wait for a locked database
    return {}


def interrupter(driver_connection: Any) -> Callable[[], None] | None:
    """A thread-safe way to stop the running statement: sqlite3's interrupt(), psycopg's
    cancel_safe()/cancel(); None when the driver has neither."""
    for name in ("interrupt", "cancel_safe", "cancel"):
        method = getattr(driver_connection, name, None)
        if callable(method):
            return _quietly(method)
    return None


def _quietly(method: Callable[[], Any]) -> Callable[[], None]:
    def call() -> None:
        try:
            method()
        except Exception as exc:  # the query may have ended meanwhile
            log.debug("cancelling a query failed: %s", redact(str(exc)))

    return call


def describe_error(exc: BaseException) -> str:
    """The driver's own message (first line), without the SQL text SQLAlchemy appends."""
    origin = getattr(exc, "orig", None) or exc
    lines = str(origin).strip().splitlines()
    return redact(f"{type(origin).__name__}: {lines[0] if lines else ''}".rstrip(": "))


@hookimpl
def register_freshness_sources(register: Callable[[type], None]) -> None:
    register(SqlSource)
