"""A credential the channel rejected shows no refresh-token expiry: not in the metrics, the
status API, the account page or reconnect --list. The date would only look actionable; the fix
is a reconnect, whose new token brings a new expiry."""

from aiohttp.test_utils import TestClient, TestServer

from agent.channel import CheckResult
from agent.plugins import load_plugins
from agent.service import AgentService
from agent.web.server import make_app
from tests.fakes import FakeChannel, FakePlugin

EXPIRY = "channel_refresh_token_expiry_timestamp_seconds"


REGIONS = {"good": "na", "revoked": "eu", "flaky": "na"}  # as fake_config gives them


def labels(account):
    return {"channel": "fake", "account": account, "region": REGIONS[account]}


async def test_an_invalid_credential_has_no_refresh_token_expiry(fake_config):
    service = AgentService(fake_config(accounts=("good", "revoked", "flaky")),
                           load_plugins([FakePlugin()], entry_points=False))
    registry = service.metrics.registry
    try:
        for name in ("good", "revoked", "flaky"):
            FakeChannel.script[name] = CheckResult(valid=True, refresh_token_fingerprint=name)
            await service.scheduler.check_now(service.find_account("fake", name))
        assert registry.get_sample_value(EXPIRY, labels("revoked")) is not None
        FakeChannel.script["revoked"] = CheckResult(valid=False, reason="invalid_grant",
                                                    refresh_token_fingerprint="revoked")
        FakeChannel.script["flaky"] = CheckResult(valid=None, reason="server_error",
                                                  refresh_token_fingerprint="flaky")
        for name in ("revoked", "flaky"):
            await service.scheduler.check_now(service.find_account("fake", name))
        assert registry.get_sample_value(EXPIRY, labels("good")) is not None
        assert registry.get_sample_value(EXPIRY, labels("revoked")) is None
        # inconclusive says nothing about the token: its expiry stays
        assert registry.get_sample_value(EXPIRY, labels("flaky")) is not None
        # the token's age and issue time stay facts
        assert registry.get_sample_value(
            "channel_refresh_token_issued_timestamp_seconds", labels("revoked")) is not None

        # a later inconclusive check does not bring the date back: the rejection stands
        FakeChannel.script["revoked"] = CheckResult(valid=None, reason="timeout")
        await service.scheduler.check_now(service.find_account("fake", "revoked"))
        assert registry.get_sample_value(EXPIRY, labels("revoked")) is None

        async with TestClient(TestServer(make_app(service))) as client:
            status = await (await client.get("/api/v1/status")).json()
            expiry = {a["account"]: a["refresh_token_expiry"] for a in status["accounts"]}
            assert expiry["revoked"] is None and expiry["good"] is not None
            page = await (await client.get("/accounts/fake/revoked")).text()
            assert '<dt>Expires</dt><dd><span class="muted">n/a: reconnect</span>' in page
            page = await (await client.get("/accounts/fake/good")).text()
            assert '<dt>Expires</dt><dd><time datetime=' in page

        # reconnected: a new token, valid again, and its expiry is back
        FakeChannel.script["revoked"] = CheckResult(valid=True, refresh_token_fingerprint="new")
        await service.scheduler.check_now(service.find_account("fake", "revoked"))
        assert registry.get_sample_value(EXPIRY, labels("revoked")) is not None
    finally:
        await service.stop()
