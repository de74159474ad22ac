"""Shopify Admin API calls of the check, the token endpoint, and the headers that matter.

- ``GET /admin/oauth/access_scopes.json`` (unversioned): the scopes granted to the app,
  ``{"access_scopes": [{"handle": "read_orders"}, ...]}``.
- ``GET /admin/api/<version>/shop.json``: the shop; answers carry ``X-Shopify-API-Version``
  (the version Shopify served: a retired version falls forward to the oldest supported one),
  ``X-Shopify-API-Deprecated-Reason`` when the call used something deprecated (a URL before
  2025-04, the deprecated fields since: shopify.dev/changelog/graphql-return-actual-deprecation-
  reasons) and ``X-Shopify-Shop-Api-Call-Limit: used/size`` (the REST leaky bucket).
- ``POST /admin/oauth/access_token``: the authorization-code grant (reconnect) and the
  ``refresh_token`` grant of expiring offline tokens (shopify.dev/changelog/offline-access-
  tokens-now-support-expiry-and-refresh): ``access_token``, ``expires_in`` (3600),
  ``refresh_token``, ``refresh_token_expires_in`` (90 days), ``scope``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from agent.channel import Secret
from agent.checks.httpx_direct import form_body
from agent.checks.verdict import ProviderError, parse_json
from channel_agent_shopify.classify import BAD_RESPONSE, api_verdict, describe, token_verdict

ACCESS_TOKEN_HEADER = "X-Shopify-Access-Token"
VERSION_HEADER = "X-Shopify-API-Version"
DEPRECATED_HEADER = "X-Shopify-API-Deprecated-Reason"
CALL_LIMIT_HEADER = "X-Shopify-Shop-Api-Call-Limit"

SHOP_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,59}\.myshopify\.com")
API_VERSION = re.compile(r"(20\d\d)-(01|04|07|10)")
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def shop_domain_problem(value: object) -> str | None:
    """What is wrong with a shop's domain, or None (``acme.myshopify.com``, lower case)."""
    if not isinstance(value, str) or not SHOP_DOMAIN.fullmatch(value):
        return (f"must be the shop's permanent domain, <name>.myshopify.com (lower case, no "
                f"scheme or path), not {value!r}")
    return None


def api_version_problem(value: object) -> str | None:
    """What is wrong with a stable Admin API version name, or None (``2026-10``)."""
    if not isinstance(value, str) or not API_VERSION.fullmatch(value):
        return (f"must be a stable Admin API version, YYYY-MM with MM 01, 04, 07 or 10 "
                f"(e.g. 2026-10), not {value!r}")
    return None


def version_release(version: str) -> float | None:
    """Unix time a stable version was released (the 1st of its month, 17:00 UTC per Shopify's
    versioning page), None for a name that is not one."""
    match = API_VERSION.fullmatch(version)
    if match is None:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    return datetime(year, month, 1, 17, tzinfo=UTC).timestamp()


def version_retirement(version: str, support_months: int) -> float | None:
    """When ``version`` stops being supported: its release plus ``support_months`` (Shopify
    supports each stable version for at least 12 months: shopify.dev/docs/api/usage/
    versioning). None for a name that is not a stable version."""
    match = API_VERSION.fullmatch(version)
    if match is None:
        return None
    months = int(match.group(1)) * 12 + int(match.group(2)) - 1 + support_months
    return datetime(months // 12, months % 12 + 1, 1, 17, tzinfo=UTC).timestamp()


@functools.lru_cache(maxsize=4096)
def parsed_url(url: str) -> httpx.URL:
    return httpx.URL(url)


def admin_base(template: str, shop: str) -> str:
    """The shop's admin base URL from the channel's ``admin_url`` template (``{shop}``)."""
    return template.replace("{shop}", shop).rstrip("/")


def _api_request(client: httpx.AsyncClient, url: str, token: Secret) -> httpx.Request:
    headers = {ACCESS_TOKEN_HEADER: token.reveal(), "Accept": "application/json"}
    return client.build_request("GET", parsed_url(url), headers=headers)


def access_scopes_request(client: httpx.AsyncClient, base: str, token: Secret) -> httpx.Request:
    return _api_request(client, f"{base}/admin/oauth/access_scopes.json", token)


def shop_request(client: httpx.AsyncClient, base: str, version: str,
                 token: Secret) -> httpx.Request:
    return _api_request(client, f"{base}/admin/api/{version}/shop.json", token)


def _ok_body(response: httpx.Response, endpoint: str) -> dict:
    body = parse_json(response)
    if not response.is_success:
        raise ProviderError(api_verdict(response.status_code, body),
                            describe(endpoint, response, body))
    if not isinstance(body, dict):
        raise ProviderError(BAD_RESPONSE, describe(endpoint, response, body))
    return body


def parse_access_scopes(response: httpx.Response, endpoint: str = "access_scopes") -> set[str]:
    body = _ok_body(response, endpoint)
    items = body.get("access_scopes")
    if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("handle"), str) for i in items):
        raise ProviderError(BAD_RESPONSE, f"{endpoint}: HTTP {response.status_code}: "
                                          f"no access_scopes list of handles")
    return {item["handle"] for item in items}


def parse_shop(response: httpx.Response, endpoint: str = "shop") -> dict:
    body = _ok_body(response, endpoint)
    shop = body.get("shop")
    if not isinstance(shop, dict):
        raise ProviderError(BAD_RESPONSE, f"{endpoint}: HTTP {response.status_code}: no shop")
    return shop


def covering_scope(scope: str, granted: set[str]) -> str | None:
    """The granted scope that gives ``scope``: itself, or ``write_x`` for ``read_x``
    (Shopify: write access implies read access); None when none does."""
    if scope in granted:
        return scope
    if scope.startswith("read_") and "write_" + scope[len("read_"):] in granted:
        return "write_" + scope[len("read_"):]
    return None


def missing_scopes(required: list[str], granted: set[str]) -> list[str]:
    """Required scopes not granted (a ``write_x`` grant covers ``read_x``)."""
    return [scope for scope in required if covering_scope(scope, granted) is None]


def call_limit(response: httpx.Response) -> tuple[int, int] | None:
    """(used, size) of ``X-Shopify-Shop-Api-Call-Limit: 32/40``; None when absent or odd."""
    value = response.headers.get(CALL_LIMIT_HEADER)
    if not value:
        return None
    used, _, size = value.partition("/")
    try:
        used_n, size_n = int(used), int(size)
    except ValueError:
        return None
    return (used_n, size_n) if size_n > 0 and used_n >= 0 else None


# --- token endpoint ------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenGrant:
    access_token: Secret
    expires_in: float | None  # None: a non-expiring offline token
    refresh_token: Secret | None
    refresh_expires_in: float | None
    scope: str


def token_request(client: httpx.AsyncClient, base: str, form: dict[str, str]) -> httpx.Request:
    return client.build_request(
        "POST", parsed_url(f"{base}/admin/oauth/access_token"),
        content=form_body(form),
        headers={"Content-Type": FORM_CONTENT_TYPE, "Accept": "application/json"},
    )


def refresh_form(client_id: str, client_secret: Secret, refresh_token: Secret) -> dict[str, str]:
    return {"client_id": client_id, "client_secret": client_secret.reveal(),
            "grant_type": "refresh_token", "refresh_token": refresh_token.reveal()}


def code_form(client_id: str, client_secret: Secret, code: str, expiring: bool) -> dict[str, str]:
    form = {"client_id": client_id, "client_secret": client_secret.reveal(), "code": code}
    if expiring:
        form["expiring"] = "1"
    return form


def parse_token_response(response: httpx.Response, endpoint: str = "token") -> TokenGrant:
    body = parse_json(response)
    if not response.is_success or not isinstance(body, dict):
        raise ProviderError(token_verdict(response.status_code, body),
                            describe(endpoint, response, body))

    def bad(what: str) -> ProviderError:
        return ProviderError(BAD_RESPONSE, f"{endpoint}: HTTP {response.status_code}: {what}")

    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise bad("no access_token in the answer")
    expires_in = _seconds(body.get("expires_in"))
    refresh_expires_in = _seconds(body.get("refresh_token_expires_in"))
    if "expires_in" in body and expires_in is None:
        raise bad("expires_in is not a positive number")
    refresh = body.get("refresh_token")
    refresh = refresh if isinstance(refresh, str) and refresh else None
    return TokenGrant(Secret(access), expires_in, Secret(refresh) if refresh else None,
                      refresh_expires_in, str(body.get("scope") or ""))


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None
