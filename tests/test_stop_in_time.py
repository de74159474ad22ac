"""Stopping the background loops (SIGTERM: AgentService.stop) is never lost.

Python 3.11's ``asyncio.wait_for`` returns the inner result instead of raising when the task
is cancelled in the same loop iteration as the inner awaitable finishes (CPython gh-86296,
fixed in 3.12 by reimplementing it over ``asyncio.timeout``). A loop cancelled at that moment
went on to its next round and the agent never exited: a 10,000-account inventory's fetch
is about a second in a worker thread, so a SIGTERM soon after start hit it now and then.
Each test cancels exactly at that moment.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.freshness.poller import FreshnessPoller
from agent.freshness.source import Dataset, FreshnessSource
from agent.inventory.runner import InventoryRunner
from agent.inventory.source import InventorySource
from agent.sqldb import cancellable
from tests.fakes import FakeChannel

STOPPED_WITHIN = 10.0  # a hang guard, not a timing: the stop is immediate when it works


class Answering(InventorySource):
    """A source whose fetch returns when the test sets ``answer``."""

    type = "answering"

    def __init__(self) -> None:
        super().__init__("crm", {"channels": ("fake",), "interval": 3600.0, "timeout": 60.0})
        self.answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.fetching = asyncio.Event()

    async def fetch(self) -> list[Any]:
        self.fetching.set()
        return await self.answer


async def test_stopping_the_inventory_as_a_fetch_ends_stops_its_loop():
    runner = InventoryRunner(None)
    source = Answering()
    runner.configure({"crm": source}, {"fake": FakeChannel}, base_dir=None)
    runner.start(lambda: None)
    await source.fetching.wait()
    source.answer.set_result([])
    await asyncio.sleep(0)  # the fetch has ended; the refresh has not resumed yet
    await asyncio.wait_for(runner.stop(), STOPPED_WITHIN)


async def test_a_query_cancelled_as_it_ends_is_cancelled():
    """:func:`agent.sqldb.cancellable` (the ``sql`` sources' queries): the same moment."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def thread(query, *args):  # stands in for asyncio.to_thread: the worker's future
        return answer

    task = asyncio.create_task(_cancellable_with(thread))
    await asyncio.sleep(0)
    answer.set_result("rows")  # the worker is done; the query's task has not resumed yet
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=STOPPED_WITHIN)
    assert task in done and task.cancelled()


async def _cancellable_with(thread) -> str:
    original = asyncio.to_thread
    asyncio.to_thread = thread
    try:
        return await cancellable(lambda cancel: "rows", 60.0)
    finally:
        asyncio.to_thread = original


class Polled(FreshnessSource):
    """A pull source whose answer comes when the test sets ``answer``."""

    type = "polled"

    def __init__(self) -> None:
        super().__init__("warehouse", {"interval": 3600.0, "timeout": 60.0})
        self.answer: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.asked = asyncio.Event()

    async def latest(self, dataset: Dataset) -> float | None:
        self.asked.set()
        return await self.answer


class Tracker:
    """The part of a FreshnessTracker the poller uses: one data set of ``source``."""

    def __init__(self, source: FreshnessSource) -> None:
        dataset = Dataset("fake", "a1", "na", "orders", source.name, 3600.0)
        self.sources = {source.name: source}
        self.datasets = {dataset.key: dataset}
        self.source_up: dict[str, bool] = {}
        self.clock = time.time

    def datasets_of(self, name: str) -> list[Dataset]:
        return list(self.datasets.values())

    def record(self, dataset: Dataset, value: float) -> None:
        pass


async def test_stopping_the_poller_as_an_answer_comes_stops_its_loop():
    source = Polled()
    poller = FreshnessPoller(Tracker(source), None)
    poller.start()
    await source.asked.wait()
    source.answer.set_result(time.time())
    await asyncio.sleep(0)  # the answer is in; the round has not resumed yet
    await asyncio.wait_for(poller.stop(), STOPPED_WITHIN)
