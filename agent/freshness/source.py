"""The contract between the core and a freshness source type.

A source type is a class with a ``type`` name, the model of its configuration
(``Settings``, validated by the core like a channel's) and, unless it is a push
source, one coroutine, :meth:`FreshnessSource.latest`, that answers "how new is the newest
data of this data set?". The core owns the rest: the schedule (every ``interval``), the
time limit (``timeout``), the state file, the metrics and the status page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, model_validator

from agent.config.types import ConfigModel, PositiveDuration, problem

# The fixed, documented set of `reason` values of channel_freshness_source_errors_total
# (docs: README "Data freshness").
SOURCE_ERROR_REASONS: tuple[str, ...] = (
    "timeout",  # no answer within the source's timeout
    "unavailable",  # cannot reach the database or read the file
    "query_error",  # the database rejected the query
    "bad_value",  # the answer is not a timestamp (wrong type or shape, unparseable, future)
    "plugin_error",  # the source type's code raised something unexpected
)

# How far in the future a reported timestamp may be (clocks differ a little) before it is
# refused as a bad value: a future time would make stale data look fresh.
MAX_FUTURE_SKEW = 300.0

DEFAULT_TIMEOUT = 30.0


class SourceSettings(ConfigModel):
    """A push source type's settings (``FreshnessSource.Settings``); subclass it for more."""

    core_keys = ("type",)


class PolledSourceSettings(SourceSettings):
    """A polled source type's settings: subclass it, and give ``interval`` the type's default
    (``interval: PositiveDuration = Field("10m", ...)``)."""

    interval: PositiveDuration = Field("10m", description="How often the source is asked")
    timeout: PositiveDuration = Field("30s", description="Time limit of one answer")

    @model_validator(mode="after")
    def _timeout_below_interval(self, info: Any) -> PolledSourceSettings:
        if self.timeout >= self.interval:
            path = (info.context or {}).get("path", "")
            raise problem(f"must be less than {path}.interval", at="timeout")
        return self


@dataclass(frozen=True, slots=True)
class Dataset:
    """One data set of one account: where its freshness comes from and how old it may be.

    An agent of 50,000 accounts holds 100,000 or more: slots (80 bytes each instead of
    176 with a ``__dict__``)."""

    channel: str
    account: str
    region: str
    name: str
    source: str  # a key of freshness_sources
    max_age: float  # seconds

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.channel, self.account, self.name)

    @property
    def account_key(self) -> tuple[str, str]:
        return (self.channel, self.account)


class SourceError(Exception):
    """A source could not answer; ``reason`` is one of SOURCE_ERROR_REASONS.

    The message is logged and must never contain a secret (a database URL's password).
    """

    def __init__(self, reason: str, message: str) -> None:
        if reason not in SOURCE_ERROR_REASONS:
            raise ValueError(f"{reason!r} is not a freshness source error reason")
        super().__init__(message)
        self.reason = reason


class FreshnessSource:
    """Base class of a source type. Subclasses set ``type`` and, unless ``push``, implement
    :meth:`latest`.

    The core builds one instance per configured source with its name and validated
    ``settings`` (``Settings`` as a dict; polled types' have ``interval`` and ``timeout`` in
    seconds). A constructor that raises rejects the configuration (the message is shown).
    """

    type: ClassVar[str]
    title: ClassVar[str] = ""
    # True: values are pushed to the agent (heartbeats) and never polled.
    push: ClassVar[bool] = False
    default_interval: ClassVar[float] = 600.0
    Settings: ClassVar[type[SourceSettings]] = PolledSourceSettings

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        self.name = name
        self.settings = settings

    @property
    def interval(self) -> float:
        return float(self.settings.get("interval") or self.default_interval)

    @property
    def timeout(self) -> float:
        return float(self.settings.get("timeout") or DEFAULT_TIMEOUT)

    async def latest(self, dataset: Dataset) -> float | None:
        """Unix time of the newest data of ``dataset``; None when the source has none yet.

        Raise :class:`SourceError` when the source cannot answer; end within ``timeout``.
        """
        raise NotImplementedError(f"source type {self.type!r} is not polled")

    async def close(self) -> None:
        """Release connections; called when the agent stops."""
