"""``type: sql``: tokens in the platform's own database (e.g. its ``connections`` table).

``read_query`` gets the keys of a batch as the expanding bind parameter ``:keys`` and returns
rows of two columns, key and token (keys it does not return do not exist). ``write_query`` is
an UPDATE with ``:key``, ``:value`` and ``:old_value``: compare-and-set on the token the agent
read, so a pipeline that rotated the token meanwhile is not overwritten (no row updated means
a conflict). Only bind parameters, never formatted SQL. Each store has its own connection
pool; queries run in a worker thread, cancelled on the server past ``timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from agent.channel import Secret
from agent.config.types import SecretValue, problem
from agent.secrets.base import (
    Fetched,
    SecretStore,
    StoreSettings,
    StoreUnavailable,
    WriteConflict,
    fetched,
)
from agent.sqldb import cancellable, connected, database_engine


class SqlSettings(StoreSettings):
    url: SecretValue = Field(description="SQLAlchemy database URL (usually ${VAR}), or url_file")
    read_query: str = Field(description="Returns key, token for the keys in :keys")
    write_query: str | None = Field(None, description="An UPDATE with :key, :value and "
                                                      ":old_value (compare-and-set)")

    @field_validator("read_query")
    @classmethod
    def _read(cls, value: str) -> str:
        if _parameters(value) != {"keys"}:
            raise problem("must use exactly one bind parameter, :keys "
                          "(e.g. WHERE account_key IN :keys)")
        return value

    @field_validator("write_query")
    @classmethod
    def _write(cls, value: str | None) -> str | None:
        if value is not None and _parameters(value) != {"key", "value", "old_value"}:
            raise problem("must use the bind parameters :key, :value and :old_value (UPDATE "
                          "... SET token = :value WHERE key = :key AND token IS NOT DISTINCT "
                          "FROM :old_value)")
        return value


def _parameters(query: str) -> set[str]:
    import sqlalchemy

    return set(sqlalchemy.text(query).compile().params)


class SqlStore(SecretStore):
    type = "sql"
    Settings = SqlSettings
    settings: SqlSettings

    def __init__(self, name: str, settings: StoreSettings, base_dir: Path | None = None) -> None:
        super().__init__(name, settings, base_dir)
        import sqlalchemy

        s = self.settings
        self._engine = database_engine(s.url, s.timeout)
        self._read = sqlalchemy.text(s.read_query).bindparams(
            sqlalchemy.bindparam("keys", expanding=True))
        self._write = sqlalchemy.text(s.write_query) if s.write_query else None

    @property
    def writable(self) -> bool:  # type: ignore[override]
        return self._write is not None

    async def read(self, keys: Sequence[str]) -> dict[str, Fetched | None]:
        rows = await self._run(lambda c: c.execute(self._read, {"keys": list(keys)}).fetchall())
        found: dict[str, Fetched | None] = dict.fromkeys(keys)
        for row in rows:
            if len(row) != 2:
                raise StoreUnavailable("read_query must return two columns: key, token")
            key, value = row
            if key in found and found[key] is None:
                found[key] = fetched(value)
        return found

    async def write(self, key: str, value: Secret, previous: Fetched | None) -> None:
        if self._write is None:
            raise StoreUnavailable(f"store {self.name} has no write_query")
        params = {"key": key, "value": value.reveal(),
                  "old_value": previous.value.reveal() if previous else None}

        def update(connection: Any) -> int:
            with connection.begin():
                return connection.execute(self._write, params).rowcount

        secrets = [value.reveal(), *([previous.value.reveal()] if previous else [])]
        updated = await self._run(update, secrets)
        if updated == 0:
            raise WriteConflict(f"no row of key {key} holds the token the agent read (it "
                                f"changed meanwhile, or the row does not exist)")
        if updated > 1:
            raise StoreUnavailable(f"write_query updated {updated} rows for one key")

    async def _run(self, work: Callable[[Any], Any], secrets: Sequence[str] = ()) -> Any:
        def unavailable(reason: str, message: str) -> StoreUnavailable:
            for secret in secrets:
                message = message.replace(secret, "***")
            return StoreUnavailable(message)

        def query(cancel: list[Callable[[], None]]) -> Any:
            with connected(self._engine, cancel, unavailable) as connection:
                return work(connection)

        try:
            return await cancellable(query, self.settings.timeout)
        except TimeoutError:
            raise StoreUnavailable(f"no answer within {self.settings.timeout:g}s") from None

    async def probe(self) -> None:
        await self.read(["channel-agent-connectivity-probe"])

    async def close(self) -> None:
        await asyncio.to_thread(self._engine.dispose)
