"""Amazon Ads API calls used by the check: the profile list and the campaign-list probe."""

from __future__ import annotations

import functools
import json
from typing import Any

import httpx

from agent.channel import Secret
from agent.checks.verdict import ProviderError, parse_json
from channel_agent_amazon_ads.classify import BAD_RESPONSE, ads_verdict, describe

SP_CAMPAIGN_TYPE = "application/vnd.spCampaign.v3+json"


@functools.lru_cache(maxsize=64)
def parsed_url(url: str) -> httpx.URL:
    """The few URLs a check calls, parsed once: httpx parses a URL string in pure Python, a
    tenth of a check's CPU for two requests (docs/performance.md)."""
    return httpx.URL(url)


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
        raise ProviderError(ads_verdict(response.status_code), describe(endpoint, response, body))
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
    """Accept a ``POST /sp/campaigns/list`` answer; :class:`ProviderError` otherwise."""
    body = _ok_body(response, endpoint)
    if not isinstance(body, dict) or not isinstance(body.get("campaigns"), list):
        raise _bad(endpoint, response, "no campaigns list in the answer")
