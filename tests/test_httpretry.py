"""agent.checks.httpretry: retries, backoff and the deadline, against httpx.MockTransport."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from agent.checks.httpretry import RetryPolicy, TransientError, retry_after, send_with_retries

URL = "https://api.example.test/thing"
WALL = 1_700_000_000.0


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def clock(self) -> float:
        return WALL + self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class Script:
    """Answers with the scripted responses (or raises the scripted errors) in order."""

    def __init__(self, *outcomes: httpx.Response | Exception) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def policy(fake_time: FakeTime, **overrides: float) -> RetryPolicy:
    values = {"jitter": 0.0} | overrides
    return RetryPolicy(
        sleep=fake_time.sleep,
        monotonic=fake_time.monotonic,
        clock=fake_time.clock,
        **values,
    )


async def send(
    script: Script, fake_time: FakeTime, *, budget: float = 60.0, **overrides: float
) -> tuple[httpx.Response, list[tuple[str, str]]]:
    records: list[tuple[str, str]] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(script)) as client:
        response = await send_with_retries(
            client,
            lambda: client.build_request("GET", URL),
            deadline=fake_time.now + budget,
            endpoint="thing",
            record=lambda endpoint, code: records.append((endpoint, code)),
            policy=policy(fake_time, **overrides),
        )
    return response, records


def status(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, headers=headers, json={"message": "x"})


async def test_success_is_returned_at_once(fake_time: FakeTime) -> None:
    response, records = await send(Script(status(200)), fake_time)
    assert response.status_code == 200
    assert records == [("thing", "200")]
    assert fake_time.waits == []


async def test_retry_after_seconds_is_honoured(fake_time: FakeTime) -> None:
    script = Script(status(429, **{"Retry-After": "7"}), status(200))
    response, records = await send(script, fake_time)
    assert response.status_code == 200
    assert fake_time.waits == [7.0]
    assert records == [("thing", "429"), ("thing", "200")]


async def test_retry_after_http_date_is_honoured(fake_time: FakeTime) -> None:
    when = email.utils.formatdate(fake_time.clock() + 12, usegmt=True)
    script = Script(status(503, **{"Retry-After": when}), status(200))
    response, _ = await send(script, fake_time)
    assert response.status_code == 200
    assert fake_time.waits == [pytest.approx(12, abs=1)]


async def test_exponential_backoff_without_retry_after(fake_time: FakeTime) -> None:
    script = Script(status(500), status(502), status(503), status(504), status(200))
    response, records = await send(script, fake_time)
    assert response.status_code == 200
    assert fake_time.waits == [2.0, 4.0, 8.0, 16.0]
    assert [code for _, code in records] == ["500", "502", "503", "504", "200"]


async def test_backoff_is_capped(fake_time: FakeTime) -> None:
    script = Script(*[status(429)] * 5, status(200))
    await send(script, fake_time, initial_backoff=2.0, max_backoff=5.0)
    assert fake_time.waits == [2.0, 4.0, 5.0, 5.0, 5.0]


async def test_jitter_only_shortens_the_wait(fake_time: FakeTime) -> None:
    script = Script(*[status(429)] * 4, status(200))
    await send(script, fake_time, jitter=0.5, max_backoff=5.0)
    for wait, full in zip(fake_time.waits, [2.0, 4.0, 5.0, 5.0], strict=True):
        assert full * 0.5 <= wait <= full


async def test_deadline_is_never_passed(fake_time: FakeTime) -> None:
    start = fake_time.now
    script = Script(status(429))
    response, records = await send(script, fake_time, budget=20.0)
    # waits 2, 4, 8 end at 14; the next wait (16) would end past 20: give up with the 429
    assert response.status_code == 429
    assert fake_time.waits == [2.0, 4.0, 8.0]
    assert fake_time.now - start < 20.0
    assert len(records) == 4


async def test_long_retry_after_past_deadline_returns_the_response(fake_time: FakeTime) -> None:
    script = Script(status(429, **{"Retry-After": "120"}), status(200))
    response, records = await send(script, fake_time, budget=60.0)
    assert response.status_code == 429
    assert fake_time.waits == []
    assert records == [("thing", "429")]


async def test_per_attempt_timeout_is_bounded_by_the_deadline(fake_time: FakeTime) -> None:
    script = Script(status(500), status(200))
    await send(script, fake_time, budget=5.0, request_timeout=10.0)
    timeouts = [r.extensions["timeout"]["read"] for r in script.requests]
    assert timeouts == [5.0, 3.0]  # 5 s left, then 3 s after the 2 s backoff


async def test_network_error_raises_transient_network(fake_time: FakeTime) -> None:
    script = Script(httpx.ConnectError("connection refused"))
    with pytest.raises(TransientError) as info:
        await send(script, fake_time, budget=10.0)
    assert info.value.reason == "network"
    assert "ConnectError" in info.value.detail
    assert fake_time.waits == [2.0, 4.0]
    assert len(script.requests) == 3


async def test_network_error_then_success(fake_time: FakeTime) -> None:
    script = Script(httpx.ReadError("reset"), status(200))
    response, records = await send(script, fake_time)
    assert response.status_code == 200
    assert records == [("thing", "network"), ("thing", "200")]


async def test_timeout_raises_transient_timeout(fake_time: FakeTime) -> None:
    records: list[tuple[str, str]] = []
    script = Script(httpx.ReadTimeout("slow"))
    with pytest.raises(TransientError) as info:
        async with httpx.AsyncClient(transport=httpx.MockTransport(script)) as client:
            await send_with_retries(
                client,
                lambda: client.build_request("GET", URL),
                deadline=fake_time.now + 3.0,
                endpoint="thing",
                record=lambda endpoint, code: records.append((endpoint, code)),
                policy=policy(fake_time),
            )
    assert info.value.reason == "timeout"
    assert records == [("thing", "timeout"), ("thing", "timeout")]


async def test_an_attempt_cut_short_by_the_budget_keeps_the_answer_before(
    fake_time: FakeTime,
) -> None:
    script = Script(status(429), httpx.ReadTimeout("cut"))
    response, records = await send(script, fake_time, budget=3.0, request_timeout=10.0)
    assert response.status_code == 429  # the 2nd attempt had 1 s left, not its 10 s
    assert records == [("thing", "429"), ("thing", "timeout")]


async def test_an_attempt_cut_short_after_a_reset_stays_a_network_error(
    fake_time: FakeTime,
) -> None:
    script = Script(httpx.ReadError("reset"), httpx.ReadTimeout("cut"))
    with pytest.raises(TransientError) as info:
        await send(script, fake_time, budget=3.0, request_timeout=10.0)
    assert info.value.reason == "network"


async def test_a_full_length_timeout_after_an_answer_is_a_timeout(fake_time: FakeTime) -> None:
    script = Script(status(429), httpx.ReadTimeout("slow"))
    with pytest.raises(TransientError) as info:
        await send(script, fake_time, budget=3.0, request_timeout=0.5)
    assert info.value.reason == "timeout"


async def test_deadline_already_passed_sends_nothing(fake_time: FakeTime) -> None:
    script = Script(status(200))
    with pytest.raises(TransientError) as info:
        await send(script, fake_time, budget=0.0)
    assert info.value.reason == "timeout"
    assert script.requests == []


@pytest.mark.parametrize("code", [400, 401, 403, 404, 425])
async def test_client_errors_are_not_retried(fake_time: FakeTime, code: int) -> None:
    script = Script(status(code), status(200))
    response, records = await send(script, fake_time)
    assert response.status_code == code
    assert records == [("thing", str(code))]
    assert fake_time.waits == []


async def test_max_attempts_stops_a_zero_backoff(fake_time: FakeTime) -> None:
    script = Script(status(503))
    response, records = await send(script, fake_time, initial_backoff=0.0, max_attempts=4)
    assert response.status_code == 503
    assert len(records) == 4


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0", 0.0), ("-5", 0.0), ("soon", None), ("", None), ("nan", None)],
)
def test_retry_after_parsing(value: str, expected: float | None) -> None:
    response = httpx.Response(429, headers={"Retry-After": value} if value else {})
    assert retry_after(response, WALL) == expected
