"""The ``heartbeat`` source type: the sync pipeline tells the agent when it last synced.

Heartbeats arrive through ``POST /api/v1/freshness`` (or ``channel-agent mark-synced``, which
posts the same); nothing is polled. :func:`parse_heartbeat` validates one request body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.freshness.source import MAX_FUTURE_SKEW, Dataset, FreshnessSource, SourceSettings
from agent.freshness.timestamps import to_unix
from agent.hookspecs import hookimpl

HEARTBEAT_FIELDS = ("channel", "account", "dataset", "last_updated")


class HeartbeatSource(FreshnessSource):
    type = "heartbeat"
    title = "Heartbeats (POST /api/v1/freshness, channel-agent mark-synced)"
    push = True
    Settings = SourceSettings


class HeartbeatRejected(Exception):
    """A heartbeat that is refused: HTTP ``status``, the offending ``field`` and why."""

    def __init__(self, status: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


def parse_heartbeat(
    body: Mapping[str, Any],
    find: Callable[[str, str, str], Dataset],
    sources: Mapping[str, FreshnessSource],
    now: float,
) -> tuple[Dataset, float]:
    """The data set a heartbeat is for and its time, or :class:`HeartbeatRejected`.

    ``find(channel, account, dataset)`` returns the configured data set, or raises
    :class:`HeartbeatRejected` (404) naming the field that matches nothing here.
    """
    for name in body:
        if name not in HEARTBEAT_FIELDS:
            raise HeartbeatRejected(400, name, f"unknown field '{name}' (expected "
                                               f"{', '.join(HEARTBEAT_FIELDS)})")
    for name in HEARTBEAT_FIELDS[:3]:
        if not isinstance(body.get(name), str) or not body[name]:
            raise HeartbeatRejected(400, name, f"field '{name}' is required and must be a "
                                               f"non-empty string")
    if "last_updated" not in body:
        raise HeartbeatRejected(400, "last_updated", "field 'last_updated' is required")
    try:
        last_updated = to_unix(body["last_updated"], naive=None)
    except ValueError as exc:
        raise HeartbeatRejected(400, "last_updated", f"field 'last_updated' {exc}") from None
    if last_updated > now + MAX_FUTURE_SKEW:
        raise HeartbeatRejected(
            400, "last_updated",
            f"field 'last_updated' is {last_updated - now:.0f}s in the future "
            f"(at most {MAX_FUTURE_SKEW:.0f}s of clock skew is accepted)")
    channel, account, name = body["channel"], body["account"], body["dataset"]
    found = find(channel, account, name)
    source = sources.get(found.source)
    if not isinstance(source, HeartbeatSource):
        kind = source.type if source is not None else "unknown"
        raise HeartbeatRejected(
            409, "dataset",
            f"field 'dataset': data set '{name}' of {channel}/{account} takes its freshness "
            f"from source '{found.source}' (type {kind}), not from heartbeats")
    return found, last_updated


@hookimpl
def register_freshness_sources(register: Callable[[type], None]) -> None:
    register(HeartbeatSource)
