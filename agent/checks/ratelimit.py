"""Respecting the channel's API: a request rate per host, and a pause when it throttles us.

Every channel's HTTP client sends through a :class:`RateLimitedTransport`, so each channel
gets this without doing anything:

- ``max_requests_per_second`` (a channel setting, :class:`agent.channel.ChannelSettings`;
  0 = no limit): requests to one host (an
  API region, a token endpoint) start at least ``1 / max_requests_per_second`` apart, however
  many checks run at once. Waiters are served in order.
- A 429 from a host pauses every request to that host (``pause_host_on_429``, default on):
  for its ``Retry-After`` when given, else for a backoff that doubles with each 429 in a row
  (a 429 to a request that was sent before the pause started does not double it again); any
  other answer resets the backoff. The 429 itself still goes back to the check, which retries
  it within its deadline (:mod:`agent.checks.httpretry`).
- A channel may read its provider's rate-limit headers in successful answers
  (:meth:`agent.channel.Channel.backpressure`, e.g. Shopify's call-limit bucket nearly full):
  the seconds it returns pause that host the same way, before a 429 happens.

With ``host_metrics`` the transport reports, per host, the requests waiting for their turn,
the seconds they waited and the 429 pauses, so that an SRE sees when the agent itself holds
checks back.

Waiting here counts against the request's timeout. A request whose turn would come after its
timeout is not sent: :class:`~agent.checks.httpretry.HostThrottled`, and the check ends as the
attempt before it did, or ``throttled`` (never ``timeout``: the host did answer, with 429s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from agent.checks.httpretry import HostThrottled, retry_after

PAUSE_INITIAL = 1.0  # seconds a host is paused after a 429 without Retry-After ...
PAUSE_MAX = 60.0  # ... doubling with each 429 in a row, up to this


@dataclass(frozen=True, slots=True)
class HostMetrics:
    """One host's series (prometheus_client children): a gauge of the requests waiting for
    their turn, a counter of the seconds they waited, a counter of the 429 pauses started."""

    waiting: Any
    waited: Any
    pauses: Any


class HostLimiter:
    """The rate and the throttling pause of one host."""

    def __init__(
        self,
        rate: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: HostMetrics | None = None,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.monotonic = monotonic
        self.sleep = sleep
        self.next_start = 0.0  # when the next request may start
        self.paused_until = 0.0
        self.pause_started = float("-inf")
        self.streak = 0  # 429s in a row
        self.metrics = metrics
        self.paused_by = "a 429"  # what set the current pause, for the held-back message
        self._lock = asyncio.Lock()

    async def acquire(self, max_wait: float | None = None) -> float:
        """Wait for this request's turn; return the time it starts. Raise
        :class:`HostThrottled` rather than wait past ``max_wait`` seconds."""
        if not self.interval and self.paused_until <= self.monotonic():
            return self.monotonic()
        if self.metrics is None:
            return await self._wait_turn(max_wait)
        self.metrics.waiting.inc()
        waiting_since = self.monotonic()
        try:
            return await self._wait_turn(max_wait)
        finally:
            self.metrics.waiting.dec()
            self.metrics.waited.inc(self.monotonic() - waiting_since)

    async def _wait_turn(self, max_wait: float | None) -> float:
        give_up = self.monotonic() + max_wait if max_wait is not None else float("inf")
        async with self._lock:  # FIFO: one waiter at a time holds the next slot
            while True:
                now = self.monotonic()
                turn = max(self.paused_until, self.next_start)
                if turn <= now:
                    break
                if turn > give_up:
                    paused = self.paused_until > now
                    why = f"paused after {self.paused_by}" if paused else "max_requests_per_second"
                    raise HostThrottled(f"held back {turn - now:.3g}s by the agent ({why})")
                await self.sleep(turn - now)  # a 429 meanwhile extends the pause: look again
            self.next_start = now + self.interval
            return now

    def throttled(self, sent_at: float, retry_after_seconds: float | None) -> None:
        """A request sent at ``sent_at`` got a 429."""
        now = self.monotonic()
        if sent_at >= self.pause_started:  # not one more answer from before the last pause
            self.streak += 1
            self.pause_started = now
            if self.metrics is not None:
                self.metrics.pauses.inc()
        wait = retry_after_seconds
        if wait is None:
            wait = min(PAUSE_MAX, PAUSE_INITIAL * 2 ** (self.streak - 1))
        self.paused_until = max(self.paused_until, now + min(wait, PAUSE_MAX))
        self.paused_by = "a 429"

    def answered(self) -> None:
        self.streak = 0

    def hold(self, seconds: float) -> None:
        """The provider asked (in a successful answer) to slow down for ``seconds``."""
        until = self.monotonic() + min(seconds, PAUSE_MAX)
        if until > self.paused_until:
            self.paused_until, self.paused_by = until, "the provider's rate-limit header"


class RateLimitedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport with a :class:`HostLimiter` per host and port."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        rate: float = 0.0,
        *,
        pause_on_429: bool = True,
        backpressure: Callable[[httpx.Response], float | None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        host_metrics: Callable[[str], HostMetrics] | None = None,
    ) -> None:
        self.inner = inner
        self.host_metrics = host_metrics  # the series of a host ("api.example.com:8443")
        self.rate = rate
        self.pause_on_429 = pause_on_429
        self.backpressure = backpressure
        self.monotonic = monotonic
        self.sleep = sleep
        self.clock = clock
        self.hosts: dict[tuple[str, int | None], HostLimiter] = {}  # by (host, port)

    def configure(self, rate: float, pause_on_429: bool,
                  backpressure: Callable[[httpx.Response], float | None] | None = None) -> None:
        """A reloaded configuration's settings, for every host from its next request."""
        self.rate, self.pause_on_429, self.backpressure = rate, pause_on_429, backpressure
        for limiter in self.hosts.values():
            limiter.interval = 1.0 / rate if rate > 0 else 0.0

    def limiter(self, host: tuple[str, int | None]) -> HostLimiter:
        limiter = self.hosts.get(host)
        if limiter is None:
            name = host[0] if host[1] is None else f"{host[0]}:{host[1]}"
            limiter = self.hosts[host] = HostLimiter(
                self.rate, monotonic=self.monotonic, sleep=self.sleep,
                metrics=self.host_metrics(name) if self.host_metrics else None)
        return limiter

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        limiter = self.hosts.get((url.host, url.port)) or self.limiter((url.host, url.port))
        try:
            sent_at = await limiter.acquire(request.extensions.get("timeout", {}).get("pool"))
        except HostThrottled as exc:
            exc.request = request
            raise
        response = await self.inner.handle_async_request(request)
        if response.status_code == 429 and self.pause_on_429:
            limiter.throttled(sent_at, retry_after(response, self.clock()))
        else:
            limiter.answered()
            if self.pause_on_429 and self.backpressure is not None:
                hold = self.backpressure(response)
                if hold:
                    limiter.hold(hold)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
