"""/metrics rendered in the background (``Exposition.keep_fresh``): a scrape serves the
complete text the background rendered, a slice of accounts at a time, and shows every change
older than ``STALENESS``; a new set of accounts is rendered beside the one served."""

from __future__ import annotations

import asyncio
import gzip
import time
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest

from agent.channel import CheckResult
from agent.metrics import exposition as exposition_module
from agent.metrics.blockcache import BlockCache
from agent.web.server import make_app
from tests.fakes import FakeChannel
from tests.test_exposition import families, rich, world  # noqa: F401 (world: a fixture)

SLICE = 8


@pytest.fixture
def rendered(monkeypatch):
    """How many accounts each rendering of a cache took, in order."""
    sizes: list[int] = []
    refresh = BlockCache._refresh

    def recording(self, accounts, now):
        accounts = list(accounts)
        sizes.append(len(accounts))
        return refresh(self, accounts, now)

    monkeypatch.setattr(BlockCache, "_refresh", recording)
    monkeypatch.setattr(exposition_module, "ACCOUNT_SLICE", SLICE)
    monkeypatch.setattr(exposition_module, "ACCOUNT_STEP", SLICE)
    return sizes


@pytest.fixture
async def background(world):  # noqa: F811
    service, clock, exposition = world
    task = asyncio.create_task(exposition.keep_fresh(interval=0.01, idle_wait=0.2))
    yield service, clock, exposition
    task.cancel()


def scraped(exposition) -> dict:
    return families(gzip.decompress(exposition.render_gzip()))


def expected(service) -> dict:
    return families(generate_latest(service.metrics.registry))


async def caught_up(exposition) -> None:
    """Until the background has taken every change made so far."""
    now = time.monotonic()
    while exposition.rendered_until <= now:
        await asyncio.sleep(0.005)


async def check(service, clock, name: str) -> None:
    FakeChannel.script[name] = rich(clock, int(name[-3:]))
    await service.scheduler.check_now(service.find_account("fake", name))


async def test_the_first_scrape_waits_for_the_background_which_renders_in_slices(
        background, rendered):
    service, clock, exposition = background
    await check(service, clock, "acct002")
    server = TestServer(make_app(service))
    async with TestClient(server, auto_decompress=False) as client:
        response = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        body = await response.read()
    assert int(response.headers["Content-Length"]) == len(body)
    assert families(gzip.decompress(body)) == expected(service)
    assert sum(rendered) >= len(service.fleet.accounts)
    assert max(rendered) <= SLICE  # never every account in one go


async def test_a_scrape_serves_what_the_background_rendered(background, rendered):
    service, clock, exposition = background
    await exposition.settled()
    await check(service, clock, "acct003")
    await caught_up(exposition)
    rendered.clear()
    assert scraped(exposition) == expected(service)
    assert rendered == []  # the scrape rendered nothing itself


async def test_a_few_changes_since_the_last_pass_show_at_the_next_scrape(world, rendered):  # noqa: F811
    service, clock, exposition = world
    task = asyncio.create_task(exposition.keep_fresh(interval=3600))  # no second pass
    try:
        await exposition.settled()
        await caught_up(exposition)
        rendered.clear()
        await check(service, clock, "acct005")  # e.g. a reconnect, just before a scrape
        assert scraped(exposition) == expected(service)
        assert 0 < sum(rendered) <= SLICE  # the scrape rendered that change, not the fleet
    finally:
        task.cancel()


async def test_changed_ages_are_rendered_ahead_only_while_a_scrape_is_expected(
        world, monkeypatch):  # noqa: F811
    """A check cycle with nobody scraping (the benchmark's flat-out phase) costs no age
    rendering: the next scrape renders the changed chunks anyway (they are changed, or by
    then rendered for an old second). Once scrapes come on a pace, the background renders
    them ahead, so the scrape serves them as they are."""
    service, clock, exposition = world
    await check(service, clock, "acct003")
    await check(service, clock, "acct004")
    task = asyncio.create_task(exposition.keep_fresh(interval=3600))  # passes driven below
    try:
        await asyncio.sleep(0)  # the background starts
        await exposition.settled()  # its first pass done, it sleeps
        filled: list = []
        fill = exposition_module.fill
        monkeypatch.setattr(exposition_module, "fill",
                            lambda *args: filled.append(args) or fill(*args))

        async def a_pass() -> None:
            for collector in exposition._incremental():
                await exposition._keep(collector)

        clock.now += 5
        await check(service, clock, "acct003")  # a new token: its age chunk changed
        await a_pass()
        assert filled == []  # no scrape expected: the background rendered no age
        assert scraped(exposition) == expected(service)  # the scrape shows the new age
        scraped(exposition)  # a second scrape: the next is expected (interval of an hour)
        clock.now += 5
        await check(service, clock, "acct004")
        await a_pass()
        assert filled != []  # rendered ahead of the scrape
        assert scraped(exposition) == expected(service)
    finally:
        task.cancel()


async def test_with_no_scrape_expected_the_changes_wait_and_are_rendered_together(
        world, rendered):  # noqa: F811
    """Nobody scrapes (a check cycle before Prometheus comes, or the time between two of
    its scrapes): the background does not take each change as it comes, so an account
    changed twice, or several accounts of a block, cost one rendering; here it waits longer
    than the test (idle_wait of an hour), and the scrape takes them. Once scrapes come on a
    pace, the background takes every change again, and the scrape renders nothing itself."""
    service, clock, exposition = world
    task = asyncio.create_task(exposition.keep_fresh(interval=0.01, idle_wait=3600))
    try:
        await asyncio.sleep(0)  # the background starts
        await exposition.settled()  # the first rendering of every account
        rendered.clear()
        for name in ("acct003", "acct004", "acct003"):
            await check(service, clock, name)
            await asyncio.sleep(0.05)  # five of the background's intervals
        assert rendered == []  # no scrape expected: nothing taken
        assert scraped(exposition) == expected(service)  # the first scrape takes them
        assert sum(rendered) == 2  # acct003 once
        await asyncio.sleep(0.1)
        scraped(exposition)  # a second: a scrape is expected every 0.1 s from now on
        await check(service, clock, "acct005")
        await asyncio.wait_for(caught_up(exposition), 10)
        rendered.clear()
        assert scraped(exposition) == expected(service)
        assert rendered == []  # the background had rendered it
    finally:
        task.cancel()


async def test_a_scrape_that_finds_many_changes_left_waits_for_the_background(
        world, rendered, monkeypatch):  # noqa: F811
    """Changes the background left while no scrape was expected, more than a scrape takes
    itself: the scrape that comes (off pace) wakes the background and waits for its pass,
    which renders them in steps with the loop served in between, not in one go."""
    service, clock, exposition = world
    monkeypatch.setattr(exposition_module, "STALENESS", 0.05)
    task = asyncio.create_task(exposition.keep_fresh(interval=3600, idle_wait=3600))
    try:
        await asyncio.sleep(0)  # the background starts
        await exposition.settled()
        names = [f"acct{i:03d}" for i in range(0, 37, 2)]  # 19 accounts: more than SLICE
        for name in names:
            await check(service, clock, name)
        await asyncio.sleep(0.1)  # the background is "late" (STALENESS)
        rendered.clear()
        await asyncio.wait_for(exposition.settled(), 10)  # what GET /metrics does first
        assert sum(rendered) == len(names)  # rendered while the scrape waited
        assert max(rendered) <= SLICE  # in the background's steps, not in one go
        rendered.clear()
        assert scraped(exposition) == expected(service)
        assert rendered == []
    finally:
        task.cancel()


async def test_past_the_bound_a_scrape_renders_the_changes_itself(background, monkeypatch):
    service, clock, exposition = background
    await exposition.settled()
    monkeypatch.setattr(exposition_module, "STALENESS", 0.0)  # the background is "late"
    await check(service, clock, "acct004")
    assert scraped(exposition) == expected(service)  # at once, not after a pass


async def test_a_new_set_of_accounts_is_rendered_beside_the_one_served(
        background, rendered, fake_config):
    service, clock, exposition = background
    await check(service, clock, "acct001")
    await exposition.settled()
    before = expected(service)
    names = [f"acct{i:03d}" for i in range(60)]
    service.fleet.configure(fake_config(accounts=names))
    while not exposition.rebuilding:
        await asyncio.sleep(0)
    # the last complete set's series, whole (the fleet-wide ones are current)
    now = scraped(exposition)
    assert now.pop("channel_agent_accounts") != before.pop("channel_agent_accounts")
    assert now == before
    while exposition.rebuilding:
        await asyncio.sleep(0)
    assert scraped(exposition) == expected(service)
    assert 'account="acct059"' in gzip.decompress(exposition.render_gzip()).decode()
    assert max(rendered) <= SLICE


@pytest.fixture
def priced(world, monkeypatch):  # noqa: F811
    """Each account rendered moves the exposition's step clock on by ``ms_per_account``;
    ``log`` has (collector, accounts) per rendering."""
    service, clock, exposition = world
    price = SimpleNamespace(ms_per_account=0.0, elapsed=0.0, log=[])
    exposition.timer = lambda: price.elapsed
    monkeypatch.setattr(exposition_module, "ACCOUNT_STEP", 8)
    monkeypatch.setattr(exposition_module, "STEP_TIME", 0.005)
    refresh = BlockCache._refresh

    def costly(self, accounts, now):
        accounts = list(accounts)
        price.log.append((self.collector, len(accounts)))
        price.elapsed += price.ms_per_account / 1000 * len(accounts)
        return refresh(self, accounts, now)

    monkeypatch.setattr(BlockCache, "_refresh", costly)
    return price


@pytest.mark.parametrize(("ms_per_account", "steps"), [
    (0.25, [24, 13]),  # 8 accounts cost 2 ms: three eights, then the 5 ms are used up
    (1.0, [8, 8, 8, 8, 5]),  # 8 accounts cost 8 ms: the step ends after the first eight
    (0.0, [37]),  # no time used: a step goes on until every account is rendered
])
async def test_a_background_step_renders_until_its_time_is_used_up(
        world, priced, ms_per_account, steps):  # noqa: F811
    """A step of the background renders ACCOUNT_STEP accounts at a time until STEP_TIME has
    passed on its clock (here each account rendered moves it on), then the loop gets a
    turn."""
    service, clock, exposition = world
    priced.ms_per_account = ms_per_account
    log = priced.log  # and None for each turn the others got

    async def others() -> None:  # the rest of the loop, marking each turn it gets
        while True:
            log.append(None)
            await asyncio.sleep(0)

    fleet = service.metrics.fleet_collector
    assert len(service.fleet.accounts) == 37
    other = asyncio.create_task(others())
    task = asyncio.create_task(exposition.keep_fresh(interval=3600))
    try:
        await asyncio.sleep(0)  # the background starts
        await exposition.settled()  # the first rendering of every account, in steps
    finally:
        task.cancel()
        other.cancel()
    turns, rendered = [], 0  # the fleet's accounts rendered between two turns of the others
    for entry in log:
        if entry is None:
            turns, rendered = turns + [rendered] if rendered else turns, 0
        elif entry[0] is fleet:
            rendered += entry[1]
    assert turns + ([rendered] if rendered else []) == steps


async def test_changes_taken_while_no_scrape_is_expected_are_rendered_in_steps(
        world, priced):  # noqa: F811
    """The changes gathered while no scrape was expected (thousands in a check cycle) are
    rendered in steps with the loop served in between, as the first rendering is."""
    service, clock, exposition = world
    task = asyncio.create_task(exposition.keep_fresh(interval=0.01, idle_wait=1.0))
    try:
        await asyncio.sleep(0)  # the background starts
        await exposition.settled()
        for i in range(37):  # well within idle_wait: the next pass takes them all
            await check(service, clock, f"acct{i:03d}")
        priced.ms_per_account = 1.0  # 8 accounts: 8 ms, a step each
        log = priced.log
        log.clear()

        async def others() -> None:
            while True:
                log.append(None)
                await asyncio.sleep(0)

        other = asyncio.create_task(others())
        try:
            await asyncio.wait_for(caught_up(exposition), 10)
        finally:
            other.cancel()
        fleet = service.metrics.fleet_collector
        turns, rendered = [], 0
        for entry in log:
            if entry is None:
                turns, rendered = turns + [rendered] if rendered else turns, 0
            elif entry[0] is fleet:
                rendered += entry[1]
        assert turns + ([rendered] if rendered else []) == [8, 8, 8, 8, 5]
    finally:
        task.cancel()


async def test_the_changes_a_scrape_takes_itself_are_a_step(world, priced, monkeypatch):  # noqa: F811
    """A scrape takes the changes since the background's last pass itself up to the end of
    a step (at least ACCOUNT_STEP accounts); what is left shows at the next scrapes."""
    service, clock, exposition = world
    monkeypatch.setattr(exposition_module, "STALENESS", 3600)  # the background is not late
    task = asyncio.create_task(exposition.keep_fresh(interval=3600))  # no second pass
    try:
        await caught_up(exposition)  # the first pass, which renders every account
        names = [f"acct{i:03d}" for i in range(0, 37, 2)]  # 19 accounts
        for name in names:
            await check(service, clock, name)
        priced.ms_per_account = 0.25  # 8 accounts: 2 ms; a step of 5 ms takes 24
        fleet = service.metrics.fleet_collector
        priced.log.clear()
        first = scraped(exposition)
        assert [n for c, n in priced.log if c is fleet] == [8, 8, 3]  # every change
        assert first == expected(service)

        for name in names:  # the credentials revoked
            FakeChannel.script[name] = CheckResult(valid=False, reason="invalid_grant")
            await service.scheduler.check_now(service.find_account("fake", name))
        priced.ms_per_account = 1.0  # 8 accounts: 8 ms, the step is over
        priced.log.clear()
        assert scraped(exposition) != expected(service)  # 11 of the 19 left
        assert [n for c, n in priced.log if c is fleet] == [8]
        scraped(exposition)
        assert scraped(exposition) == expected(service)  # shown after three scrapes
        assert [n for c, n in priced.log if c is fleet] == [8, 8, 3]
    finally:
        task.cancel()
