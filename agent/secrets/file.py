"""``type: file``: one file per secret under a path template, what ``refresh_token_file``
does for one account, generalised to a fleet (``/run/secrets/{channel}/{account}``).

Writes go through :func:`agent.storage.secretfile.write_secret_file`: atomic, mode 0600, the
previous value kept as a timestamped backup beside it.
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field, field_validator

from agent.channel import MissingSecret, SecretRef
from agent.config.types import problem
from agent.secrets.base import Fetched, SecretStore, StoreSettings, StoreUnavailable
from agent.storage.secretfile import write_secret_file

FIELDS = {"key", "channel", "account"}
_SAFE_PART = set(string.ascii_letters + string.digits + "_.@+=,-")


class FileSettings(StoreSettings):
    path: str = Field(description="A path template with {channel}, {account} and {key}, e.g. "
                                  "/run/secrets/{channel}/{account}; relative to the "
                                  "configuration file's directory")

    @field_validator("path")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError:
            raise problem("is not a valid template (unbalanced { or })") from None
        unknown = names - FIELDS
        if unknown:
            raise problem("may use {key}, {channel} and {account} only")
        if not names:
            raise problem("must contain {key} or {channel}/{account}: one file per secret")
        return value


class FileStore(SecretStore):
    type = "file"
    Settings = FileSettings
    settings: FileSettings

    def locate(self, key: str, channel: str, account: str) -> str:
        template = self.settings.path
        if "{key}" in template and not key:
            raise ValueError(f"needs a key: the path template {template} uses {{key}}")
        for part in key.split("/") if key else ():
            if part in ("", ".", "..") or not set(part) <= _SAFE_PART:
                raise ValueError("must be path segments of letters, digits and _.@+=,- "
                                 "(no '..', no leading or doubled '/')")
        return str(self.resolve(template.format(key=key, channel=channel, account=account)))

    async def read(self, keys: Sequence[str]) -> dict[str, Fetched | None]:
        return await asyncio.to_thread(lambda: {key: self._read_one(key) for key in keys})

    def _read_one(self, key: str) -> Fetched | None:
        path = Path(key)
        try:
            return Fetched(SecretRef(path=path, source=f"secret_stores.{self.name}").read())
        except MissingSecret as exc:
            if not path.exists():
                return None
            if "is empty" in exc.problem:
                return None  # as today: an empty file is a missing credential
            raise StoreUnavailable(exc.problem) from None

    async def write(self, key: str, value, previous: Fetched | None) -> None:
        try:
            await asyncio.to_thread(write_secret_file, Path(key), value)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {key}: {exc.strerror or type(exc).__name__}"
                                   ) from None

    async def probe(self) -> None:
        directory = Path(self.locate("probe", "probe", "probe")).parent
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent
        if not directory.is_dir():
            raise StoreUnavailable(f"{directory} is not a directory")
