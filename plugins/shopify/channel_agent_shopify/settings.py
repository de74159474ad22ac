"""The Shopify channel's configuration models (README "Shopify")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from agent.channel import AccountSettings, ReconnectSettings
from agent.config.types import ConfigModel, Duration, SecretReference, SecretValue, problem
from channel_agent_shopify.shopify_api import api_version_problem, shop_domain_problem

DEFAULT_API_VERSION = "2026-10"
EXPIRING_REFRESH_LIFETIME = "90d"  # shopify.dev offline-access-tokens: "90-day refresh token"
NON_EXPIRING_END = "2027-01-01T00:00:00Z"  # public apps: non-expiring tokens rejected from


def parse_date(value: str) -> float:
    """Unix time of ``2027-01-01`` (midnight UTC) or of a time with a zone."""
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if when.tzinfo is None:
        if len(value) > 10:
            raise ValueError("no time zone")
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _checked(check):  # noqa: ANN001, ANN202 - a validator factory
    def validate(value: str) -> str:
        found = check(value)
        if found:
            raise problem(found)
        return value
    return AfterValidator(validate)


def _date_problem(value: str) -> str | None:
    if not value:
        return None
    try:
        parse_date(value)
    except ValueError:
        return "must be an ISO 8601 date, or a time with a zone (2027-01-01T00:00:00Z)"
    return None


def _text(value: object) -> object:
    """A date YAML read as a date is taken as the text it was."""
    return value.isoformat() if hasattr(value, "isoformat") else value


ShopDomain = Annotated[str, _checked(shop_domain_problem)]
ApiVersion = Annotated[str, BeforeValidator(_text), _checked(api_version_problem)]
Date = Annotated[str, BeforeValidator(_text), _checked(_date_problem)]


class Endpoints(ConfigModel):
    admin_url: str = Field("https://{shop}", description="The shop's admin base URL; {shop} is "
                           "its myshopify.com domain (override to point at a simulator)")


class ShopifySettings(ReconnectSettings):
    client_id: str = Field("", description="The app's client id (API key): reconnect and "
                                           "owner-mode refreshes need it")
    client_secret: SecretValue | None = Field(
        None, description="The app's client secret: verifies the consent redirect's hmac; "
                          "reconnect and owner-mode refreshes need it")
    api_version: ApiVersion = Field(DEFAULT_API_VERSION, description="Admin API version the "
                                    "platform's app calls (YYYY-MM)")
    api_version_support_months: int = Field(
        12, ge=1, description="Months Shopify supports a stable version after its release (at "
                              "least 12: shopify.dev/docs/api/usage/versioning)")
    api_version_retirement: Date = Field(
        "", description="The configured version's announced retirement, overriding the "
                        "computed one")
    api_version_warning: Duration = Field(
        "90d", description="Warn this long before the configured API version retires")
    refresh_token_max_age: Duration = Field(
        EXPIRING_REFRESH_LIFETIME, description="Lifetime of an expiring token's refresh token "
                                               "after its last rotation")
    non_expiring_tokens_end: Date = Field(
        NON_EXPIRING_END, description="When Shopify stops accepting this app's non-expiring "
        "offline tokens (public apps: 2027-01-01); empty for custom or merchant-created apps")
    call_limit_threshold: float = Field(
        0.5, ge=0, le=1, description="Hold back requests to a shop whose REST call-limit "
        "bucket (shared with the platform's own calls) is fuller than this share")
    call_limit_leak_rate: float = Field(
        2.0, gt=0, description="Calls per second the bucket drains (2; Plus 20)")
    endpoints: Endpoints = Field(default_factory=dict)


class ShopifyAccountSettings(AccountSettings):
    shop: ShopDomain = Field(description="The shop's permanent domain, <name>.myshopify.com")
    access_token: SecretReference = Field(description="The offline access token (for an "
                                          "expiring token: the current one, kept by the platform)")
    required_scopes: list[str] = Field([], description="Scopes the platform needs")
    token_type: Literal["non_expiring", "expiring"] = Field(
        "non_expiring", description="Offline token model of this installation")
    refresh_token: SecretReference | None = Field(
        None, description="Expiring tokens: the refresh token (observer: read only for its "
                          "rotation; owner: used and rotated)")
    admin_url: str = Field("", description="This shop's admin base URL, instead of the "
                           "channel's endpoints.admin_url template (a simulator serving each "
                           "shop on its own address)")
    ownership: Literal["observer", "owner"] = Field(
        "observer", description="Who refreshes an expiring token: the platform (observer) "
                                "or the agent (owner)")
