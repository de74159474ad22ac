"""Capabilities a channel may declare (``Channel.refresh_tokens``,
``Channel.application_client``): the core then exports, writes back and alerts on what they
describe. Plugins import these names from :mod:`agent.channel`, the plugin-facing module."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class RefreshTokens:
    """Capability: each account holds an OAuth refresh token.

    ``option`` is the account setting (a ``SecretReference``) holding it: the core writes a
    rotated or reconnected token back to its file. ``max_age_setting`` names the channel
    setting (a ``Duration``) that says how long a token lives after consent (0: forever),
    exported as ``channel_refresh_token_expiry_timestamp_seconds``."""

    option: str = "refresh_token"
    max_age_setting: str | None = "refresh_token_max_age"


@dataclass(frozen=True)
class ApplicationClient:
    """Capability: the channel's accounts share one application client (id and secret).

    Its validity, learnt from the checks (``CheckResult.client_valid``), is exported per
    channel as ``channel_client_valid``. When the provider makes the secret expire,
    ``secret_rotated_setting`` names the channel setting holding the date of the last rotation
    (``YYYY-MM-DD`` or an ISO timestamp, "" = unknown) and ``secret_max_age_setting`` the
    setting (a ``Duration``) with the secret's lifetime: their sum is exported as
    ``channel_client_secret_expiry_timestamp_seconds``."""

    secret_rotated_setting: str | None = None
    secret_max_age_setting: str | None = None


def parse_date(text: str) -> float:
    """Unix time of ``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 timestamp (UTC unless it
    says otherwise); ValueError naming the expected form."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or ISO 8601 timestamp") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
