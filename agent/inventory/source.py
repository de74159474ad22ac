"""The contract between the core and an inventory source type.

An inventory source answers "which accounts does the platform have?" with a list of rows,
one per account (plain data: ``channel``, ``account``, ``region``, account settings by name,
``label_<name>`` or a ``labels`` object, the credential or where it is). A source type is a
class with a ``type`` name, the model of its configuration (``Settings``, a subclass of
:class:`InventorySourceSettings`, validated by the core) and one coroutine,
:meth:`InventorySource.fetch`. The core owns the
rest: the schedule, the time limit, validating each row with the same rules as the file's
accounts, the diff against the running accounts, the removal guard, the state file and the
metrics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from agent.config.modelbase import ConfigModel, problem
from agent.config.types import Duration, PositiveDuration
from agent.inventory.labels import Labels

# The fixed, documented set of reasons a refresh fails (logs, `channel-agent inventory`).
INVENTORY_ERROR_REASONS: tuple[str, ...] = (
    "timeout",  # no answer within the source's timeout
    "unavailable",  # cannot reach the database, server or files
    "query_error",  # the database rejected the query
    "bad_response",  # an answer that is not a list of accounts (HTML, wrong columns, too big)
    "plugin_error",  # the source type's code raised something unexpected
)

DEFAULT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_REMOVAL = 0.2
DEFAULT_REMOVAL_HOLD = 1800.0

Row = Mapping[str, Any]


class Answer(list[Row]):
    """A source's rows with a digest of the whole answer as the source read it (the same
    digest: the same rows, columns and values, in the same order). When a refresh's answer
    has the digest of the one the accepted list was made from, the core does nothing per row:
    at 50,000 rows that is most of an unchanged refresh. A source that cannot make such a
    digest cheaply returns a plain list: each row is then compared by its own digest."""

    __slots__ = ("digest",)

    def __init__(self, rows: Iterable[Row], read: bytes) -> None:
        """``read``: bytes that stand for the whole answer (the body of an HTTP answer; the
        ``repr`` of a query's columns and value tuples)."""
        super().__init__(rows)
        self.digest = hashlib.blake2b(read, digest_size=16).digest()


class InventorySourceSettings(ConfigModel):
    """What every inventory source has; a type's ``Settings`` subclass it with its own."""

    core_keys = ("type",)

    interval: PositiveDuration = Field("1m", description="How often the list is read")
    timeout: PositiveDuration = Field("30s", description="Time limit of one read; below "
                                                          "interval")
    channels: list[str] = Field(description="The channels this source feeds")
    labels: Labels = Field(default_factory=dict,
                           description="Labels every account of the source gets")
    max_removal: float = Field(DEFAULT_MAX_REMOVAL,
                               description="Share of the accounts one refresh may remove "
                                           "(0-1); a larger removal is held for removal_hold")
    removal_hold: Duration = Field("30m", description="How long a list removing more than "
                                                      "max_removal must be seen to apply")

    @field_validator("max_removal")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 <= value <= 1:
            raise problem("must be a share between 0 and 1 (0.2 = 20%)")
        return value

    @field_validator("channels")
    @classmethod
    def _some(cls, value: list[str]) -> list[str]:
        if not value:
            raise problem("must name at least one channel")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _timeout_below_interval(self, info: Any) -> InventorySourceSettings:
        if self.timeout >= self.interval:
            path = (info.context or {}).get("path", "")
            raise problem(f"must be less than {path}.interval", at="timeout")
        return self


class InventoryError(Exception):
    """A source could not answer; ``reason`` is one of INVENTORY_ERROR_REASONS.

    The message is logged and shown: it must never contain a secret."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in INVENTORY_ERROR_REASONS:
            raise ValueError(f"{reason!r} is not an inventory error reason")
        super().__init__(message)
        self.reason = reason


class InventorySource:
    """Base class of a source type. Subclasses set ``type`` and implement :meth:`fetch`.

    The core builds one instance per configured source with its name and ``settings`` (its
    ``Settings`` as a dict: ``interval``, ``timeout``, ``channels``, ``labels``,
    ``max_removal``, ``removal_hold`` and the type's own). A constructor that raises rejects
    the configuration (its message is shown).
    """

    type: ClassVar[str]
    title: ClassVar[str] = ""
    Settings: ClassVar[type[InventorySourceSettings]] = InventorySourceSettings

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        self.name = name
        self.settings = settings

    @property
    def interval(self) -> float:
        return float(self.settings.get("interval") or DEFAULT_INTERVAL)

    @property
    def timeout(self) -> float:
        return float(self.settings.get("timeout") or DEFAULT_TIMEOUT)

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels this source feeds; a row of another channel is invalid."""
        return tuple(self.settings.get("channels") or ())

    @property
    def labels(self) -> dict[str, str]:
        """Static labels every account of this source gets (a row's own labels win)."""
        return dict(self.settings.get("labels") or {})

    @property
    def max_removal(self) -> float:
        value = self.settings.get("max_removal")
        return DEFAULT_MAX_REMOVAL if value is None else float(value)

    @property
    def removal_hold(self) -> float:
        value = self.settings.get("removal_hold")
        return DEFAULT_REMOVAL_HOLD if value is None else float(value)

    async def fetch(self) -> list[Row] | None:
        """Every account the source knows, as rows; None when the source says its list has
        not changed since the last answer (an HTTP 304). Rows given as an :class:`Answer`
        carry a digest of the whole answer, which spares an unchanged answer's rows any work.

        Raise :class:`InventoryError` when the source cannot answer; end within ``timeout``.
        A partial answer must never be returned: raise instead.
        """
        raise NotImplementedError

    def describe(self) -> str:
        """Where the source reads from, without any secret (for logs and the CLI)."""
        return self.type

    async def close(self) -> None:
        """Release connections; called when the agent stops or the source is removed."""
