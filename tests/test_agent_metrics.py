"""The agent's own series: no _created samples, declared reasons only, and the rate limiter's
and scheduler's metrics that show when the agent itself holds checks back."""

from __future__ import annotations

import asyncio
import time

import httpx
from prometheus_client import generate_latest

from agent.config.loader import build_config
from agent.plugins import load_plugins
from agent.reasons import CORE, TRANSIENT, Reason
from agent.service import AgentService, HttpOptions
from tests.fakes import FakeChannel, FakePlugin


class NarrowChannel(FakeChannel):
    """A channel with a failure reason of its own."""

    name = "narrow"
    reasons = (Reason("quota_exceeded", TRANSIENT, "the daily quota is used up"),)


class NarrowPlugin:
    from agent.hookspecs import hookimpl

    @hookimpl
    def register_channels(self, register):
        register(NarrowChannel)


def make_service(tmp_path, channel_settings=None, transport=None, **agent):
    data = {
        "agent": {"state_path": str(tmp_path / "agent.db"), "check_interval": "1h",
                  "check_timeout": "2s", **agent},
        "channels": {
            "fake": {**(channel_settings or {}), "accounts": [{"name": "a1", "region": "na"}]},
            "narrow": {"accounts": [{"name": "n1", "region": "na"}]},
        },
    }
    config = build_config(data, {"fake": FakeChannel, "narrow": NarrowChannel}, base_dir=tmp_path)
    return AgentService(config, load_plugins([FakePlugin(), NarrowPlugin()], entry_points=False),
                        HttpOptions(transport=transport))


def sample(service, name, **labels):
    return service.metrics.registry.get_sample_value(name, labels)


async def test_no_created_samples(tmp_path):
    service = make_service(tmp_path)
    await service.scheduler.check_now(service.find_account("fake", "a1"))
    text = generate_latest(service.metrics.registry).decode()
    assert "channel_check_failures_total{" in text
    assert "_created" not in text
    await service.stop()


async def test_a_channel_exports_the_core_reasons_and_its_own_only(tmp_path):
    service = make_service(tmp_path)
    by_channel: dict[str, set[str]] = {}
    for s in service.metrics.check_failures.collect()[0].samples:
        by_channel.setdefault(s.labels["channel"], set()).add(s.labels["reason"])
    assert by_channel == {"fake": set(CORE), "narrow": {*CORE, "quota_exceeded"}}
    service.metrics.set_channels({"fake": service.config.channels["fake"]})  # narrow goes
    assert {s.labels["channel"] for s in service.metrics.check_failures.collect()[0].samples
            } == {"fake"}
    await service.stop()


async def test_rate_limiter_reports_waits_and_429_pauses_per_host(tmp_path):
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/busy":
            return httpx.Response(429, headers={"Retry-After": "0"})
        return httpx.Response(200)

    service = make_service(tmp_path, {"max_requests_per_second": 5},
                           transport=httpx.MockTransport(answer))
    client = service.http["fake"]
    labels = {"channel": "fake", "host": "api.test"}

    async def waiting_meanwhile():
        await asyncio.sleep(0.01)
        return (sample(service, "channel_agent_ratelimit_waiting_requests", **labels),
                time.monotonic())

    began = time.monotonic()
    *_, (waiting, counted_at) = await asyncio.gather(
        *(client.get("http://api.test/ok") for _ in range(4)), waiting_meanwhile())
    assert waiting == 3  # the first went at once, three wait their turn 200 ms apart
    assert sample(service, "channel_agent_ratelimit_waiting_requests", **labels) == 0
    # The turns start 0.2, 0.4 and 0.6 s after the first request (which came after `began`);
    # each waiter came before `counted_at`, so each waited its turn less at most that lag
    # (more than 10 ms when a busy machine preempts the loop between requests).
    lag = counted_at - began
    waited = sample(service, "channel_agent_ratelimit_wait_seconds_total", **labels)
    assert 0.2 + 0.4 + 0.6 - 3 * lag <= waited < 10
    assert sample(service, "channel_agent_ratelimit_pauses_total", **labels) == 0
    await client.get("http://api.test/busy")
    assert sample(service, "channel_agent_ratelimit_pauses_total", **labels) == 1
    assert sample(service, "channel_agent_ratelimit_pauses_total", channel="fake",
                  host="other.test") is None
    await service.stop()


async def test_checks_that_miss_their_slot_are_counted(tmp_path):
    FakeChannel.reset()
    # a check may overrun check_timeout by a grace second before it is cut
    service = make_service(tmp_path, check_interval="100ms", check_timeout="90ms")
    FakeChannel.delay = 0.35  # each check takes more than three intervals
    assert sample(service, "channel_agent_checks_missed_schedule_total", channel="fake") == 0
    await service.start()
    await asyncio.sleep(1.0)
    await service.stop()
    missed = sample(service, "channel_agent_checks_missed_schedule_total", channel="fake")
    FakeChannel.reset()
    assert missed >= 3
