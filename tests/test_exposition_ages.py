"""Ages (token ages, data staleness) on /metrics are compressed ahead of the scrape: at most a
second behind the clock, never behind a change of state."""

from __future__ import annotations

import asyncio
import gzip

from agent.metrics.ages import LiveFamilies
from agent.metrics.exposition import Exposition
from tests.fakes import FakeChannel
from tests.test_exposition import families, rich, world  # noqa: F401 (world: a fixture)

ACCESS_AGE = ("channel_token_age_seconds", (("account", "acct002"), ("channel", "fake"),
                                            ("token", "access")))


def access_age(exposition: Exposition) -> float:
    samples = families(gzip.decompress(exposition.render_gzip()))["channel_token_age_seconds"][2]
    return next(value for name, labels, value in samples
                if (name, tuple((k, v) for k, v in labels if k != "region")) == ACCESS_AGE)


async def check(service, clock, name="acct002"):
    FakeChannel.script[name] = rich(clock, int(name[-3:]))
    await service.scheduler.check_now(service.find_account("fake", name))


async def test_an_age_is_a_second_behind_the_clock_at_most(world):  # noqa: F811
    service, clock, exposition = world
    await check(service, clock)
    assert access_age(exposition) == 0
    clock.now += 1  # the next second: the chunk rendered a second ago is still good
    assert access_age(exposition) == 0
    clock.now += 1  # two seconds behind would be too many: rendered anew
    assert access_age(exposition) == 2
    lagless = Exposition(service.metrics.registry, age_lag=0)
    assert access_age(lagless) == 2
    clock.now += 1
    assert access_age(lagless) == 3


async def test_a_change_shows_at_the_next_scrape_whatever_the_lag(world):  # noqa: F811
    service, clock, exposition = world
    clock.now += 0.25
    await check(service, clock)
    clock.now += 600
    assert access_age(exposition) == 600
    await check(service, clock)  # a new access token, within the same second
    assert access_age(exposition) == 0


async def test_the_background_renders_ages_while_scrapes_come_often(world, monkeypatch):  # noqa: F811
    service, clock, exposition = world
    await check(service, clock)
    exposition.render_gzip()
    exposition.render_gzip()  # two scrapes close together: the next is expected soon
    clock.now += 30  # every age is stale now
    refresher = asyncio.create_task(exposition.keep_fresh(interval=0.01))
    await asyncio.sleep(0.2)
    refresher.cancel()
    rendered = []
    text = LiveFamilies.text
    monkeypatch.setattr(LiveFamilies, "text",
                        lambda self, *args: rendered.append(args) or text(self, *args))
    assert access_age(exposition) == 30
    assert rendered == []  # the scrape took what the background had rendered
