"""Turning what sources report (datetimes, dates, epoch numbers, ISO 8601 text) into Unix time."""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = dt.UTC
TIMESTAMP_HINT = "an RFC 3339 time like 2026-11-27T04:00:00Z or Unix epoch seconds"
# Earlier times are refused: they are a count or a flag read as seconds, not a data time, and
# would make a broken source look like very stale data.
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp()
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def zone(name: str | None) -> dt.tzinfo:
    """The time zone ``name`` (IANA, like Europe/Berlin); UTC when None. ValueError if unknown."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}' (use an IANA name like "
                         f"Europe/Berlin or UTC)") from None


def to_unix(value: object, naive: dt.tzinfo | None = UTC) -> float:
    """Unix seconds of ``value``; ValueError (saying what is expected) when it is none of:

    - a ``datetime`` (naive ones are in ``naive``), a ``date`` (its midnight in ``naive``),
    - epoch seconds as a number or numeric text,
    - ISO 8601 / RFC 3339 text (``2026-11-27T04:00:00Z``, ``2026-11-27 04:00:00``, a date).

    ``naive=None`` refuses values without a UTC offset (the heartbeat API wants RFC 3339).
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"must be {TIMESTAMP_HINT}")
    if isinstance(value, int | float | Decimal):
        return _epoch(float(value))
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return _epoch(float(text))
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"must be {TIMESTAMP_HINT}") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if not isinstance(value, dt.datetime):
        raise ValueError(f"must be {TIMESTAMP_HINT}")
    if value.tzinfo is None or value.utcoffset() is None:
        if naive is None:
            raise ValueError("must include a UTC offset, like 2026-11-27T04:00:00Z or "
                             "2026-11-27T06:00:00+02:00")
        value = value.replace(tzinfo=naive)
    return _epoch(value.timestamp())


def _epoch(seconds: float) -> float:
    if not math.isfinite(seconds) or seconds < EARLIEST:
        raise ValueError(f"must be {TIMESTAMP_HINT}, not before 2000-01-01")
    return seconds


def iso(ts: float | None) -> str | None:
    """``2026-11-27T04:00:00Z`` for a Unix time (whole seconds); None stays None."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
