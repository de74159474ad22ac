"""The Amazon Ads channel's configuration: its models, and Amazon's hosts per region."""

from __future__ import annotations

from typing import Literal

from channel_agent_amazon_lwa.settings import LwaAccountSettings, LwaEndpoints, LwaSettings
from pydantic import Field

from agent.config.types import Duration, IntList, RegionalUrl, SecretReference

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


class Endpoints(LwaEndpoints):
    authorize_url: RegionalUrl = Field(dict(AUTHORIZE_URLS), description="Consent page")
    api_url: RegionalUrl = Field(dict(API_URLS), description="Amazon Ads API")


AdProduct = Literal["sponsored_products", "sponsored_brands", "sponsored_display"]


class AmazonAdsSettings(LwaSettings):
    refresh_token_max_age: Duration = Field(
        "365d", description="How long a refresh token lives after consent; 0 = never expires. "
        "Amazon's docs say never, field reports say 365 days from mid-2026.")
    ad_products: list[AdProduct] = Field(
        ["sponsored_products"], description="The ad products the accounts use: the "
        "permission probe (a Sponsored Products call) runs only where sponsored_products is "
        "one of them")
    permission_probe: bool = Field(
        True, description="Probe each expected profile with POST /sp/campaigns/list "
                          "(maxResults 1).")
    endpoints: Endpoints = Field(default_factory=dict)


class AmazonAdsAccountSettings(LwaAccountSettings):
    refresh_token: SecretReference = Field(description="The advertiser's refresh token")
    ad_products: list[AdProduct] | None = Field(
        None, description="Override the channel's ad_products for this account")
    expected_profiles: IntList = Field(
        [], description="Profile ids this consent must keep covering")
    permission_probe: bool | None = Field(
        None, description="Override the channel's permission_probe for this account")
