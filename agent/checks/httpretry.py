"""Sending one HTTP request with retries, inside a deadline. Channel-neutral.

Retried: 429, 500, 502, 503, 504, network errors and timeouts. The wait before the next
attempt is the response's ``Retry-After`` (seconds or HTTP-date) when present, otherwise
``initial_backoff * 2**n`` capped at ``max_backoff`` (minus a little jitter). A wait that
would end past the deadline is never started: the last response is returned instead, or
the last network error is raised as :class:`TransientError`. A last attempt that timed out
only because the deadline shortened it ends as the attempt before it did (a 429 stays 429).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_TIMEOUT_KEYS = ("connect", "read", "write", "pool")
# A request extension: the sender bounds the whole exchange to this many seconds, no less
# than any of the request's own timeouts, so a transport need not arm timers of its own.
TOTAL_TIMEOUT = "agent.total_timeout"


class HostThrottled(httpx.TransportError):
    """The agent held a request back (its host is paused after a 429, or
    ``max_requests_per_second`` leaves no slot within the request's time): nothing was sent.
    Raised by :class:`agent.checks.ratelimit.RateLimitedTransport`; ends a check as
    ``throttled``."""


class TransientError(Exception):
    """No response: ``reason`` is ``"timeout"`` or ``"network"``; ``detail`` names the error."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RetryPolicy:
    initial_backoff: float = 2.0
    max_backoff: float = 30.0
    request_timeout: float = 10.0
    # Fraction of a computed backoff that may be shaved off at random (0 = deterministic).
    jitter: float = 0.1
    # Guards against a zero backoff hammering the API until the deadline.
    max_attempts: int = 10
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)
    monotonic: Callable[[], float] = field(default=time.monotonic, compare=False)
    # Wall clock, only to turn an HTTP-date Retry-After into a wait.
    clock: Callable[[], float] = field(default=time.time, compare=False)
    random: Callable[[], float] = field(default=random.random, compare=False)

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0-based) when the server gave no hint."""
        base = min(self.max_backoff, self.initial_backoff * 2**retry)
        return base * (1 - self.jitter * self.random())


def retry_after(response: httpx.Response, now: float) -> float | None:
    """Seconds to wait according to ``Retry-After``, or None when absent or unparseable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            return None
        seconds = when.timestamp() - now
    if seconds != seconds or seconds == float("inf"):  # NaN / inf from float()
        return None
    return max(0.0, seconds)


async def send_with_retries(
    client: httpx.AsyncClient,
    request_factory: Callable[[], httpx.Request],
    *,
    deadline: float,
    endpoint: str,
    record: Callable[[str, str], None],
    policy: RetryPolicy,
) -> httpx.Response:
    """Send the request built by ``request_factory`` until it gets a final answer.

    ``deadline`` is a ``policy.monotonic()`` value. Every attempt is reported through
    ``record(endpoint, status_or_reason)``. Returns the final (possibly 429/5xx) response;
    raises :class:`TransientError` when the last attempt got no response at all.
    """
    response: httpx.Response | None = None
    error: TransientError | None = None
    previous: httpx.Response | TransientError | None = None  # the attempt before this one
    attempt = 0
    while True:
        remaining = deadline - policy.monotonic()
        if remaining <= 0:
            if response is not None:
                return response
            raise error or TransientError("timeout", f"{endpoint}: deadline passed before sending")
        timeout = min(policy.request_timeout, remaining)
        request = request_factory()
        # httpx.Timeout(timeout).as_dict(), without building the Timeout
        request.extensions["timeout"] = dict.fromkeys(_TIMEOUT_KEYS, timeout)
        request.extensions[TOTAL_TIMEOUT] = timeout
        response, error, held_back = None, None, False
        try:
            # httpx timeouts bound each read, not the whole exchange: this bounds the total
            # (in the same task: wait_for would start a task per request).
            async with asyncio.timeout(timeout):
                response = await client.send(request)
        except HostThrottled as exc:  # not sent, so not counted as a request
            held_back = True
            error = TransientError("throttled", f"{endpoint}: {exc}")
        except (httpx.TimeoutException, TimeoutError) as exc:
            record(endpoint, "timeout")
            error = TransientError("timeout", f"{endpoint}: {_describe(exc, timeout)}")
        except httpx.RequestError as exc:
            record(endpoint, "network")
            error = TransientError("network", f"{endpoint}: {_describe(exc, timeout)}")
        else:
            record(endpoint, str(response.status_code))
            if response.status_code not in RETRY_STATUSES:
                return response

        attempt += 1
        wait = retry_after(response, policy.clock()) if response is not None else None
        if wait is None:
            wait = policy.backoff(attempt - 1)
        if attempt >= policy.max_attempts or policy.monotonic() + wait >= deadline:
            if response is not None:
                return response
            assert error is not None
            cut_short = error.reason == "timeout" and timeout < policy.request_timeout
            if (cut_short or held_back) and previous is not None:
                # the budget (or the agent's own backoff), not the server, cut this attempt
                # short: the attempt before (a 429, a 503, a reset) tells more about the server
                if isinstance(previous, TransientError):
                    raise previous
                return previous
            raise error
        previous = response if response is not None else error
        await policy.sleep(wait)


def _describe(exc: Exception, timeout: float) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"no response within {timeout:g}s ({type(exc).__name__})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
