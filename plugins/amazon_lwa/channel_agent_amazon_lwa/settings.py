"""The settings every Login with Amazon channel shares, and the capability they make up.

Both Amazon channels' ``Settings`` subclass :class:`LwaSettings` and add their hosts.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from agent.channel import AccountSettings, ApplicationClient, ReconnectSettings, parse_date
from agent.config.types import (
    ConfigModel,
    Duration,
    RegionalUrl,
    SecretReference,
    SecretValue,
    problem,
)

# Login with Amazon's token endpoint per region (shared/reference/amazon-ads-api.md §1); the
# Selling Partner API uses the same (developer-docs.amazon.com/sp-api/docs/
# connecting-to-the-selling-partner-api)
TOKEN_URLS = {
    "na": "https://api.amazon.com/auth/o2/token",
    "eu": "https://api.amazon.co.uk/auth/o2/token",
    "fe": "https://api.amazon.co.jp/auth/o2/token",
}

# The application's client: validity from the token endpoint, and its secret's expiry.
LWA_APPLICATION = ApplicationClient(secret_rotated_setting="client_secret_rotated",
                                    secret_max_age_setting="client_secret_max_age")


class LwaEndpoints(ConfigModel):
    """Amazon hosts per region (override to point at a simulator); subclasses add the consent
    page and the API."""

    token_url: RegionalUrl = Field(dict(TOKEN_URLS), description="Login with Amazon token URL")


class LwaSettings(ReconnectSettings):
    """A Login with Amazon application's settings; subclasses set the defaults that differ
    (``refresh_token_max_age``, ``client_secret_max_age``) and add their hosts."""

    client_id: str = Field(description="Login with Amazon client id")
    client_secret: SecretValue = Field(description="Login with Amazon client secret")
    refresh_interval: Duration = Field(
        "1h", description="Exercise the refresh token at least this often, even while an "
        "access token is still valid.")
    client_secret_rotated: str = Field(
        "", description="When the client secret was last rotated (YYYY-MM-DD); with "
        "client_secret_max_age it gives channel_client_secret_expiry_timestamp_seconds. "
        "Empty: unknown, no expiry exported.")
    # 0 for Amazon Ads: no rotation rule is documented for its LwA security profiles; the
    # SP-API channel sets 180 days (its applications must rotate every 180 days).
    client_secret_max_age: Duration = Field(
        "0s", description="How long a client secret lives after its rotation; 0 = it does not "
        "expire")

    @field_validator("client_secret_rotated")
    @classmethod
    def _date(cls, value: str) -> str:
        if value.strip():
            try:
                parse_date(value)
            except ValueError:
                raise problem("must be a date, YYYY-MM-DD (or an ISO 8601 timestamp)") from None
        return value.strip()


class LwaAccountSettings(AccountSettings):
    refresh_token: SecretReference = Field(description="The account's LwA refresh token")
