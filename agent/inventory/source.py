"""The contract between the core and an inventory source type.

An inventory source answers "which accounts does the platform have?" with a list of rows,
one per account (plain data: ``channel``, ``account``, ``region``, account settings by name,
``label_<name>`` or a ``labels`` object, the credential or where it is). A source type is a
class with a ``type`` name, a declarative description of its configuration (``options``,
validated by the core) and one coroutine, :meth:`InventorySource.fetch`. The core owns the
rest: the schedule, the time limit, validating each row with the same rules as the file's
accounts, the diff against the running accounts, the removal guard, the state file and the
metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from agent.channel import Option

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

    The core builds one instance per configured source with its name and parsed ``settings``:
    the declared ``options`` plus the core's own (``interval``, ``timeout``, ``channels``,
    ``labels``, ``max_removal``, ``removal_hold``). A constructor that raises rejects the
    configuration (its message is shown).
    """

    type: ClassVar[str]
    title: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Option]] = {}

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
        not changed since the last answer (an HTTP 304).

        Raise :class:`InventoryError` when the source cannot answer; end within ``timeout``.
        A partial answer must never be returned: raise instead.
        """
        raise NotImplementedError

    def describe(self) -> str:
        """Where the source reads from, without any secret (for logs and the CLI)."""
        return self.type

    async def close(self) -> None:
        """Release connections; called when the agent stops or the source is removed."""
