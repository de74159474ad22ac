"""The Amazon Ads channel's configuration: its models, and Amazon's hosts per region."""

from __future__ import annotations

from pydantic import Field

from agent.channel import AccountSettings, ReconnectSettings
from agent.config.types import (
    ConfigModel,
    Duration,
    IntList,
    RegionalUrl,
    SecretReference,
    SecretValue,
)

TOKEN_URLS = {
    "na": "https://api.amazon.com/auth/o2/token",
    "eu": "https://api.amazon.co.uk/auth/o2/token",
    "fe": "https://api.amazon.co.jp/auth/o2/token",
}
AUTHORIZE_URLS = {
    "na": "https://www.amazon.com/ap/oa",
    "eu": "https://eu.account.amazon.com/ap/oa",
    "fe": "https://apac.account.amazon.com/ap/oa",
}
API_URLS = {
    "na": "https://advertising-api.amazon.com",
    "eu": "https://advertising-api-eu.amazon.com",
    "fe": "https://advertising-api-fe.amazon.com",
}


class Endpoints(ConfigModel):
    """Amazon hosts per region (override to point at a simulator)."""

    token_url: RegionalUrl = Field(dict(TOKEN_URLS), description="Login with Amazon token URL")
    authorize_url: RegionalUrl = Field(dict(AUTHORIZE_URLS), description="Consent page")
    api_url: RegionalUrl = Field(dict(API_URLS), description="Amazon Ads API")


class Retry(ConfigModel):
    """Backoff on 429/5xx when Amazon sends no Retry-After."""

    initial_backoff: Duration = "2s"
    max_backoff: Duration = "30s"


class AmazonAdsSettings(ReconnectSettings):
    client_id: str = Field(description="Login with Amazon client id")
    client_secret: SecretValue = Field(description="Login with Amazon client secret")
    refresh_token_max_age: Duration = Field(
        "365d", description="How long a refresh token lives after consent; 0 = never expires. "
        "Amazon's docs say never, field reports say 365 days from mid-2026.")
    refresh_interval: Duration = Field(
        "1h", description="Exercise the refresh token at least this often, even while an "
        "access token is still valid.")
    request_timeout: Duration = Field("10s", description="Timeout of one HTTP request")
    permission_probe: bool = Field(
        True, description="Probe each expected profile with POST /sp/campaigns/list "
                          "(maxResults 1).")
    endpoints: Endpoints = Field(default_factory=dict)
    retry: Retry = Field(default_factory=dict)


class AmazonAdsAccountSettings(AccountSettings):
    refresh_token: SecretReference = Field(description="The advertiser's refresh token")
    expected_profiles: IntList = Field(
        [], description="Profile ids this consent must keep covering")
    permission_probe: bool | None = Field(
        None, description="Override the channel's permission_probe for this account")
