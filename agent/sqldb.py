"""Queries on a database, for the ``sql`` freshness source, inventory source and secret store.

Each of them has its own engine (:func:`database_engine`), runs its query in a worker thread
that can be stopped on the server (:func:`cancellable`, :func:`connected`) and words a driver
error without the SQL text or a secret (:func:`describe_error`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from agent.redact import redact

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from agent.secret import Secret

log = logging.getLogger(__name__)
T = TypeVar("T")


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


async def cancellable(query: Callable[[list[Callable[[], None]]], T], timeout: float) -> T:
    """``query(cancel)`` in a worker thread; past ``timeout`` the interrupters it appended to
    ``cancel`` are called (the server stops the statement, the thread then ends) and
    TimeoutError is raised."""
    cancel: list[Callable[[], None]] = []
    try:
        async with asyncio.timeout(timeout):  # not wait_for: tests/test_stop_in_time.py
            return await asyncio.to_thread(query, cancel)
    except TimeoutError:
        for interrupt in cancel:
            interrupt()
        raise


@contextmanager
def connected(engine: Engine, cancel: list[Callable[[], None]],
              error: Callable[[str, str], Exception],
              no_rows_reason: str = "query_error") -> Iterator[Connection]:
    """A connection whose running statement :func:`cancellable` can stop (its interrupter is
    appended to ``cancel``); a SQLAlchemy error, connecting or within the block, is raised as
    ``error(reason, message)``: reason ``unavailable`` (no connection, or it broke),
    ``query_error``, or ``no_rows_reason`` for a statement that returns no rows."""
    from sqlalchemy.exc import DBAPIError, ResourceClosedError, SQLAlchemyError

    try:
        connection = engine.connect()
    except SQLAlchemyError as exc:
        raise error("unavailable", f"cannot connect: {describe_error(exc)}") from None
    with connection:
        interrupt = interrupter(connection.connection.driver_connection)
        if interrupt is not None:
            cancel.append(interrupt)
        try:
            yield connection
        except ResourceClosedError:
            raise error(no_rows_reason, "the query returns no rows (is it a SELECT?)") from None
        except DBAPIError as exc:
            reason = "unavailable" if exc.connection_invalidated else "query_error"
            raise error(reason, describe_error(exc)) from None
        except SQLAlchemyError as exc:
            raise error("query_error", describe_error(exc)) from None


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
