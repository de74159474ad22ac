"""The Sellers API call the check makes, and what SP-API's answers mean.

``GET /sellers/v1/marketplaceParticipations`` with header ``x-amz-access-token`` answers
``{"payload": [{"marketplace": {"id", "name", "countryCode", ...}, "participation":
{"isParticipating", "hasSuspendedListings"}}]}`` (developer-docs.amazon.com/sp-api/docs/
sellers-api-v1-reference). Errors are ``{"errors": [{"code", "message", "details"}]}``
(developer-docs.amazon.com/sp-api/docs/response-format). A 401 and a 403 are retried once with
a fresh access token (a 403 covers "Expired Token"), then:

    HTTP   errors[0].code / text                     reason          class
    -----  ----------------------------------------  --------------  -----------
    401    any                                       unauthorized    credential
    403    "The LWA secret token ... has expired"    invalid_client  application
    403    Unauthorized, AccessDenied, anything else forbidden       permission
    429    QuotaExceeded                             throttled       transient
    400    InvalidInput (the agent's request)        bad_response    transient (logged)
    5xx    InternalFailure, ServiceUnavailable       server_error    transient
    other  anything                                  bad_response    transient

A marketplace the account must reach (``expected_marketplaces``) missing from the payload is
``marketplace_missing`` (permission). ``isParticipating`` false and ``hasSuspendedListings``
true are reported in the detail, never as a credential failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from channel_agent_amazon_lwa.classify import (
    BAD_RESPONSE,
    SERVER_ERROR,
    THROTTLED,
    ProviderError,
    Verdict,
    conclusive,
    describe,
    expired_secret,
    parse_json,
    transient,
)
from channel_agent_amazon_lwa.grants import parsed_url

from agent.channel import Secret

PARTICIPATIONS = "/sellers/v1/marketplaceParticipations"
# statuses after which the call is repeated once with a freshly refreshed access token
RETRY_WITH_FRESH_TOKEN = frozenset({401, 403})


@dataclass(frozen=True)
class Participation:
    marketplace_id: str
    name: str
    country: str
    participating: bool
    suspended_listings: bool


def participations_request(client: httpx.AsyncClient, api_url: str,
                           access_token: Secret) -> httpx.Request:
    return client.build_request(
        "GET", parsed_url(f"{api_url.rstrip('/')}{PARTICIPATIONS}"),
        headers={"x-amz-access-token": access_token.reveal(), "Accept": "application/json"})


def sp_verdict(status: int, body: Any) -> Verdict:
    """Classify a non-2xx SP-API answer (a 401/403 only once the retry got it too)."""
    code = _first_error_code(body)
    if status == 401:
        return conclusive("unauthorized")
    if status == 403:
        if expired_secret(body):
            return conclusive("invalid_client", client_valid=False)
        return conclusive("forbidden")
    if status == 429:
        return THROTTLED
    if status >= 500:
        return SERVER_ERROR
    if status == 400 and code == "InvalidInput":
        return transient("bad_response", agent_bug=True)
    return BAD_RESPONSE


def parse_participations(response: httpx.Response,
                         endpoint: str = "participations") -> list[Participation]:
    """The participations of a ``getMarketplaceParticipations`` answer;
    :class:`ProviderError` otherwise."""
    body = parse_json(response)
    if not response.is_success or body is None:
        raise ProviderError(sp_verdict(response.status_code, body),
                            describe(endpoint, response, body))
    payload = body.get("payload") if isinstance(body, dict) else None
    if not isinstance(payload, list):
        raise ProviderError(BAD_RESPONSE, f"{endpoint}: HTTP {response.status_code}: "
                                          f"no payload list in the answer")
    found = []
    for item in payload:
        marketplace = item.get("marketplace") if isinstance(item, dict) else None
        participation = item.get("participation") if isinstance(item, dict) else None
        if not (isinstance(marketplace, dict) and isinstance(marketplace.get("id"), str)
                and isinstance(participation, dict)):
            raise ProviderError(BAD_RESPONSE, f"{endpoint}: HTTP {response.status_code}: "
                                              f"a participation has no marketplace id")
        found.append(Participation(
            marketplace_id=marketplace["id"],
            name=str(marketplace.get("name") or ""),
            country=str(marketplace.get("countryCode") or ""),
            participating=participation.get("isParticipating") is not False,
            suspended_listings=participation.get("hasSuspendedListings") is True,
        ))
    return found


def _first_error_code(body: Any) -> str | None:
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        return code if isinstance(code, str) else None
    return None
