"""/metrics at 10,000 accounts: the text exposition, rendered incrementally and kept compressed.

``generate_latest`` formats every sample at every scrape; at 150,000 samples that takes
seconds. :class:`Exposition` renders the same content (same families, labels and values)
like this:

- The per-account samples of every :class:`~agent.metrics.incremental.IncrementalCollector`
  (the fleet's credential series, the data-freshness series) are formatted once per change of
  the account (``IncrementalCollector.watch``) and kept in blocks of ``BLOCK`` accounts per
  family (:mod:`agent.metrics.blockcache`). Each block is also kept deflate-compressed on its
  own, ended by a sync flush, so the compressed blocks concatenate into one valid deflate
  stream: a change re-compresses only the blocks of its account whose text changed.
- Samples whose value is an :class:`~agent.metrics.incremental.Age` (token ages, data
  staleness) change every second by themselves: they are kept compressed per chunk of blocks
  for the second they were rendered for, and rendered ahead of the scrape by the background
  task while scrapes come (:mod:`agent.metrics.ages`): an age may be a second behind the
  clock, never behind a change. When the background has not had the CPU to render every
  chunk of a second (tens of thousands of accounts, a fast scraper, a busy machine), a scrape
  on the pace it expects serves the chunks as it left them, up to ``MAX_AGE_LAG`` seconds old,
  and reports the lag (``on_age_lag``) rather than render them all itself. The collectors'
  few fleet-wide families are rendered whole.
- The rendering is the background task's (:meth:`Exposition.keep_fresh`, started with the web
  app): it takes the changes in steps of about ``STEP_TIME`` (5 ms), ``ACCOUNT_STEP`` accounts
  between two readings of the clock, with the loop served in between, and a scrape serves what it
  rendered, unless the background has not caught up for ``STALENESS`` (1 s): then the scrape
  renders the changes itself. While no scrape is expected within ``CATCH_UP`` (3 s), the
  background takes the changes only every ``IDLE_WAIT`` (10 s), so changes between two
  scrapes cost one rendering of each block they touched, not one per change; a scrape that
  comes meanwhile and finds more than ``ACCOUNT_SLICE`` changes left waits for the background
  to take them, in its steps, rather than hold the loop to render them. A scrape shows every
  change made more than ``STALENESS`` before it, and takes a step's worth of the changes made
  since the background's last pass itself (when they are ``ACCOUNT_SLICE`` at most), so a few
  changes (a reconnect, a heartbeat) show at the next scrape. A new set of accounts (the
  start, a change of the inventory or of the channels) is rendered at once into a new cache
  beside the one served, which is replaced once the new one is complete; the first scrape after
  a start waits (without holding the loop) for the first complete rendering.
- Every other collector in the registry is rendered at every scrape by prometheus_client's own
  ``generate_latest``, so whatever another module registers appears, exact and current. (A
  collector with many series can offer the IncrementalCollector's interface to be cached too.)
- A gzip response is one gzip member: the cached compressed stream of the cached families and
  the ages, then the freshly compressed rest; its CRC-32 combines the cached parts' and
  continues. It is handed to the server as pieces with their total length, never joined.

Families come out in a different order than from ``generate_latest``; the text format allows
any order of families (each family's samples stay together).

The format is negotiated from the scraper's ``Accept`` header as prometheus_client's own
handlers do (``choose_encoder``): Prometheus asks for OpenMetrics first. The two formats differ
in the HELP/TYPE lines of counters, in the other collectors' text and in the final ``# EOF``,
not in the per-account sample lines: the cached lines and compressed blocks serve both, and
only the family headers and the assembled stream are kept per format.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
import zlib
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from agent.metrics.ages import fill, pack_all
from agent.metrics.blockcache import BlockCache, Families
from agent.metrics.formats import TEXT, Format
from agent.metrics.gzipstream import (
    GZIP_HEADER,
    compression_pool,
    crc32_combine,
    deflate,
    gzip_trailer,
)
from agent.metrics.incremental import IncrementalCollector

REFRESH_INTERVAL = 0.05  # seconds between background refreshes
AGE_LAG = 1  # seconds an age may be behind the clock at a scrape (agent.metrics.ages)
# seconds an age may be behind the clock at a scrape on the pace the background expects,
# when the background has not had the CPU to render every age of each second: the scrape
# serves the ages it rendered, oldest first, rather than render them itself (at 50,000
# accounts a second's ages are ~0.4 CPU-seconds); the lag is reported (on_age_lag)
MAX_AGE_LAG = 10
AGE_SLICE = 16  # age chunks rendered in the background before the loop gets a turn
AGES_PER_PASS = 4 * AGE_SLICE  # age chunks rendered ahead between two takes of the changes
# changes since the background's last pass up to which a scrape takes them itself, a step's
# worth (a reconnect, a heartbeat: they show at the next scrape)
ACCOUNT_SLICE = 64
# The background renders the changes by time, not by count: ACCOUNT_STEP accounts at a time
# until it has used STEP_TIME of CPU, then the loop gets a turn (what an account costs varies
# several times over with the fleet and the machine). CPU, not wall time: on a loaded machine
# a step that lost the CPU would otherwise end at ACCOUNT_STEP and fall behind the changes.
ACCOUNT_STEP = 8
STEP_TIME = 0.005  # seconds
# seconds a scrape may serve what the background rendered without rendering the changes
# since: every change older than this shows (see Exposition.keep_fresh)
STALENESS = 1.0
# While no scrape is expected within CATCH_UP seconds (none came yet, the scraper stopped, or
# Prometheus's next is further off), the background takes the changes every IDLE_WAIT seconds
# instead of every pass: an account checked twice, or several accounts of one block, cost one
# rendering of the block, and a check cycle nobody scrapes costs a fraction of one per check.
# From CATCH_UP seconds before the expected scrape it takes them every pass again, so that
# scrape serves ready bytes. One that comes off pace and finds more than ACCOUNT_SLICE changes
# waits for the background to take them (Exposition.settled), at most IDLE_WAIT's worth.
IDLE_WAIT = 10.0
CATCH_UP = 3.0


class _One:
    """One collector, as ``generate_latest`` wants it."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Metric]:
        return self.collector.collect()


class Exposition:
    """Renders a registry like ``generate_latest``, fast for its IncrementalCollectors.

    ``age_lag``: how many seconds an age may be behind the clock at a scrape
    (:mod:`agent.metrics.ages`); 0 renders every age for the scrape's own second.
    ``max_age_lag``: how many seconds an age may be behind the clock at a scrape that
    comes on the pace the background expects (it renders the ages ahead for it) when the
    background could not render them all in time (``MAX_AGE_LAG``).
    ``on_age_lag``: called at each scrape with the whole seconds by which its oldest age is
    behind the scrape's second (``channel_agent_exposition_age_lag_seconds``).
    ``timer``: the clock that ends the background's steps (``STEP_TIME``): the loop
    thread's CPU time."""

    def __init__(self, registry: CollectorRegistry, age_lag: int = AGE_LAG,
                 timer: Callable[[], float] = time.thread_time,
                 max_age_lag: int = MAX_AGE_LAG,
                 on_age_lag: Callable[[int], object] | None = None) -> None:
        self.registry = registry
        self.age_lag = age_lag
        self.max_age_lag = max(age_lag, max_age_lag)
        self.on_age_lag = on_age_lag
        self.served_age_lag = 0  # the last scrape's (on_age_lag)
        self.timer = timer
        self._interval = REFRESH_INTERVAL  # keep_fresh's
        self._caches: dict[int, BlockCache] = {}  # served
        self._building: dict[int, BlockCache] = {}  # rendered in the background, not yet served
        self._built = asyncio.Event()  # set when the background swaps a built cache in
        self._passed = asyncio.Event()  # set when the background has taken the changes
        self._wake = asyncio.Event()  # set to end the background's pause (a scrape waits)
        self._wanted_at = -math.inf  # time.monotonic() of a scrape that waits for a pass
        self._background = False  # keep_fresh runs
        self._fresh_at = -math.inf  # time.monotonic() before which every change is rendered
        self._scraped = False
        self._last_scrape = 0.0  # time.monotonic() of the last scrape
        self._scrape_gap = math.inf  # seconds between the last two scrapes

    def _collectors(self) -> list[Collector] | None:
        return getattr(self.registry, "collectors", None)

    def _incremental(self) -> list[IncrementalCollector]:
        return [c for c in self._collectors() or [] if isinstance(c, IncrementalCollector)]

    def _cache(self, collector: IncrementalCollector) -> BlockCache:
        cache = self._caches.get(id(collector))
        if cache is None or cache.collector is not collector:
            cache = self._caches[id(collector)] = BlockCache(collector)
        return cache

    def _serving(self, collector: IncrementalCollector, now: float) -> BlockCache:
        """The cache a scrape serves: as the background left it while the background keeps
        it fresh (every change older than ``STALENESS`` rendered) or renders it anew (the
        set of accounts changed: the last complete one is served meanwhile); else brought up
        to date now."""
        cache = self._caches.get(id(collector))
        if cache is not None and cache.collector is collector and cache.complete and (
                id(collector) in self._building
                or time.monotonic() - self._fresh_at <= STALENESS):
            if id(collector) not in self._building and cache.backlog() <= ACCOUNT_SLICE:
                # a few changes since the background's last pass (a reconnect, a heartbeat):
                # a step's work (at least ACCOUNT_STEP accounts), so the scrape shows them at
                # once; what the step leaves shows at a later scrape, within STALENESS
                self._step(cache)
            return cache
        cache = self._cache(collector)
        cache.update(now)
        return cache

    @property
    def rendered_until(self) -> float:
        """``time.monotonic()`` before which the background has rendered every change."""
        return self._fresh_at

    @property
    def rebuilding(self) -> bool:
        """Whether the background renders a new set of accounts (the last set is served)."""
        return bool(self._building)

    def refresh(self) -> None:
        """Bring the cached text up to date, without rendering a response."""
        for collector in self._incremental():
            self._cache(collector).update(collector.clock())

    async def settled(self) -> None:
        """Wait (the loop serving others) while the background renders a cache that has
        never been complete (the first after a start), or takes more changes than a scrape
        takes itself (``ACCOUNT_SLICE``) that it left while no scrape was expected, rather
        than have the scrape render them at once."""
        while self._background and any(
                (cache := self._caches.get(id(c))) is None or not cache.complete
                for c in self._incremental()):
            self._built.clear()
            await self._built.wait()
        if self._background and self._behind():
            asked = self._wanted_at = time.monotonic()
            self._wake.set()
            while self._background and self._fresh_at < asked:
                self._passed.clear()
                await self._passed.wait()

    def _behind(self) -> bool:
        """Whether a scrape would render more than ``ACCOUNT_SLICE`` changes itself: the
        background has not taken the changes for ``STALENESS`` (it waits while no scrape is
        expected) and has more than that many to take."""
        if time.monotonic() - self._fresh_at <= STALENESS:
            return False
        return any((cache := self._caches.get(id(c))) is not None and cache.complete
                   and id(c) not in self._building and cache.backlog() > ACCOUNT_SLICE
                   for c in self._incremental())

    async def keep_fresh(self, interval: float = REFRESH_INTERVAL,
                         idle_wait: float = IDLE_WAIT) -> None:
        """Render every change in the background, in steps of about ``STEP_TIME`` with the
        loop served in between (:meth:`_step`), so a scrape serves ready bytes: what it
        serves may be up to ``STALENESS`` behind the changes (past that, or when this task is
        not running, the scrape renders the changes itself). The changes are taken every
        ``interval`` while a scrape is expected within ``CATCH_UP``, else every
        ``idle_wait`` (:meth:`_taking`). A new set of accounts (the start, a change of the
        inventory or the channels) is rendered into a new cache at once, served once
        complete. And, while a scrape is expected within the next second or so, render the
        ages of the current second, a slice at a time."""
        self._background = True
        self._interval = interval
        try:
            while True:
                started = time.monotonic()
                if not self._taking(started, idle_wait):
                    await self._pause(interval)
                    continue
                for collector in self._incremental():
                    await self._keep(collector)
                self._fresh_at = started
                self._passed.set()
                more = False  # ages left for the next pass: the changes go first
                if self._scraped and self._scrape_expected(time.monotonic(), 1 + interval):
                    more = await self._render_ages_ahead(AGES_PER_PASS)
                if more:
                    await asyncio.sleep(0)
                else:
                    await self._pause(interval)
        finally:
            self._background = False
            self._built.set()  # a waiting scrape renders itself
            self._passed.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a scrape waits for a pass (:meth:`settled`)."""
        if self._wanted_at > self._fresh_at:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _taking(self, now: float, idle_wait: float) -> bool:
        """Whether the background takes the changes at ``now``: a scrape is expected within
        ``CATCH_UP`` or waits for it (:meth:`settled`), ``idle_wait`` has passed since it
        last took them, or a cache must be rendered anew (a new set of accounts; the first,
        which a scrape waits for)."""
        if (now - self._fresh_at >= idle_wait or self._wanted_at > self._fresh_at
                or (self._scraped and self._scrape_expected(now, CATCH_UP))):
            return True
        return any(self._current(collector) is None for collector in self._incremental())

    def _current(self, collector: IncrementalCollector) -> BlockCache | None:
        """The collector's served cache if it is complete and of the collector's current set
        of accounts; None when one must be rendered anew."""
        cache = self._caches.get(id(collector))
        if (cache is not None and cache.collector is collector and cache.complete
                and cache.seen == collector.generation()):
            return cache
        return None

    async def _keep(self, collector: IncrementalCollector) -> None:
        """Bring one collector's cache up to date, a slice at a time; a new set of accounts
        is rendered into a new cache, swapped in when complete."""
        key = id(collector)
        cache = self._current(collector)
        if cache is not None:
            # a new generation while the loop served others: the next pass builds anew
            while cache.seen == collector.generation() and not self._step(cache):
                await self._render_changed_ages(cache)
            await self._render_changed_ages(cache)
            return
        cache = self._caches.get(key)
        own = cache is not None and cache.collector is collector
        building = self._building[key] = BlockCache(collector, cache.changed if own else None)
        try:
            building.start(collector.clock())
            while not self._step(building):
                await asyncio.sleep(0)
            await self._render_ages(building, building.ages_of.stale(int(collector.clock()), 0))
            building.update(collector.clock())  # what changed meanwhile (a few)
            self._caches[key] = building
            self._built.set()
        finally:
            del self._building[key]

    def _step(self, cache: BlockCache) -> bool:
        """Render ``cache``'s changed accounts ``ACCOUNT_STEP`` at a time until none is left
        or ``STEP_TIME`` has passed on :attr:`timer`; whether it is up to date."""
        end = self.timer() + STEP_TIME
        now = cache.collector.clock()
        while not cache.update(now, ACCOUNT_STEP):
            if self.timer() >= end:
                return False
        return True

    async def _render_changed_ages(self, cache: BlockCache) -> None:
        """Render ``cache``'s changed age chunks for the current second, while a scrape is
        expected within about a second (:meth:`_scrape_expected`). Else no scrape could serve
        them: the next one renders every chunk it takes that changed or was rendered for a
        second older than ``age_lag`` (:meth:`_ready_ages`), and by then each chunk rendered
        now is one or the other; the background renders them ahead once the scrape is
        expected (:meth:`_render_ages_ahead`). So a check cycle with nobody scraping costs
        no age rendering per check."""
        if self._scraped and self._scrape_expected(time.monotonic(), 1 + self._interval):
            await self._render_ages(cache, cache.ages_of.changed())
        else:
            await asyncio.sleep(0)  # the loop's turn between two steps all the same

    async def _render_ages(self, cache: BlockCache, todo: list[tuple[int, int]]) -> None:
        """Render the age chunks ``todo`` for the current second, ``AGE_SLICE`` at a time:
        formatted here, compressed in the compression thread while the loop serves others."""
        loop = asyncio.get_running_loop()
        pool = compression_pool()
        ages = cache.ages_of
        previous = None  # the slice being compressed while the next is formatted
        for start in range(0, len(todo) + AGE_SLICE, AGE_SLICE):
            job = None
            if start < len(todo):
                second = int(cache.collector.clock())
                some = [(f, c, ages.template(f, c)) for f, c in todo[start:start + AGE_SLICE]]
                job = (some, second, loop.run_in_executor(
                    pool, pack_all, [fill(template, second) for _, _, template in some]))
            if previous is not None:
                done, at, packed = previous
                for (f, c, template), chunk in zip(done, await packed, strict=True):
                    ages.keep(f, c, template, at, chunk)
            previous = job
            await asyncio.sleep(0)

    def _scrape_expected(self, now: float, ahead: float) -> bool:
        """Whether the next scrape, if it keeps the last interval, comes within ``ahead``
        seconds (and the scraper has not stopped: twice its interval passed)."""
        gap = self._scrape_gap
        return self._last_scrape + gap - ahead <= now <= self._last_scrape + 2 * gap + ahead

    async def _render_ages_ahead(self, limit: int) -> bool:
        """Render up to ``limit`` of the age chunks a scrape in the next second could not
        take, the oldest first, whichever collector they are of (when the background
        cannot render every chunk each second, the lag then spreads over all of them);
        whether some are left."""
        todo = []  # (second rendered for, or None: changed; cache, family, chunk)
        for collector in self._incremental():
            cache = self._caches.get(id(collector))
            if cache is not None and cache.complete:
                ages = cache.ages_of
                for f, c in ages.stale(int(collector.clock()) + 1, self.age_lag):
                    todo.append((ages.seconds[f][c], id(cache), cache, f, c))
        if not todo:
            return False
        todo.sort(key=lambda entry: -math.inf if entry[0] is None else entry[0])
        by_cache: dict[int, tuple[BlockCache, list[tuple[int, int]]]] = {}
        for _, key, cache, f, c in todo[:limit]:
            by_cache.setdefault(key, (cache, []))[1].append((f, c))
        for cache, chunks in by_cache.values():
            await self._render_ages(cache, chunks)
        return len(todo) > limit

    def _render(self, emit: Callable[[bytes], None], fmt: Format, packed_ages: bool = False,
                ) -> list[tuple[BlockCache, float]]:
        """Bring the caches up to date (with ``packed_ages``, their compressed age chunks
        too: :meth:`_ready_ages`); hand the text rendered at this scrape to ``emit``, piece
        by piece; return the caches, whose text comes first, with their clock's time."""
        collectors = self._collectors()
        if collectors is None:  # a plain CollectorRegistry: no fast path
            emit(fmt.encode(self.registry))
            return []
        scraped = time.monotonic()
        # on the pace the background expects: it has been rendering the ages ahead for
        # this scrape (an off-pace scrape, the first, or one without the background renders
        # the ages older than age_lag itself, as the background had no reason to)
        on_pace = (self._background and self._scraped
                   and self._scrape_expected(scraped, 1 + self._interval))
        self._scraped = True
        self._scrape_gap, self._last_scrape = scraped - self._last_scrape, scraped
        caches = []
        lag = 0  # the plain text's ages are rendered as it is sent
        for collector in self._incremental():
            now = collector.clock()
            cache = self._serving(collector, now)
            if packed_ages:
                lag = max(lag, self._ready_ages(cache, now, on_pace))
            caches.append((cache, now))
        self.served_age_lag = lag
        if self.on_age_lag is not None:
            self.on_age_lag(lag)  # before the collectors' text, which may show it
        for collector in collectors:
            if isinstance(collector, IncrementalCollector):
                emit(fmt.encode(Families(collector.scrape_families())))
            else:
                emit(fmt.encode(_One(collector)))
        if fmt.end:
            emit(fmt.end)
        return caches

    def render(self, fmt: Format = TEXT) -> bytes:
        """The exposition as plain text (what ``fmt``'s encoder says of the registry)."""
        return b"".join(self.render_parts(fmt)[1])

    def render_parts(self, fmt: Format = TEXT) -> tuple[int, Iterator[bytes]]:
        """The same as :meth:`render`, as its length and its pieces, made as they are taken:
        the plain text is never whole in memory (100 MB at 50,000 accounts). The pieces are
        the state of this call, whatever changes while they are taken."""
        pieces: list[bytes] = []
        caches = self._render(pieces.append, fmt)
        parts = [part for cache, now in caches
                 for part in (cache.static_parts(fmt.openmetrics),
                              cache.live_parts(now, fmt.openmetrics))]
        rest = b"".join(pieces)
        size = sum(part_size for part_size, _ in parts) + len(rest)
        return size, itertools.chain(*(part for _, part in parts), (rest,))

    def render_gzip(self, fmt: Format = TEXT) -> bytes:
        """The same exposition as one gzip member."""
        return b"".join(self.render_gzip_parts(fmt)[1])

    def render_gzip_parts(self, fmt: Format = TEXT) -> tuple[int, list[bytes]]:
        """The same exposition as one gzip member, as its length and its pieces: the
        caches' compressed text as it is (the ages as :meth:`_ready_ages` leaves them),
        then the rest, compressed now. Not joined: at 50,000 accounts the member is 10 MB,
        and the server writes the pieces as they are."""
        pieces: list[bytes] = []
        caches = self._render(pieces.append, fmt, packed_ages=True)
        bodies: list[bytes] = [GZIP_HEADER]
        crc = size = 0
        for cache, _ in caches:
            static, static_crc, static_size = cache.assembled(fmt.openmetrics)
            live, live_crc, live_size = cache.live_assembled(fmt.openmetrics)
            bodies += static
            bodies += live
            crc = crc32_combine(crc32_combine(crc, static_crc, static_size), live_crc, live_size)
            size += static_size + live_size
        rest = b"".join(pieces)
        bodies += (deflate(rest, final=True),
                   gzip_trailer(zlib.crc32(rest, crc), size + len(rest)))
        return sum(map(len, bodies)), bodies

    def _ready_ages(self, cache: BlockCache, now: float, on_pace: bool) -> int:
        """Render the age chunks of ``cache`` a scrape at ``now`` cannot serve as they are;
        return by how many whole seconds its oldest age is behind ``now``'s second.

        Chunks changed since their rendering always (a heartbeat, a new token: a change
        shows within its own guarantee, whatever the ages' lag). Chunks merely older than
        ``age_lag``: by the background, oldest first, when the scrape is on the pace it
        expects; then the scrape serves them as they are up to ``max_age_lag``, rather than
        spend what the background could not (at 50,000 accounts a second's ages are ~0.4
        CPU-seconds, and the scrapes that rendered them made the tail). Off pace, or with no
        background, the scrape renders them itself."""
        lag = self.max_age_lag if on_pace else self.age_lag
        return cache.ready_ages(now, lag, compression_pool())

    def invalidate(self) -> None:
        """Treat every account as changed (what a check cycle that touched them all leaves
        for the next render)."""
        for cache in self._caches.values():
            cache.mark_all_changed()
