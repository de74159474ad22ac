"""Polling the pull sources (``sql``, ``file``, ...): one loop per source, every ``interval``.

One round asks the source for each of its data sets in turn. A failure is counted by reason
and makes ``channel_freshness_source_up`` 0 for the round; the data set keeps its last known
value, so a broken source never looks like stale data nor like fresh data. A timeout or an
unreachable source ends the round early: the next data sets would only wait for it too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from agent.freshness.metrics import FreshnessMetrics
from agent.freshness.source import MAX_FUTURE_SKEW, Dataset, FreshnessSource, SourceError
from agent.freshness.timestamps import iso
from agent.freshness.tracker import FreshnessTracker
from agent.named_loops import NamedLoops
from agent.redact import redact

log = logging.getLogger(__name__)

# Slack beyond a source's timeout before the poller gives up on a source ignoring it.
HARD_TIMEOUT_GRACE = 1.0
ROUND_ENDING_REASONS = ("timeout", "unavailable")


class FreshnessPoller:
    def __init__(self, tracker: FreshnessTracker, metrics: FreshnessMetrics,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.tracker = tracker
        self.metrics = metrics
        self.monotonic = monotonic
        self.loops = NamedLoops("freshness")
        self._locks: dict[str, asyncio.Lock] = {}

    def polled_sources(self) -> list[str]:
        """Names of the pull sources that have at least one data set."""
        used = {dataset.source for dataset in self.tracker.datasets.values()}
        return [name for name, source in self.tracker.sources.items()
                if not source.push and name in used]

    def start(self) -> None:
        """Start (or, after a reload, reconcile) one loop per polled source."""
        self.loops.reconcile(self.polled_sources(), self._loop)

    async def stop(self) -> None:
        await self.loops.stop()

    async def poll_all(self) -> None:
        """One round of every pull source, now (``channel-agent check``)."""
        await asyncio.gather(*(self.poll(name) for name in self.polled_sources()))

    async def _loop(self, name: str) -> None:
        while True:
            started = self.monotonic()
            try:
                await self.poll(name)
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. the state file cannot be written: try again next round
                log.exception("freshness source %s: the poll round failed", name)
            source = self.tracker.sources.get(name)
            if source is None:
                return
            await asyncio.sleep(max(0.0, source.interval - (self.monotonic() - started)))

    async def poll(self, name: str) -> None:
        """One round: ask the source for each of its data sets."""
        async with self._locks.setdefault(name, asyncio.Lock()):
            source = self.tracker.sources[name]
            failures: list[tuple[Dataset, SourceError]] = []
            for dataset in self.tracker.datasets_of(name):
                error = await self._poll_one(source, dataset)
                if error is None:
                    continue
                self.metrics.errors.labels(name, error.reason).inc()
                failures.append((dataset, error))
                if error.reason in ROUND_ENDING_REASONS:
                    break
            self._report(name, failures)

    async def _poll_one(self, source: FreshnessSource, dataset: Dataset) -> SourceError | None:
        try:
            # not wait_for, which in Python 3.11 may lose a cancel (tests/test_stop_in_time.py)
            async with asyncio.timeout(source.timeout + HARD_TIMEOUT_GRACE):
                value = await source.latest(dataset)
        except TimeoutError:
            return SourceError("timeout", f"no answer within {source.timeout:g}s")
        except SourceError as exc:
            return exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("freshness source %s (type %s) raised %s: %s", source.name, source.type,
                      type(exc).__name__, redact(str(exc)))
            return SourceError("plugin_error", f"the source type raised {type(exc).__name__}")
        if value is None:
            return None  # no data yet; a value known before is kept
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value):
            return SourceError("plugin_error", "the source type returned no Unix time")
        if value > self.tracker.clock() + MAX_FUTURE_SKEW:
            return SourceError("bad_value", f"the newest data time {iso(value)} is in the future")
        self.tracker.record(dataset, float(value))
        return None

    def _report(self, name: str, failures: list[tuple[Dataset, SourceError]]) -> None:
        was_up = self.tracker.source_up.get(name)
        self.tracker.source_up[name] = not failures
        if failures and was_up is not False:
            dataset, error = failures[0]
            log.warning("freshness source %s failed for %d data set(s); first: %s/%s/%s: %s "
                        "(%s); their last known values are kept", name, len(failures),
                        dataset.channel, dataset.account, dataset.name, redact(str(error)),
                        error.reason)
        elif not failures and was_up is False:
            log.info("freshness source %s works again", name)
