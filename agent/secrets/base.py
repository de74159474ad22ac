"""The contract of a secret store type, and what every store says when it fails.

A store holds credentials under keys (a path in Vault, a row in SQL, a secret id in AWS...).
The core asks for many keys at once (:meth:`SecretStore.read`), so a store that can batch
(one process run, one query, one shared secret) answers a whole fleet in a few calls; it never
asks for one key it did not need. A store answers each key with a :class:`Fetched` (the value
plus an opaque ``version`` for compare-and-set) or ``None`` (the store says: no such key).
Anything that is not an answer (unreachable, timeout, garbage) is :class:`StoreUnavailable`:
the check that needed it is transient (``secret_unavailable``), never invalid.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from agent.channel import Secret
from agent.config.types import ConfigModel, Int, PositiveDuration

OWNER = "owner"
OBSERVER = "observer"
Mode = Literal["owner", "observer"]
DEFAULT_BATCH_SIZE = 500
# A key names where a secret lives, never the secret; it is shown by `channel-agent inventory`
# and in messages, so it is kept to printable characters without spaces.
KEY_PATTERN = re.compile(r"[A-Za-z0-9_.:@/+=,-]{1,512}")


class StoreSettings(ConfigModel):
    """Settings every store type accepts (besides ``type``, which the core reads); a type's
    own model adds its keys. Validated like every section of the file (agent.config.engine)."""

    core_keys: ClassVar[tuple[str, ...]] = ("type",)

    mode: Mode = Field(OWNER, description="owner: the agent writes rotated and reconnected "
                                          "tokens here; observer: never")
    cache_ttl: PositiveDuration = Field("5m", description="How long a value read is used")
    timeout: PositiveDuration = Field("10s", description="One call (one batch)")
    batch_size: Int = Field(DEFAULT_BATCH_SIZE, ge=1, le=10_000,
                            description="Keys per call where the store batches")


@dataclass(frozen=True)
class Fetched:
    """One secret as read: the value and the store's version of it (for compare-and-set)."""

    value: Secret
    version: str | None = None


def fetched(value: Any, version: str | None = None) -> Fetched | None:
    """What a store found under a key: a non-empty string is the secret (trimmed); anything
    else (absent, null, empty) means no such key."""
    if not isinstance(value, str) or not value.strip():
        return None
    return Fetched(Secret(value.strip()), version)


async def read_each(keys: Sequence[str], parallel: int,
                    read_one: Callable[[str], Awaitable[Fetched | None]]
                    ) -> dict[str, Fetched | None]:
    """``read_one`` for every key, ``parallel`` at a time (stores without a batch read)."""
    limit = asyncio.Semaphore(parallel)

    async def one(key: str) -> Fetched | None:
        async with limit:
            return await read_one(key)

    return dict(zip(keys, await asyncio.gather(*(one(key) for key in keys)), strict=True))


class StoreUnavailable(Exception):
    """The store did not answer (down, timeout, denied, garbage). The message never holds a
    secret: stores build it from what they did, not from what they received."""


class WriteConflict(Exception):
    """Compare-and-set failed: the secret changed in the store since it was read (a pipeline
    rotated it meanwhile). Nothing was written."""


class StoreSetupError(Exception):
    """The store cannot be used at all as configured (e.g. an exec command with unsafe
    permissions); raised when the configuration is checked."""


class SecretStore(ABC):
    """Base class of a store type. Subclasses set ``type`` and ``Settings`` (a
    :class:`StoreSettings` subclass: the keys of a ``secret_stores.NAME`` section)."""

    type: ClassVar[str]
    Settings: ClassVar[type[StoreSettings]] = StoreSettings
    # False: the store cannot take a write-back (owner mode then refuses a reconnect)
    writable: ClassVar[bool] = True

    def __init__(self, name: str, settings: StoreSettings, base_dir: Path | None = None) -> None:
        self.name = name
        self.settings = settings
        self.base_dir = base_dir or Path.cwd()  # the configuration file's directory

    def resolve(self, text: str) -> Path:
        """A path from the settings; relative ones against the configuration's directory."""
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def mode(self) -> str:
        return self.settings.mode

    def locate(self, key: str, channel: str, account: str) -> str:
        """The store's key for an account's reference (a file store fills its path template).
        Raises ValueError with a message for a key the store cannot use."""
        if not key:
            raise ValueError("needs a key")
        return key

    @abstractmethod
    async def read(self, keys: Sequence[str]) -> dict[str, Fetched | None]:
        """The value of each key, ``None`` for a key the store says does not exist.
        Raises :class:`StoreUnavailable` when the store gave no answer."""

    async def write(self, key: str, value: Secret, previous: Fetched | None) -> None:
        """Store ``value`` under ``key``; where the store can, only if it still holds
        ``previous`` (else :class:`WriteConflict`). Raises :class:`StoreUnavailable`."""
        raise StoreUnavailable(f"store type {self.type} cannot write secrets")

    async def probe(self) -> None:
        """One cheap round trip (``config check --connect``); raises StoreUnavailable or
        StoreSetupError. The default reads a key nobody uses."""
        await self.read(["channel-agent-connectivity-probe"])

    async def close(self) -> None:
        return None
