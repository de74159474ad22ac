"""Every Login with Amazon and Ads API answer in the reference, and what it means.

Each row is (status, body, headers) -> (reason, valid). ``valid`` False is a conclusive
rejection, None a transient failure. An Ads 401 here is the second one: the retry after a
token refresh is covered in test_check.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from channel_agent_amazon_ads import ads_api
from channel_agent_amazon_lwa import grants as lwa
from channel_agent_amazon_lwa.classify import (
    ProviderError,
    describe,
    error_text,
    lwa_verdict,
    parse_json,
)

HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"
THROTTLE_HEADERS = {
    "x-amzn-ErrorType": "AccessDeniedException",
    "amazon-advertising-api-throttled": "true",
    "Retry-After": "1",
}


def response(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    headers = dict(headers or {})
    if isinstance(body, str):
        headers.setdefault("Content-Type", "text/html")
        return httpx.Response(status, content=body.encode(), headers=headers)
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def lwa_error(error: str, description: str = "") -> dict[str, str]:
    return {"error": error, "error_description": description}


def case(name: str, status: int, body: Any, expected: tuple, **headers: str) -> Any:
    return pytest.param(status, body, headers, expected, id=name)


# expected (reason, valid, client_valid)
GRANT = ("invalid_grant", False, None)
CLIENT = ("invalid_client", False, False)
UNAUTHORIZED_CLIENT = ("unauthorized_client", False, None)
SCOPE = ("invalid_scope", False, None)
UNAUTHORIZED = ("unauthorized", False, None)
FORBIDDEN = ("forbidden", False, None)
THROTTLED = ("throttled", None, None)
SERVER = ("server_error", None, None)
BAD = ("bad_response", None, None)

REVOKED = (
    "The request has an invalid grant parameter : refresh_token. "
    "User may have revoked or didn't grant the permission."
)
TOO_MANY = {"message": "Too Many Requests"}

LWA_CASES = [
    case("revoked", 400, lwa_error("invalid_grant", REVOKED), GRANT),
    case("grant-code", 400, lwa_error("invalid_grant", "code expired"), GRANT),
    case("bad-client", 401, lwa_error("invalid_client", "Client authentication failed"), CLIENT),
    case("bad-client-400", 400, lwa_error("invalid_client"), CLIENT),
    case("unauthorized-client", 400, lwa_error("unauthorized_client"), UNAUTHORIZED_CLIENT),
    case("unauthorized-client-401", 401, lwa_error("unauthorized_client"), UNAUTHORIZED_CLIENT),
    case("invalid-scope", 400, lwa_error("invalid_scope"), SCOPE),
    case("invalid-scope-403", 403, lwa_error("invalid_scope"), SCOPE),
    case("access-denied", 400, lwa_error("access_denied"), GRANT),
    case("invalid-request", 400, lwa_error("invalid_request", "Malformed"), BAD),
    case("server-error-500", 500, lwa_error("server_error"), SERVER),
    case("unavailable-503", 503, lwa_error("temporarily_unavailable"), SERVER),
    case("server-error-400", 400, lwa_error("server_error"), SERVER),
    case("unavailable-400", 400, lwa_error("temporarily_unavailable"), SERVER),
    case("throttled", 429, TOO_MANY, THROTTLED, **THROTTLE_HEADERS),
    case("gateway-html-502", 502, HTML, SERVER),
    case("gateway-504-empty", 504, None, SERVER),
    case("html-200", 200, HTML, BAD),
    case("no-access-token", 200, {"token_type": "bearer", "expires_in": 3600}, BAD),
    case("empty-access-token", 200, {"access_token": "", "expires_in": 3600}, BAD),
    case("bad-expires-in", 200, {"access_token": "Atza|x", "expires_in": "soon"}, BAD),
    case("not-bearer", 200, {"access_token": "Atza|x", "token_type": "mac"}, BAD),
    case("json-list-200", 200, [], BAD),
    case("error-in-200", 200, lwa_error("invalid_grant"), BAD),
    case("unknown-code", 400, lwa_error("brand_new_error"), BAD),
    case("no-code-400", 400, {}, BAD),
    case("html-404", 404, HTML, BAD),
    case("redirect", 302, None, BAD, Location="https://www.amazon.com/"),
]


@pytest.mark.parametrize(("status", "body", "headers", "expected"), LWA_CASES)
def test_lwa_answers(status: int, body: Any, headers: dict[str, str], expected: tuple) -> None:
    with pytest.raises(ProviderError) as info:
        lwa.parse_refresh_response(response(status, body, headers))
    verdict = info.value.verdict
    assert (verdict.reason, verdict.valid, verdict.client_valid) == expected
    assert info.value.detail.startswith(f"token: HTTP {status}")


def test_lwa_invalid_request_is_flagged_as_an_agent_bug() -> None:
    assert lwa_verdict(400, lwa_error("invalid_request")).agent_bug
    assert not lwa_verdict(400, lwa_error("invalid_grant")).agent_bug


def test_lwa_success() -> None:
    body = {
        "access_token": "Atza|abc",
        "token_type": "bearer",
        "expires_in": 3600,
        "refresh_token": "Atzr|def",
    }
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    grant = lwa.parse_refresh_response(response(200, body, headers))
    assert grant.access_token.reveal() == "Atza|abc"
    assert grant.expires_in == 3600.0
    assert grant.refresh_token is not None and grant.refresh_token.reveal() == "Atzr|def"


def test_lwa_success_without_refresh_token_or_expiry() -> None:
    grant = lwa.parse_refresh_response(response(200, {"access_token": "Atza|abc"}))
    assert grant.refresh_token is None
    assert grant.expires_in == 3600.0


def ads_error(code: str, details: str) -> dict[str, str]:
    return {"code": code, "details": details, "requestId": "R1"}


# Rows for GET /v2/profiles; the probe (POST /sp/campaigns/list) shares the status table.
ADS_CASES = [
    case("auth-failed", 401, ads_error("401", "Authentication failed"), UNAUTHORIZED),
    case("gateway-401", 401, {"message": "Unauthorized"}, UNAUTHORIZED),
    case(
        "no-advertiser",
        401,
        ads_error("401", "No matching advertiser found for scope"),
        UNAUTHORIZED,
    ),
    case("scope-missing", 401, {"message": "Scope header is missing"}, UNAUTHORIZED),
    case("scope-denied", 401, ads_error("401", "Not authorized to access scope"), UNAUTHORIZED),
    # airbytehq/airbyte PR #5023: the product, not the credential
    case(
        "forbidden-sd",
        403,
        ads_error("403", "Advertiser is not authorized for Sponsored Display."),
        ("ad_product_unauthorized", False, None),
    ),
    case("forbidden-detail", 403, {"detail": "Forbidden"}, FORBIDDEN),
    case("throttled", 429, TOO_MANY, THROTTLED, **THROTTLE_HEADERS),
    case("500", 500, ads_error("500", "Internal error"), SERVER),
    case("502-html", 502, HTML, SERVER),
    case("503", 503, {"message": "Service Unavailable"}, SERVER),
    case("504-empty", 504, None, SERVER),
    case("duplicate-425", 425, ads_error("425", "Duplicate request"), BAD),
    case("not-found", 404, {"message": "Not Found"}, BAD),
    case("400", 400, ads_error("400", "Invalid input"), BAD),
    case("html-200", 200, HTML, BAD),
]
PROFILE_SHAPES = [
    case("profiles-not-list", 200, {"profiles": []}, BAD),
    case("profile-id-missing", 200, [{"countryCode": "US"}], BAD),
    case("profile-id-string", 200, [{"profileId": "123"}], BAD),
    case("profile-not-object", 200, [123], BAD),
]
PROBE_SHAPES = [
    case("no-campaigns", 200, {"nextToken": None}, BAD),
    case("campaigns-not-list", 200, {"campaigns": {}}, BAD),
    case("json-list", 200, [], BAD),
]


def check_ads(
    parse: Callable[[httpx.Response], Any],
    status: int,
    body: Any,
    headers: dict[str, str],
    expected: tuple,
) -> None:
    with pytest.raises(ProviderError) as info:
        parse(response(status, body, headers))
    verdict = info.value.verdict
    assert (verdict.reason, verdict.valid, verdict.client_valid) == expected


@pytest.mark.parametrize(("status", "body", "headers", "expected"), ADS_CASES + PROFILE_SHAPES)
def test_profiles_answers(status: int, body: Any, headers: dict[str, str], expected: tuple) -> None:
    check_ads(ads_api.parse_profile_list, status, body, headers, expected)


@pytest.mark.parametrize(("status", "body", "headers", "expected"), ADS_CASES + PROBE_SHAPES)
def test_probe_answers(status: int, body: Any, headers: dict[str, str], expected: tuple) -> None:
    check_ads(ads_api.parse_campaigns_probe, status, body, headers, expected)


def test_ads_success() -> None:
    profiles = [
        {
            "profileId": 3_000_000_000_001,
            "countryCode": "US",
            "currencyCode": "USD",
            "timezone": "America/Los_Angeles",
            "accountInfo": {"marketplaceStringId": "ATVPDKIKX0DER", "id": "A1", "type": "seller"},
        }
    ]
    assert [p["profileId"] for p in ads_api.parse_profile_list(response(200, profiles))] == [
        3_000_000_000_001]
    assert ads_api.parse_profile_list(response(200, [])) == []
    campaigns = {"campaigns": [], "nextToken": None}
    assert ads_api.parse_campaigns_probe(response(200, campaigns)) is None


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            lwa_error("invalid_grant", "User may have revoked"),
            "invalid_grant: User may have revoked",
        ),
        (
            {"code": "401", "details": "Authentication failed", "requestId": "R1"},
            "401: Authentication failed (requestId R1)",
        ),
        ({"message": "Unauthorized"}, "Unauthorized"),
        ({"detail": "Forbidden"}, "Forbidden"),
        (
            {"errors": [{"code": "Unauthorized", "message": "Access denied"}]},
            "Unauthorized: Access denied",
        ),
        ({"unexpected": 1}, ""),
        ([1, 2], ""),
        (None, ""),
    ],
)
def test_error_text_reads_every_shape(body: Any, text: str) -> None:
    assert error_text(body) == text


def test_describe_names_non_json_bodies() -> None:
    html = response(502, HTML)
    assert describe("profiles", html, parse_json(html)) == (
        "profiles: HTTP 502: body is not JSON (text/html)"
    )
    weird = response(200, {"unexpected": 1})
    assert (
        describe("token", weird, parse_json(weird)) == "token: HTTP 200: unexpected response shape"
    )
    forbidden = response(403, {"code": "403", "details": "Advertiser is not authorized"})
    assert describe("campaigns_list", forbidden, parse_json(forbidden)) == (
        "campaigns_list: HTTP 403: Advertiser is not authorized"
    )


def test_parse_json_tolerates_garbage() -> None:
    assert parse_json(httpx.Response(200, content=b'{"access_token": ')) is None
    assert parse_json(httpx.Response(200, content=b"\xff\xfe")) is None
    assert parse_json(httpx.Response(200, content=json.dumps([1]).encode())) == [1]


