"""AmazonAdsReconnector against the simulator over loopback: consent URL, exchange, verify."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from channel_agent_amazon_ads.channel import AmazonAdsChannel
from channel_agent_amazon_ads.reconnect import SCOPE
from channel_agent_amazon_ads.simulator import SimAccount, Simulator

from agent.channel import CheckContext, ReconnectError, Secret
from agent.config.loader import build_config
from agent.reconnect import new_attempt

CLIENT_ID = "amzn1.application-oa2-client.test"
CLIENT_SECRET = "test-client-secret"
REDIRECT = "http://127.0.0.1:8765/oauth/callback"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(CLIENT_ID, CLIENT_SECRET)
    simulator.add_account(SimAccount.create("acme", "na", [111, 112], "revoked"))
    simulator.add_account(SimAccount.create("globex", "eu", [221, 222], "profile_removed"))
    await simulator.start()
    yield simulator
    await simulator.stop()


def channel_for(sim: Simulator, tmp_path: Path, **settings) -> AmazonAdsChannel:
    (tmp_path / "secret").write_text(CLIENT_SECRET)
    data = {
        "agent": {"state_path": ":memory:"},
        "channels": {"amazon_ads": {
            "client_id": CLIENT_ID, "client_secret_file": "secret",
            "endpoints": sim.endpoints(), "retry": {"initial_backoff": "10ms",
                                                    "max_backoff": "10ms"},
            "accounts": [
                {"name": "acme", "region": "na", "refresh_token_file": "acme.token",
                 "expected_profiles": [111, 112]},
                {"name": "globex", "region": "eu", "refresh_token_file": "globex.token",
                 "expected_profiles": [221, 222]},
            ],
            **settings,
        }},
    }
    config = build_config(data, {"amazon_ads": AmazonAdsChannel}, base_dir=tmp_path)
    return config.channels["amazon_ads"]


def account(channel: AmazonAdsChannel, name: str):
    return next(a for a in channel.accounts if a.name == name)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def ctx(http: httpx.AsyncClient, budget: float = 10.0) -> CheckContext:
    return CheckContext(http=http, deadline=time.monotonic() + budget)


async def consent(http: httpx.AsyncClient, url: str, extra: str) -> dict[str, str]:
    """Play the browser on the consent page; the redirect's query."""
    response = await http.get(f"{url}&{extra}", follow_redirects=False)
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def test_consent_url_of_the_accounts_region_with_pkce(sim, tmp_path) -> None:
    channel = channel_for(sim, tmp_path, endpoints={
        "authorize_url": {"eu": "https://eu.account.amazon.com/ap/oa"}})
    reconnector = channel.reconnector()
    url = reconnector.consent_url(account(channel, "globex"), "st", "challenge", REDIRECT)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://eu.account.amazon.com/ap/oa"
    assert {k: v[0] for k, v in parse_qs(parts.query).items()} == {
        "client_id": CLIENT_ID, "scope": SCOPE, "response_type": "code",
        "redirect_uri": REDIRECT, "state": "st", "code_challenge": "challenge",
        "code_challenge_method": "S256"}
    na = reconnector.consent_url(account(channel, "acme"), "st", "c", REDIRECT)
    assert na.startswith("https://www.amazon.com/ap/oa?")


async def test_exchange_and_verify_a_revoked_account(sim, tmp_path, http) -> None:
    channel = channel_for(sim, tmp_path)
    reconnector, acme = channel.reconnector(), account(channel, "acme")
    old = sim.account("acme").refresh_token
    attempt = new_attempt(reconnector, acme, REDIRECT)
    challenge = parse_qs(urlsplit(attempt.consent_url).query)["code_challenge"][0]
    digest = hashlib.sha256(attempt.code_verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    redirect = await consent(http, attempt.consent_url, "sim_account=acme")
    assert redirect["state"] == attempt.state
    token = await reconnector.exchange(acme, redirect["code"], attempt.code_verifier, REDIRECT,
                                       ctx(http))
    assert token == Secret(sim.account("acme").refresh_token) != Secret(old)
    result = await reconnector.verify(acme, token, ctx(http))
    assert [(p.id, p.country, p.kind, p.name) for p in result.targets] == [
        ("111", "US", "seller", "acme"), ("112", "CA", "seller", "acme")]
    assert result.missing == [] and result.refresh_token == token


async def test_a_code_works_once(sim, tmp_path, http) -> None:
    channel = channel_for(sim, tmp_path)
    reconnector, acme = channel.reconnector(), account(channel, "acme")
    attempt = new_attempt(reconnector, acme, REDIRECT)
    code = (await consent(http, attempt.consent_url, "sim_account=acme"))["code"]
    await reconnector.exchange(acme, code, attempt.code_verifier, REDIRECT, ctx(http))
    with pytest.raises(ReconnectError) as info:
        await reconnector.exchange(acme, code, attempt.code_verifier, REDIRECT, ctx(http))
    assert info.value.reason == "code_rejected"
    assert "expired" in info.value.message and "already used" in info.value.message


async def test_a_code_expires_after_five_minutes(sim, tmp_path, http) -> None:
    channel = channel_for(sim, tmp_path)
    reconnector, acme = channel.reconnector(), account(channel, "acme")
    attempt = new_attempt(reconnector, acme, REDIRECT)
    code = (await consent(http, attempt.consent_url, "sim_account=acme"))["code"]
    sim.clock = lambda: time.time() + 301
    with pytest.raises(ReconnectError) as info:
        await reconnector.exchange(acme, code, attempt.code_verifier, REDIRECT, ctx(http))
    assert info.value.reason == "code_rejected"


async def test_wrong_verifier_or_redirect_uri_is_rejected(sim, tmp_path, http) -> None:
    channel = channel_for(sim, tmp_path)
    reconnector, acme = channel.reconnector(), account(channel, "acme")
    attempt = new_attempt(reconnector, acme, REDIRECT)
    code = (await consent(http, attempt.consent_url, "sim_account=acme"))["code"]
    with pytest.raises(ReconnectError) as info:
        await reconnector.exchange(acme, code, "x" * 64, REDIRECT, ctx(http))
    assert (info.value.reason, "PKCE" in info.value.message) == ("rejected", True)
    attempt = new_attempt(reconnector, acme, REDIRECT)
    code = (await consent(http, attempt.consent_url, "sim_account=acme"))["code"]
    with pytest.raises(ReconnectError) as info:
        await reconnector.exchange(acme, code, attempt.code_verifier, REDIRECT + "x", ctx(http))
    assert (info.value.reason, "redirect_uri" in info.value.message) == ("rejected", True)


async def test_declined_consent_and_unapproved_scope(sim, tmp_path, http) -> None:
    reconnector = channel_for(sim, tmp_path).reconnector()
    url = reconnector.consent_url(account(channel_for(sim, tmp_path), "acme"), "st", "c",
                                  REDIRECT)
    redirect = await consent(http, url, "sim_decline=1")
    assert redirect["error"] == "access_denied" and redirect["state"] == "st"
    assert reconnector.redirect_error("access_denied", "").reason == "declined"
    refused = reconnector.redirect_error("invalid_scope", "An unknown scope was requested.")
    assert refused.reason == "rejected" and "not approved for the Amazon Ads API" in \
        refused.message


async def test_rotated_client_is_named(sim, tmp_path, http) -> None:
    channel = channel_for(sim, tmp_path)
    reconnector, acme = channel.reconnector(), account(channel, "acme")
    attempt = new_attempt(reconnector, acme, REDIRECT)
    code = (await consent(http, attempt.consent_url, "sim_account=acme"))["code"]
    sim.set_scenario("acme", "client_rotated")
    with pytest.raises(ReconnectError) as info:
        await reconnector.exchange(acme, code, attempt.code_verifier, REDIRECT, ctx(http))
    assert info.value.reason == "rejected" and "client id or secret" in info.value.message


async def test_verify_reports_a_missing_expected_profile(sim, tmp_path, http) -> None:
    channel = channel_for(sim, tmp_path)
    reconnector, globex = channel.reconnector(), account(channel, "globex")
    attempt = new_attempt(reconnector, globex, REDIRECT)
    code = (await consent(http, attempt.consent_url, "sim_account=globex"))["code"]
    token = await reconnector.exchange(globex, code, attempt.code_verifier, REDIRECT, ctx(http))
    result = await reconnector.verify(globex, token, ctx(http))
    assert [p.id for p in result.targets] == ["222"] and result.missing == ["221"]


async def test_amazon_not_answering_is_unavailable_not_rejected(sim, tmp_path) -> None:
    channel = channel_for(sim, tmp_path)
    reconnector, acme = channel.reconnector(), account(channel, "acme")
    answer = httpx.Response(503, json={"error": "temporarily_unavailable"})
    transport = httpx.MockTransport(lambda request: answer)
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(ReconnectError) as info:
            await reconnector.exchange(acme, "code", "v" * 64, REDIRECT, ctx(http, budget=0.05))
        assert info.value.reason == "unavailable"
        answer = httpx.Response(200, text="<html>a gateway page</html>")
        with pytest.raises(ReconnectError) as info:
            await reconnector.verify(acme, Secret("Atzr|x"), ctx(http, budget=0.05))
        assert info.value.reason == "unavailable" and "Atzr|x" not in info.value.message


async def test_a_refused_new_token_is_rejected(sim, tmp_path, http) -> None:
    channel = channel_for(sim, tmp_path)
    with pytest.raises(ReconnectError) as info:
        await channel.reconnector().verify(account(channel, "acme"), Secret("Atzr|unknown"),
                                           ctx(http))
    assert info.value.reason == "rejected" and "invalid_grant" in info.value.message
