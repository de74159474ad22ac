"""The optional hooks a channel may use beyond check() (added for Shopify, channel-neutral):
a reason of class merchant, per-account credential expiry, channel-level metrics and
rate-limit backpressure from successful answers."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.core import GaugeMetricFamily
from pydantic import Field

from agent.channel import (
    Account,
    AccountSettings,
    Channel,
    ChannelSettings,
    CheckContext,
    CheckResult,
    RefreshTokens,
)
from agent.checks.ratelimit import RateLimitedTransport
from agent.config.loader import build_config
from agent.config.types import Duration
from agent.metrics.exposition import Exposition
from agent.plugins import load_plugins
from agent.reasons import MERCHANT, Reason
from agent.service import AgentService
from agent.storage.state import AccountState
from tests.fakes import FakePlugin


class SeamSettings(ChannelSettings):
    refresh_token_max_age: Duration = "100s"


class SeamAccount(AccountSettings):
    store: str = Field(description="the store")
    expires: bool = True


class SeamChannel(Channel):
    name = "seam"
    reasons = (Reason("store_closed", MERCHANT, "the merchant closed the store"),)
    refresh_tokens = RefreshTokens(option="token")
    Settings = SeamSettings
    AccountSettings = SeamAccount

    async def check(self, account: Account, ctx: CheckContext) -> CheckResult:
        if account.name == "closed":
            return CheckResult(valid=False, reason="store_closed")
        return CheckResult(valid=True, refresh_token_fingerprint="fp")

    def refresh_token_expiry(self, account: str, issued: float) -> float | None:
        found = next(a for a in self.accounts if a.name == account)
        return super().refresh_token_expiry(account, issued) if found.settings["expires"] \
            else None

    def metrics(self):
        family = GaugeMetricFamily("channel_seam_version_info", "Version.", labels=["channel"])
        family.add_metric([self.name], 1.0)
        yield family

    def backpressure(self, response: httpx.Response) -> float | None:
        return float(response.headers.get("X-Slow-Down", 0)) or None


def config(tmp_path, accounts=None):
    accounts = accounts or [{"name": "open", "store": "a.test"},
                            {"name": "closed", "store": "b.test", "expires": False}]
    data = {"agent": {"state_path": str(tmp_path / "agent.db")},
            "channels": {"seam": {"accounts": accounts}}}
    return build_config(data, {"seam": SeamChannel}, base_dir=tmp_path)


async def test_expiry_per_account_reasons_and_channel_metrics_reach_the_scrape(tmp_path) -> None:
    service = AgentService(config(tmp_path), load_plugins([FakePlugin()], entry_points=False))
    try:
        for account in service.config.channels["seam"].accounts:
            await service.scheduler.check_now(account)
        text = Exposition(service.metrics.registry).render().decode()
    finally:
        await service.stop()
    assert 'channel_seam_version_info{channel="seam"} 1.0' in text
    assert 'channel_check_failures_total{channel="seam",reason="store_closed"} 1.0' in text
    assert 'reason="store_closed"' in text and 'class="merchant"' in text
    expiries = [line for line in text.splitlines()
                if line.startswith("channel_refresh_token_expiry_timestamp_seconds{")]
    assert len(expiries) == 1 and 'account="open"' in expiries[0]  # "closed" never expires
    state = AccountState(channel="seam", account="open", region="", refresh_issued=1000.0)
    assert service.config.channels["seam"].refresh_token_expiry(state.account, 1000.0) == 1100.0


async def test_backpressure_pauses_the_host_that_asked() -> None:
    channel = SeamChannel({}, [])
    now = [100.0]

    def answer(request: httpx.Request) -> httpx.Response:
        slow = "30" if request.url.host == "busy.test" else "0"
        return httpx.Response(200, headers={"X-Slow-Down": slow})

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    transport = RateLimitedTransport(httpx.MockTransport(answer), backpressure=channel.backpressure,
                                     monotonic=lambda: now[0], sleep=sleep)
    async with httpx.AsyncClient(transport=transport, timeout=60) as client:
        await client.get("https://busy.test/")
        await client.get("https://calm.test/")
        await client.get("https://calm.test/")
        assert now[0] == 100.0  # another host is not held up
        await client.get("https://busy.test/")
        assert now[0] == 130.0  # waited as the answer asked
    async with httpx.AsyncClient(transport=transport, timeout=5) as client:
        with pytest.raises(httpx.TransportError, match="rate-limit header"):
            await client.get("https://busy.test/")  # not sent: the pause outlasts its timeout
