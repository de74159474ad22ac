"""The SP-API channel's configuration: its models, and Amazon's hosts per region.

Sources: SP-API endpoints and the Seller Central authorisation workflow,
developer-docs.amazon.com/sp-api/docs/sp-api-endpoints and
developer-docs.amazon.com/sp-api/docs/website-authorization-workflow; the 180-day client
secret rotation, developer-docs.amazon.com/sp-api/docs/rotating-your-apps-lwa-credentials; the
rate limit of getMarketplaceParticipations (0.016 requests per second, burst 15, per
selling partner and application), developer-docs.amazon.com/sp-api/docs/sellers-api-v1-reference.
"""

from __future__ import annotations

from channel_agent_amazon_lwa.settings import LwaAccountSettings, LwaEndpoints, LwaSettings
from pydantic import Field, field_validator

from agent.config.types import Duration, RegionalUrl, problem

API_URLS = {
    "na": "https://sellingpartnerapi-na.amazon.com",
    "eu": "https://sellingpartnerapi-eu.amazon.com",
    "fe": "https://sellingpartnerapi-fe.amazon.com",
}
# Seller Central of one marketplace per region: the consent page is
# <seller central>/apps/authorize/consent (a seller may use the one of their own marketplace)
AUTHORIZE_URLS = {
    "na": "https://sellercentral.amazon.com/apps/authorize/consent",
    "eu": "https://sellercentral-europe.amazon.com/apps/authorize/consent",
    "fe": "https://sellercentral.amazon.co.jp/apps/authorize/consent",
}


class Endpoints(LwaEndpoints):
    authorize_url: RegionalUrl = Field(dict(AUTHORIZE_URLS),
                                       description="Seller Central consent page")
    api_url: RegionalUrl = Field(dict(API_URLS), description="Selling Partner API")


class AmazonSpSettings(LwaSettings):
    application_id: str = Field(
        "", description="The SP-API application id (amzn1.sp.solution.…), for the consent "
        "page of `channel-agent reconnect`")
    draft_app: bool = Field(
        False, description="The application is a draft: consent links carry version=beta")
    refresh_token_max_age: Duration = Field(
        "365d", description="How long a seller's authorisation lasts; 0 = never expires. "
        "Amazon: the selling partner must re-authorize a public application every 365 days "
        "(developer-docs.amazon.com/sp-api/docs/renew-authorizations).")
    client_secret_max_age: Duration = Field(
        "180d", description="How long a client secret lives after its rotation (Amazon: "
        "rotate every 180 days)")
    participations_interval: Duration = Field(
        "5m", description="Call getMarketplaceParticipations at most this often per account "
        "(its rate limit is 0.016/s, burst 15, per seller and application); checks in "
        "between refresh the token and keep the last marketplaces")
    endpoints: Endpoints = Field(default_factory=dict)

    @field_validator("participations_interval")
    @classmethod
    def _at_least_a_minute(cls, value: float) -> float:
        if value < 60:
            raise problem("must be 1m or more: Amazon allows about one call a minute")
        return value


class AmazonSpAccountSettings(LwaAccountSettings):
    expected_marketplaces: list[str] = Field(
        [], description="Marketplace ids this authorisation must keep covering "
        "(ATVPDKIKX0DER = amazon.com)")
    selling_partner_id: str = Field("", description="The seller's id, shown on the status page")
