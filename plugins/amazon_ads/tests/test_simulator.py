"""The Amazon Ads simulator answers like LwA and the Ads API, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from channel_agent_amazon_ads.demo import AmazonAdsDemo
from channel_agent_amazon_ads.simulator import (
    SCENARIOS,
    SimAccount,
    Simulator,
    SimulatorThread,
)

CLIENT_ID = "amzn1.application-oa2-client.test"
CLIENT_SECRET = "test-client-secret"
CAMPAIGN_TYPE = "application/vnd.spCampaign.v3+json"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(CLIENT_ID, CLIENT_SECRET, slow_seconds=0.05, retry_after=7)
    simulator.add_account(SimAccount.create("acme", "na", [1111111111, 1111111112]))
    simulator.add_account(SimAccount.create("globex", "eu", [2222222221]))
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def token_of(sim: Simulator, name: str) -> str:
    return sim.account(name).refresh_token


async def refresh(http: httpx.AsyncClient, sim: Simulator, name: str,
                  secret: str = CLIENT_SECRET) -> httpx.Response:
    return await http.post(sim.endpoints()["token_url"], data={
        "grant_type": "refresh_token", "refresh_token": token_of(sim, name),
        "client_id": CLIENT_ID, "client_secret": secret})


async def access_token(http: httpx.AsyncClient, sim: Simulator, name: str) -> str:
    response = await refresh(http, sim, name)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def profiles(http: httpx.AsyncClient, sim: Simulator, token: str,
                   region: str = "na") -> httpx.Response:
    return await http.get(f"{sim.endpoints()['api_url'][region]}/v2/profiles", headers={
        "Amazon-Advertising-API-ClientId": CLIENT_ID, "Authorization": f"Bearer {token}"})


async def campaigns(http: httpx.AsyncClient, sim: Simulator, token: str, scope: int,
                    region: str = "na") -> httpx.Response:
    return await http.post(
        f"{sim.endpoints()['api_url'][region]}/sp/campaigns/list",
        headers={"Amazon-Advertising-API-ClientId": CLIENT_ID, "Authorization": f"Bearer {token}",
                 "Amazon-Advertising-API-Scope": str(scope), "Content-Type": CAMPAIGN_TYPE,
                 "Accept": CAMPAIGN_TYPE},
        content=json.dumps({"maxResults": 1}))


# -- Login with Amazon ------------------------------------------------------------------------


async def test_refresh_success_body_and_headers(sim: Simulator, http: httpx.AsyncClient) -> None:
    response = await refresh(http, sim, "acme")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["access_token"].startswith("Atza|")
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_token"] == token_of(sim, "acme")


async def test_client_credentials_by_basic_auth_and_json(
    sim: Simulator, http: httpx.AsyncClient,
) -> None:
    url = sim.endpoints()["token_url"]
    basic = await http.post(url, auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "refresh_token", "refresh_token": token_of(sim, "acme")})
    assert basic.status_code == 200
    as_json = await http.post(url, json={
        "grant_type": "refresh_token", "refresh_token": token_of(sim, "acme"),
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    assert as_json.status_code == 200


async def test_revoked_and_unknown_refresh_tokens_are_invalid_grant(
    sim: Simulator, http: httpx.AsyncClient,
) -> None:
    sim.set_scenario("acme", "revoked")
    response = await refresh(http, sim, "acme")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "refresh_token" in response.json()["error_description"]
    unknown = await http.post(sim.endpoints()["token_url"], data={
        "grant_type": "refresh_token", "refresh_token": "Atzr|nobody",
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_grant")


async def test_wrong_secret_and_rotated_client_are_invalid_client(
    sim: Simulator, http: httpx.AsyncClient,
) -> None:
    wrong = await refresh(http, sim, "acme", secret="not-the-secret")
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "invalid_client",
                            "error_description": "Client authentication failed"}
    sim.set_scenario("globex", "client_rotated")
    rotated = await refresh(http, sim, "globex")
    assert (rotated.status_code, rotated.json()["error"]) == (401, "invalid_client")


async def test_missing_parameter_is_invalid_request(
    sim: Simulator, http: httpx.AsyncClient,
) -> None:
    response = await http.post(sim.endpoints()["token_url"], data={
        "grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


@pytest.mark.parametrize("scenario", ["throttled", "throttled_no_retry_after"])
async def test_throttled_token_and_api(
    sim: Simulator, http: httpx.AsyncClient, scenario: str,
) -> None:
    token = await access_token(http, sim, "acme")
    sim.set_scenario("acme", scenario)
    for response in (await refresh(http, sim, "acme"), await profiles(http, sim, token)):
        assert response.status_code == 429
        assert response.json() == {"message": "Too Many Requests"}
        assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"
        assert response.headers["amazon-advertising-api-throttled"] == "true"
        if scenario == "throttled":
            assert response.headers["Retry-After"] == "7"
        else:
            assert "Retry-After" not in response.headers


async def test_server_error(sim: Simulator, http: httpx.AsyncClient) -> None:
    token = await access_token(http, sim, "acme")
    sim.set_scenario("acme", "server_error")
    response = await refresh(http, sim, "acme")
    assert (response.status_code, response.json()["error"]) == (503, "temporarily_unavailable")
    assert (await profiles(http, sim, token)).status_code == 500


async def test_html_gateway(sim: Simulator, http: httpx.AsyncClient) -> None:
    token = await access_token(http, sim, "acme")
    sim.set_scenario("acme", "html_gateway")
    for response in (await refresh(http, sim, "acme"), await profiles(http, sim, token)):
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("text/html")
        assert "Bad Gateway" in response.text


async def test_malformed_json_is_not_parseable(sim: Simulator, http: httpx.AsyncClient) -> None:
    token = await access_token(http, sim, "acme")
    sim.set_scenario("acme", "malformed_json")
    for response in (await refresh(http, sim, "acme"), await profiles(http, sim, token)):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        with pytest.raises(ValueError):
            response.json()


async def test_slow_answers_late(sim: Simulator, http: httpx.AsyncClient) -> None:
    sim.slow_seconds = 2.0
    sim.set_scenario("acme", "slow")
    with pytest.raises(httpx.ReadTimeout):
        await http.post(sim.endpoints()["token_url"], timeout=0.2, data={
            "grant_type": "refresh_token", "refresh_token": token_of(sim, "acme"),
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    sim.slow_seconds = 0.05
    assert (await refresh(http, sim, "acme")).status_code == 200


async def test_server_error_burst_then_recovery(sim: Simulator, http: httpx.AsyncClient) -> None:
    sim.burst_length = 2
    sim.set_scenario("acme", "server_error_burst")
    statuses = [(await refresh(http, sim, "acme")).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    sim.set_scenario("acme", "server_error_burst")  # a new burst
    assert (await refresh(http, sim, "acme")).status_code == 503


async def test_connection_reset(sim: Simulator, http: httpx.AsyncClient) -> None:
    token = await access_token(http, sim, "acme")
    sim.set_scenario("acme", "connection_reset")
    for request in (refresh(http, sim, "acme"), profiles(http, sim, token)):
        with pytest.raises(httpx.ReadError):
            await request
    assert sim.count(account="acme", status=444) == 2


async def test_truncated_body(sim: Simulator, http: httpx.AsyncClient) -> None:
    sim.set_scenario("acme", "truncated_body")
    with pytest.raises(httpx.RemoteProtocolError, match="without sending complete message"):
        await refresh(http, sim, "acme")


async def test_trickle_sends_the_whole_answer_slowly(sim: Simulator,
                                                     http: httpx.AsyncClient) -> None:
    sim.trickle_seconds = 0.001
    sim.set_scenario("acme", "trickle")
    response = await refresh(http, sim, "acme")
    assert response.status_code == 200 and response.json()["access_token"].startswith("Atza|")
    sim.trickle_seconds = 0.05
    request = http.post(sim.endpoints()["token_url"], timeout=0.2, data={
        "grant_type": "refresh_token", "refresh_token": token_of(sim, "acme"),
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    with pytest.raises(TimeoutError):  # no single read waits 0.2s: only a total bound ends it
        await asyncio.wait_for(request, 1.0)


async def test_leaky_errors_echo_secrets(sim: Simulator, http: httpx.AsyncClient) -> None:
    sim.set_scenario("acme", "leaky_errors")
    response = await refresh(http, sim, "acme")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert token_of(sim, "acme") in response.text and CLIENT_SECRET in response.text


async def test_history_records_arrival_times(sim: Simulator, http: httpx.AsyncClient) -> None:
    await refresh(http, sim, "acme")
    arrived, path, account, status = sim.history[-1]
    assert (path, account, status) == ("/auth/o2/token", "acme", 200) and arrived > 0


# -- Ads API ----------------------------------------------------------------------------------


async def test_profiles_of_the_region(sim: Simulator, http: httpx.AsyncClient) -> None:
    token = await access_token(http, sim, "acme")
    response = await profiles(http, sim, token)
    assert response.status_code == 200
    body = response.json()
    assert [p["profileId"] for p in body] == [1111111111, 1111111112]
    first = body[0]
    assert first["countryCode"] == "US" and first["currencyCode"] == "USD"
    assert first["timezone"]
    info = first["accountInfo"]
    assert info["type"] == "seller" and info["validPaymentMethod"] is True
    assert info["name"] == "acme" and info["marketplaceStringId"] and info["id"]
    # a token works in every region, but other regions hold none of this account's profiles
    assert (await profiles(http, sim, token, "eu")).json() == []


async def test_api_authentication(sim: Simulator, http: httpx.AsyncClient) -> None:
    unknown = await profiles(http, sim, "Atza|forged")
    assert unknown.status_code == 401
    assert unknown.json()["details"] == "Authentication failed"
    assert unknown.json()["requestId"]
    token = await access_token(http, sim, "acme")
    wrong_client = await http.get(f"{sim.base_url}/na/v2/profiles", headers={
        "Amazon-Advertising-API-ClientId": "someone-else", "Authorization": f"Bearer {token}"})
    assert wrong_client.status_code == 401
    sim.clock = lambda: 4e9  # long after the token expired
    assert (await profiles(http, sim, token)).status_code == 401


async def test_revoked_account_kills_issued_access_tokens(
    sim: Simulator, http: httpx.AsyncClient,
) -> None:
    token = await access_token(http, sim, "acme")
    sim.set_scenario("acme", "revoked")
    assert (await profiles(http, sim, token)).json()["details"] == "Authentication failed"


async def test_transient_401_then_success_after_refresh(
    sim: Simulator, http: httpx.AsyncClient,
) -> None:
    sim.set_scenario("acme", "transient_401")
    first = await profiles(http, sim, await access_token(http, sim, "acme"))
    assert (first.status_code, first.json()) == (401, {"message": "Unauthorized"})
    retry = await profiles(http, sim, await access_token(http, sim, "acme"))
    assert retry.status_code == 200 and len(retry.json()) == 2
    # the next check sees the transient 401 again, and heals the same way
    token = await access_token(http, sim, "acme")
    assert (await profiles(http, sim, token)).status_code == 401
    assert (await profiles(http, sim, token)).status_code == 200


async def test_unauthorized_on_every_profiles_call(
    sim: Simulator, http: httpx.AsyncClient,
) -> None:
    sim.set_scenario("acme", "unauthorized")
    token = await access_token(http, sim, "acme")  # the refresh itself works
    for _ in range(2):
        response = await profiles(http, sim, token)
        assert response.status_code == 401
        assert response.json()["details"] == "Not authorized to access scope"


async def test_profile_removed(sim: Simulator, http: httpx.AsyncClient) -> None:
    sim.set_scenario("acme", "profile_removed")
    token = await access_token(http, sim, "acme")
    assert [p["profileId"] for p in (await profiles(http, sim, token)).json()] == [1111111112]
    hidden = await campaigns(http, sim, token, 1111111111)
    assert hidden.status_code == 401
    assert hidden.json()["details"] == "Not authorized to access scope"
    assert (await campaigns(http, sim, token, 1111111112)).status_code == 200


async def test_campaigns_list_and_forbidden(sim: Simulator, http: httpx.AsyncClient) -> None:
    token = await access_token(http, sim, "acme")
    ok = await campaigns(http, sim, token, 1111111111)
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith(CAMPAIGN_TYPE)
    body = ok.json()
    assert len(body["campaigns"]) == 1 and body["nextToken"] is None
    other = await campaigns(http, sim, token, 2222222221)  # globex's profile
    assert other.status_code == 401
    sim.set_scenario("acme", "forbidden")
    forbidden = await campaigns(http, sim, token, 1111111111)
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "403"
    assert forbidden.json()["details"] == "Not authorized to access this advertiser"
    assert forbidden.json()["requestId"]


# -- control API and counts -------------------------------------------------------------------


async def test_control_api_changes_scenario(sim: Simulator, http: httpx.AsyncClient) -> None:
    listed = (await http.get(f"{sim.base_url}/_sim/accounts")).json()
    assert listed[0] == {"name": "acme", "region": "na", "scenario": "healthy",
                         "profiles": [1111111111, 1111111112]}
    assert "Atzr|" not in json.dumps(listed)
    changed = await http.put(f"{sim.base_url}/_sim/accounts/acme", json={"scenario": "revoked"})
    assert changed.status_code == 200 and changed.json()["scenario"] == "revoked"
    assert (await refresh(http, sim, "acme")).json()["error"] == "invalid_grant"
    bad = await http.put(f"{sim.base_url}/_sim/accounts/acme", json={"scenario": "nope"})
    assert bad.status_code == 400
    missing = await http.put(f"{sim.base_url}/_sim/accounts/nobody", json={"scenario": "healthy"})
    assert missing.status_code == 404
    assert (await http.get(f"{sim.base_url}/_sim/scenarios")).json() == list(SCENARIOS)
    with pytest.raises(ValueError):
        sim.set_scenario("acme", "nope")
    with pytest.raises(ValueError):
        sim.set_scenario("nobody", "healthy")


async def test_requests_are_counted(sim: Simulator, http: httpx.AsyncClient) -> None:
    token = await access_token(http, sim, "acme")
    await profiles(http, sim, token)
    await refresh(http, sim, "acme", secret="wrong")
    assert sim.counts[("/auth/o2/token", "acme", 200)] == 1
    assert sim.count(path="/na/v2/profiles", account="acme") == 1
    assert sim.count(path="/auth/o2/token", status=401) == 1
    report = (await http.get(f"{sim.base_url}/_sim/requests")).json()
    assert {"path": "/na/v2/profiles", "account": "acme", "status": 200,
            "count": 1} in report["requests"]
    assert report["by_status"]["200"] == 2


# -- consent and authorization code -----------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(os.urandom(40)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


async def consent(http: httpx.AsyncClient, sim: Simulator, challenge: str,
                  **extra: str) -> dict[str, list[str]]:
    response = await http.get(sim.endpoints()["authorize_url"], params={
        "client_id": CLIENT_ID, "scope": "advertising::campaign_management",
        "response_type": "code", "redirect_uri": "http://127.0.0.1:9/callback",
        "state": "xyz", "code_challenge": challenge, "code_challenge_method": "S256", **extra})
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith("http://127.0.0.1:9/callback?")
    if "code=" in location:
        assert "scope=advertising%3A%3Acampaign_management" in location
    return parse_qs(urlsplit(location).query)


async def exchange(http: httpx.AsyncClient, sim: Simulator, code: str,
                   verifier: str) -> httpx.Response:
    return await http.post(sim.endpoints()["token_url"], data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": "http://127.0.0.1:9/callback", "code_verifier": verifier,
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})


async def test_consent_and_code_exchange_once(sim: Simulator, http: httpx.AsyncClient) -> None:
    verifier, challenge = pkce_pair()
    query = await consent(http, sim, challenge, sim_account="acme")
    assert query["state"] == ["xyz"]
    code = query["code"][0]
    wrong = await exchange(http, sim, code, "not-the-verifier")
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")

    code = (await consent(http, sim, challenge, sim_account="acme"))["code"][0]
    response = await exchange(http, sim, code, verifier)
    assert response.status_code == 200
    assert response.json()["refresh_token"] == token_of(sim, "acme")
    reused = await exchange(http, sim, code, verifier)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert "code" in reused.json()["error_description"]


async def test_consent_repairs_a_revoked_account(
    sim: Simulator, http: httpx.AsyncClient,
) -> None:
    old = token_of(sim, "globex")
    sim.set_scenario("globex", "revoked")
    verifier, challenge = pkce_pair()
    code = (await consent(http, sim, challenge, sim_account="globex"))["code"][0]
    response = await exchange(http, sim, code, verifier)
    assert response.status_code == 200
    new = response.json()["refresh_token"]
    assert new != old and new == token_of(sim, "globex")
    assert sim.account("globex").scenario == "healthy"


async def test_consent_declined_and_expired_code(sim: Simulator, http: httpx.AsyncClient) -> None:
    verifier, challenge = pkce_pair()
    declined = await consent(http, sim, challenge, sim_decline="1")
    assert declined["error"] == ["access_denied"] and declined["state"] == ["xyz"]
    code = (await consent(http, sim, challenge, sim_account="acme"))["code"][0]
    real_clock = sim.clock
    sim.clock = lambda: real_clock() + 301
    assert (await exchange(http, sim, code, verifier)).json()["error"] == "invalid_grant"


async def test_consent_page_without_account(sim: Simulator, http: httpx.AsyncClient) -> None:
    response = await http.get(sim.endpoints()["authorize_url"], params={
        "client_id": CLIENT_ID, "scope": "advertising::campaign_management",
        "response_type": "code", "redirect_uri": "http://127.0.0.1:9/cb"})
    assert response.status_code == 200
    assert "sim_account=acme" in response.text and "sim_account=globex" in response.text


# -- thread helper, standalone process, demo --------------------------------------------------


def test_simulator_thread_serves_sync_clients() -> None:
    sim = Simulator(CLIENT_ID, CLIENT_SECRET)
    sim.add_account(SimAccount.create("acme", "fe", [42]))
    with SimulatorThread(sim) as thread:
        response = httpx.post(f"{thread.base_url}/auth/o2/token", data={
            "grant_type": "refresh_token", "refresh_token": token_of(sim, "acme"),
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
        assert response.status_code == 200


def test_standalone_process(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([{"name": "acme", "refresh_token": "Atzr|sim-acme-x",
                                     "region": "eu", "profiles": [5]}]))
    with subprocess.Popen(
        [sys.executable, "-m", "channel_agent_amazon_ads.simulator", "--listen", "127.0.0.1:0",
         "--accounts", str(accounts)], stdout=subprocess.PIPE, text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("simulator listening on http://127.0.0.1:")
            base = line.split()[-1]
            listed = httpx.get(f"{base}/_sim/accounts", timeout=5).json()
            assert listed == [{"name": "acme", "region": "eu", "scenario": "healthy",
                               "profiles": [5]}]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert proc.returncode == 0


async def test_demo_writes_secrets_and_config(tmp_path: Path, http: httpx.AsyncClient) -> None:
    demo = AmazonAdsDemo()
    section = await demo.start(tmp_path / "amazon_ads")
    try:
        assert section["endpoints"] == demo.simulator.endpoints()
        secret_file = Path(section["client_secret_file"])
        assert secret_file.read_text().strip() == demo.simulator.client_secret
        scenarios = {a.name: a.scenario for a in demo.simulator.accounts}
        assert {"healthy", "revoked", "profile_removed", "forbidden", "throttled",
                "server_error", "malformed_json", "html_gateway",
                "transient_401"} <= set(scenarios.values())
        assert {a["region"] for a in section["accounts"]} == {"na", "eu", "fe"}
        for account in section["accounts"]:
            path = Path(account["refresh_token_file"])
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert path.read_text().strip() == token_of(demo.simulator, account["name"])
        acme = next(a for a in section["accounts"] if a["name"] == "acme-us")
        assert acme["expected_profiles"] == [1111111111, 1111111112]
        response = await http.post(section["endpoints"]["token_url"], data={
            "grant_type": "refresh_token",
            "refresh_token": Path(acme["refresh_token_file"]).read_text().strip(),
            "client_id": section["client_id"], "client_secret": secret_file.read_text().strip()})
        assert response.status_code == 200
        lines = demo.describe()
        assert demo.simulator.base_url in lines[0]
        assert any("curl -X PUT" in line for line in lines)
        assert any(line.strip() == "globex-eu (eu): revoked" for line in lines)
    finally:
        await demo.stop()
