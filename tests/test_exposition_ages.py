"""Ages (token ages, data staleness) on /metrics are compressed ahead of the scrape: at most a
second behind the clock, never behind a change of state."""

from __future__ import annotations

import asyncio
import gzip

from hypothesis import given, settings
from hypothesis import strategies as st

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


# an account's lines of one live family: a %-template of its prefixes, and its start seconds
ACCOUNT_LINES = st.lists(st.integers(0, 2**40), max_size=3).map(
    lambda starts: ("".join(f"age{{n=\"{s % 7}\"}} %d\n" for s in starts), starts))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1),
                          st.dictionaries(st.integers(0, 11), st.tuples(ACCOUNT_LINES,
                                                                        ACCOUNT_LINES),
                                          min_size=1)),
                max_size=12))
def test_a_chunk_template_is_its_accounts_lines_however_few_or_many_change(changes):
    """A change of a few accounts is cut into the chunk's template (a check cycle's pass finds
    one or two per chunk), of many the template is made again: either way the template is
    every account's latest lines in order, and the chunk is marked for rendering exactly
    when an account's lines changed (whenever its text changed, then: two accounts' lines
    can trade places and leave the text as it was)."""
    per_chunk, accounts = 12, 20  # more than SPLICE per chunk: both ways are taken
    ages = LiveFamilies(2, accounts, per_chunk)
    latest: dict[tuple[int, int], tuple[str, list[int]]] = {}
    for f, c, fresh in changes:
        fresh = {c * per_chunk + i: lines for i, lines in fresh.items()
                 if c * per_chunk + i < accounts}
        if not fresh:
            continue
        before = ages.template(f, c)
        ages.seconds[f][c] = 7  # rendered, as far as the chunk knows
        ages.replace(f, c, fresh)
        moved = any(latest.get((f, i), ("", [])) != lines[f] for i, lines in fresh.items())
        for i, lines in fresh.items():
            latest[(f, i)] = lines[f]
        members = range(c * per_chunk, min(accounts, (c + 1) * per_chunk))
        text = "".join(latest.get((f, i), ("", []))[0] for i in members)
        starts = [s for i in members for s in latest.get((f, i), ("", []))[1]]
        template = ages.template(f, c)
        assert (template[0], template[1].tolist()) == (text, starts)
        changed = (before[0], before[1].tolist()) != (text, starts)
        assert (ages.seconds[f][c] is None) == moved
        assert moved or not changed
        if moved:
            assert template[1] is not before[1]  # a rendering under way keeps the old one
