"""max_requests_per_second and the host-wide pause after a 429."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest

from agent.checks.httpretry import HostThrottled, RetryPolicy, TransientError, send_with_retries
from agent.checks.ratelimit import PAUSE_INITIAL, HostLimiter, RateLimitedTransport
from agent.config.loader import ConfigError, build_config
from agent.plugins import load_plugins
from agent.service import AgentService
from tests.fakes import FakeChannel
from tests.helpers import free_port


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_requests_to_a_host_are_spaced_by_the_rate():
    clock = FakeTime()
    limiter = HostLimiter(10, monotonic=clock.monotonic, sleep=clock.sleep)
    starts = await asyncio.gather(*(limiter.acquire() for _ in range(5)))
    assert starts == pytest.approx([100.0, 100.1, 100.2, 100.3, 100.4])


async def test_a_429_pauses_the_host_and_backs_off_while_it_repeats():
    clock = FakeTime()
    limiter = HostLimiter(0, monotonic=clock.monotonic, sleep=clock.sleep)
    sent = await limiter.acquire()
    limiter.throttled(sent, None)
    assert await limiter.acquire() == pytest.approx(100 + PAUSE_INITIAL)
    limiter.throttled(clock.now, None)  # again: the pause doubles
    assert await limiter.acquire() == pytest.approx(100 + 3 * PAUSE_INITIAL)
    limiter.throttled(sent, None)  # a late answer to a request from before the pauses
    assert limiter.streak == 2
    limiter.answered()
    limiter.throttled(clock.now, 7.0)  # Retry-After wins
    assert await limiter.acquire() == pytest.approx(100 + 3 * PAUSE_INITIAL + 7)


async def test_the_transport_pauses_only_the_throttled_host():
    clock = FakeTime()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "throttled.test":
            return httpx.Response(429, headers={"Retry-After": "5"})
        return httpx.Response(200)

    transport = RateLimitedTransport(httpx.MockTransport(answer), monotonic=clock.monotonic,
                                     sleep=clock.sleep, clock=lambda: 0.0)
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get("https://throttled.test/")).status_code == 429
        assert (await client.get("https://fine.test/")).status_code == 200
        assert clock.now == 100.0  # another host is not held up
        await client.get("https://throttled.test/")
        assert clock.now == 105.0  # waited for Retry-After


async def test_a_request_the_pause_would_hold_past_its_timeout_is_not_sent():
    clock = FakeTime()
    limiter = HostLimiter(0, monotonic=clock.monotonic, sleep=clock.sleep)
    limiter.throttled(await limiter.acquire(), 30.0)
    with pytest.raises(HostThrottled, match="paused after a 429"):
        await limiter.acquire(max_wait=10)
    assert clock.now == 100.0  # gave up at once
    assert await limiter.acquire(max_wait=40) == pytest.approx(130.0)


async def test_a_held_back_retry_ends_as_the_attempt_before_it_or_throttled():
    clock = FakeTime()
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.host)
        return httpx.Response(429 if request.url.host == "busy.test" else 503,
                              headers={"Retry-After": "20"})

    transport = RateLimitedTransport(httpx.MockTransport(answer), monotonic=clock.monotonic,
                                     sleep=clock.sleep, clock=lambda: 0.0)
    policy = RetryPolicy(request_timeout=5, initial_backoff=0.1, jitter=0,
                         monotonic=clock.monotonic, sleep=clock.sleep)
    async with httpx.AsyncClient(transport=transport) as client:
        async def send(host: str) -> httpx.Response:
            return await send_with_retries(
                client, lambda: client.build_request("GET", f"https://{host}/x"),
                deadline=clock.now + 10, endpoint="x", record=lambda e, c: None, policy=policy)

        # a 429 with Retry-After 20: the retry would wait past the request timeout
        assert (await send("busy.test")).status_code == 429
        assert sent == ["busy.test"]
        with pytest.raises(TransientError) as caught:  # a first attempt held back
            await send("busy.test")
        assert caught.value.reason == "throttled" and sent == ["busy.test"]


def test_the_option_is_validated(tmp_path):
    def config(rate):
        data = {"agent": {"state_path": ":memory:"},
                "channels": {"fake": {"max_requests_per_second": rate,
                                      "accounts": [{"name": "a", "region": "na"}]}}}
        return build_config(data, {"fake": FakeChannel}, base_dir=tmp_path)

    assert config(2.5).channels["fake"].settings["max_requests_per_second"] == 2.5
    with pytest.raises(ConfigError, match="max_requests_per_second: must be 0"):
        config(-1)


RATE = 20


@pytest.mark.integration
async def test_the_rate_holds_against_the_simulator_under_load(tmp_path):
    """30 accounts checked every second want ~60 requests/s; the simulator, in its own
    process, must never see more than RATE (+1: the first request of a window) in a second."""
    accounts = [{"name": f"acct{i}", "refresh_token": f"Atzr|rate-test-{i}", "region": "na",
                 "profiles": [1000 + i]} for i in range(30)]
    (tmp_path / "accounts.json").write_text(json.dumps(accounts))
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "channel_agent_amazon_ads.simulator", "--listen",
         f"127.0.0.1:{port}", "--accounts", str(tmp_path / "accounts.json"),
         "--client-secret", "s3cret-rate"], stdout=subprocess.PIPE, text=True)
    try:
        assert "listening" in sim.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        data = {
            "agent": {"state_path": ":memory:", "check_interval": "1s",
                      "check_timeout": "900ms", "max_concurrency": 30},
            "channels": {"amazon_ads": {
                "client_id": "amzn1.application-oa2-client.sim", "client_secret": "s3cret-rate",
                "refresh_interval": "0", "max_requests_per_second": RATE,
                "endpoints": {"token_url": f"{base}/auth/o2/token",
                              "api_url": {r: f"{base}/{r}" for r in ("na", "eu", "fe")}},
                "accounts": [{"name": a["name"], "region": "na",
                              "refresh_token": a["refresh_token"]} for a in accounts],
            }},
        }
        plugins = load_plugins()
        service = AgentService(build_config(data, plugins.channels, base_dir=tmp_path), plugins)
        await service.start()
        await asyncio.sleep(3.5)
        await service.stop()
        async with httpx.AsyncClient() as client:
            per_second = (await client.get(f"{base}/_sim/requests")).json()["per_second"]
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    counts = list(per_second.values())
    assert sum(counts) >= RATE  # there was load at all
    assert max(counts) <= RATE + 1, per_second
