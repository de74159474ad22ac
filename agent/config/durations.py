"""Prometheus-style durations: "30s", "5m", "1h30m", "365d" <-> seconds.

A number needs a unit, except 0: a bare "300" could mean seconds or minutes, and guessing
wrong would quietly change how often credentials are checked.
"""

from __future__ import annotations

import math
import re

UNITS: dict[str, float] = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}

# What a duration looks like, for error messages; never includes the rejected value.
DURATION_HINT = (
    "a duration like 30s, 5m, 1h30m or 365d (units ms, s, m, h, d, w, y, largest first; "
    "0 needs no unit)"
)

# Units in decreasing size, each at most once, as Prometheus accepts them.
_PATTERN = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?"
)
_PATTERN_UNITS = ("y", "w", "d", "h", "m", "s", "ms")
# format_duration leaves out y and w: "365d" and "14d" read better than "1y" or "2w".
_FORMAT_UNITS = ("d", "h", "m", "s", "ms")


def parse_duration(text: str | int | float) -> float:
    """Seconds in ``text`` ("1s", "5m", "36h", "1h30m", "500ms", "0"); ValueError if invalid."""
    if isinstance(text, bool):
        raise ValueError(f"expected {DURATION_HINT}")
    if isinstance(text, int | float):
        return _parse_number(text)
    if not isinstance(text, str):
        raise ValueError(f"expected {DURATION_HINT}")
    text = text.strip()
    if text.startswith("-"):
        raise ValueError(f"a duration cannot be negative; expected {DURATION_HINT}")
    if text == "0":
        return 0.0
    match = _PATTERN.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"expected {DURATION_HINT}")
    return sum(
        int(amount) * UNITS[unit]
        for amount, unit in zip(match.groups(), _PATTERN_UNITS, strict=True)
        if amount is not None
    )


def _parse_number(value: int | float) -> float:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected {DURATION_HINT}")
    if value < 0:
        raise ValueError(f"a duration cannot be negative; expected {DURATION_HINT}")
    if value != 0:
        raise ValueError(f"a number needs a unit; expected {DURATION_HINT}")
    return 0.0


def format_duration(seconds: float) -> str:
    """A short human form of ``seconds``: 300 -> "5m", 93600 -> "1d2h", 0.5 -> "500ms"."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("format_duration needs a finite, non-negative number of seconds")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    parts = []
    for unit in _FORMAT_UNITS:
        size = round(UNITS[unit] * 1000)
        amount, millis = divmod(millis, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)
