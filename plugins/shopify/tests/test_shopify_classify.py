"""Every Shopify answer the check can get, with bodies from public sources, through the
channel's check (a MockTransport plays Shopify)."""

from __future__ import annotations

import json

import httpx
import pytest
from channel_agent_shopify.shopify_api import call_limit, missing_scopes
from shopify_helpers import SCOPES, account, channel_for, ctx, shop_account

TOKEN = "shpat_plantedACCESStoken0123456789"
SCOPES_OK = {"access_scopes": [{"handle": s} for s in SCOPES]}
SHOP_OK = {"shop": {"id": 1, "name": "Acme", "myshopify_domain": "acme.myshopify.com"}}
# Bodies as published:
# - 401: Shopify's answer to a revoked token or an uninstalled app, quoted verbatim in many
#   clients, e.g. the Go constant ErrorUnauthorized of a public Shopify client and a documented
#   curl session ('{"errors":"[API] Invalid API key or access token (unrecognized login or
#   wrong password)"}').
UNAUTHORIZED = {"errors": "[API] Invalid API key or access token (unrecognized login or "
                          "wrong password)"}
# - 402: Shopify/shopify-cli issue #1770 and Shopify/cli issue #2017:
#   'APIRequestClientError: 402{"errors":"Unavailable Shop"}'.
FROZEN = {"errors": "Unavailable Shop"}
# - 403 "Unavailable Shop": orbit-apps/elixir-shopifyapi PR #382 (GraphQL answers unavailable
#   shops with 402 and 403 carrying "Unavailable Shop").
# - 404: the {"errors": "Not Found"} body of Shopify's REST API (public test fixtures).
NOT_FOUND = {"errors": "Not Found"}
# - 423: shopify.dev/changelog "Admin API requests to locked stores will return a 423 status
#   code instead of 420" (2018); the body is not published, any is accepted.
# - 429: '{"errors":"Exceeded 2 calls per second for api client. Reduce request rates to
#   resume uninterrupted service."}' with Retry-After (Shopify's REST rate-limit docs).
THROTTLED = {"errors": "Exceeded 2 calls per second for api client. Reduce request rates to "
                       "resume uninterrupted service."}


def shopify(scopes: httpx.Response, shop: httpx.Response | None = None):
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        assert request.headers["X-Shopify-Access-Token"] == TOKEN
        if request.url.path.endswith("access_scopes.json"):
            return scopes
        return shop or httpx.Response(200, json=SHOP_OK,
                                      headers={"X-Shopify-API-Version": "2026-10"})
    return handle, calls


async def run(tmp_path, handler, **account_extra):
    channel = channel_for(None, tmp_path, [shop_account(tmp_path, "acme", TOKEN,
                                                        **account_extra)])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        return channel, await channel.check(account(channel, "acme"), ctx(http, budget=5))


@pytest.mark.parametrize(("status", "body", "valid", "reason"), [
    (401, UNAUTHORIZED, False, "unauthorized"),
    (402, FROZEN, False, "shop_frozen"),
    (403, FROZEN, False, "shop_unavailable"),
    (403, {"errors": "[API] This action requires merchant approval for read_orders scope."},
     False, "forbidden"),
    (404, NOT_FOUND, False, "shop_not_found"),
    (423, {"errors": "This shop is unavailable"}, False, "shop_locked"),
    (429, THROTTLED, None, "throttled"),
    (500, {"errors": "Internal Server Error"}, None, "server_error"),
    (503, "<!DOCTYPE html><html><body>Service Unavailable</body></html>", None, "server_error"),
    (400, {"errors": "bad"}, None, "bad_response"),
    (200, "<html>a login page</html>", None, "bad_response"),
    (200, {"access_scopes": "read_orders"}, None, "bad_response"),
])
async def test_each_answer_of_access_scopes(tmp_path, status, body, valid, reason) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {"Retry-After": "0.01"} if status == 429 else {}
    handler, _ = shopify(httpx.Response(status, text=content, headers=headers))
    _, result = await run(tmp_path, handler)
    assert (result.valid, result.reason) == (valid, reason)
    assert TOKEN not in result.detail


async def test_a_401_is_asked_again_once_before_it_counts(tmp_path) -> None:
    answers = [httpx.Response(401, json=UNAUTHORIZED), httpx.Response(200, json=SCOPES_OK)]
    handler, calls = shopify(answers[0])

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("access_scopes.json") and answers:
            calls.append("scopes")
            return answers.pop(0)
        return handler(request)
    _, result = await run(tmp_path, flaky)
    assert result.valid is True and calls.count("scopes") == 2


async def test_a_missing_required_scope_is_a_permission_loss(tmp_path) -> None:
    handler, _ = shopify(httpx.Response(200, json={"access_scopes": [{"handle": "read_orders"}]}))
    _, result = await run(tmp_path, handler)
    assert (result.valid, result.reason) == (False, "scope_missing")
    assert result.targets == {"read_orders": True, "read_products": False}
    assert result.targets_reached == 1
    assert "read_products" in result.detail


async def test_write_scope_covers_read_and_all_granted_scopes_shown_without_requirements(
        tmp_path) -> None:
    assert missing_scopes(["read_orders", "write_orders"], {"write_orders"}) == []
    assert missing_scopes(["write_orders"], {"read_orders"}) == ["write_orders"]
    handler, _ = shopify(httpx.Response(200, json=SCOPES_OK))
    _, result = await run(tmp_path, handler, required_scopes=[])
    assert result.valid is True and result.targets == dict.fromkeys(SCOPES, True)


async def test_version_headers_feed_the_channel_metrics(tmp_path) -> None:
    shop = httpx.Response(200, json=SHOP_OK, headers={
        "X-Shopify-API-Version": "2025-10",
        "X-Shopify-API-Deprecated-Reason": "Shop.products, Shop.productVariants"})
    handler, calls = shopify(httpx.Response(200, json=SCOPES_OK), shop)
    channel, result = await run(tmp_path, handler)
    assert result.valid is True
    assert "/admin/api/2026-10/shop.json" in calls  # the configured (default) version
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in channel.metrics() for s in f.samples}
    assert samples[("channel_api_version_info", (
        ("channel", "shopify"), ("configured", "2026-10"), ("served", "2025-10")))] == 1.0
    # 2026-10 is released 2026-10-01 17:00 UTC and supported 12 months
    assert samples[("channel_api_version_retirement_timestamp_seconds", (
        ("channel", "shopify"), ("version", "2026-10")))] == 1822410000.0
    reasons = [labels for name, labels in samples
               if name == "channel_api_deprecated_call_last_seen_timestamp_seconds"]
    assert reasons == [(("channel", "shopify"), ("reason", "Shop.products, Shop.productVariants"))]


def test_call_limit_header() -> None:
    assert call_limit(httpx.Response(200, headers={"X-Shopify-Shop-Api-Call-Limit": "32/40"})) \
        == (32, 40)
    for odd in ("", "40", "a/b", "1/0"):
        assert call_limit(httpx.Response(200, headers={"X-Shopify-Shop-Api-Call-Limit": odd})) \
            is None


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("shop", "https://acme.myshopify.com", "must be the shop's permanent domain"),
    ("shop", "acme.com", "must be the shop's permanent domain"),
    ("shop", "Acme.myshopify.com", "must be the shop's permanent domain"),
])
def test_a_shop_that_is_not_a_myshopify_domain_is_refused(tmp_path, key, value, problem) -> None:
    from agent.config.loader import ConfigError

    with pytest.raises(ConfigError) as info:
        channel_for(None, tmp_path, [shop_account(tmp_path, "acme", TOKEN, **{key: value})])
    assert f"channels.shopify.accounts[0].{key}: {problem}" in str(info.value)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(("settings", "problem"), [
    ({"api_version": "2026-05"}, "api_version: must be a stable Admin API version"),
    ({"api_version": "unstable"}, "api_version: must be a stable Admin API version"),
    ({"api_version_retirement": "next year"}, "api_version_retirement: must be an ISO 8601"),
    ({"non_expiring_tokens_end": "2027-01-01T00:00:00"}, "non_expiring_tokens_end: must be"),
])
def test_channel_settings_are_checked(tmp_path, settings, problem) -> None:
    from agent.config.loader import ConfigError

    with pytest.raises(ConfigError) as info:
        channel_for(None, tmp_path, [shop_account(tmp_path, "acme", TOKEN)], **settings)
    assert f"channels.shopify.{problem}" in str(info.value)
