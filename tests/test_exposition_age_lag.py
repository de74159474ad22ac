"""Ages on /metrics when the background falls behind them: a scrape on the pace the background
expects serves the age chunks it left, up to ``max_age_lag`` seconds old, rather than render a
second's ages itself (what made the tail at 50,000 accounts), and says by how much its oldest
age lags (``channel_agent_exposition_age_lag_seconds``, in the same response). A change of
state (a heartbeat, a credential going invalid) shows whatever the lag.

The background here runs with an interval of an hour: after its first pass it renders nothing
more, so every second the test clock moves on it is "behind" on the ages (no timing)."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.channel import CheckResult
from agent.metrics.ages import LiveFamilies
from agent.metrics.exposition import Exposition
from agent.web.server import make_app
from tests.fakes import FakeChannel
from tests.test_exposition import families
from tests.test_exposition_freshness import heartbeat, world  # noqa: F401 (world: a fixture)
from tests.test_freshness import T

LAG = "channel_agent_exposition_age_lag_seconds"


def scrape(exposition: Exposition) -> dict:
    return families(gzip.decompress(exposition.render_gzip()))


def value(scraped: dict, family: str, **labels: str) -> float:
    return next(v for _, sample_labels, v in scraped[family][2]
                if labels.items() <= dict(sample_labels).items())


def data_age(scraped: dict, account: str, dataset: str = "orders") -> float:
    return value(scraped, "channel_data_staleness_seconds", account=account, dataset=dataset)


def token_age(scraped: dict, account: str = "a001") -> float:
    return value(scraped, "channel_token_age_seconds", account=account, token="access")


async def check(service, name: str, result: CheckResult) -> None:
    FakeChannel.script[name] = result
    await service.scheduler.check_now(service.find_account("fake", name))


def valid(clock) -> CheckResult:
    return CheckResult(valid=True, refresh_token_fingerprint="fp1",
                       access_token_issued_at=clock.now - 60,
                       access_token_expires_at=clock.now + 3600)


@pytest.fixture
def chunks_rendered(monkeypatch):
    """The age chunks rendered by a scrape (the background formats its own with ``fill``)."""
    rendered: list[tuple] = []
    text = LiveFamilies.text
    monkeypatch.setattr(LiveFamilies, "text",
                        lambda self, *args: rendered.append(args) or text(self, *args))
    return rendered


async def start(world):  # noqa: F811
    """The exposition of ``world`` with its background task (one pass, then an hour's sleep),
    its ages of both collectors rendered (a data age, a token age)."""
    service, clock, _ = world
    exposition = Exposition(service.metrics.registry, max_age_lag=10,
                            on_age_lag=service.metrics.exposition_age_lag.set)
    heartbeat(service, "a000", "orders", T)
    heartbeat(service, "a001", "orders", T)
    await check(service, "a001", valid(clock))
    task = asyncio.create_task(exposition.keep_fresh(interval=3600))
    await asyncio.sleep(0)  # the background starts
    await exposition.settled()
    return exposition, task


@pytest.fixture
async def paced(world):  # noqa: F811
    """As :func:`start`, after two scrapes: the next ones come on the pace the background
    expects (with an interval of an hour, any time)."""
    service, clock, _ = world
    exposition, task = await start(world)
    scrape(exposition)
    scrape(exposition)
    yield service, clock, exposition
    task.cancel()


async def test_on_pace_a_scrape_serves_the_ages_left_behind_and_says_how_old(
        paced, chunks_rendered):
    service, clock, exposition = paced
    before = scrape(exposition)
    assert before[LAG][2][0][2] == 0
    clock.now += 4  # the background rendered none of these four seconds' ages
    scraped = scrape(exposition)
    assert chunks_rendered == []  # the scrape rendered no age itself
    assert data_age(scraped, "a000") == data_age(before, "a000")  # as the background left it
    assert token_age(scraped) == token_age(before)
    assert scraped[LAG][2][0][2] == 4  # in the same response: how far behind they are
    assert exposition.served_age_lag == 4


async def test_a_change_shows_at_once_whatever_the_ages_lag(paced):
    service, clock, exposition = paced
    before = scrape(exposition)
    clock.now += 4
    heartbeat(service, "a000", "orders", clock.now - 30)  # the pipeline synced a000
    scraped = scrape(exposition)
    assert data_age(scraped, "a000") == 30  # its chunk rendered for the scrape's second
    assert data_age(scraped, "a001") == data_age(scraped, "a000") + (clock.now - 30 - T)
    assert token_age(scraped) == token_age(before)  # the other chunk as it was left
    assert scraped[LAG][2][0][2] == 4

    await check(service, "a001", CheckResult(valid=False, reason="invalid_grant"))
    scraped = scrape(exposition)
    assert value(scraped, "channel_credential_valid", account="a001") == 0


async def test_past_max_age_lag_a_scrape_renders_the_ages_itself(paced, chunks_rendered):
    service, clock, exposition = paced
    before = scrape(exposition)
    clock.now += 11  # more than max_age_lag (10) behind: the background is not keeping up
    scraped = scrape(exposition)
    assert chunks_rendered != []
    assert data_age(scraped, "a000") == data_age(before, "a000") + 11
    assert token_age(scraped) == token_age(before) + 11
    assert scraped[LAG][2][0][2] == 0


async def test_off_pace_a_scrape_renders_the_ages_itself(world, chunks_rendered):  # noqa: F811
    """The first scrape (or one the background did not expect) finds ages the background had
    no reason to render: it renders those more than age_lag old itself, as before."""
    service, clock, _ = world
    exposition, task = await start(world)
    try:
        clock.now += 4
        scraped = scrape(exposition)
        assert chunks_rendered != []
        assert data_age(scraped, "a000") == clock.now - T
        assert scraped[LAG][2][0][2] == 0
    finally:
        task.cancel()


async def test_the_background_renders_the_oldest_ages_first(paced):
    """With room for one chunk per pass, the background alternates between the two
    collectors' chunks (the oldest first): neither collector's ages are left behind."""
    service, clock, exposition = paced
    for _ in range(6):
        clock.now += 1
        await exposition._render_ages_ahead(1)
    assert scrape(exposition)[LAG][2][0][2] <= 2


async def test_the_lag_is_on_the_agents_metrics(world):  # noqa: F811
    service, clock, _ = world
    async with TestClient(TestServer(make_app(service))) as client:
        body = await (await client.get("/metrics")).text()
    assert f"# TYPE {LAG} gauge" in body
    assert f"{LAG} 0.0" in body
