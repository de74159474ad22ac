"""AmazonAdsChannel.check against a fake Amazon behind httpx.MockTransport."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from channel_agent_amazon_ads.channel import AmazonAdsChannel
from pydantic import BaseModel

from agent.channel import Account, CheckContext, CheckResult, Secret, SecretRef
from agent.config.types import model_defaults

CLIENT_ID = "amzn1.application-oa2-client.test"
CLIENT_SECRET = "amzn1.oa2-cs.v1.plantedCLIENTsecret"
REFRESH = "Atzr|IwEBplantedREFRESHtoken"
ROTATED = "Atzr|IwEBplantedROTATEDtoken"
ACCESS_PREFIX = "Atza|IwEBplantedACCESS-"
PROFILES = [1111, 2222]
WALL = 1_700_000_000.0

HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"


class FakeTime:
    def __init__(self) -> None:
        self.now = 5000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL + self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class FakeAmazon:
    """LwA and the Ads API, enough for the check. ``script[endpoint]`` answers first, in order;
    ``fixed[endpoint]`` answers every time; otherwise the honest behaviour below."""

    PATHS: Mapping[str, str] = {
        "/auth/o2/token": "token",
        "/v2/profiles": "profiles",
        "/sp/campaigns/list": "campaigns_list",
    }

    def __init__(self) -> None:
        self.refresh_tokens = {REFRESH}
        self.client_secret = CLIENT_SECRET
        self.profiles = list(PROFILES)
        self.forbidden: set[int] = set()
        self.forbidden_details = "Not authorized to access scope 2222"
        self.agencies: set[int] = set()
        self.access_tokens: set[str] = set()
        self.rotate_to: str | None = None
        self.script: dict[str, list[httpx.Response | Exception]] = {}
        self.fixed: dict[str, httpx.Response | Exception] = {}
        self.requests: list[httpx.Request] = []
        self.events: list[str] = []  # shared with persist_refresh_token to check the order

    def __call__(self, request: httpx.Request) -> httpx.Response:
        endpoint = self.PATHS[request.url.path]
        self.requests.append(request)
        self.events.append(endpoint)
        queued = self.script.get(endpoint)
        outcome = queued.pop(0) if queued else self.fixed.get(endpoint)
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is not None:
            return outcome
        return getattr(self, f"answer_{endpoint}")(request)

    def sent(self, endpoint: str) -> list[httpx.Request]:
        return [r for r in self.requests if self.PATHS[r.url.path] == endpoint]

    def answer_token(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded;charset=UTF-8"
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assert form["grant_type"] == "refresh_token"
        if (form["client_id"], form["client_secret"]) != (CLIENT_ID, self.client_secret):
            return lwa_error(401, "invalid_client", "Client authentication failed")
        if form["refresh_token"] not in self.refresh_tokens:
            return lwa_error(
                400,
                "invalid_grant",
                "The request has an invalid grant parameter : refresh_token",
            )
        access = f"{ACCESS_PREFIX}{len(self.access_tokens) + 1}"
        self.access_tokens.add(access)
        refresh = form["refresh_token"]
        if self.rotate_to:
            refresh = self.rotate_to
            self.refresh_tokens.add(refresh)
        body = {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": 3600,
            "refresh_token": refresh,
        }
        return httpx.Response(200, json=body, headers={"Cache-Control": "no-store"})

    def _authorized(self, request: httpx.Request) -> bool:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        client = request.headers.get("Amazon-Advertising-API-ClientId")
        return bearer in self.access_tokens and client == CLIENT_ID

    def answer_profiles(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        assert "Amazon-Advertising-API-Scope" not in request.headers
        if not self._authorized(request):
            return httpx.Response(401, json={"code": "401", "details": "Authentication failed"})
        items = [
            {"profileId": p, "countryCode": "US", "currencyCode": "USD", "timezone": "UTC",
             "accountInfo": {"type": "agency" if p in self.agencies else "seller",
                             "id": f"A{p}", "name": f"advertiser {p}"}}
            for p in self.profiles
        ]
        return httpx.Response(200, json=items)

    def answer_campaigns_list(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.headers["Content-Type"] == "application/vnd.spCampaign.v3+json"
        assert request.headers["Accept"] == "application/vnd.spCampaign.v3+json"
        assert json.loads(request.content) == {"maxResults": 1}
        if not self._authorized(request):
            return httpx.Response(401, json={"message": "Unauthorized"})
        profile = int(request.headers["Amazon-Advertising-API-Scope"])
        if profile in self.agencies:
            # airbytehq/airbyte issue #6240: campaign calls on an agency profile
            return httpx.Response(400, json={
                "code": "400",
                "details": " The request input is invalid. Advertiser ID cannot be decrypted"})
        if profile in self.forbidden:
            return httpx.Response(403, json={"code": "403", "details": self.forbidden_details})
        return httpx.Response(200, json={"campaigns": [], "nextToken": None})


def lwa_error(status: int, error: str, description: str = "") -> httpx.Response:
    return httpx.Response(status, json={"error": error, "error_description": description})


def defaults(model: type[BaseModel]) -> dict[str, Any]:
    """The settings the core would build from the model's defaults alone."""
    return model_defaults(model, regions=AmazonAdsChannel.regions)


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.time = FakeTime()
        self.amazon = FakeAmazon()
        self.token_file = tmp_path / "acme.refresh_token"
        self.token_file.write_text(REFRESH + "\n")
        settings = defaults(AmazonAdsChannel.Settings) | {
            "client_id": CLIENT_ID,
            "client_secret": Secret(CLIENT_SECRET),
        }
        self.channel = AmazonAdsChannel(settings, [])
        account_settings = defaults(AmazonAdsChannel.AccountSettings) | {
            "refresh_token": SecretRef(
                path=self.token_file, source="accounts[0].refresh_token_file"
            ),
            "expected_profiles": list(PROFILES),
        }
        self.account = Account("amazon_ads", "acme", "na", account_settings)
        self.channel.accounts.append(self.account)
        self.records: list[tuple[str, str]] = []
        self.persisted: list[Secret] = []
        self.persist_enabled = True
        self.results: list[CheckResult] = []

    def persist(self, account: Account, secret: Secret) -> None:
        assert account is self.account
        self.amazon.events.append("persist")
        self.persisted.append(secret)
        self.token_file.write_text(secret.reveal() + "\n")

    async def check(self, budget: float = 60.0) -> CheckResult:
        transport = httpx.MockTransport(self.amazon)
        async with httpx.AsyncClient(transport=transport) as http:
            ctx = CheckContext(
                http=http,
                deadline=self.time.now + budget,
                record_request=lambda endpoint, code: self.records.append((endpoint, code)),
                persist_refresh_token=self.persist if self.persist_enabled else None,
                clock=self.time.wall,
                retry=dataclasses.replace(self.channel.retry_policy(), jitter=0.0,
                                          sleep=self.time.sleep, monotonic=self.time.monotonic,
                                          clock=self.time.wall),
            )
            result = await self.channel.check(self.account, ctx)
        self.results.append(result)
        return result


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def fingerprint(token: str) -> str:
    return Secret(token).fingerprint()


# --- healthy -------------------------------------------------------------------------------


async def test_healthy_account(h: Harness) -> None:
    result = await h.check()
    assert result.valid is True and result.reason is None
    assert result.targets == {"1111": True, "2222": True}
    assert result.client_valid is True
    assert result.access_token_issued_at == h.time.wall()
    assert result.access_token_expires_at == h.time.wall() + 3600
    assert result.refresh_token_fingerprint == fingerprint(REFRESH)
    assert h.amazon.events == ["token", "profiles", "campaigns_list", "campaigns_list"]
    assert h.records == [
        ("token", "200"),
        ("profiles", "200"),
        ("campaigns_list", "200"),
        ("campaigns_list", "200"),
    ]
    assert str(h.amazon.requests[0].url) == "https://api.amazon.com/auth/o2/token"
    assert str(h.amazon.requests[1].url) == "https://advertising-api.amazon.com/v2/profiles"
    scopes = [r.headers["Amazon-Advertising-API-Scope"] for r in h.amazon.sent("campaigns_list")]
    assert scopes == ["1111", "2222"]


async def test_region_selects_the_hosts(h: Harness) -> None:
    h.account.region = "eu"
    assert (await h.check()).valid is True
    hosts = [r.url.host for r in h.amazon.requests]
    assert hosts[:2] == ["api.amazon.co.uk", "advertising-api-eu.amazon.com"]


async def test_without_expected_profiles_every_seen_profile_is_reported(h: Harness) -> None:
    h.account.settings["expected_profiles"] = []
    h.amazon.profiles = [1, 2, 3]
    result = await h.check()
    assert result.valid is True
    assert result.targets == {"1": True, "2": True, "3": True}
    assert "campaigns_list" not in h.amazon.events


@pytest.mark.parametrize(
    ("channel", "account", "probes"),
    [(True, None, 2), (False, None, 0), (True, False, 0), (False, True, 2)],
)
async def test_permission_probe_setting(
    h: Harness, channel: bool, account: bool | None, probes: int
) -> None:
    h.channel.settings["permission_probe"] = channel
    h.account.settings["permission_probe"] = account
    assert (await h.check()).valid is True
    assert h.amazon.events.count("campaigns_list") == probes


# --- conclusive ----------------------------------------------------------------------------


async def test_revoked_refresh_token_is_invalid_grant(h: Harness) -> None:
    h.amazon.refresh_tokens.clear()
    result = await h.check()
    assert (result.valid, result.reason) == (False, "invalid_grant")
    assert result.client_valid is None
    assert "invalid_grant" in result.detail
    assert result.refresh_token_fingerprint == fingerprint(REFRESH)
    assert h.amazon.events == ["token"]


async def test_wrong_client_secret_is_invalid_client(h: Harness) -> None:
    h.amazon.client_secret = "rotated-elsewhere"
    result = await h.check()
    assert (result.valid, result.reason, result.client_valid) == (False, "invalid_client", False)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("unauthorized_client", "unauthorized_client"),
        ("invalid_scope", "invalid_scope"),
        ("access_denied", "invalid_grant"),
    ],
)
async def test_other_lwa_refusals(h: Harness, error: str, reason: str) -> None:
    h.amazon.fixed["token"] = lwa_error(400, error)
    result = await h.check()
    assert (result.valid, result.reason) == (False, reason)


async def test_transient_401_then_success(h: Harness) -> None:
    h.amazon.script["profiles"] = [httpx.Response(401, json={"message": "Unauthorized"})]
    result = await h.check()
    assert result.valid is True
    assert h.amazon.events[:4] == ["token", "profiles", "token", "profiles"]
    tokens = [r.headers["Authorization"] for r in h.amazon.sent("profiles")]
    assert tokens == [f"Bearer {ACCESS_PREFIX}1", f"Bearer {ACCESS_PREFIX}2"]


async def test_401_twice_is_unauthorized(h: Harness) -> None:
    h.amazon.fixed["profiles"] = httpx.Response(401, json={"message": "Unauthorized"})
    result = await h.check()
    assert (result.valid, result.reason) == (False, "unauthorized")
    assert h.amazon.events == ["token", "profiles", "token", "profiles"]
    assert result.client_valid is True


async def test_probe_401_twice_marks_the_profile(h: Harness) -> None:
    h.amazon.fixed["campaigns_list"] = httpx.Response(
        401, json={"code": "401", "details": "Not authorized to access scope"}
    )
    result = await h.check()
    assert (result.valid, result.reason) == (False, "unauthorized")
    assert result.targets == {"1111": False, "2222": False}


async def test_probe_403_is_forbidden(h: Harness) -> None:
    h.amazon.forbidden = {2222}
    result = await h.check()
    assert (result.valid, result.reason) == (False, "forbidden")
    assert result.targets == {"1111": True, "2222": False}
    assert "profile 2222" in result.detail and "Not authorized to access scope" in result.detail


async def test_a_403_naming_an_ad_product_is_that_products_permission(h: Harness) -> None:
    """airbytehq/airbyte PR #5023: "Advertiser is not authorized for Sponsored Display." is
    about the product, not a dead credential (reconnecting would not clear it)."""
    h.amazon.forbidden = {2222}
    h.amazon.forbidden_details = "Advertiser is not authorized for Sponsored Display."
    result = await h.check()
    assert (result.valid, result.reason) == (False, "ad_product_unauthorized")
    assert "Sponsored Display" in result.detail


async def test_no_probe_for_an_account_without_sponsored_products(h: Harness) -> None:
    h.amazon.forbidden = {1111, 2222}
    h.account.settings["ad_products"] = ["sponsored_display"]
    result = await h.check()
    assert result.valid is True
    assert h.amazon.sent("campaigns_list") == []


async def test_agency_profiles_are_not_probed_and_their_400_is_not_applicable(
    h: Harness,
) -> None:
    """airbytehq/airbyte issue #6240: an agency profile answers campaign calls with 400
    "Advertiser ID cannot be decrypted"; that is neither a rejection nor a transient failure."""
    h.amazon.agencies = {2222}
    result = await h.check()
    assert (result.valid, result.reason) == (True, None)
    scopes = [r.headers["Amazon-Advertising-API-Scope"] for r in h.amazon.sent("campaigns_list")]
    assert scopes == ["1111"]
    # even when a probe reaches such a profile (the list said nothing), it is not applicable
    h.amazon.agencies = set()
    h.amazon.script["campaigns_list"] = [httpx.Response(400, json={
        "code": "400", "details": " The request input is invalid. Advertiser ID cannot be "
                                  "decrypted"})]
    assert (await h.check()).valid is True


async def test_a_consent_reaching_no_profile_is_reported(h: Harness) -> None:
    """amzn/amazon-advertising-api-php-sdk #13: /v2/profiles is [] for vendor accounts and
    wrong-account consents."""
    h.amazon.profiles = []
    h.account.settings["expected_profiles"] = []
    result = await h.check()
    assert result.valid is True and result.targets_reached == 0 and result.targets == {}


async def test_expected_profile_missing(h: Harness) -> None:
    h.amazon.profiles = [1111, 3333]
    result = await h.check()
    assert (result.valid, result.reason) == (False, "profile_missing")
    assert result.targets == {"1111": True, "2222": False}
    assert "2222" in result.detail
    scopes = [r.headers["Amazon-Advertising-API-Scope"] for r in h.amazon.sent("campaigns_list")]
    assert scopes == ["1111"]


async def test_conclusive_beats_transient_among_profiles(h: Harness) -> None:
    h.amazon.forbidden = {2222}
    h.channel.settings["retry"]["initial_backoff"] = 100.0  # no time for a retry
    h.amazon.script["campaigns_list"] = [httpx.Response(500)]  # 1111 fails transiently
    result = await h.check()
    assert (result.valid, result.reason) == (False, "forbidden")
    assert result.targets == {"1111": True, "2222": False}


async def test_refresh_failure_during_probe_fails_the_account(h: Harness) -> None:
    h.amazon.fixed["campaigns_list"] = httpx.Response(401, json={"message": "Unauthorized"})
    # The first refresh works; the forced one after the probe's 401 finds the grant revoked.
    h.amazon.script["token"] = [httpx.Response(200, json={"access_token": f"{ACCESS_PREFIX}1"})]
    h.amazon.access_tokens.add(f"{ACCESS_PREFIX}1")
    h.amazon.refresh_tokens.clear()
    result = await h.check()
    assert (result.valid, result.reason) == (False, "invalid_grant")
    assert h.amazon.events == ["token", "profiles", "campaigns_list", "token"]


async def test_missing_token_file_is_missing_credential(h: Harness) -> None:
    h.token_file.unlink()
    result = await h.check()
    assert (result.valid, result.reason) == (False, "missing_credential")
    assert "accounts[0].refresh_token_file" in result.detail
    assert h.amazon.requests == []


# --- transient -----------------------------------------------------------------------------


async def test_429_with_retry_after_then_success(h: Harness) -> None:
    h.amazon.script["token"] = [
        httpx.Response(429, json={"message": "Too Many Requests"}, headers={"Retry-After": "3"})
    ]
    result = await h.check()
    assert result.valid is True
    assert h.time.waits == [3.0]
    assert h.records[:2] == [("token", "429"), ("token", "200")]


async def test_429_until_the_deadline_is_throttled(h: Harness) -> None:
    h.amazon.fixed["profiles"] = httpx.Response(
        429,
        json={"message": "Too Many Requests"},
        headers={"x-amzn-ErrorType": "AccessDeniedException"},
    )
    start = h.time.now
    result = await h.check(budget=30.0)
    assert (result.valid, result.reason) == (None, "throttled")
    assert h.time.waits == [2.0, 4.0, 8.0]  # the next 16 s wait would pass the deadline
    assert h.time.now - start < 30.0
    assert result.client_valid is True
    assert result.targets == {}


@pytest.mark.parametrize(
    ("endpoint", "answer"),
    [
        ("token", lwa_error(500, "server_error")),
        ("token", lwa_error(503, "temporarily_unavailable")),
        ("profiles", httpx.Response(500, json={"code": "500", "details": "Internal"})),
        ("profiles", httpx.Response(503, json={"message": "Service Unavailable"})),
        # A gateway's HTML error page is the server failing, not an odd answer.
        ("profiles", httpx.Response(502, text=HTML, headers={"Content-Type": "text/html"})),
        ("token", httpx.Response(504, text=HTML, headers={"Content-Type": "text/html"})),
    ],
)
async def test_server_errors(h: Harness, endpoint: str, answer: httpx.Response) -> None:
    h.amazon.fixed[endpoint] = answer
    result = await h.check(budget=10.0)
    assert (result.valid, result.reason) == (None, "server_error")


@pytest.mark.parametrize(
    ("endpoint", "answer"),
    [
        # A 200 HTML page (captive portal, proxy login) says nothing about the credential.
        ("token", httpx.Response(200, text=HTML, headers={"Content-Type": "text/html"})),
        ("profiles", httpx.Response(200, text=HTML, headers={"Content-Type": "text/html"})),
        ("token", httpx.Response(200, content=b'{"access_token": "Atza|trunc')),
        ("profiles", httpx.Response(200, content=b'[{"profileId": 1111,')),
        ("profiles", httpx.Response(200, json={"profiles": PROFILES})),
        ("profiles", httpx.Response(200, json=[{"countryCode": "US"}])),
        ("campaigns_list", httpx.Response(200, json={"nothing": True})),
        ("token", lwa_error(400, "something_new")),
        ("profiles", httpx.Response(404, json={"message": "Not Found"})),
    ],
)
async def test_bad_responses(h: Harness, endpoint: str, answer: httpx.Response) -> None:
    h.amazon.fixed[endpoint] = answer
    result = await h.check()
    assert (result.valid, result.reason) == (None, "bad_response")


async def test_invalid_request_is_reported_as_an_agent_bug(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.amazon.fixed["token"] = lwa_error(400, "invalid_request", "Missing parameter")
    with caplog.at_level(logging.ERROR):
        result = await h.check()
    assert (result.valid, result.reason) == (None, "bad_response")
    assert any("bug in the agent" in r.getMessage() for r in caplog.records)


async def test_timeout(h: Harness) -> None:
    h.amazon.fixed["token"] = httpx.ReadTimeout("timed out")
    result = await h.check(budget=10.0)
    assert (result.valid, result.reason) == (None, "timeout")
    assert h.records == [("token", "timeout")] * 3  # sent at 0, 2 and 6 s; 8 s more is too late
    assert result.client_valid is None


async def test_connect_error(h: Harness) -> None:
    h.amazon.fixed["profiles"] = httpx.ConnectError("All connection attempts failed")
    result = await h.check(budget=10.0)
    assert (result.valid, result.reason) == (None, "network")
    assert ("profiles", "network") in h.records


# --- the access token cache and refresh token rotation -------------------------------------


async def test_access_token_is_reused_within_its_lifetime(h: Harness) -> None:
    assert (await h.check()).valid is True
    first = h.results[0].access_token_issued_at
    h.time.now += 600
    second = await h.check()
    assert second.valid is True
    assert h.amazon.events.count("token") == 1
    assert second.access_token_issued_at == first
    assert second.client_valid is None  # nothing learnt about the client this time


async def test_refresh_interval_forces_a_refresh(h: Harness) -> None:
    h.channel.settings["refresh_interval"] = 600
    await h.check()
    h.time.now += 599
    await h.check()
    assert h.amazon.events.count("token") == 1
    h.time.now += 2
    result = await h.check()
    assert h.amazon.events.count("token") == 2
    assert result.client_valid is True


async def test_access_token_is_refreshed_before_it_expires(h: Harness) -> None:
    h.channel.settings["refresh_interval"] = 86400
    await h.check()
    h.time.now += 3600 - 299  # inside the last five minutes
    await h.check()
    assert h.amazon.events.count("token") == 2


async def test_changed_refresh_token_file_forces_a_refresh(h: Harness) -> None:
    await h.check()
    h.amazon.refresh_tokens.add(ROTATED)
    h.token_file.write_text(ROTATED)  # reconnected
    result = await h.check()
    assert h.amazon.events.count("token") == 2
    assert result.refresh_token_fingerprint == fingerprint(ROTATED)
    form = parse_qs(h.amazon.sent("token")[-1].content.decode())
    assert form["refresh_token"] == [ROTATED]


async def test_conclusive_refresh_failure_drops_the_cached_token(h: Harness) -> None:
    h.channel.settings["refresh_interval"] = 600
    await h.check()
    h.amazon.refresh_tokens.clear()
    h.time.now += 601
    assert (await h.check()).reason == "invalid_grant"
    h.time.now += 1  # still inside the access token's lifetime: must not look valid again
    assert (await h.check()).reason == "invalid_grant"


async def test_rotated_refresh_token_is_persisted_before_use(h: Harness) -> None:
    h.channel.settings["refresh_interval"] = 600
    h.amazon.rotate_to = ROTATED
    result = await h.check()
    assert result.valid is True
    assert h.persisted == [Secret(ROTATED)]
    assert h.amazon.events[:3] == ["token", "persist", "profiles"]
    assert result.refresh_token_fingerprint == fingerprint(ROTATED)
    # The next refresh sends the new token, and its fingerprint matches: no extra refresh.
    h.amazon.rotate_to = None
    h.amazon.refresh_tokens.discard(REFRESH)
    h.time.now += 601
    assert (await h.check()).valid is True
    assert parse_qs(h.amazon.sent("token")[-1].content.decode())["refresh_token"] == [ROTATED]
    assert h.amazon.events.count("token") == 2


async def test_rotated_refresh_token_without_persistence_is_kept_in_memory(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.persist_enabled = False
    h.channel.settings["refresh_interval"] = 600
    h.amazon.rotate_to = ROTATED
    with caplog.at_level(logging.WARNING):
        assert (await h.check()).valid is True
    assert any("nothing can persist" in r.getMessage() for r in caplog.records)
    assert h.token_file.read_text().strip() == REFRESH
    h.amazon.rotate_to = None
    h.amazon.refresh_tokens.discard(REFRESH)  # only the new one works now
    h.time.now += 601
    result = await h.check()
    assert result.valid is True
    assert result.refresh_token_fingerprint == fingerprint(ROTATED)
    assert parse_qs(h.amazon.sent("token")[-1].content.decode())["refresh_token"] == [ROTATED]


async def test_failing_persistence_keeps_the_new_token(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(account: Account, secret: Secret) -> None:
        raise OSError(28, "No space left on device")

    h.persist = broken  # type: ignore[method-assign]
    h.amazon.rotate_to = ROTATED
    assert (await h.check()).valid is True
    assert any("No space left" in r.getMessage() for r in caplog.records)
    h.amazon.rotate_to = None
    h.amazon.refresh_tokens.discard(REFRESH)
    h.time.now += 3600
    assert (await h.check()).valid is True


@pytest.mark.parametrize("same_client", [True, False])
async def test_a_reload_keeps_the_rotated_token_and_the_cached_access_token(
    h: Harness, same_client: bool
) -> None:
    h.persist_enabled = False
    h.amazon.rotate_to = ROTATED
    assert (await h.check()).valid is True  # the new refresh token lives in memory only
    h.amazon.rotate_to = None
    h.amazon.refresh_tokens.discard(REFRESH)
    settings = dict(h.channel.settings)
    if not same_client:
        settings["endpoints"] = {**settings["endpoints"], "api_url": {"na": "https://b.example"}}
    reloaded = AmazonAdsChannel(settings, [h.account])
    reloaded.carry_over(h.channel)
    h.channel = reloaded
    h.time.now += 60
    assert (await h.check()).valid is True
    tokens_sent = [parse_qs(r.content.decode())["refresh_token"] for r in h.amazon.sent("token")]
    # the cached access token is reused only against the same client and hosts
    assert tokens_sent == ([[REFRESH]] if same_client else [[REFRESH], [ROTATED]])


# --- secrets never leak --------------------------------------------------------------------

LEAKY = f"refresh_token {REFRESH} of client {CLIENT_ID}/{CLIENT_SECRET} is revoked"


@pytest.mark.parametrize(
    ("endpoint", "answer"),
    [
        pytest.param("token", lwa_error(400, "invalid_grant", LEAKY), id="invalid_grant"),
        pytest.param("token", lwa_error(401, "invalid_client", LEAKY), id="invalid_client"),
        pytest.param("token", lwa_error(400, "invalid_request", LEAKY), id="invalid_request"),
        pytest.param("token", lwa_error(503, "server_error", LEAKY), id="server_error"),
        pytest.param("token", httpx.ConnectError(LEAKY), id="network"),
        pytest.param(
            "profiles",
            httpx.Response(401, json={"message": f"Unauthorized: Bearer {ACCESS_PREFIX}1"}),
            id="401-echo",
        ),
        pytest.param(
            "profiles",
            httpx.Response(403, json={"code": "403", "details": f"{ACCESS_PREFIX}2 denied"}),
            id="403-echo",
        ),
        pytest.param(
            "campaigns_list",
            httpx.Response(403, json={"detail": f"token {ACCESS_PREFIX}1"}),
            id="probe-echo",
        ),
        pytest.param(None, None, id="rotation"),
    ],
)
async def test_no_secret_in_details_or_logs(
    h: Harness,
    caplog: pytest.LogCaptureFixture,
    endpoint: str | None,
    answer: httpx.Response | Exception | None,
) -> None:
    h.persist_enabled = False
    h.amazon.rotate_to = ROTATED  # logged about, never shown
    if endpoint is not None:
        h.amazon.fixed[endpoint] = answer
    caplog.set_level(logging.DEBUG)
    result = await h.check(budget=10.0)
    texts = [result.detail, repr(result)] + [r.getMessage() for r in caplog.records]
    secrets = [REFRESH, ROTATED, CLIENT_SECRET, ACCESS_PREFIX, "IwEB"]
    for text in texts:
        for secret in secrets:
            assert secret not in text, (secret, text)


async def test_missing_credential_detail_has_no_secret(h: Harness) -> None:
    h.account.settings["refresh_token"] = SecretRef(value=Secret(""), source="accounts[0]")
    result = await h.check()
    assert (result.valid, result.reason) == (False, "missing_credential")
    assert CLIENT_SECRET not in result.detail


def test_options_describe_the_real_hosts() -> None:
    endpoints = defaults(AmazonAdsChannel.Settings)["endpoints"]
    assert endpoints["token_url"] == {
        "na": "https://api.amazon.com/auth/o2/token",
        "eu": "https://api.amazon.co.uk/auth/o2/token",
        "fe": "https://api.amazon.co.jp/auth/o2/token",
    }
    assert endpoints["api_url"]["fe"] == "https://advertising-api-fe.amazon.com"
    assert endpoints["authorize_url"]["eu"] == "https://eu.account.amazon.com/ap/oa"
    account = defaults(AmazonAdsChannel.AccountSettings)
    assert account == {"refresh_token": None, "expected_profiles": [], "permission_probe": None,
                       "ad_products": None}
