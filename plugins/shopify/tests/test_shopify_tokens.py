"""The two offline token models over the simulator (real HTTP on loopback): non-expiring
tokens, expiring tokens observed (never refreshed) and owned (refreshed, rotation stored)."""

from __future__ import annotations

import time

import httpx
from channel_agent_shopify.simulator import SimShop
from shopify_helpers import SCOPES, account, channel_for, ctx, shop_account

from agent.channel import Secret
from agent.checks.httpretry import RetryPolicy
from agent.checks.ratelimit import RateLimitedTransport
from agent.storage.secretfile import write_secret_file


def add(sim, name: str, scenario: str = "healthy", expiring: bool = False) -> SimShop:
    shop = SimShop(f"{name}.myshopify.com", list(SCOPES), scenario)
    if expiring:
        shop.refresh_token = f"shprt_{name}_initial"
    sim.add_shop(shop)
    return shop


async def test_non_expiring_token_valid_then_uninstalled(sim, tmp_path, http) -> None:
    shop = add(sim, "acme")
    channel = channel_for(sim, tmp_path, [shop_account(tmp_path, "acme", shop.access_token)])
    result = await channel.check(account(channel, "acme"), ctx(http))
    assert result.valid is True and result.targets == dict.fromkeys(SCOPES, True)
    assert result.targets_reached == len(SCOPES)
    # the long-lived credential is the access token itself; public apps lose it 2027-01-01
    assert result.refresh_token_fingerprint == Secret(shop.access_token).fingerprint()
    assert channel.refresh_token_expiry("acme", time.time()) == 1798761600.0  # 2027-01-01
    sim.shops["acme.myshopify.com"].scenario = "uninstalled"
    result = await channel.check(account(channel, "acme"), ctx(http))
    assert (result.valid, result.reason) == (False, "unauthorized")


async def test_custom_apps_non_expiring_tokens_never_expire(sim, tmp_path) -> None:
    channel = channel_for(sim, tmp_path, [shop_account(tmp_path, "acme", "shpat_x")],
                         non_expiring_tokens_end="")
    assert channel.refresh_token_expiry("acme", time.time()) is None


async def test_observer_checks_with_the_platforms_access_token_and_never_refreshes(
        sim, tmp_path, http) -> None:
    shop = add(sim, "wonka", expiring=True)
    refresh_file = tmp_path / "wonka.refresh_token"
    refresh_file.write_text(shop.refresh_token)
    channel = channel_for(sim, tmp_path, [shop_account(
        tmp_path, "wonka", shop.access_token, token_type="expiring",
        refresh_token_file=str(refresh_file))])
    requests: list[str] = []

    async def hook(request: httpx.Request) -> None:
        requests.append(request.url.path)
    http.event_hooks["request"] = [hook]
    first = await channel.check(account(channel, "wonka"), ctx(http))
    assert first.valid is True
    assert not any(path.endswith("access_token") for path in requests)  # no refresh, ever
    assert shop.refresh_token == refresh_file.read_text()  # the platform's token still works
    assert first.refresh_token_fingerprint == Secret(shop.refresh_token).fingerprint()
    issued = 1_800_000_000.0
    assert channel.refresh_token_expiry("wonka", issued) == issued + 90 * 86400
    # the platform rotates: new tokens in the store, the fingerprint follows (the core then
    # restarts the 90 days); a rotation that stops leaves the expiry where it was
    shop.refresh_token, shop.access_token = "shprt_rotated", "shpat_rotated"
    refresh_file.write_text(shop.refresh_token)
    (tmp_path / "wonka.access_token").write_text(shop.access_token)
    second = await channel.check(account(channel, "wonka"), ctx(http))
    assert second.valid is True
    assert second.refresh_token_fingerprint == Secret("shprt_rotated").fingerprint()


async def test_observer_rereads_the_store_before_calling_a_401_invalid(
        sim, tmp_path, http) -> None:
    shop = add(sim, "wonka", expiring=True)
    channel = channel_for(sim, tmp_path, [shop_account(
        tmp_path, "wonka", "shpat_expired_one", token_type="expiring")])
    token_file = tmp_path / "wonka.access_token"

    async def platform_refreshes(request):  # the platform writes the current token meanwhile
        token_file.write_text(shop.access_token)
    http.event_hooks["request"] = [platform_refreshes]
    result = await channel.check(account(channel, "wonka"), ctx(http))
    assert result.valid is True


async def test_owner_refreshes_and_stores_the_rotated_refresh_token(sim, tmp_path, http) -> None:
    shop = add(sim, "wonka", expiring=True)
    refresh_file = tmp_path / "wonka.refresh_token"
    refresh_file.write_text(shop.refresh_token)
    channel = channel_for(sim, tmp_path, [shop_account(
        tmp_path, "wonka", "unused", token_type="expiring", ownership="owner",
        refresh_token_file=str(refresh_file))])
    stored: list[Secret] = []

    def persist(acct, secret: Secret) -> None:
        stored.append(secret)
        write_secret_file(refresh_file, secret)
    wonka = account(channel, "wonka")
    result = await channel.check(wonka, ctx(http, persist_refresh_token=persist))
    assert result.valid is True
    assert stored == [Secret(shop.refresh_token)] and refresh_file.read_text().strip() == \
        shop.refresh_token
    assert result.access_token_expires_at - result.access_token_issued_at == 3600
    # the access token is reused until near its expiry: no second refresh
    again = await channel.check(wonka, ctx(http, persist_refresh_token=persist))
    assert again.valid is True and len(stored) == 1
    # a refresh token that no longer works is conclusive for the account
    shop.refresh_token = "shprt_revoked_elsewhere"
    channel._tokens.clear()
    dead = await channel.check(wonka, ctx(http, persist_refresh_token=persist))
    assert (dead.valid, dead.reason) == (False, "invalid_grant")


async def test_a_full_call_limit_bucket_holds_back_the_shop(sim, tmp_path) -> None:
    shop = add(sim, "stark")
    channel = channel_for(sim, tmp_path, [shop_account(tmp_path, "stark", shop.access_token)])
    full = httpx.Response(200, headers={"X-Shopify-Shop-Api-Call-Limit": "40/40"})
    assert channel.backpressure(full) == (40 - 20) / 2.0  # threshold 0.5, 2 calls/s drain
    assert channel.backpressure(httpx.Response(200, headers={
        "X-Shopify-Shop-Api-Call-Limit": "3/40"})) is None
    transport = RateLimitedTransport(httpx.AsyncHTTPTransport(),
                                     backpressure=channel.backpressure)
    async with httpx.AsyncClient(transport=transport) as http:
        # the platform's sync has nearly filled the bucket: after access_scopes answers 31/40
        # the agent holds back (31 - 20) / 2 = 5.5s rather than take the merchant's calls
        shop.bucket, shop.bucket_at = 30, time.monotonic()
        retry = RetryPolicy(initial_backoff=0.01, max_backoff=0.01, request_timeout=1.0)
        result = await channel.check(account(channel, "stark"), ctx(http, retry=retry))
    assert (result.valid, result.reason) == (None, "throttled")
    limiter = next(iter(transport.hosts.values()))
    assert limiter.paused_until - limiter.monotonic() > 4
