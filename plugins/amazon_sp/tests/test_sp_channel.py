"""AmazonSpChannel against the SP-API simulator over loopback: the check, the classification
of SP-API's answers, the rate limit, the reconnect through Seller Central's consent page."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from channel_agent_amazon_lwa.classify import ProviderError
from channel_agent_amazon_sp import sp_api
from channel_agent_amazon_sp.channel import AmazonSpChannel
from channel_agent_amazon_sp.simulator import SimSeller, SpSimulator

from agent.channel import CheckContext, CheckResult, ReconnectError
from agent.config.loader import ConfigError, build_config
from agent.reconnect import new_attempt
from agent.reconnect_redirect import code_from_redirect

CLIENT_ID = "amzn1.application-oa2-client.sp-test"
CLIENT_SECRET = "sp-test-client-secret"
APPLICATION_ID = "amzn1.sp.solution.test"
REDIRECT = "http://127.0.0.1:8765/oauth/callback"
US, CA = "ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"


class Clock:
    """Monotonic time that only the test moves (the participations rate limit)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sim() -> AsyncIterator[SpSimulator]:
    simulator = SpSimulator(CLIENT_ID, CLIENT_SECRET, APPLICATION_ID)
    simulator.add_seller(SimSeller("acme", "na", [US, CA]))
    await simulator.start()
    yield simulator
    await simulator.stop()


def channel_for(sim: SpSimulator, tmp_path: Path, **settings) -> AmazonSpChannel:
    (tmp_path / "secret").write_text(CLIENT_SECRET)
    (tmp_path / "acme.token").write_text(sim.sellers["acme"].refresh_token)
    data = {
        "agent": {"state_path": ":memory:"},
        "channels": {"amazon_sp": {
            "client_id": CLIENT_ID, "client_secret_file": "secret",
            "application_id": APPLICATION_ID, "endpoints": sim.endpoints(),
            "retry": {"initial_backoff": "10ms", "max_backoff": "10ms"},
            "accounts": [{"name": "acme", "region": "na", "refresh_token_file": "acme.token",
                          "expected_marketplaces": [US, CA]}],
            **settings,
        }},
    }
    return build_config(data, {"amazon_sp": AmazonSpChannel}, base_dir=tmp_path) \
        .channels["amazon_sp"]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def check(channel: AmazonSpChannel, http: httpx.AsyncClient, clock: Clock,
                budget: float = 5.0) -> tuple[CheckResult, list[tuple[str, str]]]:
    counted: list[tuple[str, str]] = []
    retry = dataclasses.replace(channel.retry_policy(), monotonic=clock)
    ctx = CheckContext(http=http, deadline=clock() + budget, retry=retry,
                       record_request=lambda endpoint, code: counted.append((endpoint, code)))
    return await channel.check(channel.accounts[0], ctx), counted


async def test_healthy_seller(sim, tmp_path, http) -> None:
    channel, clock = channel_for(sim, tmp_path), Clock()
    result, counted = await check(channel, http, clock)
    assert (result.valid, result.reason) == (True, None)
    assert result.targets == {US: True, CA: True} and result.targets_reached == 2
    assert result.client_valid is True and result.refresh_token_fingerprint
    assert counted == [("token", "200"), ("participations", "200")]
    assert result.detail == ""


@pytest.mark.parametrize("scenario,expected", [
    ("revoked", (False, "invalid_grant", None)),
    ("marketplace_removed", (False, "marketplace_missing", True)),
    ("forbidden", (False, "forbidden", True)),
    ("secret_expired", (False, "invalid_client", False)),  # the application, not the seller
    ("throttled", (None, "throttled", True)),
    ("server_error", (None, "server_error", True)),
    ("malformed", (None, "bad_response", True)),
])
async def test_each_scenario_is_classified(sim, tmp_path, http, scenario, expected) -> None:
    sim.sellers["acme"].scenario = scenario
    result, _ = await check(channel_for(sim, tmp_path), http, Clock(), budget=0.5)
    assert (result.valid, result.reason, result.client_valid) == expected
    assert CLIENT_SECRET not in result.detail
    assert sim.sellers["acme"].refresh_token not in result.detail


async def test_marketplace_removed_names_it(sim, tmp_path, http) -> None:
    sim.sellers["acme"].scenario = "marketplace_removed"
    result, _ = await check(channel_for(sim, tmp_path), http, Clock())
    assert result.targets == {US: True, CA: False}
    assert CA in result.detail


async def test_suspended_listings_are_reported_not_failed(sim, tmp_path, http) -> None:
    sim.sellers["acme"].scenario = "suspended"
    result, _ = await check(channel_for(sim, tmp_path), http, Clock())
    assert (result.valid, result.reason) == (True, None)
    assert f"{US}: has suspended listings" in result.detail


async def test_throttling_is_retried_and_counted_with_sp_headers(sim, tmp_path, http) -> None:
    sim.sellers["acme"].scenario = "throttled"
    result, counted = await check(channel_for(sim, tmp_path), http, Clock(), budget=0.5)
    assert result.reason == "throttled"
    assert counted.count(("participations", "429")) >= 1


async def test_participations_are_called_at_most_once_per_interval(sim, tmp_path, http) -> None:
    """getMarketplaceParticipations allows 0.016 requests per second (burst 15) per seller
    and application (developer-docs.amazon.com/sp-api/docs/sellers-api-v1-reference)."""
    channel, clock = channel_for(sim, tmp_path, participations_interval="5m"), Clock()
    await check(channel, http, clock)
    clock.now += 60
    result, counted = await check(channel, http, clock)
    assert result.valid is True and result.targets == {US: True, CA: True}
    assert ("participations", "200") not in counted  # the token refresh alone verified it
    assert "rate limit" in result.detail
    clock.now += 300
    _, counted = await check(channel, http, clock)
    assert ("participations", "200") in counted


def test_participations_interval_below_a_minute_is_refused(sim, tmp_path) -> None:
    with pytest.raises(ConfigError, match="participations_interval.*1m or more"):
        channel_for(sim, tmp_path, participations_interval="10s")


def test_client_secret_expiry_is_rotation_plus_180_days(sim, tmp_path) -> None:
    channel = channel_for(sim, tmp_path, client_secret_rotated="2026-07-01")
    assert channel.client_secret_expiry() == 1782864000.0 + 180 * 86400
    assert channel_for(sim, tmp_path).client_secret_expiry() is None  # rotation unknown
    with pytest.raises(ConfigError, match="client_secret_rotated.*YYYY-MM-DD"):
        channel_for(sim, tmp_path, client_secret_rotated="last tuesday")


# --- SP-API error bodies from public sources -------------------------------------------------

def answer(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body)


@pytest.mark.parametrize("status,body,expected", [
    # developer-docs.amazon.com/sp-api/docs/response-format, and the reference's 403 text
    (403, {"errors": [{"code": "Unauthorized", "message": "Access to requested resource is "
                       "denied.", "details": ""}]}, ("forbidden", False, None)),
    # amzn/selling-partner-api-models issue #320: the expired application secret
    (403, {"errors": [{"code": "Unauthorized", "message": "Access to requested resource is "
                       "denied.", "details": "The LWA secret token you provided has expired. "
                       "Please rotate your LWA credentials."}]},
     ("invalid_client", False, False)),
    (401, {"errors": [{"code": "Unauthorized", "message": "Access to requested resource is "
                       "denied."}]}, ("unauthorized", False, None)),
    # usage plans: a 429 carries QuotaExceeded
    (429, {"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota for the "
                       "requested resource."}]}, ("throttled", None, None)),
    (400, {"errors": [{"code": "InvalidInput", "message": "Invalid input"}]},
     ("bad_response", None, None)),
    (500, {"errors": [{"code": "InternalFailure", "message": "We encountered an internal "
                       "error. Please try again."}]}, ("server_error", None, None)),
    (503, {"errors": [{"code": "ServiceUnavailable", "message": "Service temporarily "
                       "unavailable."}]}, ("server_error", None, None)),
    (404, {"errors": [{"code": "NotFound", "message": "Resource not found"}]},
     ("bad_response", None, None)),
])
def test_sp_api_error_bodies(status, body, expected) -> None:
    with pytest.raises(ProviderError) as info:
        sp_api.parse_participations(answer(status, body))
    verdict = info.value.verdict
    assert (verdict.reason, verdict.valid, verdict.client_valid) == expected


def test_invalid_input_is_an_agent_bug() -> None:
    with pytest.raises(ProviderError) as info:
        sp_api.parse_participations(answer(400, {"errors": [{"code": "InvalidInput"}]}))
    assert info.value.verdict.agent_bug


@pytest.mark.parametrize("body", [{"payload": {}}, {"payload": [{"marketplace": {}}]}, []])
def test_unknown_shapes_are_bad_responses(body) -> None:
    with pytest.raises(ProviderError) as info:
        sp_api.parse_participations(answer(200, body))
    assert info.value.verdict.reason == "bad_response"


# --- reconnect: Seller Central's website authorisation workflow --------------------------------

async def test_consent_url_is_seller_centrals(sim, tmp_path) -> None:
    channel = channel_for(sim, tmp_path, draft_app=True)
    reconnector = channel.reconnector()
    url = reconnector.consent_url(channel.accounts[0], "st4te", "challenge", REDIRECT)
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.path == "/apps/authorize/consent"
    assert query == {"application_id": APPLICATION_ID, "state": "st4te",
                     "redirect_uri": REDIRECT, "version": "beta"}
    assert "code_challenge" not in query  # Seller Central takes no PKCE
    assert "version" not in channel_for(sim, tmp_path).reconnector().consent_url(
        channel.accounts[0], "s", "c", REDIRECT)


async def test_reconnect_exchanges_spapi_oauth_code_and_verifies(sim, tmp_path, http) -> None:
    channel = channel_for(sim, tmp_path)
    account = channel.accounts[0]
    sim.sellers["acme"].scenario = "revoked"
    reconnector = channel.reconnector()
    attempt = new_attempt(reconnector, account, REDIRECT)
    consent = await http.get(f"{attempt.consent_url}&sim_account=acme", follow_redirects=False)
    assert consent.status_code == 302
    redirect = {k: v[0] for k, v in parse_qs(urlsplit(consent.headers["Location"]).query).items()}
    assert set(redirect) == {"spapi_oauth_code", "selling_partner_id", "state"}
    code = code_from_redirect(redirect, attempt.state, reconnector)
    ctx = CheckContext(http=http, deadline=time.monotonic() + 5, retry=channel.retry_policy())
    token = await reconnector.exchange(account, code, attempt.code_verifier, REDIRECT, ctx)
    result = await reconnector.verify(account, token, ctx)
    assert [m.id for m in result.targets] == [US, CA] and result.missing == []
    with pytest.raises(ReconnectError) as info:  # a code works once
        await reconnector.exchange(account, code, attempt.code_verifier, REDIRECT, ctx)
    assert info.value.reason == "code_rejected"


async def test_a_declined_consent_and_a_missing_application_id(sim, tmp_path) -> None:
    channel = channel_for(sim, tmp_path)
    reconnector = channel.reconnector()
    with pytest.raises(ReconnectError) as info:
        code_from_redirect({"error": "access_denied", "state": "s"}, "s", reconnector)
    assert info.value.reason == "declined"
    with pytest.raises(ReconnectError) as info:
        channel_for(sim, tmp_path, application_id="").reconnector().consent_url(
            channel.accounts[0], "s", "c", REDIRECT)
    assert info.value.reason == "unsupported"
