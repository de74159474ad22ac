"""Amazon Ads API calls used by the check: the profile list and the campaign-list probe."""

from __future__ import annotations

import json
from typing import Any

import httpx
from channel_agent_amazon_lwa.classify import BAD_RESPONSE, ProviderError, describe, parse_json
from channel_agent_amazon_lwa.grants import parsed_url

from agent.channel import Secret
from channel_agent_amazon_ads.classify import ads_verdict, probe_not_applicable

SP_CAMPAIGN_TYPE = "application/vnd.spCampaign.v3+json"


# The ad products an account may use (its ``ad_products``); the probe is an SP call.
SPONSORED_PRODUCTS = "sponsored_products"
AD_PRODUCTS = (SPONSORED_PRODUCTS, "sponsored_brands", "sponsored_display")


class ProbeNotApplicable(Exception):
    """The probed profile cannot be probed (an agency profile): no fact about the credential."""


def is_agency(profile: dict[str, Any]) -> bool:
    """An agency profile (``accountInfo.type: agency``): campaign calls on it answer 400."""
    info = profile.get("accountInfo")
    return isinstance(info, dict) and info.get("type") == "agency"


def _headers(client_id: str, access_token: Secret) -> dict[str, str]:
    return {
        "Amazon-Advertising-API-ClientId": client_id,
        "Authorization": f"Bearer {access_token.reveal()}",
    }


def profiles_request(
    client: httpx.AsyncClient, api_url: str, client_id: str, access_token: Secret
) -> httpx.Request:
    headers = _headers(client_id, access_token) | {"Accept": "application/json"}
    return client.build_request("GET", parsed_url(f"{api_url.rstrip('/')}/v2/profiles"),
                                headers=headers)


def campaigns_probe_request(
    client: httpx.AsyncClient,
    api_url: str,
    client_id: str,
    access_token: Secret,
    profile_id: int,
) -> httpx.Request:
    headers = _headers(client_id, access_token) | {
        "Amazon-Advertising-API-Scope": str(profile_id),
        "Content-Type": SP_CAMPAIGN_TYPE,
        "Accept": SP_CAMPAIGN_TYPE,
    }
    return client.build_request(
        "POST",
        parsed_url(f"{api_url.rstrip('/')}/sp/campaigns/list"),
        headers=headers,
        content=json.dumps({"maxResults": 1}).encode(),
    )


def _ok_body(response: httpx.Response, endpoint: str) -> Any:
    body = parse_json(response)
    if not response.is_success or body is None:
        raise ProviderError(ads_verdict(response.status_code, body),
                            describe(endpoint, response, body))
    return body


def _bad(endpoint: str, response: httpx.Response, what: str) -> ProviderError:
    return ProviderError(BAD_RESPONSE, f"{endpoint}: HTTP {response.status_code}: {what}")


def parse_profile_list(
    response: httpx.Response, endpoint: str = "profiles"
) -> list[dict[str, Any]]:
    """The profiles of a ``GET /v2/profiles`` answer, each with an integer ``profileId``;
    :class:`ProviderError` otherwise."""
    body = _ok_body(response, endpoint)
    if not isinstance(body, list):
        raise _bad(endpoint, response, "profiles are not a JSON list")
    for item in body:
        profile_id = item.get("profileId") if isinstance(item, dict) else None
        if isinstance(profile_id, bool) or not isinstance(profile_id, int):
            raise _bad(endpoint, response, "a profile has no integer profileId")
    return body


def parse_campaigns_probe(response: httpx.Response, endpoint: str = "campaigns_list") -> None:
    """Accept a ``POST /sp/campaigns/list`` answer; :class:`ProbeNotApplicable` when the
    profile cannot be probed, :class:`ProviderError` otherwise."""
    if probe_not_applicable(response.status_code, parse_json(response)):
        raise ProbeNotApplicable(endpoint)
    body = _ok_body(response, endpoint)
    if not isinstance(body, dict) or not isinstance(body.get("campaigns"), list):
        raise _bad(endpoint, response, "no campaigns list in the answer")
